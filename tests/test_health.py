"""WorkerHealth: live while the loop runs and no job hangs, ready only while consuming; the report as JSON."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

from tdm_messaging import (
    JobEnded,
    JobKind,
    JobOutcome,
    JobStarted,
    PackagerWorker,
    WorkerHealth,
    WorkerState,
    WorkerStateChanged,
)
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport, wait_until
from tdm_messaging.worker import PackageResult

T0 = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def test_before_the_loop_starts_the_worker_is_neither_live_nor_ready() -> None:
    report = WorkerHealth().report()
    assert (report.live, report.ready, report.state) == (False, False, None)


def test_states_decide_live_and_ready() -> None:
    health = WorkerHealth()
    health.notify(WorkerStateChanged(WorkerState.CONSUMING, T0))
    assert (health.report().live, health.report().ready) == (True, True)
    health.notify(WorkerStateChanged(WorkerState.BROKER_TROUBLE, T0 + timedelta(seconds=1), "connection refused"))
    report = health.report()
    assert (report.live, report.ready, report.detail) == (True, False, "connection refused")
    assert report.state_since == T0 + timedelta(seconds=1)
    health.notify(WorkerStateChanged(WorkerState.STOPPED, T0 + timedelta(seconds=2)))
    assert (health.report().live, health.report().ready) == (False, False)


def test_a_job_running_past_the_limit_makes_the_worker_not_live() -> None:
    clock = Clock()
    health = WorkerHealth(max_job_seconds=60, clock=clock)
    health.notify(WorkerStateChanged(WorkerState.CONSUMING, T0))
    health.notify(JobStarted(JobKind.PACKAGE, "5", "r", 1))
    clock.now = T0 + timedelta(seconds=59)
    assert health.report().live and health.report().job_started_at == T0
    clock.now = T0 + timedelta(seconds=61)
    assert not health.report().live and not health.report().ready
    health.notify(JobEnded(JobKind.PACKAGE, "5", "r", 1, JobOutcome.COMPLETED, 61))
    report = health.report()
    assert report.live and report.job_started_at is None and report.last_job_ended_at == clock.now
    assert report.jobs_ended == 1
    assert json.loads(json.dumps(report.as_json()))["last_job_ended_at"] == clock.now.isoformat()


def test_a_real_worker_is_live_while_running_and_not_after() -> None:
    health = WorkerHealth()
    worker = PackagerWorker(
        InMemoryTransport(InMemoryBroker()),
        on_package=lambda job: PackageResult(archive_url="https://b/a.zip", size_bytes=1),
        observer=health,
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    wait_until(lambda: health.report().ready, what="the worker to be ready")
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert health.report().state is WorkerState.STOPPED and not health.report().live
