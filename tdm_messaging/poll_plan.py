"""What one poll of a docset does with what it read: the status, the re-sends, the dead letters, what it keeps.

Rules
-----
1. Every envelope read is decoded with the docset's id and "now" as context (text bodies that
   carry neither take them from there). One that cannot be decoded, or that is about another
   docset, becomes a dead letter with the reason; nothing read is dropped silently.
2. A reply with no request id (a seed peer's text line) is taken as answering the newest
   request the queue holds (the seed protocol has one job per reply queue), so the fold does
   not rank it below the server's own request copy; it is re-sent with that id.
3. The status is the fold of the decoded messages; what the queue keeps is their compaction,
   written in the poller's content type, in the order read.
4. On a broker that expires whole queues, a kept message whose envelope read is equal to its
   re-encoding is given back as it is (its index is in ``keep``); only the others are re-sent
   (a legacy reply given its request id, another content type, ...). Everything else read is
   acknowledged. When every envelope is kept, that is RELEASE; when none is, ACK; else SETTLE.
   Elsewhere a reply's own expiry is renewed by its re-send, so every poll re-sends all it keeps
   and acknowledges all it read: ACK.
5. A re-sent message keeps the trace headers (``traceparent``, ``tracestate``) it was read with.

The law (property-tested): the fold of what the queue holds after the poll -- the envelopes at
``keep`` plus ``resend``, in any order -- equals the fold of what was read. Order never matters:
the fold picks each witness by value (docs/status.md rule 4), so a broker that puts the kept
envelopes back at the head while the re-sends go to the tail changes nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from tdm_messaging.codec import DecodeContext, decode, encode
from tdm_messaging.destinations import reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import DecodeError
from tdm_messaging.models import LEGACY_REQUEST_ID, Message, PackageRequest
from tdm_messaging.status import DocsetStatus, fold_and_compact
from tdm_messaging.tracing import trace_of, with_trace

__all__ = ["BatchAction", "DeadLetter", "PollPlan", "attribute_legacy_replies", "plan_poll"]


class BatchAction(enum.Enum):
    """What a poll does with the batch it read, once the plan's sends are confirmed."""

    ACK = "ack"
    """Acknowledge everything: the re-sends replace what was read."""
    RELEASE = "release"
    """Give it back untouched: the queue already holds the status as it would be written."""
    SETTLE = "settle"
    """Give back the envelopes at ``keep``, acknowledge the rest (:meth:`Batch.settle`)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An envelope a poll (or a worker) cannot use, and why."""

    envelope: Envelope
    reason: str


@dataclass(frozen=True, slots=True)
class PollPlan:
    """A poll's decision, to be carried out in order: send ``resend``, then ``dead_letters``, then ``action``.

    Attributes:
        status: the docset's folded status.
        resend: the envelopes to send back to the reply queue (persistent, confirmed).
        dead_letters: the envelopes to park on ``docsets/dead-letter``, with their reasons.
        action: ACK, RELEASE or SETTLE the batch read.
        keep: indices (into what was read, ascending) of the envelopes given back as they are;
            ``batch.settle(keep)`` carries out any ``action``.
    """

    status: DocsetStatus
    resend: tuple[Envelope, ...]
    dead_letters: tuple[DeadLetter, ...]
    action: BatchAction
    keep: tuple[int, ...] = ()


def plan_poll(
    envelopes: Sequence[Envelope],
    *,
    docset_id: str,
    content_type: str,
    queue_expiry: bool,
    now: datetime,
    ids_now: datetime | None = None,
) -> PollPlan:
    """Decide what a poll of ``docset_id`` does with the envelopes it read (pure; see the module's rules).

    Args:
        envelopes: what the read of the docset's reply queue returned, in order.
        docset_id: the docset polled.
        content_type: the wire format the poller writes its re-sends in.
        queue_expiry: whether the broker expires whole queues (``Capabilities.queue_expiry``).
        now: "now", timezone-aware: dates text replies that carry no time.
        ids_now: the wall clock that request ids are made with (:func:`~tdm_messaging.ids.new_request_id`);
            when given, a reply whose request id is dated beyond it plus the allowed skew is dead-lettered.

    Returns:
        The plan.

    Raises:
        InvalidDestinationError: ``docset_id`` may not name a queue.
        EncodeError: a message to keep cannot be written in ``content_type``.
    """
    queue = reply_queue(docset_id)
    context = DecodeContext(docset_id=docset_id, received_at=now, now=ids_now)
    decoded: list[Message] = []
    read_at: list[int] = []  # index in ``envelopes`` of each decoded message
    rejects: list[DeadLetter] = []
    for index, envelope in enumerate(envelopes):
        try:
            message = decode(envelope, context=context)
        except DecodeError as exc:
            rejects.append(DeadLetter(envelope, f"undecodable reply: {exc}"))
            continue
        if message.docset_id != docset_id:
            rejects.append(DeadLetter(envelope, f"reply for docset {message.docset_id!r} found in queue {queue.name}"))
            continue
        decoded.append(message)
        read_at.append(index)
    messages = attribute_legacy_replies(decoded)
    status, kept = fold_and_compact(messages, docset_id)
    # The compaction holds the very objects it kept, in input order: map them back to what was read.
    position = {id(message): at for message, at in zip(messages, read_at, strict=True)}
    keep: list[int] = []
    resend: list[Envelope] = []
    for message in kept:
        at = position[id(message)]
        written = with_trace(encode(message, content_type), trace_of(envelopes[at].headers))
        if queue_expiry and written == envelopes[at]:
            keep.append(at)
        else:
            resend.append(written)
    if not queue_expiry:
        return PollPlan(status, tuple(resend), tuple(rejects), BatchAction.ACK)
    if len(keep) == len(envelopes):
        return PollPlan(status, (), (), BatchAction.RELEASE, tuple(keep))
    action = BatchAction.SETTLE if keep else BatchAction.ACK
    return PollPlan(status, tuple(resend), tuple(rejects), action, tuple(keep))


def attribute_legacy_replies(messages: Sequence[Message]) -> list[Message]:
    """Give replies without a request id (seed text lines) the newest package request's id in ``messages`` (pure).

    A seed packager answers ``Accepted. 45 seconds`` with no request id; the fold would rank that
    below the server's own request copy and the status would stay REQUESTED forever. The seed's
    protocol has one job per reply queue, so such a reply answers the newest request present.
    Only a package request's id counts: a forged reply with a made-up id must not capture them.

    Args:
        messages: one docset's messages.

    Returns:
        The same messages in the same order, legacy replies (not requests) copied with that id.
    """
    newest = max(
        (m.request_id for m in messages if isinstance(m, PackageRequest) and m.request_id != LEGACY_REQUEST_ID),
        default=None,
    )
    if newest is None:
        return list(messages)
    return [
        m.model_copy(update={"request_id": newest})
        if m.request_id == LEGACY_REQUEST_ID and not isinstance(m, PackageRequest)
        else m
        for m in messages
    ]
