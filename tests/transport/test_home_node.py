"""A queue whose home node is down is unavailability on both wings, and a returned confirmed send is a failed send."""

from __future__ import annotations

import uuid

import amqp.exceptions
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tdm_messaging.destinations import Destination, DestinationKind
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import BrokerRefusedError, BrokerUnavailableError, SendNotConfirmedError
from tdm_messaging.transport.home_node import home_node_down, is_home_node_down
from tdm_messaging.transport.kombu.backend import KombuTransport
from tdm_messaging.transport.stomp.settings import StompSettings
from tdm_messaging.transport.stomp.translate import error_frame
from tests.conftest import broker_url

HOME_DOWN = "NOT_FOUND - home node 'tdmc2@localhost' of durable queue 'package/5' in vhost '/' is down or inaccessible"
STOMP = StompSettings(host="mq.example", port=61613)

# Queue and node names as RabbitMQ writes them between quotes: any text without a quote.
_quoted = st.text(st.characters(exclude_characters="'"), min_size=1, max_size=40)


@given(node=_quoted, queue=_quoted)
def test_any_home_node_down_text_is_recognised_and_named(node: str, queue: str) -> None:
    text = f"NOT_FOUND - home node '{node}' of durable queue '{queue}' in vhost '/' is down or inaccessible"
    assert is_home_node_down(text)
    said = home_node_down("sending", "amqp://h//", text)
    assert node in said and repr(queue) in said and "quorum" in said
    assert "user name" not in said and "password" not in said


@pytest.mark.parametrize(
    "text",
    [
        "NOT_FOUND - no queue 'package/5' in vhost '/'",
        "ACCESS_REFUSED - access to queue 'package/5' in vhost '/' refused for user 'guest'",
        "PRECONDITION_FAILED - inequivalent arg 'x-expires' for queue 'package/5'",
        "",
    ],
)
def test_other_errors_are_not_home_node_down(text: str) -> None:
    assert not is_home_node_down(text)


def test_kombu_reads_home_node_down_as_unavailable_and_plain_not_found_as_refused() -> None:
    t = KombuTransport.from_url(f"memory://home-{uuid.uuid4().hex}")
    try:
        down = amqp.exceptions.NotFound(f"Queue.declare: (404) {HOME_DOWN}")
        with pytest.raises(BrokerUnavailableError) as info, t._driver("declaring 'package/5'"):
            raise down
        assert info.value.__cause__ is down
        assert "tdmc2@localhost" in str(info.value) and "quorum" in str(info.value)
        missing = amqp.exceptions.NotFound("Basic.consume: (404) NOT_FOUND - no queue 'x' in vhost '/'")
        with pytest.raises(BrokerRefusedError), t._driver("subscribing"):
            raise missing
    finally:
        t.close()


def test_stomp_error_frame_home_node_down_is_unavailable_without_login_advice() -> None:
    error = error_frame("not_found", HOME_DOWN, STOMP)
    assert isinstance(error, BrokerUnavailableError)
    assert "mq.example:61613" in str(error) and "tdmc2@localhost" in str(error)
    assert "user name" not in str(error) and "vhost" not in str(error).replace("in vhost '/'", "")


def test_stomp_error_frames_that_refuse_stay_refusals() -> None:
    refused = error_frame("access_refused", "ACCESS_REFUSED - Login was refused using authentication", STOMP)
    assert isinstance(refused, BrokerRefusedError) and "user name" in str(refused)
    inequivalent = error_frame(
        "precondition_failed",
        "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'docsets/package'",
        STOMP,
    )
    assert isinstance(inequivalent, BrokerRefusedError) and "other arguments" in str(inequivalent)


def test_an_unroutable_confirmed_amqp_send_fails_and_the_next_declares_again() -> None:
    """A confirmed publish no queue takes comes back (basic.return) before its confirm: that is a failed send."""
    url = broker_url("rabbitmq-amqp")
    queue = Destination(f"test/returned-{uuid.uuid4().hex}", DestinationKind.PERMANENT)
    with KombuTransport.from_url(url) as t, KombuTransport.from_url(url) as other:
        t.send(queue, Envelope(b"one"), confirm=True)  # declares the queue; this connection remembers that
        other._link.retrying("deleting", lambda: other._link.base_channel().queue_delete(queue=queue.name))
        with pytest.raises(SendNotConfirmedError) as info:
            t.send(queue, Envelope(b"two"), confirm=True)
        assert "did not store" in str(info.value) and queue.name in str(info.value)
        assert "NO_ROUTE" in str(info.value)
        t.send(queue, Envelope(b"three"), confirm=True)  # declared again: stored
        batch = t.read(queue)
        assert [e.body for e in batch.envelopes] == [b"three"]
        batch.ack()
        t.delete(queue)
