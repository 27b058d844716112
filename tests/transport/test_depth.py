"""Transport.depth on every backend: what waits in a queue, where the broker can say, and nothing created or taken."""

from __future__ import annotations

import pytest

from tdm_messaging.destinations import DEAD_LETTER
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import InvalidArgumentError
from tests.transport.conftest import Backend, backend_fixture, unique_namespace


def test_depth_counts_what_waits(backend: Backend) -> None:
    backend.namespace = unique_namespace()  # the dead-letter queue of this test alone
    transport = backend.open()
    queue = backend.track(DEAD_LETTER)
    if backend.is_stomp:
        assert transport.depth(queue) is None  # STOMP cannot ask: said, not guessed
        return
    assert transport.depth(queue) == 0  # not there yet: holds nothing
    for body in (b"1", b"2", b"3"):
        transport.send(queue, Envelope(body), confirm=True)
    assert transport.depth(queue) == 3
    with transport.read(queue, limit=2) as batch:
        assert len(batch.envelopes) == 2
        assert transport.depth(queue) == 1  # taken, unacknowledged messages do not wait
    assert transport.depth(queue) == 3  # released: back
    with transport.read(queue) as batch:
        batch.ack()
    assert transport.depth(queue) == 0


def test_depth_of_a_missing_reply_queue_creates_nothing(backend: Backend) -> None:
    backend.namespace = unique_namespace()
    transport = backend.open()
    queue = backend.reply_queue()
    expected = None if backend.is_stomp else 0
    assert transport.depth(queue) == expected
    assert transport.depth(queue) == expected
    transport.send(queue, Envelope(b"after"), confirm=True)  # the transport still works after a 404
    if not backend.is_stomp:
        assert transport.depth(queue) == 1


# The argument check is the contract's (transport/base.py), the same for every backend: two suffice.
local = backend_fixture("inmemory", "sqlite-native")


def test_depth_checks_its_argument(local: Backend) -> None:
    with pytest.raises(InvalidArgumentError):
        local.open().depth("docsets/dead-letter")  # type: ignore[arg-type]
