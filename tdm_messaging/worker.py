"""The packager's side of the protocol: a worker loop that runs package and delete jobs and reports on them."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypedDict

from pydantic import ValidationError

from tdm_messaging.codec import DEFAULT_MAX_BODY_BYTES, JSON_CONTENT_TYPE, DecodeContext, decode, encode
from tdm_messaging.destinations import DELETE_REQUESTS, PACKAGE_REQUESTS, Destination, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import (
    BrokerRefusedError,
    ConfigurationError,
    DecodeError,
    LocalProtocolError,
    TransportClosedError,
    TransportError,
)
from tdm_messaging.models import Accepted, Complete, Deleted, DeleteRequest, Failed, Message, PackageRequest, Progress
from tdm_messaging.server import dead_letter, utc_now
from tdm_messaging.transport.base import Delivery, Transport

__all__ = [
    "ATTEMPT_HEADER",
    "NEXT_SEQUENCE_HEADER",
    "Job",
    "JobFailed",
    "PackageResult",
    "PackagerWorker",
]

logger = logging.getLogger(__name__)

ATTEMPT_HEADER = "tdm-attempt"
"""Header of a re-sent request: which attempt this delivery is (1 when absent)."""
NEXT_SEQUENCE_HEADER = "tdm-next-sequence"
"""Header of a re-sent request: the sequence number its next reply takes, so attempts never reuse one."""

_MAX_RETRY_DELAY_SECONDS = 30.0
_MAX_RESUME_DELAY_SECONDS = 30.0
_MAX_REASON_CHARS = 4096  # Failed.reason's limit
_REMEMBERED_REFUSALS = 1024  # requests dead-lettered for a refusal, remembered to recognise their redelivery


class _BaseFields(TypedDict):
    docset_id: str
    request_id: str
    sequence: int
    timestamp: datetime


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


class _Reporter:
    """Sends a job's replies with increasing sequence numbers; sends Accepted first if nobody did."""

    def __init__(self, worker: PackagerWorker, request: PackageRequest, next_sequence: int) -> None:
        self._worker = worker
        self._request = request
        self._next_sequence = next_sequence
        self._lock = threading.Lock()
        self.accepted_sent = False

    @property
    def next_sequence(self) -> int:
        return self._next_sequence

    def send(self, build: Callable[[int], Message], *, confirm: bool = False) -> None:
        with self._lock:
            message = build(self._next_sequence)
            self._worker._reply(self._request, message, confirm=confirm)
            self._next_sequence += 1
            if isinstance(message, Accepted):
                self.accepted_sent = True

    def ensure_accepted(self) -> None:
        if not self.accepted_sent:
            self.send(lambda seq: Accepted(**self._worker._base(self._request, seq), estimate_seconds=None))


@dataclass(frozen=True)
class Job:
    """The one argument a package handler gets: the request, which attempt this is, and two ways to report.

    Built by :class:`PackagerWorker`; a ``Job`` you build yourself (e.g. to unit-test a
    handler) reports nowhere.

    Attributes:
        request: the package request.
        attempt: 1 on first delivery, 2 on the first retry, ...
    """

    request: PackageRequest
    attempt: int = 1
    _reporter: _Reporter | None = field(default=None, repr=False, compare=False)

    def accepted(self, estimate_seconds: float | None) -> None:
        """Tell the server the job was taken, with an estimate of its duration (``None``: no estimate).

        Raises:
            LocalProtocolError: ``estimate_seconds`` is negative.
            TransportError: the reply could not be sent.
        """
        if estimate_seconds is not None and not estimate_seconds >= 0:
            raise LocalProtocolError(f"estimate_seconds must be >= 0 or None, got {estimate_seconds!r}")
        reporter = self._reporter
        if reporter is None:
            return
        request = self.request
        reporter.send(lambda seq: Accepted(**reporter._worker._base(request, seq), estimate_seconds=estimate_seconds))

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
        request = self.request
        reporter.send(
            lambda seq: Progress(
                **reporter._worker._base(request, seq),
                items_done=items_done,
                items_total=items_total,
                percent=percent,
                eta_seconds=eta_seconds,
            )
        )


class PackagerWorker:
    """The packager's loop: take requests one at a time, run the handler, report, then acknowledge.

    For a package request the handler gets a :class:`Job`; its return value becomes Complete,
    a :class:`JobFailed` becomes Failed. Any other exception is retried: a copy of the request
    goes back to ``docsets/package`` with ``tdm-attempt`` raised by one (after a pause of
    ``retry_backoff_seconds * 2 ** (attempt - 1)``, at most 30 s), and the original is
    acknowledged — no NACK, so it works the same on every broker. After ``max_attempts`` the
    worker sends ``Failed(retryable=True)`` and dead-letters the request with the reason.
    Undecodable or oversize requests are dead-lettered at once, and so is a request whose reply
    the broker refuses (:class:`~tdm_messaging.errors.BrokerRefusedError`, e.g. a reply queue
    declared with other arguments): redelivering it would fail the same way forever. Such a
    request is dead-lettered once: if its acknowledgement is lost (RabbitMQ closes the
    connection on a refusal), the redelivered copy is recognised and acknowledged. Before each
    job the reply queue is declared, so such a refusal comes before any work, and a transport
    that can reach the queue as it is (RabbitMQ STOMP) still delivers the replies. Other
    transport errors leave the request unacknowledged for redelivery. The worker carries on.

    Several workers on one queue share the work (competing consumers, prefetch 1).

    Args:
        transport: an open transport; the worker sends its replies on it too.
        on_package: the package handler.
        on_delete: the delete handler; when ``None`` the worker does not consume ``docsets/delete``.
        max_attempts: deliveries of one request before it is dead-lettered (at least 1).
        content_type: wire format of the replies.
        retry_backoff_seconds: base of the pause before a retry is re-sent (0 for none).
        max_body_bytes: larger request bodies are dead-lettered unread.
        clock: "now", timezone-aware, for the replies' timestamps.

    Raises:
        ConfigurationError: ``max_attempts`` below 1 or a negative backoff.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        on_package: Callable[[Job], PackageResult],
        on_delete: Callable[[DeleteRequest], None] | None = None,
        max_attempts: int = 3,
        content_type: str = JSON_CONTENT_TYPE,
        retry_backoff_seconds: float = 1.0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be at least 1, got {max_attempts}")
        if retry_backoff_seconds < 0:
            raise ConfigurationError(f"retry_backoff_seconds must be >= 0, got {retry_backoff_seconds}")
        self._transport = transport
        self._on_package = on_package
        self._on_delete = on_delete
        self._max_attempts = max_attempts
        self._content_type = content_type
        self._backoff = retry_backoff_seconds
        self._max_body_bytes = max_body_bytes
        self._clock = clock
        self._stop = threading.Event()
        # Requests this worker dead-lettered because the broker refused a reply. On RabbitMQ
        # STOMP the refusal also closes the connection, so their ACK is lost and they come
        # again: recognised here, they are acknowledged at once instead of failing forever.
        self._refused: OrderedDict[tuple[str, ...], None] = OrderedDict()

    def run(self, stop: threading.Event) -> None:
        """Consume ``docsets/package`` (and ``docsets/delete`` if there is a delete handler) until ``stop`` is set.

        Transport failures are logged and consuming resumes after a pause (growing to 30 s);
        the message being handled is not acknowledged, so the broker delivers it again.

        Raises:
            TransportClosedError: the transport was closed.
        """
        self._stop = stop
        queues = [PACKAGE_REQUESTS] if self._on_delete is None else [PACKAGE_REQUESTS, DELETE_REQUESTS]
        logger.info("packager worker consuming %s", ", ".join(q.name for q in queues))
        failures = 0
        while not stop.is_set():
            try:
                self._transport.consume(queues, self._handle, prefetch=1, stop=stop)
            except TransportClosedError:
                raise
            except TransportError as exc:
                failures += 1
                delay = min(_MAX_RESUME_DELAY_SECONDS, 0.5 * 2 ** min(failures, 8))
                logger.warning("broker trouble (%s); consuming again in %.1f s", exc, delay)
                stop.wait(delay)
            else:
                failures = 0
        logger.info("packager worker stopped")

    # -- handling one delivery ---------------------------------------------------------------

    def _handle(self, delivery: Delivery) -> None:
        envelope = delivery.envelope
        source = delivery.destination
        try:
            message = decode(
                envelope,
                context=DecodeContext(received_at=self._clock()),
                max_body_bytes=self._max_body_bytes,
            )
        except DecodeError as exc:
            self._dead_letter(envelope, source, f"undecodable request: {exc}")
            return
        expected = PackageRequest if source == PACKAGE_REQUESTS else DeleteRequest
        if not isinstance(message, expected):
            self._dead_letter(envelope, source, f"expected a {expected.__name__} on {source.name}, got {message.type}")
            return
        attempt = _int_header(envelope, ATTEMPT_HEADER, default=1)
        key = _refusal_key(source, message, attempt, envelope)
        if key in self._refused:
            logger.info(
                "request for docset %s (request %s) was dead-lettered already for a refused reply; "
                "acknowledging its redelivered copy",
                message.docset_id,
                message.request_id,
            )
            return
        try:
            self._prepare_reply_queue(message)
            if isinstance(message, PackageRequest):
                self._run_package(message, envelope, source, attempt)
            else:
                self._run_delete(message, envelope, source, attempt)
        except BrokerRefusedError as exc:
            # A refusal (e.g. the reply queue exists with other arguments) comes back on every
            # redelivery: park the request once rather than block the queue with it forever.
            self._dead_letter(envelope, source, f"the broker refused a send for docset {message.docset_id}: {exc}")
            self._refused[key] = None
            while len(self._refused) > _REMEMBERED_REFUSALS:
                self._refused.popitem(last=False)

    def _prepare_reply_queue(self, request: PackageRequest | DeleteRequest) -> None:
        """Declare the docset's reply queue before the job, so a refusal comes before any work is done.

        A queue declared elsewhere with other arguments is refused here; a transport that can
        still reach it as it is (RabbitMQ STOMP: ``/amq/queue/``) sends the replies that way.
        If it cannot, the first reply is refused and the request dead-lettered (see :meth:`_handle`).
        """
        try:
            self._transport.declare(reply_queue(request.docset_id))
        except BrokerRefusedError as exc:
            logger.warning(
                "reply queue of docset %s could not be declared (%s); replying anyway", request.docset_id, exc
            )

    def _run_package(self, request: PackageRequest, envelope: Envelope, source: Destination, attempt: int) -> None:
        reporter = _Reporter(self, request, _int_header(envelope, NEXT_SEQUENCE_HEADER, default=1))
        job = Job(request, attempt, reporter)
        logger.info(
            "package job for docset %s (request %s, attempt %d/%d)",
            request.docset_id,
            request.request_id,
            attempt,
            self._max_attempts,
        )
        try:
            result = self._on_package(job)
            complete = self._complete(request, result)
        except JobFailed as failure:
            reason = failure.reason[:_MAX_REASON_CHARS] or "the package handler failed without a reason"
            retryable = failure.retryable
            reporter.send(
                lambda seq: Failed(**self._base(request, seq), reason=reason, retryable=retryable),
                confirm=True,
            )
            logger.info("package job for docset %s failed: %s", request.docset_id, reason)
            return
        except Exception as exc:
            self._retry_or_give_up(
                request=request, envelope=envelope, source=source, attempt=attempt, exc=exc, reporter=reporter
            )
            return
        reporter.ensure_accepted()
        reporter.send(
            lambda seq: complete.model_copy(update={"sequence": seq, "timestamp": self._clock()}), confirm=True
        )
        logger.info("package job for docset %s complete: %s", request.docset_id, result.archive_url)

    def _complete(self, request: PackageRequest, result: PackageResult) -> Complete:
        if not isinstance(result, PackageResult):
            raise LocalProtocolError(f"the package handler must return a PackageResult, got {type(result).__name__}")
        try:
            return Complete(
                **self._base(request, 0),
                archive_url=result.archive_url,
                size_bytes=result.size_bytes,
                sha256=result.sha256,
                content_type=result.content_type,
                url_expires_at=result.url_expires_at,
            )
        except ValidationError as exc:
            raise LocalProtocolError(f"the package handler returned an invalid PackageResult: {exc}") from exc

    def _run_delete(self, request: DeleteRequest, envelope: Envelope, source: Destination, attempt: int) -> None:
        assert self._on_delete is not None
        logger.info("delete job for docset %s (attempt %d/%d)", request.docset_id, attempt, self._max_attempts)
        try:
            self._on_delete(request)
        except Exception as exc:
            self._retry_or_give_up(
                request=request, envelope=envelope, source=source, attempt=attempt, exc=exc, reporter=None
            )
            return
        deleted = Deleted(**self._base(request, 1), archive_url=request.archive_url)
        self._reply(request, deleted, confirm=True)
        logger.info("delete job for docset %s done", request.docset_id)

    def _retry_or_give_up(
        self,
        *,
        request: PackageRequest | DeleteRequest,
        envelope: Envelope,
        source: Destination,
        attempt: int,
        exc: Exception,
        reporter: _Reporter | None,
    ) -> None:
        what = f"{type(exc).__name__}: {exc}"
        if attempt < self._max_attempts:
            delay = min(_MAX_RETRY_DELAY_SECONDS, self._backoff * 2 ** (attempt - 1))
            logger.warning(
                "job for docset %s failed on attempt %d/%d (%s); retrying in %.1f s",
                request.docset_id,
                attempt,
                self._max_attempts,
                what,
                delay,
                exc_info=exc,
            )
            if delay:
                self._stop.wait(delay)  # a stop cuts the pause short; the retry is still re-sent
            headers = dict(envelope.headers)
            headers[ATTEMPT_HEADER] = str(attempt + 1)
            if reporter is not None:
                headers[NEXT_SEQUENCE_HEADER] = str(reporter.next_sequence)
            self._transport.send(source, Envelope(envelope.body, envelope.content_type, headers), confirm=True)
            return
        reason = f"gave up after {attempt} attempts; last error: {what}"
        logger.error("job for docset %s: %s", request.docset_id, reason, exc_info=exc)
        if reporter is not None:
            reporter.send(
                lambda seq: Failed(**self._base(request, seq), reason=reason[:_MAX_REASON_CHARS], retryable=True),
                confirm=True,
            )
        self._dead_letter(envelope, source, reason)

    # -- sending -----------------------------------------------------------------------------

    def _base(self, request: PackageRequest | DeleteRequest, sequence: int) -> _BaseFields:
        return {
            "docset_id": request.docset_id,
            "request_id": request.request_id,
            "sequence": sequence,
            "timestamp": self._clock(),
        }

    def _reply(self, request: PackageRequest | DeleteRequest, message: Message, *, confirm: bool) -> None:
        self._transport.send(
            reply_queue(request.docset_id), encode(message, self._content_type), persistent=True, confirm=confirm
        )

    def _dead_letter(self, envelope: Envelope, source: Destination, reason: str) -> None:
        logger.warning("dead-lettering a message from %s: %s", source.name, reason)
        dead_letter(self._transport, envelope, source=source, reason=reason)


def _refusal_key(
    source: Destination, message: PackageRequest | DeleteRequest, attempt: int, envelope: Envelope
) -> tuple[str, ...]:
    """What identifies one delivery's request, redelivered or not (seed requests share the empty request id)."""
    digest = hashlib.sha256(envelope.body).hexdigest()
    return (source.name, message.docset_id, message.request_id, str(attempt), digest)


def _int_header(envelope: Envelope, name: str, *, default: int) -> int:
    raw = envelope.header(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        return default
    return value if value >= 1 else default
