"""What the worker and the client tell their observer: job start and end, dead letters, polls, requests, state."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import pytest

from tdm_messaging import (
    DeadLettered,
    DeleteRequested,
    Event,
    JobEnded,
    JobKind,
    JobOutcome,
    JobStarted,
    Observer,
    Observers,
    PackageRequested,
    PackagerWorker,
    PackagingClient,
    Polled,
    State,
    WorkerState,
    WorkerStateChanged,
)
from tdm_messaging.destinations import PACKAGE_REQUESTS, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport, running_worker, wait_until
from tdm_messaging.worker import Job, JobFailed, PackageResult

RESULT = PackageResult(archive_url="https://bucket/package/5.zip", size_bytes=10)


class Recorder(Observer):
    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def notify(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, kind: type) -> list[Event]:
        with self._lock:
            return [e for e in self.events if isinstance(e, kind)]


class Exploding(Observer):
    def notify(self, event: Event) -> None:
        raise RuntimeError("observer bug")


def docset() -> str:
    return "obs-" + uuid.uuid4().hex[:10]


def test_a_completed_job_is_started_then_ended_with_its_duration_and_the_loop_states() -> None:
    broker, seen = InMemoryBroker(), Recorder()
    client = PackagingClient(InMemoryTransport(broker), observer=seen)
    worker = PackagerWorker(InMemoryTransport(broker), on_package=lambda job: RESULT, observer=seen)
    ds = docset()
    with running_worker(worker):
        request = client.request_package(ds, "http://server/api/docsets/1").request
        wait_until(lambda: bool(seen.of(JobEnded)), what="the job's end")
        assert client.status(ds) is not None
    started, ended = seen.of(JobStarted), seen.of(JobEnded)
    assert started == [JobStarted(JobKind.PACKAGE, ds, request.request_id, 1, False)]
    assert len(ended) == 1 and isinstance(ended[0], JobEnded)
    assert (ended[0].outcome, ended[0].attempt, ended[0].request_id) == (JobOutcome.COMPLETED, 1, request.request_id)
    assert ended[0].duration_seconds >= 0
    assert seen.of(PackageRequested) == [PackageRequested(ds, request.request_id)]
    polls = seen.of(Polled)
    assert len(polls) == 1 and isinstance(polls[0], Polled)
    assert polls[0].state is State.COMPLETE and polls[0].read >= 2 and polls[0].duration_seconds >= 0
    states = [e.state for e in seen.of(WorkerStateChanged) if isinstance(e, WorkerStateChanged)]
    assert states[0] is WorkerState.CONSUMING and states[-1] is WorkerState.STOPPED


def test_retries_then_giving_up_are_told_with_each_attempt_and_the_dead_letter() -> None:
    broker, seen = InMemoryBroker(), Recorder()

    def broken(job: Job) -> PackageResult:
        raise OSError("disk on fire")

    worker = PackagerWorker(
        InMemoryTransport(broker), on_package=broken, observer=seen, max_attempts=2, retry_backoff_seconds=0
    )
    ds = docset()
    with running_worker(worker):
        PackagingClient(InMemoryTransport(broker)).request_package(ds, "http://server/api/docsets/1")
        wait_until(lambda: bool(seen.of(DeadLettered)), what="the dead letter")
        wait_until(lambda: len(seen.of(JobEnded)) == 2, what="both attempts' ends")
    ended = [e for e in seen.of(JobEnded) if isinstance(e, JobEnded)]
    assert [(e.attempt, e.outcome) for e in ended] == [(1, JobOutcome.RETRIED), (2, JobOutcome.GAVE_UP)]
    assert [e.attempt for e in seen.of(JobStarted) if isinstance(e, JobStarted)] == [1, 2]
    (dead,) = seen.of(DeadLettered)
    assert isinstance(dead, DeadLettered) and dead.role == "worker" and dead.source == PACKAGE_REQUESTS.name
    assert "disk on fire" in dead.reason


def test_a_handler_failure_is_told_as_failed_and_a_delete_as_its_own_kind() -> None:
    broker, seen = InMemoryBroker(), Recorder()

    def refuse(job: Job) -> PackageResult:
        raise JobFailed("no members")

    worker = PackagerWorker(InMemoryTransport(broker), on_package=refuse, on_delete=lambda r: None, observer=seen)
    client = PackagingClient(InMemoryTransport(broker), observer=seen)
    ds = docset()
    with running_worker(worker):
        client.request_package(ds, "http://server/api/docsets/1")
        delete = client.request_delete(ds)
        wait_until(lambda: len(seen.of(JobEnded)) == 2, what="two job ends")
    outcomes = {(e.kind, e.outcome) for e in seen.of(JobEnded) if isinstance(e, JobEnded)}
    assert outcomes == {(JobKind.PACKAGE, JobOutcome.FAILED), (JobKind.DELETE, JobOutcome.COMPLETED)}
    assert seen.of(DeleteRequested) == [DeleteRequested(ds, delete.request_id)]


def test_a_poll_that_dead_letters_a_reply_tells_it_with_the_client_role() -> None:
    broker, seen = InMemoryBroker(), Recorder()
    ds = docset()
    InMemoryTransport(broker).send(reply_queue(ds), Envelope(b"\xff not a message", "application/json"))
    status = PackagingClient(InMemoryTransport(broker), observer=seen).status(ds)
    assert status.state is State.UNKNOWN
    (dead,) = seen.of(DeadLettered)
    assert isinstance(dead, DeadLettered) and dead.role == "client" and dead.source == reply_queue(ds).name
    (poll,) = seen.of(Polled)
    assert isinstance(poll, Polled) and (poll.read, poll.dead_lettered, poll.state) == (1, 1, State.UNKNOWN)


def test_an_observer_that_raises_breaks_neither_the_job_nor_the_others() -> None:
    broker, seen = InMemoryBroker(), Recorder()
    both = Observers([Exploding(), seen])
    worker = PackagerWorker(InMemoryTransport(broker), on_package=lambda job: RESULT, observer=both)
    client = PackagingClient(InMemoryTransport(broker), observer=Exploding())
    ds = docset()
    with running_worker(worker):
        client.request_package(ds, "http://server/api/docsets/1")
        wait_until(lambda: client.status(ds).state is State.COMPLETE, what="the Complete")
    assert [e.outcome for e in seen.of(JobEnded) if isinstance(e, JobEnded)] == [JobOutcome.COMPLETED]


def test_events_are_frozen_values() -> None:
    event = WorkerStateChanged(WorkerState.CONSUMING, datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(AttributeError):
        event.state = WorkerState.STOPPED  # type: ignore[misc]
    assert event == WorkerStateChanged(WorkerState.CONSUMING, datetime(2026, 1, 1, tzinfo=UTC))
