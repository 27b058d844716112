"""A STOMP consume whose handler raised gives the delivery back when consuming again on the same transport."""

from __future__ import annotations

import threading
import uuid

import pytest

from tdm_messaging.destinations import Destination, DestinationKind
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import SendNotConfirmedError
from tdm_messaging.transport.base import Delivery
from tdm_messaging.transport.stomp.backend import StompTransport
from tests.conftest import broker_url


@pytest.mark.broker
@pytest.mark.parametrize("broker", ["rabbitmq-stomp", "activemq-stomp"])
def test_a_delivery_whose_handler_raised_comes_again_on_the_next_consume(broker: str) -> None:
    """The worker's path when a reply was not stored: the handler raises, the worker consumes again.

    RabbitMQ keeps an unacknowledged delivery of a cancelled subscription on its connection; had
    the transport subscribed again on that connection, the request would never come back.
    """
    queue = Destination(f"test/again-{uuid.uuid4().hex}", DestinationKind.PERMANENT)
    with StompTransport.from_url(broker_url(broker)) as t:
        t.send(queue, Envelope(b"the request"), confirm=True)
        seen: list[bytes] = []

        def failing(delivery: Delivery) -> None:
            seen.append(delivery.envelope.body)
            raise SendNotConfirmedError("the reply was not stored")

        with pytest.raises(SendNotConfirmedError):
            t.consume([queue], failing, prefetch=1, stop=threading.Event())
        stop = threading.Event()
        timer = threading.Timer(20, stop.set)
        timer.start()

        def taking(delivery: Delivery) -> None:
            seen.append(delivery.envelope.body)
            stop.set()

        try:
            t.consume([queue], taking, prefetch=1, stop=stop)
        finally:
            timer.cancel()
        assert seen == [b"the request", b"the request"]
