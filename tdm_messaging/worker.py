"""The packager's side of the protocol: a worker loop that runs package and delete jobs and reports on them.

Theory of operation
-------------------
The worker takes requests one at a time (prefetch 1; several workers on one queue share the
work as competing consumers), runs the handler, reports, then acknowledges. What to do with
each delivery is decided by :mod:`tdm_messaging.delivery_plan`; this module carries it out.

For a package request the handler gets a :class:`~tdm_messaging.job.Job`; its return value
becomes Complete, a :class:`~tdm_messaging.job.JobFailed` becomes Failed. Any other exception is
retried: a copy of the request goes back to its queue with ``tdm-attempt`` raised by one, after
a growing pause, and the original is acknowledged -- no NACK, so it works the same on every
broker. After ``max_attempts`` the worker sends ``Failed(retryable=True)`` and dead-letters the
request with the reason.

Undecodable or oversize requests are dead-lettered at once, and so is a request whose reply
the broker refuses (:class:`~tdm_messaging.errors.BrokerRefusedError`, e.g. a reply queue
declared with other arguments): redelivering it would fail the same way forever. Such a request
is dead-lettered once: if its acknowledgement is lost (RabbitMQ closes the connection on a
refusal), the redelivered copy is recognised and acknowledged. Before each job the reply queue
is declared, so such a refusal comes before any work, and a transport that can reach the queue
as it is (RabbitMQ STOMP) still delivers the replies. Other transport errors leave the request
unacknowledged for redelivery and spend no attempt: a reply that was not stored (no confirm, or
returned unroutable because its queue's node in a cluster is down) -- also one the handler sent
through its reporter -- so the request is never acknowledged without its Complete or Failed
stored. The worker carries on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from pydantic import ValidationError

from tdm_messaging.clock import Clock, utc_now
from tdm_messaging.codec import DEFAULT_MAX_BODY_BYTES, JSON_CONTENT_TYPE, encode
from tdm_messaging.dead_letter import dead_letter
from tdm_messaging.delivery_plan import (
    AcknowledgeRefused,
    DeadLetterIt,
    GiveUp,
    Refusals,
    Retry,
    plan_delivery,
    plan_failure,
)
from tdm_messaging.destinations import DELETE_REQUESTS, PACKAGE_REQUESTS, Destination, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import (
    BrokerRefusedError,
    ConfigurationError,
    LocalProtocolError,
    TransportClosedError,
    TransportError,
)
from tdm_messaging.headers import ATTEMPT, NEXT_SEQUENCE
from tdm_messaging.job import Job, JobFailed, PackageResult, ReplyFields, Reporter
from tdm_messaging.models import Accepted, Complete, Deleted, DeleteRequest, Failed, Message, PackageRequest
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

ATTEMPT_HEADER = ATTEMPT
"""Header of a re-sent request: which attempt this delivery is (1 when absent)."""
NEXT_SEQUENCE_HEADER = NEXT_SEQUENCE
"""Header of a re-sent request: the sequence number its next reply takes, so attempts never reuse one."""

_MAX_RESUME_DELAY_SECONDS = 30.0
_MAX_REASON_CHARS = 4096  # Failed.reason's limit
_REMEMBERED_REFUSALS = 1024  # requests dead-lettered for a refusal, remembered to recognise their redelivery


class _ReplyReporter(Reporter):
    """Sends one job's replies with increasing sequence numbers; sends Accepted first if nobody did."""

    def __init__(
        self, request: PackageRequest, next_sequence: int, *, clock: Clock, reply: Callable[[Message, bool], None]
    ) -> None:
        self._request = request
        self._next_sequence = next_sequence
        self._clock = clock
        self._reply = reply
        self._lock = threading.Lock()  # a handler may report from several threads
        self._accepted_sent = False
        self.failure: TransportError | None = None  # the last reply that could not be sent

    @property
    def next_sequence(self) -> int:
        return self._next_sequence

    def send(self, build: Callable[[ReplyFields], Message], *, confirm: bool = False) -> None:
        with self._lock:
            message = build(_fields(self._request, self._next_sequence, self._clock))
            try:
                self._reply(message, confirm)
            except TransportError as exc:
                self.failure = exc
                raise
            self._next_sequence += 1
            if isinstance(message, Accepted):
                self._accepted_sent = True

    def ensure_accepted(self) -> None:
        if not self._accepted_sent:
            self.send(lambda fields: Accepted(**fields, estimate_seconds=None))


class PackagerWorker:
    """The packager's loop: take requests one at a time, run the handler, report, then acknowledge.

    See the module's header for what happens to each delivery (retries, dead letters, refusals).

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
        clock: Clock = utc_now,
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
        self._refused = Refusals(_REMEMBERED_REFUSALS)

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
        plan = plan_delivery(
            envelope, source=source, now=self._clock(), max_body_bytes=self._max_body_bytes, refused=self._refused
        )
        if isinstance(plan, DeadLetterIt):
            self._dead_letter(envelope, source, plan.reason)
            return
        if isinstance(plan, AcknowledgeRefused):
            logger.info(
                "request for docset %s (request %s) was dead-lettered already for a refused reply; "
                "acknowledging its redelivered copy",
                plan.request.docset_id,
                plan.request.request_id,
            )
            return
        request = plan.request
        try:
            self._prepare_reply_queue(request)
            if isinstance(request, PackageRequest):
                self._run_package(request, envelope, source, plan.attempt, plan.next_sequence)
            else:
                self._run_delete(request, envelope, source, plan.attempt)
        except BrokerRefusedError as exc:
            # A refusal (e.g. the reply queue exists with other arguments) comes back on every
            # redelivery: park the request once rather than block the queue with it forever.
            self._dead_letter(envelope, source, f"the broker refused a send for docset {request.docset_id}: {exc}")
            self._refused.remember(plan.refusal_key)

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

    def _run_package(
        self, request: PackageRequest, envelope: Envelope, source: Destination, attempt: int, next_sequence: int
    ) -> None:
        reporter = _ReplyReporter(
            request,
            next_sequence,
            clock=self._clock,
            reply=lambda message, confirm: self._reply(request, message, confirm=confirm),
        )
        logger.info(
            "package job for docset %s (request %s, attempt %d/%d)",
            request.docset_id,
            request.request_id,
            attempt,
            self._max_attempts,
        )
        try:
            result = self._on_package(Job(request, attempt, reporter))
            complete = self._complete(request, result)
        except JobFailed as failure:
            reason = failure.reason[:_MAX_REASON_CHARS] or "the package handler failed without a reason"
            retryable = failure.retryable
            reporter.send(lambda fields: Failed(**fields, reason=reason, retryable=retryable), confirm=True)
            logger.info("package job for docset %s failed: %s", request.docset_id, reason)
            return
        except Exception as exc:
            if exc is reporter.failure:
                # A reply could not be sent (broker trouble, e.g. the reply queue's node is down),
                # not the job's fault: no attempt is spent; the request stays unacknowledged.
                raise
            self._retry_or_give_up(request, envelope, source, attempt, exc, reporter)
            return
        reporter.ensure_accepted()
        reporter.send(
            lambda fields: complete.model_copy(
                update={"sequence": fields["sequence"], "timestamp": fields["timestamp"]}
            ),
            confirm=True,
        )
        logger.info("package job for docset %s complete: %s", request.docset_id, result.archive_url)

    def _complete(self, request: PackageRequest, result: PackageResult) -> Complete:
        if not isinstance(result, PackageResult):
            raise LocalProtocolError(f"the package handler must return a PackageResult, got {type(result).__name__}")
        try:
            return Complete(
                **_fields(request, 0, self._clock),
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
            self._retry_or_give_up(request, envelope, source, attempt, exc, None)
            return
        deleted = Deleted(**_fields(request, 1, self._clock), archive_url=request.archive_url)
        self._reply(request, deleted, confirm=True)
        logger.info("delete job for docset %s done", request.docset_id)

    def _retry_or_give_up(  # noqa: PLR0917 - a private step of _run_*, called with the job's own values
        self,
        request: PackageRequest | DeleteRequest,
        envelope: Envelope,
        source: Destination,
        attempt: int,
        exc: Exception,
        reporter: _ReplyReporter | None,
    ) -> None:
        what = f"{type(exc).__name__}: {exc}"
        plan = plan_failure(
            envelope,
            attempt=attempt,
            max_attempts=self._max_attempts,
            backoff_seconds=self._backoff,
            next_sequence=None if reporter is None else reporter.next_sequence,
            error=what,
        )
        if isinstance(plan, Retry):
            logger.warning(
                "job for docset %s failed on attempt %d/%d (%s); retrying in %.1f s",
                request.docset_id,
                attempt,
                self._max_attempts,
                what,
                plan.delay_seconds,
                exc_info=exc,
            )
            if plan.delay_seconds:
                self._stop.wait(plan.delay_seconds)  # a stop cuts the pause short; the retry is still re-sent
            self._transport.send(source, plan.envelope, confirm=True)
            return
        assert isinstance(plan, GiveUp)
        logger.error("job for docset %s: %s", request.docset_id, plan.reason, exc_info=exc)
        if reporter is not None:
            reason = plan.reason[:_MAX_REASON_CHARS]
            reporter.send(lambda fields: Failed(**fields, reason=reason, retryable=True), confirm=True)
        self._dead_letter(envelope, source, plan.reason)

    # -- sending -----------------------------------------------------------------------------

    def _reply(self, request: PackageRequest | DeleteRequest, message: Message, *, confirm: bool) -> None:
        self._transport.send(
            reply_queue(request.docset_id), encode(message, self._content_type), persistent=True, confirm=confirm
        )

    def _dead_letter(self, envelope: Envelope, source: Destination, reason: str) -> None:
        logger.warning("dead-lettering a message from %s: %s", source.name, reason)
        dead_letter(self._transport, envelope, source=source, reason=reason)


def _fields(request: PackageRequest | DeleteRequest, sequence: int, clock: Clock) -> ReplyFields:
    return {
        "docset_id": request.docset_id,
        "request_id": request.request_id,
        "sequence": sequence,
        "timestamp": clock(),
    }
