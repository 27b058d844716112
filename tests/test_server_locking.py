"""PackagingClient serialises the work of one docset across threads, and only of one docset."""

from __future__ import annotations

import threading

from tdm_messaging.destinations import reply_queue
from tdm_messaging.docset_locks import DocsetLocks
from tdm_messaging.server import PackagingClient
from tdm_messaging.status import DocsetStatus, State
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport, wait_until
from tests.pausing_transport import Gate, PausingTransport

URL = "http://s/api/docsets/x"


def _poll_in_thread(client: PackagingClient, docset: str, into: dict[str, DocsetStatus], key: str) -> threading.Thread:
    thread = threading.Thread(target=lambda: into.__setitem__(key, client.status(docset)), daemon=True)
    thread.start()
    return thread


def test_an_overlapping_poll_of_one_docset_waits_and_never_reads_unknown() -> None:
    gate = Gate()
    locks = DocsetLocks()
    client = PackagingClient(PausingTransport(InMemoryTransport(InMemoryBroker()), gate), locks=locks)
    requested = client.request_package("7", URL)
    gate.arm()
    seen: dict[str, DocsetStatus] = {}
    first = _poll_in_thread(client, "7", seen, "first")
    try:
        assert gate.held.wait(timeout=10)  # the first poll holds the queue's only message now
        second = _poll_in_thread(client, "7", seen, "second")
        wait_until(lambda: locks.users("7") == 2, what="the second poll to wait for the docset's lock", every=0.002)
        assert gate.found == [(reply_queue("7").name, 1)], "the second poll read while the first held the queue"
    finally:
        gate.release.set()
    first.join(timeout=10)
    second.join(timeout=10)
    assert seen["first"] == seen["second"] == requested.status
    assert [count for _, count in gate.found] == [1, 1]
    assert len(locks) == 0, "a docset's lock outlived its last user"


def test_clients_that_share_no_locks_do_overlap_and_read_unknown() -> None:
    # The hazard the lock exists for: shown here so the test above is known to be able to fail.
    broker, gate = InMemoryBroker(), Gate()
    holder = PackagingClient(PausingTransport(InMemoryTransport(broker), gate))
    other = PackagingClient(PausingTransport(InMemoryTransport(broker), gate))
    holder.request_package("7", URL)
    gate.arm()
    seen: dict[str, DocsetStatus] = {}
    first = _poll_in_thread(holder, "7", seen, "first")
    try:
        assert gate.held.wait(timeout=10)
        assert other.status("7").state is State.UNKNOWN
    finally:
        gate.release.set()
    first.join(timeout=10)
    assert seen["first"].state is State.REQUESTED


def test_clients_sharing_locks_serialise_with_each_other() -> None:
    broker, gate, locks = InMemoryBroker(), Gate(), DocsetLocks()
    holder = PackagingClient(PausingTransport(InMemoryTransport(broker), gate), locks=locks)
    other = PackagingClient(PausingTransport(InMemoryTransport(broker), gate), locks=locks)
    holder.request_package("7", URL)
    gate.arm()
    seen: dict[str, DocsetStatus] = {}
    first = _poll_in_thread(holder, "7", seen, "first")
    try:
        assert gate.held.wait(timeout=10)
        second = _poll_in_thread(other, "7", seen, "second")
        wait_until(lambda: locks.users("7") == 2, what="the other client's poll to wait", every=0.002)
    finally:
        gate.release.set()
    first.join(timeout=10)
    second.join(timeout=10)
    assert seen["first"].state is seen["second"].state is State.REQUESTED


def test_a_poll_of_another_docset_runs_while_one_is_held() -> None:
    gate = Gate()
    locks = DocsetLocks()
    client = PackagingClient(PausingTransport(InMemoryTransport(InMemoryBroker()), gate), locks=locks)
    client.request_package("a", URL)
    b = client.request_package("b", URL)
    gate.arm()
    seen: dict[str, DocsetStatus] = {}
    held = _poll_in_thread(client, "a", seen, "a")
    try:
        assert gate.held.wait(timeout=10)
        assert client.status("b") == b.status  # not blocked by the poll of "a" that is still open
        assert "a" not in seen and held.is_alive()
    finally:
        gate.release.set()
    held.join(timeout=10)
    assert seen["a"].state is State.REQUESTED


def test_many_threads_polling_one_docset_all_see_it_requested() -> None:
    client = PackagingClient(InMemoryTransport(InMemoryBroker()))
    requested = client.request_package("7", URL)
    seen: list[DocsetStatus] = []
    lock = threading.Lock()

    def poll() -> None:
        for _ in range(25):
            status = client.status("7")
            with lock:
                seen.append(status)

    threads = [threading.Thread(target=poll) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(seen) == 200
    assert all(status == requested.status for status in seen)


def test_request_package_returns_the_status_a_poll_then_reads() -> None:
    client = PackagingClient(InMemoryTransport(InMemoryBroker()))
    requested = client.request_package("7", URL, formats=["meta"])
    assert requested.status.state is State.REQUESTED
    assert requested.status.request_id == requested.request.request_id
    assert requested.status.requested_at == requested.request.requested_at
    assert client.status("7") == requested.status
