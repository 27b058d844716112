"""DumpService serialises the broker work of one docset in a process: overlapping polls send one request."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from examples.server.dumps import DocsetLocks, DumpService, Poll, TransportPool
from tdm_messaging.destinations import PACKAGE_REQUESTS, Destination, DestinationKind
from tdm_messaging.envelope import Envelope
from tdm_messaging.status import State
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport
from tdm_messaging.transport import Batch, Capabilities, Handler, Transport

URL = "http://tdm.test/api/docsets/7"


class _PausingTransport(Transport):
    """Delegates to an in-memory transport; the first reply-queue read after ``arm()`` waits, holding its batch."""

    def __init__(self, inner: Transport, gate: _Gate) -> None:
        self._inner = inner
        self._gate = gate

    @property
    def capabilities(self) -> Capabilities:
        return self._inner.capabilities

    def send(
        self, destination: Destination, envelope: Envelope, *, persistent: bool = True, confirm: bool = False
    ) -> None:
        self._inner.send(destination, envelope, persistent=persistent, confirm=confirm)

    def read(self, destination: Destination, *, limit: int = 1000) -> Batch:
        batch = self._inner.read(destination, limit=limit)
        if destination.kind is DestinationKind.REPLY:
            self._gate.hold(len(batch.envelopes))
        return batch

    def consume(
        self, destinations: Sequence[Destination], handler: Handler, *, prefetch: int = 1, stop: threading.Event
    ) -> None:
        self._inner.consume(destinations, handler, prefetch=prefetch, stop=stop)

    def declare(self, destination: Destination) -> None:
        self._inner.declare(destination)

    def delete(self, destination: Destination) -> None:
        self._inner.delete(destination)

    def close(self) -> None:
        self._inner.close()


class _Gate:
    """Holds the first armed read until released; records what every read found."""

    def __init__(self) -> None:
        self._armed = False
        self.held = threading.Event()
        self.release = threading.Event()
        self.found: list[int] = []
        self._lock = threading.Lock()

    def arm(self) -> None:
        self._armed = True

    def hold(self, count: int) -> None:
        with self._lock:
            self.found.append(count)
            pause, self._armed = self._armed, False
        if pause:
            self.held.set()
            assert self.release.wait(timeout=30), "the test never released the held read"


class _WatchedLocks(DocsetLocks):
    """Notes when a second caller asks for a docset's lock (it is about to wait for it)."""

    def __init__(self) -> None:
        super().__init__(stripes=8)
        self.asked = 0
        self.second_asked = threading.Event()

    def of(self, docset_id: str) -> threading.Lock:
        self.asked += 1
        if self.asked >= 3:  # the first poll (setup), the held poll, then the overlapping one
            self.second_asked.set()
        return super().of(docset_id)


def test_an_overlapping_poll_waits_and_sees_the_request() -> None:
    broker = InMemoryBroker()
    gate = _Gate()
    locks = _WatchedLocks()
    pool = TransportPool(lambda: _PausingTransport(InMemoryTransport(broker), gate), max_idle=4)
    service = DumpService(pool, locks=locks)
    assert service.poll("7", URL).requested  # the queue now says REQUESTED

    gate.arm()
    polls: dict[str, Poll] = {}
    first = threading.Thread(target=lambda: polls.setdefault("first", service.poll("7", URL)))
    first.start()
    assert gate.held.wait(timeout=10)  # the first poll holds the queue's messages now
    second_done = threading.Event()

    def second_poll() -> None:
        polls["second"] = service.poll("7", URL)
        second_done.set()

    second = threading.Thread(target=second_poll)
    second.start()
    # Release the held read only once the second poll either waits for the docset's lock or has
    # finished: without the lock it would have read the queue empty by then.
    try:
        while not (locks.second_asked.wait(timeout=0.01) or second_done.is_set()):
            pass
        assert locks.of("7").locked(), "the overlapping poll does not wait for the docset's lock"
    finally:
        gate.release.set()
        first.join(timeout=10)
        second.join(timeout=10)
        pool.close()

    assert len(broker.messages(PACKAGE_REQUESTS)) == 1, "an overlapping poll sent a second package request"
    assert 0 not in gate.found[1:], f"a poll read the queue empty while another held it: {gate.found}"
    for name in ("first", "second"):
        poll = polls[name]
        assert poll.requested is False
        assert poll.status.state is State.REQUESTED


def test_polls_of_different_docsets_do_not_share_state() -> None:
    broker = InMemoryBroker()
    pool = TransportPool(lambda: InMemoryTransport(broker), max_idle=2)
    service = DumpService(pool)
    assert service.poll("1", URL.replace("7", "1")).requested
    assert service.poll("2", URL.replace("7", "2")).requested
    assert not service.poll("1", URL.replace("7", "1")).requested
    assert len(broker.messages(PACKAGE_REQUESTS)) == 2
    pool.close()


@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=200), st.integers(1, 16))
def test_a_docset_always_gets_the_same_lock_out_of_a_bounded_set(ids: list[str], stripes: int) -> None:
    locks = DocsetLocks(stripes)
    chosen = [locks.of(docset_id) for docset_id in ids]
    assert all(locks.of(docset_id) is lock for docset_id, lock in zip(ids, chosen, strict=True))
    assert len({id(lock) for lock in chosen}) <= stripes


def test_zero_stripes_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        DocsetLocks(0)
