"""A package handler's world: the Job it gets, the PackageResult it returns, the JobFailed it raises; its Reporter."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypedDict

from tdm_messaging.clock import Clock
from tdm_messaging.errors import LocalProtocolError, TransportError
from tdm_messaging.models import Accepted, DeleteRequest, Message, PackageRequest, Progress

__all__ = ["Job", "JobFailed", "PackageResult", "ReplyFields", "ReplyReporter", "Reporter", "reply_fields"]


class ReplyFields(TypedDict):
    """The fields every reply of a job shares, filled in by its :class:`Reporter`."""

    docset_id: str
    request_id: str
    sequence: int
    timestamp: datetime


class Reporter(ABC):
    """Where a :class:`Job` sends its replies: numbered, stamped, and Accepted first."""

    @abstractmethod
    def send(self, build: Callable[[ReplyFields], Message], *, confirm: bool = False) -> None:
        """Build a reply from the job's next :class:`ReplyFields` and send it.

        Raises:
            TransportError: the reply could not be sent.
        """

    @abstractmethod
    def ensure_accepted(self) -> None:
        """Send ``Accepted`` (no estimate) unless one was sent already.

        Raises:
            TransportError: the reply could not be sent.
        """


@dataclass(frozen=True)
class PackageResult:
    """What a package handler returns: where the archive is.

    Attributes:
        archive_url: where to download it.
        size_bytes: its size.
        sha256: hex digest, when known.
        content_type: its media type.
        url_expires_at: when ``archive_url`` stops working (presigned URLs), if it does.
    """

    archive_url: str
    size_bytes: int
    sha256: str | None = None
    content_type: str = "application/zip"
    url_expires_at: datetime | None = None


class JobFailed(Exception):  # noqa: N818 - the name says what the handler declares, as in the contract
    """Raise from a package handler to report ``Failed(reason, retryable)`` and end the job.

    Unlike any other exception it is not retried: the handler has decided. ``retryable``
    tells the miner whether asking again may help.

    Args:
        reason: one line for the miner, e.g. ``"docset 5 has no members"``.
        retryable: whether a new request may succeed.
    """

    def __init__(self, reason: str, *, retryable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


@dataclass(frozen=True)
class Job:
    """The one argument a package handler gets: the request, which attempt this is, and two ways to report.

    Built by :class:`~tdm_messaging.PackagerWorker`; a ``Job`` you build yourself (e.g. to
    unit-test a handler) reports nowhere unless you give it a :class:`Reporter`.

    Attributes:
        request: the package request.
        attempt: 1 on first delivery, 2 on the first retry, ...
    """

    request: PackageRequest
    attempt: int = 1
    _reporter: Reporter | None = field(default=None, repr=False, compare=False)

    def accepted(self, estimate_seconds: float | None) -> None:
        """Tell the server the job was taken, with an estimate of its duration (``None``: no estimate).

        Raises:
            LocalProtocolError: ``estimate_seconds`` is negative.
            TransportError: the reply could not be sent.
        """
        if estimate_seconds is not None and not estimate_seconds >= 0:
            raise LocalProtocolError(f"estimate_seconds must be >= 0 or None, got {estimate_seconds!r}")
        if self._reporter is not None:
            self._reporter.send(lambda fields: Accepted(**fields, estimate_seconds=estimate_seconds))

    def progress(self, items_done: int, items_total: int, *, eta_seconds: float | None = None) -> None:
        """Tell the server how far the job is: ``items_done`` of ``items_total`` documents.

        Sends Accepted (without an estimate) first if :meth:`accepted` was never called.

        Raises:
            LocalProtocolError: counts negative or ``items_done > items_total``, or ``eta_seconds < 0``.
            TransportError: the reply could not be sent.
        """
        if not 0 <= items_done <= items_total:
            raise LocalProtocolError(
                f"progress must satisfy 0 <= items_done <= items_total, got {items_done} of {items_total}"
            )
        if eta_seconds is not None and not eta_seconds >= 0:
            raise LocalProtocolError(f"eta_seconds must be >= 0 or None, got {eta_seconds!r}")
        reporter = self._reporter
        if reporter is None:
            return
        reporter.ensure_accepted()
        percent = 100.0 * items_done / items_total if items_total else 100.0
        reporter.send(
            lambda fields: Progress(
                **fields, items_done=items_done, items_total=items_total, percent=percent, eta_seconds=eta_seconds
            )
        )


class ReplyReporter(Reporter):
    """The worker's Reporter: sends one job's replies with increasing sequence numbers, Accepted first if nobody did.

    With ``hold``, an unconfirmed Progress is not sent at once: it is kept, ``hold(self)`` is
    called for the first one kept, and whoever ``hold`` hands it to calls :meth:`flush_held`
    later to send it. A reply sent in between (a newer Progress, Complete, Failed) supersedes
    it: the kept Progress is dropped and its sequence number taken by the newer reply, so a job
    that ends soon after its last report sends no Progress the status would never show.

    The job's Accepted is kept back the same way (it is the first thing kept, so ``hold`` is
    called for it), and a Progress reported meanwhile is kept behind it with the next sequence
    number: :meth:`flush_held` sends the Accepted, then the Progress. A Complete or Failed sent
    first supersedes both: a job that ends within the linger sends its outcome alone, and it
    takes the Accepted's sequence number (protocol § 1: a packager that lingers may leave
    Accepted out of such a job). A job still running when the linger ends has sent its Accepted
    then, first, as always.

    Args:
        request: the job's request.
        next_sequence: the first reply's sequence number.
        clock: stamps each reply.
        reply: sends a built reply (``message``, ``confirm``).
        hold: schedules :meth:`flush_held` for a Progress kept back; ``None``: send each at once.
    """

    def __init__(
        self,
        request: PackageRequest,
        next_sequence: int,
        *,
        clock: Clock,
        reply: Callable[[Message, bool], None],
        hold: Callable[[ReplyReporter], None] | None = None,
    ) -> None:
        self._request = request
        self._next_sequence = next_sequence
        self._clock = clock
        self._reply = reply
        self._hold = hold
        self._lock = threading.Lock()  # a handler may report from several threads
        self._accepted_sent = False
        self._held_accepted: Accepted | None = None  # kept back; goes out before any Progress
        self._held: Message | None = None
        self._held_failure: TransportError | None = None
        self._closed = False
        self.failure: TransportError | None = None
        """The last reply that could not be sent: the worker tells broker trouble from the job's own."""

    @property
    def next_sequence(self) -> int:
        """The sequence number the next reply takes."""
        return self._next_sequence

    @property
    def holding(self) -> bool:
        """Whether an Accepted or a Progress is kept back, to be sent by :meth:`flush_held` (read without the lock).

        Once false, a Progress kept back later calls ``hold`` again: a linger that forgets this
        reporter on a false answer misses nothing (see :class:`~tdm_messaging.linger.ProgressLinger`).
        """
        return (self._held is not None or self._held_accepted is not None) and not self._closed

    def send(self, build: Callable[[ReplyFields], Message], *, confirm: bool = False) -> None:
        with self._lock:
            if self._held_failure is not None:  # a held reply could not be sent: broker trouble
                failure, self._held_failure = self._held_failure, None
                raise failure
            message = build(reply_fields(self._request, self._next_sequence, self._clock))
            if self._hold is not None and not confirm and not self._closed and self._keep_back(message, self._hold):
                return
            # Superseded by this reply, which takes the first kept one's sequence number.
            self._held = self._held_accepted = None
            self._send_now(message, confirm)

    def _keep_back(self, message: Message, hold: Callable[[ReplyReporter], None]) -> bool:
        """Keep ``message`` back if it is the job's first Accepted or a Progress; False: send it now."""
        first = self._held is None and self._held_accepted is None
        if isinstance(message, Accepted) and not self._accepted_sent and self._held is None:
            self._held_accepted = message  # an Accepted kept back before this one is superseded
        elif isinstance(message, Progress):
            if self._held_accepted is not None:  # it goes out after the kept Accepted
                message = message.model_copy(update={"sequence": self._next_sequence + 1})
            self._held = message  # a Progress kept back before this one is superseded
        else:
            return False
        if first:
            hold(self)
        return True

    def flush_held(self) -> None:
        """Send the Accepted and the Progress kept back, if the job is not over.

        A failure to send is raised by the job's next :meth:`send` (the worker then leaves the
        request unacknowledged, as for any reply that could not be sent).
        """
        with self._lock:
            accepted, self._held_accepted = self._held_accepted, None
            message, self._held = self._held, None
            if self._closed:
                return
            try:
                for kept in (accepted, message):
                    if kept is not None:
                        self._send_now(kept, False)
            except TransportError as exc:
                self._held_failure = exc

    def close(self) -> None:
        """End the job's reporting: an Accepted or Progress still kept back is dropped, never sent afterwards."""
        with self._lock:
            self._closed = True
            self._held = self._held_accepted = None

    def _send_now(self, message: Message, confirm: bool) -> None:
        try:
            self._reply(message, confirm)
        except TransportError as exc:
            self.failure = exc
            raise
        self._next_sequence += 1
        if isinstance(message, Accepted):
            self._accepted_sent = True

    def ensure_accepted(self) -> None:
        if not self._accepted_sent and self._held_accepted is None:
            self.send(lambda fields: Accepted(**fields, estimate_seconds=None))


def reply_fields(request: PackageRequest | DeleteRequest, sequence: int, clock: Clock) -> ReplyFields:
    """The fields a reply to ``request`` shares with it, numbered ``sequence`` and stamped now."""
    return {
        "docset_id": request.docset_id,
        "request_id": request.request_id,
        "sequence": sequence,
        "timestamp": clock(),
    }
