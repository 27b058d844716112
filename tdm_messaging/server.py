"""The API server's side of the protocol: request a package, poll a docset's status, ask for a delete."""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from tdm_messaging.codec import JSON_CONTENT_TYPE, DecodeContext, decode, encode
from tdm_messaging.destinations import DEAD_LETTER, DELETE_REQUESTS, PACKAGE_REQUESTS, Destination, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import DecodeError
from tdm_messaging.ids import new_request_id, request_id_from
from tdm_messaging.models import LEGACY_REQUEST_ID, DeleteRequest, Message, PackageRequest
from tdm_messaging.status import DocsetStatus, compact, fold
from tdm_messaging.transport.base import Transport

__all__ = [
    "DEAD_LETTER_QUEUE_HEADER",
    "DEAD_LETTER_REASON_HEADER",
    "PackagingClient",
    "dead_letter",
    "utc_now",
]

logger = logging.getLogger(__name__)

DEAD_LETTER_REASON_HEADER = "tdm-dead-letter-reason"
"""Header of a dead-lettered envelope: why it could not be used."""
DEAD_LETTER_QUEUE_HEADER = "tdm-dead-letter-queue"
"""Header of a dead-lettered envelope: the queue it was taken from."""

_MAX_REASON_CHARS = 1000  # headers travel in STOMP frames and AMQP properties: keep them short


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC (the default clock of the helpers)."""
    return datetime.now(UTC)


def dead_letter(transport: Transport, envelope: Envelope, *, source: Destination, reason: str) -> None:
    """Park ``envelope`` on ``docsets/dead-letter``, unchanged but for two headers saying why and whence.

    Args:
        transport: where to send it.
        envelope: the envelope that could not be used.
        source: the queue it was read from (header ``tdm-dead-letter-queue``).
        reason: why (header ``tdm-dead-letter-reason``; one line, cut to 1,000 characters).

    Raises:
        TransportError: the send failed; the caller must then not acknowledge the original.
    """
    one_line = " ".join(reason.split())[:_MAX_REASON_CHARS] or "no reason given"
    headers = dict(envelope.headers)
    headers[DEAD_LETTER_REASON_HEADER] = one_line
    headers[DEAD_LETTER_QUEUE_HEADER] = source.name
    transport.send(DEAD_LETTER, Envelope(envelope.body, envelope.content_type, headers), confirm=True)


class PackagingClient:
    """What an API server needs: one call each to request a package, read a status, ask for a delete.

    The client holds no job state: the docset's reply queue is the state. Every poll reads
    the queue, folds it, re-sends the few messages that keep the status (confirmed), then
    acknowledges what it read — a crash in between duplicates messages, never loses one,
    and duplicates do not change the fold. When the queue already holds exactly those
    messages, on a broker that expires whole queues, the poll gives them back instead
    (nothing sent, nothing acknowledged). Safe to share between threads if the transport is.

    Args:
        transport: an open transport (see :func:`tdm_messaging.transport.open_transport`).
        content_type: wire format of what this client sends (``application/json`` or ``text/plain``).
        clock: "now", timezone-aware; stamps requests and dates text replies that carry no time.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        content_type: str = JSON_CONTENT_TYPE,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._transport = transport
        self._content_type = content_type
        self._clock = clock
        self._id_lock = threading.Lock()
        self._last_id = ""

    def _new_request_id(self) -> str:
        # new_request_id() orders by millisecond only; two ids of one millisecond may sort either way,
        # and a delete that sorted below its package request would be ignored by the fold.
        with self._id_lock:
            request_id = new_request_id()
            if request_id <= self._last_id:
                last_ms = uuid.UUID(self._last_id).int >> 80
                request_id = request_id_from(last_ms + 1, os.urandom(10))
            self._last_id = request_id
            return request_id

    def request_package(
        self,
        docset_id: str,
        docset_url: str,
        *,
        formats: Sequence[str] = ("meta", "txt"),
    ) -> PackageRequest:
        """Ask the packager to build the archive of a docset.

        Sends the request to ``docsets/package`` and a copy to the docset's reply queue
        ``package/<docset_id>``, so that the next poll says REQUESTED rather than UNKNOWN.
        Both sends are persistent and confirmed. The request goes first: if the copy then
        fails, the packager still works and its replies make the status right.

        Args:
            docset_id: the docset (it names the reply queue).
            docset_url: the docset on the API, e.g. ``http://server/api/docsets/5?fmt=meta,txt``.
            formats: what to put in the archive.

        Returns:
            The request sent (its ``request_id`` correlates every reply).

        Raises:
            InvalidDestinationError: ``docset_id`` may not name a queue.
            pydantic.ValidationError: ``docset_url`` or ``formats`` is malformed.
            EncodeError: the request cannot be written in this client's content type.
            TransportError: a send failed or was not confirmed.
        """
        reply_to = reply_queue(docset_id)
        now = self._clock()
        request = PackageRequest(
            docset_id=docset_id,
            request_id=self._new_request_id(),
            sequence=0,
            timestamp=now,
            docset_url=docset_url,
            formats=tuple(formats),
            reply_to=reply_to.name,
            requested_at=now,
        )
        envelope = encode(request, self._content_type)
        self._transport.send(PACKAGE_REQUESTS, envelope, persistent=True, confirm=True)
        self._transport.send(reply_to, envelope, persistent=True, confirm=True)
        logger.info("requested package of docset %s (request %s)", docset_id, request.request_id)
        return request

    def status(self, docset_id: str) -> DocsetStatus:
        """Poll a docset: read its reply queue, fold the replies, keep the status for the next poll.

        Text bodies that carry no docset id or time take them from the queue's name and the
        clock; a reply with no request id (a seed peer's text line) is taken as answering the
        newest request the queue holds, and is re-sent with that id. A reply that cannot be
        decoded (or belongs to another docset) is sent to ``docsets/dead-letter`` with the
        reason, with a warning logged, before the read is acknowledged: nothing is dropped
        silently.

        Args:
            docset_id: the docset.

        Returns:
            Its folded status (``State.UNKNOWN`` if the queue is empty or gone).

        Raises:
            InvalidDestinationError: ``docset_id`` may not name a queue.
            TransportError: the broker failed; nothing read was acknowledged, so nothing is lost.
        """
        queue = reply_queue(docset_id)
        with self._transport.read(queue) as batch:
            context = DecodeContext(docset_id=docset_id, received_at=self._clock())
            messages: list[Message] = []
            rejects: list[tuple[Envelope, str]] = []
            for envelope in batch.envelopes:
                try:
                    message = decode(envelope, context=context)
                except DecodeError as exc:
                    rejects.append((envelope, f"undecodable reply: {exc}"))
                    continue
                if message.docset_id != docset_id:
                    rejects.append((envelope, f"reply for docset {message.docset_id!r} found in queue {queue.name}"))
                    continue
                messages.append(message)
            messages = _attribute_legacy_replies(messages)
            status = fold(messages, docset_id)
            kept = compact(messages, docset_id)
            if self._holds_only(batch.envelopes, messages, kept, rejects):
                # Re-sending would write back exactly what is there: leave the queue as it is.
                batch.release()
            else:
                for message in kept:
                    self._transport.send(queue, encode(message, self._content_type), persistent=True, confirm=True)
                for envelope, reason in rejects:
                    logger.warning("dead-lettering a reply of docset %s: %s", docset_id, reason)
                    dead_letter(self._transport, envelope, source=queue, reason=reason)
                batch.ack()
        logger.debug(
            "polled docset %s: %d read, %d kept, %d dead-lettered, state %s",
            docset_id,
            len(batch.envelopes),
            len(kept),
            len(rejects),
            status.state.value,
        )
        return status

    def _holds_only(
        self,
        envelopes: Sequence[Envelope],
        messages: Sequence[Message],
        kept: Sequence[Message],
        rejects: Sequence[tuple[Envelope, str]],
    ) -> bool:
        """Whether the queue already holds exactly the compacted status, as this client would write it.

        Only where the broker expires the queue as a whole (``capabilities.queue_expiry``): elsewhere a
        reply's own expiry is renewed by the re-send, which must then happen on every poll.
        """
        if rejects or len(kept) != len(messages) or not self._transport.capabilities.queue_expiry:
            return False
        return all(encode(m, self._content_type) == e for m, e in zip(messages, envelopes, strict=True))

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
            TransportError: the send failed or was not confirmed.
        """
        reply_queue(docset_id)
        request = DeleteRequest(
            docset_id=docset_id,
            request_id=self._new_request_id(),
            sequence=0,
            timestamp=self._clock(),
            archive_url=archive_url,
        )
        self._transport.send(DELETE_REQUESTS, encode(request, self._content_type), persistent=True, confirm=True)
        logger.info("requested delete of docset %s (request %s)", docset_id, request.request_id)
        return request


def _attribute_legacy_replies(messages: list[Message]) -> list[Message]:
    """Give replies without a request id (seed text lines) the newest request id in ``messages``.

    A seed packager answers ``Accepted. 45 seconds`` with no request id; the fold would rank that
    below the server's own request copy and the status would stay REQUESTED forever. The seed's
    protocol has one job per reply queue, so such a reply answers the newest request present.
    """
    newest = max((m.request_id for m in messages if m.request_id != LEGACY_REQUEST_ID), default=None)
    if newest is None:
        return messages
    return [
        m.model_copy(update={"request_id": newest})
        if m.request_id == LEGACY_REQUEST_ID and not isinstance(m, PackageRequest)
        else m
        for m in messages
    ]
