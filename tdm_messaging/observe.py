"""What the worker and the client tell an observer: one frozen event per thing that happened, and the interface.

The helpers (:class:`~tdm_messaging.PackagerWorker`, :class:`~tdm_messaging.PackagingClient`)
call :meth:`Observer.notify` with one event at a time; an observer turns them into metrics
(:mod:`tdm_messaging.metrics` does, for Prometheus), logs or anything else. This module is pure:
no driver, no I/O. An observer that raises is logged by the helper and never breaks a job or a poll.
"""

from __future__ import annotations

import enum
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from tdm_messaging.status import State

__all__ = [
    "DeadLettered",
    "DeleteRequested",
    "Event",
    "JobEnded",
    "JobKind",
    "JobOutcome",
    "JobStarted",
    "Observer",
    "Observers",
    "PackageRequested",
    "Polled",
    "WorkerState",
    "WorkerStateChanged",
    "notify_safely",
]

logger = logging.getLogger(__name__)


class JobKind(enum.Enum):
    """Which request a job answers."""

    PACKAGE = "package"
    DELETE = "delete"


class JobOutcome(enum.Enum):
    """How one attempt of a job ended."""

    COMPLETED = "completed"
    """Complete (or Deleted) was sent."""
    FAILED = "failed"
    """The handler raised JobFailed: Failed was sent, the request is done."""
    RETRIED = "retried"
    """The handler raised something else: a copy of the request went back for another attempt."""
    GAVE_UP = "gave_up"
    """The last attempt failed: Failed(retryable) was sent and the request dead-lettered."""
    REFUSED = "refused"
    """The broker refused a reply: the request was dead-lettered."""
    REJECTED = "rejected"
    """The handler refused the job as not its to do (a delete of an archive that is not its own):
    dead-lettered with the reason, no reply sent, never retried."""
    INTERRUPTED = "interrupted"
    """A transport error stopped the job; the request is left unacknowledged for redelivery."""


class WorkerState(enum.Enum):
    """Where the worker's loop is; what a liveness or readiness probe reports."""

    CONSUMING = "consuming"
    """Waiting for requests, or running one."""
    BROKER_TROUBLE = "broker_trouble"
    """The broker failed; the loop pauses, then consumes again."""
    STOPPED = "stopped"
    """The loop has ended."""


@dataclass(frozen=True, slots=True)
class JobStarted:
    """A worker began an attempt of a job.

    Attributes:
        kind: package or delete.
        docset_id: the docset.
        request_id: the request the job answers.
        attempt: 1 on first delivery, 2 on the first retry, ...
        redelivered: the broker delivered this request before (a consumer died holding it).
    """

    kind: JobKind
    docset_id: str
    request_id: str
    attempt: int
    redelivered: bool = False


@dataclass(frozen=True, slots=True)
class JobEnded:
    """A worker ended an attempt of a job.

    Attributes:
        kind: package or delete.
        docset_id: the docset.
        request_id: the request the job answers.
        attempt: which attempt ended.
        outcome: how it ended.
        duration_seconds: how long the attempt ran (monotonic clock).
    """

    kind: JobKind
    docset_id: str
    request_id: str
    attempt: int
    outcome: JobOutcome
    duration_seconds: float


@dataclass(frozen=True, slots=True)
class DeadLettered:
    """A message was parked on ``docsets/dead-letter``.

    Attributes:
        role: ``"worker"`` or ``"client"``: who parked it.
        source: the queue it was taken from.
        reason: why (one line; free text, so not a metric label).
    """

    role: str
    source: str
    reason: str


@dataclass(frozen=True, slots=True)
class WorkerStateChanged:
    """The worker's loop changed state.

    Attributes:
        state: the new state.
        at: when, timezone-aware (the worker's clock).
        detail: why, for BROKER_TROUBLE (the error); empty otherwise.
    """

    state: WorkerState
    at: datetime
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Polled:
    """A client polled a docset's reply queue.

    Attributes:
        docset_id: the docset.
        state: the status the poll folded.
        read: messages read.
        resent: messages re-sent to keep the status.
        dead_lettered: messages parked as unusable.
        duration_seconds: how long the poll took (monotonic clock).
    """

    docset_id: str
    state: State
    read: int
    resent: int
    dead_lettered: int
    duration_seconds: float


@dataclass(frozen=True, slots=True)
class PackageRequested:
    """A client sent a package request.

    Attributes:
        docset_id: the docset.
        request_id: the new request's id.
    """

    docset_id: str
    request_id: str


@dataclass(frozen=True, slots=True)
class DeleteRequested:
    """A client sent a delete request.

    Attributes:
        docset_id: the docset.
        request_id: the new request's id.
    """

    docset_id: str
    request_id: str


Event = JobStarted | JobEnded | DeadLettered | WorkerStateChanged | Polled | PackageRequested | DeleteRequested
"""Every event an observer may be told of; more may be added (ignore what you do not know)."""


class Observer(ABC):
    """Told of what a worker or a client does, one event at a time.

    :meth:`notify` is called on the thread that did the thing, synchronously: keep it quick
    and thread-safe. It should ignore event types it does not know, so new ones can be added.
    """

    @abstractmethod
    def notify(self, event: Event) -> None:
        """Take one event."""


class Observers(Observer):
    """Several observers as one: each is told every event, in order.

    Args:
        observers: the observers.
    """

    def __init__(self, observers: Iterable[Observer]) -> None:
        self._observers = tuple(observers)

    def notify(self, event: Event) -> None:
        for observer in self._observers:
            notify_safely(observer, event)


def notify_safely(observer: Observer | None, event: Event) -> None:
    """Tell ``observer`` of ``event``; an exception it raises is logged, never passed on."""
    if observer is None:
        return
    try:
        observer.notify(event)
    except Exception:
        logger.exception("observer %r failed on %s", observer, type(event).__name__)
