"""PackagerWorker handed several requests at once (prefetch > 1): one confirm wait per batch, never an early ack."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence

import pytest

from tdm_messaging.codec import decode
from tdm_messaging.destinations import DEAD_LETTER, PACKAGE_REQUESTS, Destination, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import ConfigurationError, SendNotConfirmedError
from tdm_messaging.server import PackagingClient
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport, running_worker, wait_until
from tdm_messaging.transport.base import BatchHandler, Delivery
from tdm_messaging.worker import Job, JobFailed, PackageResult, PackagerWorker

RESULT = PackageResult(archive_url="https://bucket/package/5.zip", size_bytes=345345)


class _Batching(InMemoryTransport):
    """An in-memory transport whose ``consume_batches`` hands over everything waiting (up to the
    prefetch) as one batch, and that logs each send: ``(how, destination, types, confirm)``."""

    def __init__(self, broker: InMemoryBroker) -> None:
        super().__init__(broker)
        self.log: list[tuple[str, str, tuple[str, ...], bool]] = []
        self.batch_sizes: list[int] = []
        self._in_many = False

    def _consume_batches(
        self, destinations: Sequence[Destination], handler: BatchHandler, *, prefetch: int, stop: threading.Event
    ) -> None:
        while not stop.is_set():
            for destination in destinations:
                with self.read(destination, limit=prefetch) as batch:  # leaving without ack gives it back
                    if batch.envelopes:
                        self.batch_sizes.append(len(batch.envelopes))
                        handler([Delivery(e, destination) for e in batch.envelopes])
                        batch.ack()
            stop.wait(0.01)

    def _send(
        self, destination: Destination, envelope: Envelope, *, persistent: bool = True, confirm: bool = False
    ) -> None:
        if not self._in_many:  # the sends of a send_many are logged as one
            self.log.append(("send", destination.name, (envelope.header("tdm-type") or "",), confirm))
        super()._send(destination, envelope, persistent=persistent, confirm=confirm)

    def _send_many(self, sends: Sequence[tuple[Destination, Envelope]], *, persistent: bool, confirm: bool) -> None:
        types = tuple(e.header("tdm-type") or "" for _, e in sends)
        self.log.append(("send_many", ",".join(sorted({d.name for d, _ in sends})), types, confirm))
        self._in_many = True
        try:
            super()._send_many(sends, persistent=persistent, confirm=confirm)
        finally:
            self._in_many = False


def _request(broker: InMemoryBroker, count: int) -> list[str]:
    client = PackagingClient(InMemoryTransport(broker))
    docsets = [f"ds-{uuid.uuid4().hex[:10]}" for _ in range(count)]
    for docset in docsets:
        client.request_package(docset, f"http://s/api/docsets/{docset}")
    return docsets


def _types(broker: InMemoryBroker, docset: str) -> list[str]:
    return [decode(e).type for e in broker.messages(reply_queue(docset))]


def _settled(broker: InMemoryBroker) -> bool:
    return not broker.messages(PACKAGE_REQUESTS) and broker.unacked_count(PACKAGE_REQUESTS) == 0


def test_a_batch_waits_once_for_all_its_last_replies_before_any_request_is_acknowledged() -> None:
    broker = InMemoryBroker()
    docsets = _request(broker, 3)
    transport = _Batching(broker)
    unacked_at_flush: list[int] = []
    original = transport._send_many

    def flush(sends: Sequence[tuple[Destination, Envelope]], *, persistent: bool, confirm: bool) -> None:
        unacked_at_flush.append(broker.unacked_count(PACKAGE_REQUESTS))
        original(sends, persistent=persistent, confirm=confirm)

    transport._send_many = flush  # type: ignore[method-assign]

    def handler(job: Job) -> PackageResult:
        job.progress(1, 1)
        return RESULT

    with running_worker(PackagerWorker(transport, on_package=handler, prefetch=3, retry_backoff_seconds=0)):
        wait_until(lambda: _settled(broker), what="the batch to be acknowledged", timeout=20)
    assert transport.batch_sizes == [3]
    confirmed = [entry for entry in transport.log if entry[3]]
    assert confirmed == [("send_many", ",".join(sorted(f"package/{d}" for d in docsets)), ("complete",) * 3, True)]
    assert unacked_at_flush == [3], "a request was acknowledged before its Complete was confirmed"
    for docset in docsets:
        assert _types(broker, docset) == ["package_request", "accepted", "progress", "complete"]
        assert [decode(e).sequence for e in broker.messages(reply_queue(docset))] == [0, 1, 2, 3]


def test_a_batch_whose_confirm_fails_is_delivered_again_and_then_handled_one_job_at_a_time() -> None:
    broker = InMemoryBroker()
    docsets = _request(broker, 2)
    transport = _Batching(broker)
    runs: list[str] = []

    def handler(job: Job) -> PackageResult:
        runs.append(job.request.docset_id)
        job.accepted(None)
        if len(runs) == 2:
            broker.fail_next_send(SendNotConfirmedError("no confirm"))  # the next send: the batch's flush
        return RESULT

    with running_worker(PackagerWorker(transport, on_package=handler, prefetch=2, retry_backoff_seconds=0)):
        wait_until(lambda: _settled(broker) and len(runs) == 4, what="the batch to be redone", timeout=20)
    assert runs == docsets + docsets, "the failed batch was not redelivered whole"
    assert transport.batch_sizes == [2, 2]
    confirmed = [(how, types) for how, _dest, types, confirm in transport.log if confirm]
    # The failed flush, then the redelivered batch one job at a time: each Complete confirmed in its job.
    assert confirmed[0][0] == "send_many"
    assert confirmed[-2:] == [("send", ("complete",)), ("send", ("complete",))]
    for docset in docsets:
        assert _types(broker, docset).count("complete") == 1
    assert broker.messages(DEAD_LETTER) == []


def test_a_job_failed_in_a_batch_is_confirmed_with_the_batch() -> None:
    broker = InMemoryBroker()
    good, bad = _request(broker, 2)
    transport = _Batching(broker)

    def handler(job: Job) -> PackageResult:
        if job.request.docset_id == bad:
            raise JobFailed("no members")
        return RESULT

    with running_worker(PackagerWorker(transport, on_package=handler, prefetch=2, retry_backoff_seconds=0)):
        wait_until(lambda: _settled(broker), what="the batch to be acknowledged", timeout=20)
    confirmed = [types for _how, _dest, types, confirm in transport.log if confirm]
    assert confirmed == [("complete", "failed")]
    assert _types(broker, good)[-1] == "complete" and _types(broker, bad)[-1] == "failed"


def test_a_request_given_up_in_a_batch_has_its_failed_stored_before_it_is_dead_lettered() -> None:
    broker = InMemoryBroker()
    docsets = _request(broker, 2)
    transport = _Batching(broker)

    def handler(job: Job) -> PackageResult:
        if job.request.docset_id == docsets[0]:
            raise RuntimeError("the disk is full")
        return RESULT

    worker = PackagerWorker(transport, on_package=handler, prefetch=2, max_attempts=1, retry_backoff_seconds=0)
    with running_worker(worker):
        wait_until(lambda: _settled(broker), what="the batch to be acknowledged", timeout=20)
    order = [(how, dest, types) for how, dest, types, confirm in transport.log if confirm or dest == DEAD_LETTER.name]
    assert order[0] == ("send_many", f"package/{docsets[0]}", ("failed",))
    assert order[1][1] == DEAD_LETTER.name
    assert order[2] == ("send_many", f"package/{docsets[1]}", ("complete",))
    assert _types(broker, docsets[0])[-1] == "failed" and _types(broker, docsets[1])[-1] == "complete"


def test_the_in_memory_transport_hands_over_batches_of_one_and_the_worker_confirms_each_job() -> None:
    broker = InMemoryBroker()
    docsets = _request(broker, 3)
    with running_worker(
        PackagerWorker(InMemoryTransport(broker), on_package=lambda job: RESULT, prefetch=3, retry_backoff_seconds=0)
    ):
        wait_until(lambda: _settled(broker), what="the jobs to finish", timeout=20)
    for docset in docsets:
        assert _types(broker, docset) == ["package_request", "accepted", "complete"]


@pytest.mark.parametrize("prefetch", [0, -1, True, 1.5])
def test_a_prefetch_that_is_not_a_whole_number_at_least_1_is_refused(prefetch: object) -> None:
    with pytest.raises(ConfigurationError, match="prefetch"):
        PackagerWorker(InMemoryTransport(InMemoryBroker()), on_package=lambda job: RESULT, prefetch=prefetch)  # type: ignore[arg-type]
