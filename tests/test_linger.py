"""Progress kept back by the worker's reporter: superseded by a newer reply, or sent by the linger thread."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import pytest

from tdm_messaging.codec import decode
from tdm_messaging.destinations import PACKAGE_REQUESTS, reply_queue
from tdm_messaging.errors import BrokerUnavailableError, ConfigurationError
from tdm_messaging.ids import new_request_id
from tdm_messaging.job import Job, ReplyReporter
from tdm_messaging.linger import ProgressLinger
from tdm_messaging.models import Complete, Message, PackageRequest, Progress
from tdm_messaging.server import PackagingClient
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport, running_worker, wait_until
from tdm_messaging.worker import PackageResult, PackagerWorker

NOW = datetime(2024, 1, 1, tzinfo=UTC)
REQUEST = PackageRequest(
    docset_id="5",
    request_id=new_request_id(),
    sequence=0,
    timestamp=NOW,
    docset_url="http://s/api/docsets/5",
    formats=("meta",),
    reply_to="package/5",
    requested_at=NOW,
)
RESULT = PackageResult(archive_url="https://bucket/5.zip", size_bytes=1)


def _reporter(sent: list[Message], held: list[ReplyReporter]) -> ReplyReporter:
    return ReplyReporter(REQUEST, 1, clock=lambda: NOW, reply=lambda m, _c: sent.append(m), hold=held.append)


def _complete(reporter: ReplyReporter) -> None:
    reporter.send(
        lambda f: Complete(**f, archive_url="https://bucket/5.zip", size_bytes=1, content_type="application/zip"),
        confirm=True,
    )


def test_a_progress_superseded_by_the_complete_is_never_sent_and_takes_no_sequence() -> None:
    sent: list[Message] = []
    held: list[ReplyReporter] = []
    reporter = _reporter(sent, held)
    Job(REQUEST, 1, reporter).progress(1, 1)
    assert [m.type for m in sent] == ["accepted"] and len(held) == 1
    _complete(reporter)
    held[0].flush_held()  # too late: the Complete superseded it
    assert [(m.type, m.sequence) for m in sent] == [("accepted", 1), ("complete", 2)]


def test_a_held_progress_is_sent_by_its_flush_and_a_newer_one_replaces_it_meanwhile() -> None:
    sent: list[Message] = []
    held: list[ReplyReporter] = []
    reporter = _reporter(sent, held)
    job = Job(REQUEST, 1, reporter)
    job.progress(1, 2)
    job.progress(2, 2)
    assert len(held) == 1, "one flush scheduled for the reports kept back"
    reporter.flush_held()
    _complete(reporter)
    assert [(m.type, m.sequence) for m in sent] == [("accepted", 1), ("progress", 2), ("complete", 3)]
    assert isinstance(sent[1], Progress) and sent[1].items_done == 2


def test_nothing_is_flushed_after_the_job_closed_its_reporter() -> None:
    sent: list[Message] = []
    reporter = _reporter(sent, [])
    Job(REQUEST, 1, reporter).progress(1, 2)
    reporter.close()
    reporter.flush_held()
    assert [m.type for m in sent] == ["accepted"]


def test_a_flush_that_fails_is_raised_by_the_jobs_next_send() -> None:
    sent: list[Message] = []
    failures = [BrokerUnavailableError("gone")]

    def reply(message: Message, _confirm: bool) -> None:
        if isinstance(message, Progress) and failures:
            raise failures.pop()
        sent.append(message)

    reporter = ReplyReporter(REQUEST, 1, clock=lambda: NOW, reply=reply, hold=lambda _r: None)
    Job(REQUEST, 1, reporter).progress(1, 2)
    reporter.flush_held()
    with pytest.raises(BrokerUnavailableError) as caught:
        _complete(reporter)
    assert caught.value is reporter.failure
    assert [m.type for m in sent] == ["accepted"]


class _Flushes:
    def __init__(self) -> None:
        self.count = 0
        self.done = threading.Event()

    def flush_held(self) -> None:
        self.count += 1
        self.done.set()


def test_the_linger_flushes_after_its_time_and_close_flushes_what_waits() -> None:
    quick, slow, late = _Flushes(), _Flushes(), _Flushes()
    linger = ProgressLinger(0.001)
    linger.hold(quick)
    assert quick.done.wait(timeout=30)
    waiting = ProgressLinger(3600)
    waiting.hold(slow)
    waiting.close()
    waiting.hold(late)  # after close: at once
    linger.close()
    assert (quick.count, slow.count, late.count) == (1, 1, 1)


def _types_and_sequences(broker: InMemoryBroker, docset: str) -> list[tuple[str, int]]:
    return [(decode(e).type, decode(e).sequence) for e in broker.messages(reply_queue(docset))]


def _settled(broker: InMemoryBroker) -> bool:
    return not broker.messages(PACKAGE_REQUESTS) and broker.unacked_count(PACKAGE_REQUESTS) == 0


def test_a_worker_with_a_linger_sends_no_progress_for_a_job_that_ends_at_once() -> None:
    broker = InMemoryBroker()
    docset = f"ds-{uuid.uuid4().hex[:10]}"

    def handler(job: Job) -> PackageResult:
        job.progress(1, 1)
        return RESULT

    worker = PackagerWorker(InMemoryTransport(broker), on_package=handler, progress_linger_seconds=3600)
    with running_worker(worker):
        PackagingClient(InMemoryTransport(broker)).request_package(docset, "http://s/api/docsets/x")
        wait_until(lambda: _settled(broker), what="the job to end", timeout=20)
    assert _types_and_sequences(broker, docset) == [("package_request", 0), ("accepted", 1), ("complete", 2)]


def test_a_worker_with_a_linger_sends_the_progress_of_a_job_still_running() -> None:
    broker = InMemoryBroker()
    docset = f"ds-{uuid.uuid4().hex[:10]}"

    def handler(job: Job) -> PackageResult:
        job.progress(1, 2)
        wait_until(
            lambda: any(e.header("tdm-type") == "progress" for e in broker.messages(reply_queue(docset))),
            what="the Progress kept back to be sent",
            timeout=20,
        )
        return RESULT

    worker = PackagerWorker(InMemoryTransport(broker), on_package=handler, progress_linger_seconds=0.001)
    with running_worker(worker):
        PackagingClient(InMemoryTransport(broker)).request_package(docset, "http://s/api/docsets/x")
        wait_until(lambda: _settled(broker), what="the job to end", timeout=20)
    assert _types_and_sequences(broker, docset) == [
        ("package_request", 0),
        ("accepted", 1),
        ("progress", 2),
        ("complete", 3),
    ]


def test_a_retried_job_never_shares_a_sequence_number_with_a_late_progress() -> None:
    broker = InMemoryBroker()
    docset = f"ds-{uuid.uuid4().hex[:10]}"
    attempts: list[int] = []

    def handler(job: Job) -> PackageResult:
        attempts.append(job.attempt)
        job.progress(1, 2)
        if job.attempt == 1:
            raise RuntimeError("a hiccup")
        return RESULT

    worker = PackagerWorker(
        InMemoryTransport(broker), on_package=handler, retry_backoff_seconds=0, progress_linger_seconds=3600
    )
    with running_worker(worker):
        PackagingClient(InMemoryTransport(broker)).request_package(docset, "http://s/api/docsets/x")
        wait_until(lambda: len(attempts) == 2 and _settled(broker), what="the retry to end", timeout=20)
    sequences = [s for _t, s in _types_and_sequences(broker, docset)]
    assert len(sequences) == len(set(sequences)), sequences
    assert _types_and_sequences(broker, docset)[-1][0] == "complete"


@pytest.mark.parametrize("seconds", [-1.0, float("nan")])
def test_a_negative_linger_is_refused(seconds: float) -> None:
    with pytest.raises(ConfigurationError, match="linger"):
        PackagerWorker(
            InMemoryTransport(InMemoryBroker()), on_package=lambda job: RESULT, progress_linger_seconds=seconds
        )
