"""A worker's liveness and readiness, kept by an Observer from what the worker tells it: what a probe answers.

Rules
-----
1. *Live*: the worker's loop has not ended (it was seen CONSUMING or in BROKER_TROUBLE, and not
   STOPPED since), and no job has been running longer than ``max_job_seconds`` (a hung handler).
   An orchestrator restarts a worker that is not live.
2. *Ready*: live, and the loop's last state is CONSUMING (the broker answered). A worker in
   broker trouble stays live (a restart would not help) but is not ready.
3. Before the loop starts the worker is neither.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

from tdm_messaging.clock import Clock, utc_now
from tdm_messaging.observe import Event, JobEnded, JobStarted, Observer, WorkerState, WorkerStateChanged

__all__ = ["HealthReport", "WorkerHealth"]


@dataclass(frozen=True, slots=True)
class HealthReport:
    """A worker's health at one moment.

    Attributes:
        live: see the module's rule 1.
        ready: see the module's rule 2.
        state: the loop's last state (``None`` before it started).
        state_since: when it entered that state.
        detail: the broker error, in BROKER_TROUBLE.
        job_started_at: when the running job's attempt started (``None``: no job running).
        last_job_ended_at: when the last job attempt ended.
        jobs_ended: job attempts ended so far.
    """

    live: bool
    ready: bool
    state: WorkerState | None
    state_since: datetime | None
    detail: str
    job_started_at: datetime | None
    last_job_ended_at: datetime | None
    jobs_ended: int

    def as_json(self) -> dict[str, object]:
        """The report as a JSON-ready dict (times in ISO 8601)."""

        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "live": self.live,
            "ready": self.ready,
            "state": None if self.state is None else self.state.value,
            "state_since": iso(self.state_since),
            "detail": self.detail,
            "job_started_at": iso(self.job_started_at),
            "last_job_ended_at": iso(self.last_job_ended_at),
            "jobs_ended": self.jobs_ended,
        }


class WorkerHealth(Observer):
    """Keeps a worker's health from its events; :meth:`report` says whether it is live and ready.

    Give it to the worker as its observer (or among :class:`~tdm_messaging.observe.Observers`).

    Args:
        max_job_seconds: a job attempt running longer makes the worker not live (``None``: no limit).
        clock: "now", timezone-aware; the same clock the worker uses.
    """

    def __init__(self, *, max_job_seconds: float | None = None, clock: Clock = utc_now) -> None:
        self._max_job_seconds = max_job_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._state: WorkerState | None = None
        self._state_since: datetime | None = None
        self._detail = ""
        self._job_started_at: datetime | None = None
        self._last_job_ended_at: datetime | None = None
        self._jobs_ended = 0

    def notify(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, WorkerStateChanged):
                if event.state is not self._state:
                    self._state_since = event.at
                self._state, self._detail = event.state, event.detail
            elif isinstance(event, JobStarted):
                self._job_started_at = self._clock()
            elif isinstance(event, JobEnded):
                self._job_started_at = None
                self._last_job_ended_at = self._clock()
                self._jobs_ended += 1

    def report(self) -> HealthReport:
        """The worker's health now."""
        with self._lock:
            running = self._state in (WorkerState.CONSUMING, WorkerState.BROKER_TROUBLE)
            hung = (
                self._max_job_seconds is not None
                and self._job_started_at is not None
                and (self._clock() - self._job_started_at).total_seconds() > self._max_job_seconds
            )
            live = running and not hung
            return HealthReport(
                live=live,
                ready=live and self._state is WorkerState.CONSUMING,
                state=self._state,
                state_since=self._state_since,
                detail=self._detail,
                job_started_at=self._job_started_at,
                last_job_ended_at=self._last_job_ended_at,
                jobs_ended=self._jobs_ended,
            )
