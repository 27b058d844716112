"""Progress kept back by the worker's reporter: superseded by a newer reply, or sent by the linger thread."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tdm_messaging.codec import decode
from tdm_messaging.destinations import PACKAGE_REQUESTS, reply_queue
from tdm_messaging.errors import BrokerUnavailableError, ConfigurationError
from tdm_messaging.ids import new_request_id
from tdm_messaging.job import Job, ReplyReporter
from tdm_messaging.linger import ProgressLinger
from tdm_messaging.models import Accepted, Complete, Failed, Message, PackageRequest, Progress
from tdm_messaging.server import PackagingClient
from tdm_messaging.status import State
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


def test_an_accepted_and_progress_superseded_by_the_complete_are_never_sent_and_take_no_sequence() -> None:
    sent: list[Message] = []
    held: list[ReplyReporter] = []
    reporter = _reporter(sent, held)
    Job(REQUEST, 1, reporter).progress(1, 1)
    assert sent == [] and len(held) == 1, "the Accepted and the Progress kept back, one flush scheduled"
    _complete(reporter)
    held[0].flush_held()  # too late: the Complete superseded them
    assert [(m.type, m.sequence) for m in sent] == [("complete", 1)]


def test_a_failed_supersedes_a_kept_accepted_too() -> None:
    sent: list[Message] = []
    held: list[ReplyReporter] = []
    reporter = _reporter(sent, held)
    Job(REQUEST, 1, reporter).accepted(12.0)
    reporter.send(lambda f: Failed(**f, reason="no such docset", retryable=False), confirm=True)
    held[0].flush_held()
    assert [(m.type, m.sequence) for m in sent] == [("failed", 1)]


def test_the_flush_sends_the_kept_accepted_with_its_estimate_then_the_progress() -> None:
    sent: list[Message] = []
    held: list[ReplyReporter] = []
    reporter = _reporter(sent, held)
    job = Job(REQUEST, 1, reporter)
    job.accepted(12.0)
    job.progress(1, 4)
    job.progress(2, 4)
    assert sent == [] and len(held) == 1
    reporter.flush_held()
    _complete(reporter)
    assert [(m.type, m.sequence) for m in sent] == [("accepted", 1), ("progress", 2), ("complete", 3)]
    assert isinstance(sent[0], Accepted) and sent[0].estimate_seconds == 12.0
    assert isinstance(sent[1], Progress) and sent[1].items_done == 2


def test_without_a_linger_accepted_and_progress_go_out_at_once() -> None:
    sent: list[Message] = []
    reporter = ReplyReporter(REQUEST, 1, clock=lambda: NOW, reply=lambda m, _c: sent.append(m))
    Job(REQUEST, 1, reporter).progress(1, 1)
    _complete(reporter)
    assert [(m.type, m.sequence) for m in sent] == [("accepted", 1), ("progress", 2), ("complete", 3)]


def test_a_held_progress_is_sent_by_its_flush_and_a_newer_one_replaces_it_meanwhile() -> None:
    sent: list[Message] = []
    held: list[ReplyReporter] = []
    reporter = _reporter(sent, held)
    job = Job(REQUEST, 1, reporter)
    job.progress(1, 2)
    reporter.flush_held()
    job.progress(2, 3)
    job.progress(3, 3)
    assert len(held) == 2, "one flush scheduled per time something was kept back"
    reporter.flush_held()
    _complete(reporter)
    assert [(m.type, m.sequence) for m in sent] == [
        ("accepted", 1),
        ("progress", 2),
        ("progress", 3),
        ("complete", 4),
    ]
    assert isinstance(sent[2], Progress) and sent[2].items_done == 3


def test_nothing_is_flushed_after_the_job_closed_its_reporter() -> None:
    sent: list[Message] = []
    reporter = _reporter(sent, [])
    Job(REQUEST, 1, reporter).progress(1, 2)
    reporter.close()
    reporter.flush_held()
    assert sent == []


def test_a_flush_that_fails_is_raised_by_the_jobs_next_send() -> None:
    sent: list[Message] = []
    failures = [BrokerUnavailableError("gone")]

    def reply(message: Message, _confirm: bool) -> None:
        if isinstance(message, Progress) and failures:
            raise failures.pop()
        sent.append(message)

    reporter = ReplyReporter(REQUEST, 1, clock=lambda: NOW, reply=reply, hold=lambda _r: None)
    Job(REQUEST, 1, reporter).progress(1, 2)
    reporter.flush_held()  # the Accepted goes out, the Progress fails
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


def test_a_reporter_says_whether_it_holds_a_progress() -> None:
    held: list[ReplyReporter] = []
    reporter = _reporter([], held)
    job = Job(REQUEST, 1, reporter)
    assert not reporter.holding
    job.accepted(None)
    assert reporter.holding, "the Accepted is kept back"
    job.progress(1, 2)
    assert reporter.holding and len(held) == 1
    reporter.flush_held()
    assert not reporter.holding
    job.progress(2, 2)
    assert reporter.holding and len(held) == 2, "held again after a flush: handed to the linger again"
    reporter.close()
    assert not reporter.holding


class _Timed:
    """A reporter stand-in that records when it was held and flushed, and may say it holds nothing."""

    def __init__(self, *, holding: bool = True) -> None:
        self.holding = holding
        self.held_at = 0.0
        self.flushed_at: list[float] = []
        self.done = threading.Event()

    def flush_held(self) -> None:
        self.flushed_at.append(time.monotonic())
        self.done.set()


def test_the_linger_never_flushes_a_reporter_that_holds_nothing_any_more() -> None:
    linger = ProgressLinger(0.001)
    idle, live = _Timed(holding=False), _Timed()
    linger.hold(idle)
    linger.hold(live)
    assert live.done.wait(timeout=30)
    linger.close()
    assert idle.flushed_at == [] and len(live.flushed_at) == 1


@pytest.mark.parametrize("pause", [0.0, 0.003, 0.05])
def test_every_hold_is_flushed_once_and_never_before_its_time(pause: float) -> None:
    # Holds while the thread sleeps by the clock (pause 0, 3 ms) and after it went to sleep
    # without a deadline (50 ms with no hold): each is flushed once, no earlier than its linger.
    seconds = 0.01
    linger = ProgressLinger(seconds)
    reporters = [_Timed() for _ in range(6)]
    for reporter in reporters:
        reporter.held_at = time.monotonic()
        linger.hold(reporter)
        time.sleep(pause)
    for reporter in reporters:
        assert reporter.done.wait(timeout=30)
    linger.close()
    for reporter in reporters:
        assert len(reporter.flushed_at) == 1
        assert reporter.flushed_at[0] - reporter.held_at >= seconds


def _types_and_sequences(broker: InMemoryBroker, docset: str) -> list[tuple[str, int]]:
    return [(decode(e).type, decode(e).sequence) for e in broker.messages(reply_queue(docset))]


def _settled(broker: InMemoryBroker) -> bool:
    return not broker.messages(PACKAGE_REQUESTS) and broker.unacked_count(PACKAGE_REQUESTS) == 0


def test_a_worker_with_a_linger_sends_only_the_complete_of_a_job_that_ends_at_once() -> None:
    broker = InMemoryBroker()
    docset = f"ds-{uuid.uuid4().hex[:10]}"

    def handler(job: Job) -> PackageResult:
        job.progress(1, 1)
        return RESULT

    worker = PackagerWorker(InMemoryTransport(broker), on_package=handler, progress_linger_seconds=3600)
    with running_worker(worker):
        PackagingClient(InMemoryTransport(broker)).request_package(docset, "http://s/api/docsets/x")
        wait_until(lambda: _settled(broker), what="the job to end", timeout=20)
    assert _types_and_sequences(broker, docset) == [("package_request", 0), ("complete", 1)]
    status = PackagingClient(InMemoryTransport(broker)).status(docset)
    assert status.state is State.COMPLETE and status.result is not None


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


_STEPS = st.lists(st.sampled_from(["accepted", "progress", "flush"]), max_size=12)


@given(steps=_STEPS, ending=st.sampled_from(["complete", "failed", "close"]), first=st.integers(0, 1000))
def test_whatever_the_job_reports_and_whenever_the_linger_flushes_the_replies_keep_the_protocols_order(
    steps: list[str], ending: str, first: int
) -> None:
    # Law: the replies sent are numbered first, first + 1, ... with no gap; an Accepted, if any, is
    # the first and only one; no Progress goes out without an Accepted before it; the outcome is last.
    sent: list[Message] = []
    reporter = ReplyReporter(
        REQUEST, first, clock=lambda: NOW, reply=lambda m, _c: sent.append(m), hold=lambda _r: None
    )
    job = Job(REQUEST, 1, reporter)
    done = 0
    for step in steps:
        if step == "accepted" and "accepted" not in {m.type for m in sent}:
            job.accepted(None)
        elif step == "progress":
            done += 1
            job.progress(done, done + 1)
        else:
            reporter.flush_held()
    if ending == "complete":
        _complete(reporter)
    elif ending == "failed":
        reporter.send(lambda f: Failed(**f, reason="r", retryable=False), confirm=True)
    reporter.close()
    reporter.flush_held()
    types = [m.type for m in sent]
    assert [m.sequence for m in sent] == list(range(first, first + len(sent)))
    assert types.count("accepted") <= 1 and ("accepted" not in types or types[0] == "accepted")
    assert "progress" not in types or types[0] == "accepted"
    assert reporter.next_sequence == first + len(sent)
    if ending != "close":
        assert types[-1] == ending and types.count(ending) == 1
    else:
        assert not {"complete", "failed"} & set(types)
