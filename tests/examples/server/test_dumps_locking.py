"""DumpService serialises the broker work of one docset in a process: overlapping polls send one request."""

from __future__ import annotations

import threading
import time

from examples.server.dumps import DumpService, Poll, TransportPool
from tdm_messaging import DocsetLocks
from tdm_messaging.destinations import PACKAGE_REQUESTS
from tdm_messaging.status import State
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport
from tests.pausing_transport import Gate, PausingTransport

URL = "http://tdm.test/api/docsets/7"


def test_an_overlapping_poll_waits_and_sees_the_request() -> None:
    broker = InMemoryBroker()
    gate = Gate()
    locks = DocsetLocks()
    pool = TransportPool(lambda: PausingTransport(InMemoryTransport(broker), gate), max_idle=4)
    service = DumpService(pool, locks=locks)
    assert service.poll("7", URL).requested  # the queue now says REQUESTED

    gate.arm()
    polls: dict[str, Poll] = {}
    first = threading.Thread(target=lambda: polls.setdefault("first", service.poll("7", URL)))
    first.start()
    assert gate.held.wait(timeout=10)  # the first poll holds the queue's messages now
    second = threading.Thread(target=lambda: polls.setdefault("second", service.poll("7", URL)))
    second.start()
    # Release the held read only once the second poll waits for the docset's lock (or has
    # finished: without the lock it would have read the queue empty by then).
    try:
        deadline = time.monotonic() + 10
        while locks.users("7") < 2 and second.is_alive():
            assert time.monotonic() < deadline, "the overlapping poll neither waited nor finished"
            time.sleep(0.002)
    finally:
        gate.release.set()
        first.join(timeout=10)
        second.join(timeout=10)
        pool.close()

    assert len(broker.messages(PACKAGE_REQUESTS)) == 1, "an overlapping poll sent a second package request"
    counts = [count for _, count in gate.found]
    assert 0 not in counts[1:], f"a poll read the queue empty while another held it: {gate.found}"
    for name in ("first", "second"):
        poll = polls[name]
        assert poll.requested is False
        assert poll.status.state is State.REQUESTED
    assert len(locks) == 0, "a docset's lock outlived its last poll"


def test_a_request_answers_from_what_it_sent_without_a_second_read() -> None:
    broker = InMemoryBroker()
    gate = Gate()
    pool = TransportPool(lambda: PausingTransport(InMemoryTransport(broker), gate), max_idle=2)
    service = DumpService(pool)
    first = service.poll("7", URL)
    assert first.requested and first.status.state is State.REQUESTED
    assert len(gate.found) == 1, "the poll read the queue again after requesting"
    fresh = service.request("7", URL)
    assert fresh.requested and fresh.status.state is State.REQUESTED
    assert fresh.status.request_id != first.status.request_id
    # One read before sending (the quotas judge the status it finds), none after.
    assert len(gate.found) == 2, "a fresh request read the queue more than once"
    assert len(broker.messages(PACKAGE_REQUESTS)) == 2
    pool.close()


def test_polls_of_different_docsets_do_not_share_state() -> None:
    broker = InMemoryBroker()
    pool = TransportPool(lambda: InMemoryTransport(broker), max_idle=2)
    service = DumpService(pool)
    assert service.poll("1", URL.replace("7", "1")).requested
    assert service.poll("2", URL.replace("7", "2")).requested
    assert not service.poll("1", URL.replace("7", "1")).requested
    assert len(broker.messages(PACKAGE_REQUESTS)) == 2
    pool.close()
