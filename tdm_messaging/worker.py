"""The packager's side of the protocol: a worker loop that runs package and delete jobs and reports on them.

Theory of operation
-------------------
The worker takes requests one at a time (prefetch 1 by default; several workers on one queue
share the work as competing consumers), runs the handler, reports, then acknowledges. What to do
with each delivery is decided by :mod:`tdm_messaging.delivery_plan`; this module carries it out.

With ``prefetch`` above 1 the broker may hand the worker several requests at once
(:meth:`~tdm_messaging.transport.base.Transport.consume_batches`; AMQP batches what the socket
already holds, STOMP what its receiver thread has already received, the virtual transports hand
over one at a time). The worker still runs their jobs one
after another, but sends each job's last reply (Complete, Failed, Deleted) without waiting and
waits once for the confirms of all of them before acknowledging the requests: one confirm wait
per batch instead of one per job, and still no request acknowledged before its last reply is
stored. If that wait fails, no request of the batch is acknowledged (all are delivered again,
and the jobs whose replies were stored run again, as after any lost acknowledgement), and the
next batch is handled one job at a time, each reply confirmed before the next job.

For a package request the handler gets a :class:`~tdm_messaging.job.Job`; its return value
becomes Complete, a :class:`~tdm_messaging.job.JobFailed` becomes Failed. Any other exception is
retried: a copy of the request goes back to its queue with ``tdm-attempt`` raised by one, after
a growing pause, and the original is acknowledged -- no NACK, so it works the same on every
broker. After ``max_attempts`` the worker sends ``Failed(retryable=True)`` and dead-letters the
request with the reason.

A delete handler may refuse a request by raising :class:`~tdm_messaging.job.JobFailed`: it is
dead-lettered at once with the reason, and no Deleted is sent.

Undecodable or oversize requests are dead-lettered at once, and so is a request whose reply
the broker refuses (:class:`~tdm_messaging.errors.BrokerRefusedError`, e.g. a reply queue
declared with other arguments): redelivering it would fail the same way forever. Such a request
is dead-lettered once: if its acknowledgement is lost (RabbitMQ closes the connection on a
refusal), the redelivered copy is recognised and acknowledged. Where a transport needs it, the
reply queue is declared before each job, so such a refusal comes before any work, and a transport
that can reach the queue as it is (RabbitMQ STOMP) still delivers the replies. A transport whose
sends create a missing reply queue themselves (``Capabilities.reply_queue_on_send``: AMQP, where a
confirmed mandatory reply the broker returns makes the queue be declared and the reply sent
again) is trusted with the queue the server declared: no declare per job; a queue that exists
with other arguments then takes the replies as it is, and only a declare on a return can be
refused (dead-lettered once, as above). Other transport errors leave the request
unacknowledged for redelivery and spend no attempt: a reply that was not stored (no confirm, or
returned unroutable because its queue's node in a cluster is down) -- also one the handler sent
through its reporter -- so the request is never acknowledged without its Complete or Failed
stored. The worker carries on.

Each attempt of a job is told to the worker's :class:`~tdm_messaging.observe.Observer` (started,
ended with its outcome and duration), and runs in a span of its :class:`~tdm_messaging.tracing.Tracer`
continuing the request's trace; every reply carries that trace (see :mod:`tdm_messaging.tracing`).
Log records about a job carry ``docset_id``, ``request_id`` and ``attempt`` as fields.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext

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
from tdm_messaging.job import Job, JobFailed, PackageResult, ReplyReporter, reply_fields
from tdm_messaging.linger import ProgressLinger
from tdm_messaging.models import Complete, Deleted, DeleteRequest, Failed, Message, PackageRequest
from tdm_messaging.observe import (
    DeadLettered,
    Event,
    JobEnded,
    JobKind,
    JobOutcome,
    JobStarted,
    Observer,
    WorkerState,
    WorkerStateChanged,
    notify_safely,
)
from tdm_messaging.tracing import SpanKind, SpanStart, TraceContext, Tracer, trace_of, with_trace
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


class PackagerWorker:
    """The packager's loop: take requests one at a time, run the handler, report, then acknowledge.

    See the module's header for what happens to each delivery (retries, dead letters, refusals).

    Args:
        transport: an open transport; the worker sends its replies on it too.
        on_package: the package handler.
        on_delete: the delete handler; when ``None`` the worker does not consume ``docsets/delete``.
            It may raise :class:`~tdm_messaging.job.JobFailed` to refuse a request (dead-lettered
            at once with the reason, no Deleted sent); any other exception is retried.
        max_attempts: deliveries of one request before it is dead-lettered (at least 1).
        content_type: wire format of the replies.
        retry_backoff_seconds: base of the pause before a retry is re-sent (0 for none).
        max_body_bytes: larger request bodies are dead-lettered unread.
        clock: "now", timezone-aware, for the replies' timestamps.
        observer: told of every job's start and end, dead letters and the loop's state (metrics,
            liveness); see :mod:`tdm_messaging.observe`.
        tracer: opens a span per job, continuing the request's trace; see :mod:`tdm_messaging.tracing`.
        prefetch: requests the broker may hand this worker before it acknowledges one (per queue).
            1 (the default) shares a queue's work most evenly among several workers; more lets the
            worker wait once for the confirms of a whole batch's last replies (see the module's
            header), at the price of requests held by this worker that an idle one could have run.
        progress_linger_seconds: how long a handler's Accepted and Progress are kept back before
            they are sent (0, the default: sent at once). A newer report or the job's end supersedes
            a kept Progress, and the job's end a kept Accepted: a job that ends within this time of
            its start replies with its Complete or Failed alone, one that ends within it of its last
            Progress sends no Progress (a persistent message and a poll's read fewer each), at the
            price of each Accepted and Progress showing up to this much later.

    Raises:
        ConfigurationError: ``max_attempts`` or ``prefetch`` below 1, or a negative backoff or linger.
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
        observer: Observer | None = None,
        tracer: Tracer | None = None,
        prefetch: int = 1,
        progress_linger_seconds: float = 0.0,
    ) -> None:
        if max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be at least 1, got {max_attempts}")
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
            raise ConfigurationError(f"prefetch must be a whole number at least 1, got {prefetch!r}")
        if not progress_linger_seconds >= 0:
            raise ConfigurationError(f"progress_linger_seconds must be >= 0, got {progress_linger_seconds}")
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
        self._observer = observer
        self._tracer = tracer
        self._prefetch = prefetch
        self._finals: list[tuple[Destination, Envelope]] | None = None
        """While a batch is handled: the last replies sent unconfirmed, to confirm before the acknowledgement."""
        self._batch_confirms = True
        self._linger = ProgressLinger(progress_linger_seconds) if progress_linger_seconds > 0 else None

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
        try:
            while not stop.is_set():
                self._notify(WorkerStateChanged(WorkerState.CONSUMING, self._clock()))
                try:
                    self._transport.consume_batches(queues, self._handle_batch, prefetch=self._prefetch, stop=stop)
                except TransportClosedError:
                    raise
                except TransportError as exc:
                    failures += 1
                    delay = min(_MAX_RESUME_DELAY_SECONDS, 0.5 * 2 ** min(failures, 8))
                    logger.warning("broker trouble (%s); consuming again in %.1f s", exc, delay)
                    self._notify(WorkerStateChanged(WorkerState.BROKER_TROUBLE, self._clock(), str(exc)))
                    stop.wait(delay)
                else:
                    failures = 0
        finally:
            if self._linger is not None:
                self._linger.close()
            self._notify(WorkerStateChanged(WorkerState.STOPPED, self._clock()))
        logger.info("packager worker stopped")

    def _notify(self, event: Event) -> None:
        notify_safely(self._observer, event)

    # -- handling a batch of deliveries ------------------------------------------------------

    def _handle_batch(self, deliveries: Sequence[Delivery]) -> None:
        """Run the batch's jobs one after another; returning lets the transport acknowledge them all."""
        if len(deliveries) == 1 or not self._batch_confirms:
            for delivery in deliveries:
                self._handle(delivery)
            self._batch_confirms = True
            return
        self._finals = []
        try:
            for delivery in deliveries:
                self._handle(delivery)
            self._flush_finals()
        except TransportError:
            # The redelivered requests run one job at a time, each reply confirmed in its job: a
            # refused reply then meets the refusal handling of _handle (dead-lettered once).
            self._batch_confirms = False
            raise
        finally:
            self._finals = None

    def _flush_finals(self) -> None:
        """Send nothing more; return once every last reply held back by the batch is confirmed."""
        finals = self._finals
        if finals:
            self._transport.send_many(list(finals), persistent=True, confirm=True)
            finals.clear()

    def _send_reply(self, queue: Destination, envelope: Envelope, *, confirm: bool) -> None:
        """Send a reply; in a batch a confirmed one waits with the batch's others (:meth:`_flush_finals`)."""
        if confirm and self._finals is not None:
            self._finals.append((queue, envelope))
        else:
            self._transport.send(queue, envelope, persistent=True, confirm=confirm)

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
                extra=_log_fields(plan.request, None),
            )
            return
        request = plan.request
        kind = JobKind.PACKAGE if isinstance(request, PackageRequest) else JobKind.DELETE
        attempt = plan.attempt
        if self._observer is not None:  # no observer: no event built
            self._notify(JobStarted(kind, request.docset_id, request.request_id, attempt, delivery.redelivered))
        started = time.monotonic()
        outcome = JobOutcome.INTERRUPTED
        try:
            parent = trace_of(envelope.headers)
            # No tracer: the request's trace passes on unchanged, without a span's plumbing.
            span: AbstractContextManager[TraceContext | None] = (
                nullcontext(parent) if self._tracer is None else self._job_span(kind, request, attempt, parent)
            )
            with span as trace:
                if not self._transport.capabilities.reply_queue_on_send:
                    self._prepare_reply_queue(request)
                if isinstance(request, PackageRequest):
                    outcome = self._run_package(request, envelope, source, attempt, plan.next_sequence, trace)
                else:
                    outcome = self._run_delete(request, envelope, source, attempt, trace)
        except BrokerRefusedError as exc:
            # A refusal (e.g. the reply queue exists with other arguments) comes back on every
            # redelivery: park the request once rather than block the queue with it forever.
            outcome = JobOutcome.REFUSED
            self._dead_letter(envelope, source, f"the broker refused a send for docset {request.docset_id}: {exc}")
            self._refused.remember(plan.refusal_key)
        finally:
            if self._observer is not None:
                duration = time.monotonic() - started
                self._notify(JobEnded(kind, request.docset_id, request.request_id, attempt, outcome, duration))

    @contextmanager
    def _job_span(
        self, kind: JobKind, request: PackageRequest | DeleteRequest, attempt: int, parent: TraceContext | None
    ) -> Iterator[TraceContext | None]:
        """The job's span, continuing the request's trace; yields the trace its replies carry."""
        if self._tracer is None:
            yield parent  # no tracer: pass the request's trace on unchanged
            return
        start = SpanStart(
            name=f"tdm.job.{kind.value}",
            kind=SpanKind.CONSUMER,
            parent=parent,
            attributes={
                "tdm.docset_id": request.docset_id,
                "tdm.request_id": request.request_id,
                "tdm.attempt": attempt,
            },
        )
        with self._tracer.span(start) as trace:
            yield trace if trace is not None else parent

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

    def _run_package(  # noqa: PLR0917 - a private step of _handle, called with the job's own values
        self,
        request: PackageRequest,
        envelope: Envelope,
        source: Destination,
        attempt: int,
        next_sequence: int,
        trace: TraceContext | None,
    ) -> JobOutcome:
        queue = reply_queue(request.docset_id)  # checked once per job, not once per reply

        def reply(message: Message, confirm: bool) -> None:
            self._send_reply(queue, with_trace(encode(message, self._content_type), trace), confirm=confirm)

        hold = None if self._linger is None else self._linger.hold
        reporter = ReplyReporter(request, next_sequence, clock=self._clock, reply=reply, hold=hold)
        try:
            return self._run_reported(request, envelope, source, attempt, reporter)
        finally:
            reporter.close()  # a Progress still kept back is superseded by the job's end

    def _run_reported(
        self,
        request: PackageRequest,
        envelope: Envelope,
        source: Destination,
        attempt: int,
        reporter: ReplyReporter,
    ) -> JobOutcome:
        fields = _log_fields(request, attempt)
        logger.info(
            "package job for docset %s (request %s, attempt %d/%d)",
            request.docset_id,
            request.request_id,
            attempt,
            self._max_attempts,
            extra=fields,
        )
        try:
            result = self._on_package(Job(request, attempt, reporter))
            complete = self._complete(request, result)
        except JobFailed as failure:
            reason = failure.reason[:_MAX_REASON_CHARS] or "the package handler failed without a reason"
            retryable = failure.retryable
            reporter.send(lambda reply: Failed(**reply, reason=reason, retryable=retryable), confirm=True)
            logger.info("package job for docset %s failed: %s", request.docset_id, reason, extra=fields)
            return JobOutcome.FAILED
        except Exception as exc:
            if exc is reporter.failure:
                # A reply could not be sent (broker trouble, e.g. the reply queue's node is down),
                # not the job's fault: no attempt is spent; the request stays unacknowledged.
                raise
            reporter.close()  # before the retry takes the next sequence number: no late Progress may take it too
            return self._retry_or_give_up(request, envelope, source, attempt, exc, reporter)
        reporter.ensure_accepted()
        reporter.send(
            lambda reply: complete.model_copy(update={"sequence": reply["sequence"], "timestamp": reply["timestamp"]}),
            confirm=True,
        )
        logger.info("package job for docset %s complete: %s", request.docset_id, result.archive_url, extra=fields)
        return JobOutcome.COMPLETED

    def _complete(self, request: PackageRequest, result: PackageResult) -> Complete:
        if not isinstance(result, PackageResult):
            raise LocalProtocolError(f"the package handler must return a PackageResult, got {type(result).__name__}")
        try:
            return Complete(
                **reply_fields(request, 0, self._clock),
                archive_url=result.archive_url,
                size_bytes=result.size_bytes,
                sha256=result.sha256,
                content_type=result.content_type,
                url_expires_at=result.url_expires_at,
            )
        except ValidationError as exc:
            raise LocalProtocolError(f"the package handler returned an invalid PackageResult: {exc}") from exc

    def _run_delete(
        self, request: DeleteRequest, envelope: Envelope, source: Destination, attempt: int, trace: TraceContext | None
    ) -> JobOutcome:
        assert self._on_delete is not None
        fields = _log_fields(request, attempt)
        logger.info(
            "delete job for docset %s (attempt %d/%d)", request.docset_id, attempt, self._max_attempts, extra=fields
        )
        try:
            self._on_delete(request)
        except JobFailed as failure:
            # The handler refused (e.g. an archive that is not its own): asking again is refused again.
            reason = failure.reason[:_MAX_REASON_CHARS] or "the delete handler refused without a reason"
            self._dead_letter(envelope, source, f"delete for docset {request.docset_id} refused: {reason}")
            return JobOutcome.REJECTED
        except Exception as exc:
            return self._retry_or_give_up(request, envelope, source, attempt, exc, None)
        deleted = Deleted(**reply_fields(request, 1, self._clock), archive_url=request.archive_url)
        self._reply(request, deleted, confirm=True, trace=trace)
        logger.info("delete job for docset %s done", request.docset_id, extra=fields)
        return JobOutcome.COMPLETED

    def _retry_or_give_up(  # noqa: PLR0917 - a private step of _run_*, called with the job's own values
        self,
        request: PackageRequest | DeleteRequest,
        envelope: Envelope,
        source: Destination,
        attempt: int,
        exc: Exception,
        reporter: ReplyReporter | None,
    ) -> JobOutcome:
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
                extra=_log_fields(request, attempt),
            )
            if plan.delay_seconds:
                self._stop.wait(plan.delay_seconds)  # a stop cuts the pause short; the retry is still re-sent
            self._transport.send(source, plan.envelope, confirm=True)
            return JobOutcome.RETRIED
        assert isinstance(plan, GiveUp)
        logger.error(
            "job for docset %s: %s", request.docset_id, plan.reason, exc_info=exc, extra=_log_fields(request, attempt)
        )
        if reporter is not None:
            reason = plan.reason[:_MAX_REASON_CHARS]
            reporter.send(lambda fields: Failed(**fields, reason=reason, retryable=True), confirm=True)
        self._dead_letter(envelope, source, plan.reason)
        return JobOutcome.GAVE_UP

    # -- sending -----------------------------------------------------------------------------

    def _reply(
        self, request: PackageRequest | DeleteRequest, message: Message, *, confirm: bool, trace: TraceContext | None
    ) -> None:
        envelope = with_trace(encode(message, self._content_type), trace)
        self._send_reply(reply_queue(request.docset_id), envelope, confirm=confirm)

    def _dead_letter(self, envelope: Envelope, source: Destination, reason: str) -> None:
        # A Failed held back by the batch is stored before its request is parked, as one at a time.
        self._flush_finals()
        logger.warning("dead-lettering a message from %s: %s", source.name, reason, extra={"queue": source.name})
        dead_letter(self._transport, envelope, source=source, reason=reason)
        self._notify(DeadLettered("worker", source.name, reason))


def _log_fields(request: PackageRequest | DeleteRequest, attempt: int | None) -> dict[str, object]:
    """The fields a log record about a job carries (``extra=``), for structured logs."""
    fields: dict[str, object] = {"docset_id": request.docset_id, "request_id": request.request_id}
    if attempt is not None:
        fields["attempt"] = attempt
    return fields
