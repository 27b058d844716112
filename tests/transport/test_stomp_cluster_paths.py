"""STOMP paths a cluster needs: a raised handler's delivery comes back; confirmed sends to classic queues declare."""

from __future__ import annotations

import threading
import uuid

import pytest

from tdm_messaging.destinations import Destination, DestinationKind, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import SendNotConfirmedError
from tdm_messaging.transport.base import Delivery
from tdm_messaging.transport.stomp import backend as stomp_backend
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


@pytest.mark.broker
@pytest.mark.parametrize(("params", "declaring"), [("", 0), ("&quorum=true", 1)])
def test_a_confirmed_send_to_a_classic_queue_of_a_cluster_is_a_first_frame_and_keeps_order(
    params: str, declaring: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a cluster (quorum=true, or several nodes) a confirmed SEND to a classic queue goes as the first
    frame of a connection of its own, so RabbitMQ declares the queue and refuses it while its home node
    is down; what the transport's own connection sent before still comes first. One node: as usual."""
    calls: list[str] = []
    real = stomp_backend.send_elsewhere

    def counting(*args: object, **kwargs: object) -> None:
        calls.append(str(args[1]))
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(stomp_backend, "send_elsewhere", counting)
    queue = reply_queue(f"test-first-{uuid.uuid4().hex}")
    with StompTransport.from_url(broker_url("rabbitmq-stomp") + params) as t:
        t.declare(queue)
        for n in range(5):
            t.send(queue, Envelope(f"progress {n}".encode()))  # unconfirmed, on the transport's connection
        t.send(queue, Envelope(b"complete"), confirm=True)
        assert len(calls) == declaring
        with t.read(queue) as batch:
            assert [e.body for e in batch.envelopes] == [*(f"progress {n}".encode() for n in range(5)), b"complete"]
            batch.ack()


@pytest.mark.broker
@pytest.mark.parametrize(("params", "declaring"), [("", 0), ("&quorum=true", 1)])
def test_send_many_keeps_the_cluster_rule_and_the_order(
    params: str, declaring: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """send_many in a cluster: the confirmed send to a classic reply queue still goes first on a connection
    of its own (after what came before it in the list was confirmed); the quorum permanent queue's send is
    pipelined on the transport's connection. One node: everything pipelined, one wait."""
    calls: list[str] = []
    real = stomp_backend.send_elsewhere

    def counting(*args: object, **kwargs: object) -> None:
        calls.append(str(args[1]))
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(stomp_backend, "send_elsewhere", counting)
    queue = reply_queue(f"test-many-{uuid.uuid4().hex}")
    requests = Destination(f"test-many-requests-{uuid.uuid4().hex}", DestinationKind.PERMANENT)
    with StompTransport.from_url(broker_url("rabbitmq-stomp") + params) as t:
        for _ in range(5):  # a new queue each time: its first frame on this connection also declares it
            queue = reply_queue(f"test-many-{uuid.uuid4().hex}")
            t.send(queue, Envelope(b"before"))  # unconfirmed, on the transport's connection
            t.send_many([(queue, Envelope(b"copy")), (requests, Envelope(b"request"))], confirm=True)
            with t.read(queue) as batch:
                assert [e.body for e in batch.envelopes] == [b"before", b"copy"]
                batch.ack()
        assert len(calls) == 5 * declaring
        with t.read(requests) as batch:
            assert [e.body for e in batch.envelopes] == [b"request"] * 5
            batch.ack()
