"""The API server's side of the protocol: request a package, poll a docset's status, ask for a delete.

The client holds no job state: the docset's reply queue is the state. A poll reads the queue,
lets :func:`~tdm_messaging.poll_plan.plan_poll` decide, then carries the plan out: re-send the few
messages that keep the status (confirmed), dead-letter what cannot be used, and only then
acknowledge what it read. A crash in between duplicates messages, never loses one, and
duplicates do not change the fold. Where the broker expires whole queues, the messages it would
re-send exactly as it read them are given back instead (``Batch.settle``: acknowledge the rest,
requeue those), so a compacted queue costs a poll no send at all.

While a poll runs, the messages it read are out of the queue: an overlapping poll of the same
docset would read it empty and report UNKNOWN. So a client does its work on a docset under that
docset's lock in a :class:`~tdm_messaging.docset_locks.DocsetLocks`; clients that share one (one
client per pooled transport, say) serialise with each other. Across processes nothing serialises
polls; an overlapping poll there may see less than everything, never a wrong result, and nothing
is lost.

A client tells its :class:`~tdm_messaging.observe.Observer` of each request and poll (metrics), and
opens a span of its :class:`~tdm_messaging.tracing.Tracer` around each; a package request carries
its span's trace (``traceparent``), which the packager continues into the job and every reply.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass
from typing import TypeVar

from pydantic import ValidationError

from tdm_messaging.clock import Clock, utc_now
from tdm_messaging.codec import JSON_CONTENT_TYPE, encode
from tdm_messaging.dead_letter import dead_letter
from tdm_messaging.destinations import DELETE_REQUESTS, PACKAGE_REQUESTS, Destination, reply_queue
from tdm_messaging.docset_locks import DocsetLocks
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import InvalidArgumentError, TransportError
from tdm_messaging.ids import new_request_id
from tdm_messaging.models import DeleteRequest, Failed, PackageRequest
from tdm_messaging.observe import (
    DeadLettered,
    DeleteRequested,
    Event,
    Observer,
    PackageRequested,
    Polled,
    notify_safely,
)
from tdm_messaging.poll_plan import BatchAction, PollPlan, plan_poll
from tdm_messaging.status import DocsetStatus, fold
from tdm_messaging.tracing import SpanKind, SpanStart, TraceContext, Tracer, with_trace
from tdm_messaging.transport.base import Batch, Transport
from tdm_messaging.wire_json import describe_validation_error

__all__ = ["PackagingClient", "Requested"]

logger = logging.getLogger(__name__)

_MAX_REASON_CHARS = 4096  # Failed.reason's limit
_REMEMBERED_PLANS = 1024  # docsets whose last poll's plan a client keeps (see PackagingClient._plan)


@dataclass(frozen=True, slots=True)
class Requested:
    """What :meth:`PackagingClient.request_package` did: the request it sent, and the status that leaves.

    Attributes:
        request: the request sent (its ``request_id`` correlates every reply).
        status: the docset's status right after the request: REQUESTED, about ``request``.
    """

    request: PackageRequest
    status: DocsetStatus


class PackagingClient:
    """What an API server needs: one call each to request a package, read a status, ask for a delete.

    Safe to share between threads if the transport is; calls about one docset run one at a time.

    Args:
        transport: an open transport (see :func:`tdm_messaging.transport.open_transport`).
        content_type: wire format of what this client sends (``application/json`` or ``text/plain``).
        clock: "now", timezone-aware; stamps requests and dates text replies that carry no time.
        locks: the per-docset locks to work under; share one between clients to serialise them
            with each other (default: this client's own).
        observer: told of each request and poll (see :mod:`tdm_messaging.observe`).
        tracer: opens a span per request and poll (see :mod:`tdm_messaging.tracing`).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        content_type: str = JSON_CONTENT_TYPE,
        clock: Clock = utc_now,
        locks: DocsetLocks | None = None,
        observer: Observer | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self._transport = transport
        self._content_type = content_type
        self._clock = clock
        self._locks = DocsetLocks() if locks is None else locks
        self._observer = observer
        self._tracer = tracer
        self._last_plans: dict[str, tuple[tuple[Envelope, ...], PollPlan]] = {}
        """Per docset: the last poll's read and its plan (see :meth:`_plan`); entries only replaced under its lock."""

    def _notify(self, event: Event) -> None:
        notify_safely(self._observer, event)

    def _span(self, name: str, kind: SpanKind, docset_id: str) -> AbstractContextManager[TraceContext | None]:
        if self._tracer is None:
            return nullcontext()  # no tracer: no span, and none of a span's plumbing
        return self._tracer.span(SpanStart(name, kind, attributes={"tdm.docset_id": docset_id}))

    def prepare(self, docset_id: str) -> None:
        """Create the docset's reply queue ahead of its first request (e.g. when the docset is created).

        Optional: :meth:`request_package` creates the queue when it is missing. Calling this
        when a docset is created takes the queue's creation (a broker round trip and, on
        RabbitMQ, a few milliseconds of its work) out of the request's path. On RabbitMQ it
        also primes the queue (``Transport.declare(prime=True)``): a persistent declare probe
        that expires at once makes RabbitMQ create the queue's on-disk index now, so the first
        request's copy is confirmed as fast as any later message (1-2.5 ms sooner,
        docs/performance.md). The queue expires as any reply queue does when left unused for
        the backend's reply time-to-live.

        Raises:
            InvalidDestinationError: ``docset_id`` may not name a queue.
            BrokerRefusedError: the queue exists with other arguments.
            TransportError: the broker failed.
        """
        self._transport.declare(reply_queue(docset_id), prime=True)

    def request_package(
        self,
        docset_id: str,
        docset_url: str,
        *,
        formats: Sequence[str] = ("meta", "txt"),
    ) -> Requested:
        """Ask the packager to build the archive of a docset.

        Sends the request to ``docsets/package`` and a copy to the docset's reply queue
        ``package/<docset_id>``, so that the next poll says REQUESTED rather than UNKNOWN.
        Both sends are persistent and confirmed, sent back to back with one wait for both
        confirms (``Transport.send_many``). The copy goes first, on the same channel: a reply
        only shapes the status once its request's copy is in the queue (docs/status.md), and
        the broker routes the copy before any packager can see the request. The reply queue is
        not declared first where the transport creates a missing one on the send
        (``Capabilities.reply_queue_on_send``). If the request may not have been queued, a
        retryable Failed for it is sent to the reply queue (best effort), so the status does not
        say REQUESTED for a request no packager will ever see; if the request may be queued but
        its copy may not be stored, the copy is sent again (best effort).

        Calls made at the same time from several threads (a server answering one docset per HTTP
        call) may share one client and transport: where the transport groups confirmed sends
        (AMQP), concurrent calls share one confirm wait, each returning once its own sends are
        confirmed (``Transport.send_many``, group commit).

        Args:
            docset_id: the docset (it names the reply queue).
            docset_url: the docset on the API, e.g. ``http://server/api/docsets/5?fmt=meta,txt``.
            formats: what to put in the archive.

        Returns:
            The request sent and the REQUESTED status it leaves (no poll needed to learn it).

        Raises:
            InvalidDestinationError: ``docset_id`` may not name a queue.
            InvalidArgumentError: ``docset_url`` or ``formats`` is malformed (the message says which).
            EncodeError: the request cannot be written in this client's content type.
            TransportError: a send failed or was not confirmed.
        """
        request = self._new_request(docset_id, docset_url, formats)
        with self._span("tdm.request_package", SpanKind.PRODUCER, docset_id) as trace, self._locks.hold(docset_id):
            envelope = with_trace(encode(request, self._content_type), trace)
            try:
                # One channel, the copy first: the broker routes it before the request, so no
                # packager's reply can reach the queue ahead of the copy. One wait for both confirms.
                self._transport.send_many(
                    [(reply_queue(docset_id), envelope), (PACKAGE_REQUESTS, envelope)], persistent=True, confirm=True
                )
            except TransportError as exc:
                unconfirmed = {0, 1} if exc.unconfirmed is None else set(exc.unconfirmed)
                self._repair(request, envelope, exc, unconfirmed=unconfirmed, refused=set(exc.refused))
                raise
        return self._requested(request)

    def request_packages(
        self, docsets: Sequence[tuple[str, str]], *, formats: Sequence[str] = ("meta", "txt")
    ) -> list[Requested]:
        """Ask for the archives of several docsets at once: :meth:`request_package` for each, one confirm wait for all.

        Every request and its copy are sent as :meth:`request_package` sends them (the copy
        first, persistent, confirmed), all back to back on one channel, then one wait for every
        confirm: a broker that writes them to disk together (RabbitMQ) pays one fsync wait for
        the lot instead of one per docset. For an endpoint that takes many docsets in one call
        (a miner ordering a collection); a server answering one docset per call gains nothing.

        Args:
            docsets: ``(docset_id, docset_url)`` pairs, each docset at most once.
            formats: what to put in every archive.

        Returns:
            What :meth:`request_package` returns, for each docset in the order given.

        Raises:
            InvalidDestinationError: a docset id may not name a queue.
            InvalidArgumentError: not a sequence of pairs, a docset given twice, or a URL or
                ``formats`` malformed (nothing is sent then).
            EncodeError: a request cannot be written in this client's content type.
            TransportError: a send failed or was not confirmed. Its ``unconfirmed`` lists the
                indices (into ``docsets``) of the requests that may not be queued or whose copy
                may not be stored, each repaired as :meth:`request_package` does; its ``refused``,
                those surely not queued. The others were requested.
        """
        if isinstance(docsets, (str, bytes)) or not isinstance(docsets, Sequence):
            raise InvalidArgumentError("request_packages() takes a sequence of (docset_id, docset_url) pairs")
        for item in docsets:
            if not isinstance(item, tuple) or len(item) != 2:
                raise InvalidArgumentError(f"request_packages() takes (docset_id, docset_url) pairs, got {item!r:.80}")
        ids = [docset_id for docset_id, _url in docsets]
        if len(set(ids)) != len(ids):
            raise InvalidArgumentError("request_packages() takes each docset at most once")
        requests = [self._new_request(docset_id, url, formats) for docset_id, url in docsets]
        if not requests:
            return []
        start = SpanStart("tdm.request_packages", SpanKind.PRODUCER, attributes={"tdm.docset_count": len(requests)})
        span = nullcontext() if self._tracer is None else self._tracer.span(start)
        with span as trace, ExitStack() as held:
            for docset_id in sorted(ids):  # one order for every caller: no two batches wait on each other
                held.enter_context(self._locks.hold(docset_id))
            envelopes = [with_trace(encode(request, self._content_type), trace) for request in requests]
            sends: list[tuple[Destination, Envelope]] = []
            for request, envelope in zip(requests, envelopes, strict=True):
                sends += [(reply_queue(request.docset_id), envelope), (PACKAGE_REQUESTS, envelope)]
            try:
                self._transport.send_many(sends, persistent=True, confirm=True)
            except TransportError as exc:
                self._repair_many(requests, envelopes, exc)
                raise
        return [self._requested(request) for request in requests]

    def _new_request(self, docset_id: str, docset_url: str, formats: Sequence[str]) -> PackageRequest:
        reply_to = reply_queue(docset_id)
        now = self._clock()
        return _checked(
            f"cannot request a package of docset {docset_id!r}",
            lambda: PackageRequest(
                docset_id=docset_id,
                request_id=new_request_id(),
                sequence=0,
                timestamp=now,
                docset_url=docset_url,
                formats=tuple(formats),
                # The full name a peer must reply to: inside a namespace, the namespaced queue's.
                reply_to=self._transport.address(reply_to),
                requested_at=now,
            ),
        )

    def _requested(self, request: PackageRequest) -> Requested:
        """Log and tell the observer of a request sent; what the request calls return for it."""
        docset_id = request.docset_id
        fields = {"docset_id": docset_id, "request_id": request.request_id}
        logger.info("requested package of docset %s (request %s)", docset_id, request.request_id, extra=fields)
        if self._observer is not None:
            self._notify(PackageRequested(docset_id, request.request_id))
        # The fold of anything older plus this newer request is the fold of the request alone.
        return Requested(request, fold([request], docset_id))

    def _repair_many(self, requests: list[PackageRequest], copies: list[Envelope], exc: TransportError) -> None:
        """:meth:`_repair` each request of a batch whose copy or request may not be stored; say which in ``exc``.

        Send ``2 i`` is request ``i``'s copy, ``2 i + 1`` the request itself.
        """
        unconfirmed = set(range(2 * len(requests))) if exc.unconfirmed is None else set(exc.unconfirmed)
        refused = set(exc.refused)
        maybe_lost: list[int] = []
        for index, (request, copy) in enumerate(zip(requests, copies, strict=True)):
            mine = {send - 2 * index for send in unconfirmed if send // 2 == index}
            if mine:
                maybe_lost.append(index)
                mine_refused = {send - 2 * index for send in refused if send // 2 == index}
                self._repair(request, copy, exc, unconfirmed=mine, refused=mine_refused)
        exc.unconfirmed = tuple(maybe_lost)
        exc.refused = tuple(index for index in maybe_lost if 2 * index + 1 in refused)

    def _repair(
        self, request: PackageRequest, copy: Envelope, exc: TransportError, *, unconfirmed: set[int], refused: set[int]
    ) -> None:
        """After a failed send of the copy and the request: leave no request REQUESTED that no
        packager will see, and no request a packager may see without its copy (best effort).

        ``unconfirmed`` says which of the two (0: the copy, 1: the request) may not be stored,
        ``refused`` which surely are not (what the error did not say is taken as "maybe stored").
        """
        # Withdraw only where the copy is surely stored (confirmed, or sent again): a copy whose fate
        # is unknown next to a request surely not sent (the first send failed) is left as before
        # pipelining, so a transient failure leaves UNKNOWN and the next poll may simply ask again.
        copy_there = 0 not in unconfirmed
        if 0 in unconfirmed and 1 not in refused:
            # The request may be queued: its copy must be there, or its replies may not count.
            try:
                self._transport.send(reply_queue(request.docset_id), copy, persistent=True, confirm=True)
                copy_there = True
            except TransportError as again:
                logger.warning(
                    "could not store the copy of request %s of docset %s: %s",
                    request.request_id,
                    request.docset_id,
                    again,
                )
        if 1 in unconfirmed and copy_there:
            self._withdraw(request, reason=f"the request could not be queued: {exc}")

    def _withdraw(self, request: PackageRequest, *, reason: str) -> None:
        """Answer ``request`` with a retryable Failed ourselves; a failure to do so is only logged."""
        failed = Failed(
            docset_id=request.docset_id,
            request_id=request.request_id,
            sequence=1,
            timestamp=self._clock(),
            reason=reason[:_MAX_REASON_CHARS],
            retryable=True,
        )
        try:
            self._transport.send(
                reply_queue(request.docset_id), encode(failed, self._content_type), persistent=True, confirm=True
            )
        except TransportError as exc:
            logger.warning("could not withdraw request %s of docset %s: %s", request.request_id, request.docset_id, exc)

    def status(self, docset_id: str) -> DocsetStatus:
        """Poll a docset: read its reply queue, fold the replies, keep the status for the next poll.

        Text bodies that carry no docset id or time take them from the queue's name and the
        clock; a reply with no request id (a seed peer's text line) is taken as answering the
        newest request the queue holds, and is re-sent with that id. A reply that cannot be
        decoded (or belongs to another docset) is sent to ``docsets/dead-letter`` with the
        reason, with a warning logged, before the read is acknowledged: nothing is dropped
        silently. Polls of one docset through this client (or its ``locks``) never overlap.

        Args:
            docset_id: the docset.

        Returns:
            Its folded status (``State.UNKNOWN`` if the queue is empty or gone).

        Raises:
            InvalidDestinationError: ``docset_id`` may not name a queue.
            TransportError: the broker failed; nothing read was acknowledged, so nothing is lost.
        """
        queue = reply_queue(docset_id)
        started = time.monotonic()
        with (
            self._span("tdm.poll", SpanKind.CLIENT, docset_id),
            self._locks.hold(docset_id),
            self._transport.read(queue) as batch,
        ):
            plan = self._plan(docset_id, tuple(batch.envelopes))
            for envelope in plan.resend:
                self._transport.send(queue, envelope, persistent=True, confirm=True)
            for rejected in plan.dead_letters:
                logger.warning(
                    "dead-lettering a reply of docset %s: %s",
                    docset_id,
                    rejected.reason,
                    extra={"docset_id": docset_id},
                )
                dead_letter(self._transport, rejected.envelope, source=queue, reason=rejected.reason)
                self._notify(DeadLettered("client", queue.name, rejected.reason))
            if plan.action is BatchAction.SETTLE:
                self._settle(batch, plan.keep, queue)
            elif plan.action is BatchAction.ACK:
                batch.ack()
            else:
                batch.release()
        if logger.isEnabledFor(logging.DEBUG):  # no record's arguments built when nobody reads them
            logger.debug(
                "polled docset %s: %d read, %d re-sent, %d dead-lettered, state %s (%s)",
                docset_id,
                len(batch.envelopes),
                len(plan.resend),
                len(plan.dead_letters),
                plan.status.state.value,
                plan.action.value,
                extra={"docset_id": docset_id, "request_id": plan.status.request_id},
            )
        if self._observer is not None:
            self._notify(
                Polled(
                    docset_id,
                    plan.status.state,
                    read=len(batch.envelopes),
                    resent=len(plan.resend),
                    dead_lettered=len(plan.dead_letters),
                    duration_seconds=time.monotonic() - started,
                )
            )
        return plan.status

    def _plan(self, docset_id: str, envelopes: tuple[Envelope, ...]) -> PollPlan:
        """:func:`plan_poll` of what a poll read; the last plan again when the queue held the very same envelopes.

        A docset polled while its job runs reads the same messages poll after poll. For JSON
        bodies the plan depends on nothing else (the clock dates only text replies; a request id
        accepted once stays accepted as the clock goes on), so a plan that re-sends and
        dead-letters nothing is remembered per docset (bounded) and reused for an equal read.
        """
        last = self._last_plans.get(docset_id)
        if last is not None and last[0] == envelopes:
            return last[1]
        plan = plan_poll(
            envelopes,
            docset_id=docset_id,
            content_type=self._content_type,
            queue_expiry=self._transport.capabilities.queue_expiry,
            now=self._clock(),
            # Ids come from the wall clock (ids.new_request_id), not from the injectable clock.
            ids_now=utc_now(),
        )
        if plan.resend or plan.dead_letters or any(e.content_type != JSON_CONTENT_TYPE for e in envelopes):
            self._last_plans.pop(docset_id, None)
        else:
            if len(self._last_plans) >= _REMEMBERED_PLANS:
                self._last_plans.clear()  # bounded: a burst of docsets only starts afresh
            self._last_plans[docset_id] = (envelopes, plan)
        return plan

    def _settle(self, batch: Batch, keep: tuple[int, ...], queue: Destination) -> None:
        """Give back the envelopes at ``keep`` and acknowledge the rest; where the backend cannot
        give back part of a read, re-send the kept ones as read (confirmed) and acknowledge all."""
        try:
            batch.settle(keep)
        except NotImplementedError:
            for index in keep:
                self._transport.send(queue, batch.envelopes[index], persistent=True, confirm=True)
            batch.ack()

    def request_delete(self, docset_id: str, *, archive_url: str | None = None) -> DeleteRequest:
        """Ask the packager to delete a docset's delivered package.

        The delete gets a new request id, newer than the package request's, so once the
        packager answers Deleted the docset's status is DELETED.

        Args:
            docset_id: the docset.
            archive_url: the archive to delete, when known.

        Returns:
            The request sent to ``docsets/delete`` (persistent, confirmed).

        Raises:
            InvalidDestinationError: ``docset_id`` may not name a queue.
            InvalidArgumentError: ``archive_url`` is malformed (the message says how).
            TransportError: the send failed or was not confirmed.
        """
        reply_queue(docset_id)
        request = _checked(
            f"cannot request a delete of docset {docset_id!r}",
            lambda: DeleteRequest(
                docset_id=docset_id,
                request_id=new_request_id(),
                sequence=0,
                timestamp=self._clock(),
                archive_url=archive_url,
            ),
        )
        with self._span("tdm.request_delete", SpanKind.PRODUCER, docset_id) as trace:
            envelope = with_trace(encode(request, self._content_type), trace)
            self._transport.send(DELETE_REQUESTS, envelope, persistent=True, confirm=True)
        fields = {"docset_id": docset_id, "request_id": request.request_id}
        logger.info("requested delete of docset %s (request %s)", docset_id, request.request_id, extra=fields)
        self._notify(DeleteRequested(docset_id, request.request_id))
        return request


_M = TypeVar("_M", PackageRequest, DeleteRequest)


def _checked(what: str, make: Callable[[], _M]) -> _M:
    """``make()``, with a model's refusal turned into one readable InvalidArgumentError (one error root)."""
    try:
        return make()
    except ValidationError as exc:
        raise InvalidArgumentError(describe_validation_error(exc, prefix=what)) from None
