"""What the kit sees on the broker: envelopes read from a queue, each decoded (or the reason it could not be)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from tdm_messaging.clock import utc_now
from tdm_messaging.codec import DecodeContext, decode
from tdm_messaging.destinations import Destination
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import DecodeError
from tdm_messaging.headers import DOCSET_ID, PROTOCOL_VERSION, REQUEST_ID, SEQUENCE, TIMESTAMP, TYPE
from tdm_messaging.models import Message
from tdm_messaging.status import DocsetStatus, fold
from tdm_messaging.transport.base import Transport

__all__ = ["Received", "decode_envelope", "drain", "fold_of", "header_problems", "messages", "peek", "short"]

_KNOWN_CONTENT_TYPES = ("application/json", "text/plain")


@dataclass(frozen=True, slots=True)
class Received:
    """One envelope the kit read, and what it decoded to.

    Attributes:
        envelope: as the transport delivered it.
        message: the decoded message, or ``None``.
        error: why it could not be decoded (``None`` when it was).
    """

    envelope: Envelope
    message: Message | None
    error: str | None = None


def decode_envelope(envelope: Envelope, *, docset_id: str | None, now: datetime | None = None) -> Received:
    """Decode as a server of this library would: the docset from the queue, "now" for text without a time.

    Request ids dated more than the allowed skew after ``now`` are refused, as a reader with a clock must.
    """
    when = now or utc_now()
    try:
        message = decode(envelope, context=DecodeContext(docset_id=docset_id, received_at=when, now=when))
    except DecodeError as exc:
        return Received(envelope, None, str(exc))
    return Received(envelope, message)


def drain(transport: Transport, queue: Destination, *, docset_id: str | None) -> list[Received]:
    """Take everything in ``queue`` now (read, then acknowledge): what a server's poll takes."""
    with transport.read(queue) as batch:
        got = [decode_envelope(e, docset_id=docset_id) for e in batch.envelopes]
        batch.ack()
    return got


def peek(transport: Transport, queue: Destination, *, docset_id: str | None) -> list[Received]:
    """See what ``queue`` holds and give it all back (read, then release: nothing is acknowledged)."""
    with transport.read(queue) as batch:
        got = [decode_envelope(e, docset_id=docset_id) for e in batch.envelopes]
        batch.release()
    return got


def messages(received: Iterable[Received]) -> list[Message]:
    """The decoded messages, in order (what could not be decoded left out)."""
    return [r.message for r in received if r.message is not None]


def fold_of(received: Iterable[Received], docset_id: str) -> DocsetStatus:
    """The status these envelopes fold to, by docs/status.md's rules alone (no seed-reply attribution)."""
    return fold(messages(received), docset_id)


def header_problems(received: Received) -> list[str]:
    """What is missing or wrong in the ``tdm-*`` headers of §3 and the content type of a decoded message."""
    problems: list[str] = []
    envelope, message = received.envelope, received.message
    media = envelope.content_type.partition(";")[0].strip().lower()
    if not media:
        problems.append("no content type (§3: send application/json or text/plain)")
    elif media not in _KNOWN_CONTENT_TYPES and not media.endswith("+json"):
        problems.append(f"content type {envelope.content_type[:60]!r}")
    if message is None:
        return problems
    expected = {
        TYPE: message.type,
        PROTOCOL_VERSION: message.protocol_version,
        DOCSET_ID: message.docset_id,
        REQUEST_ID: message.request_id,
        SEQUENCE: str(message.sequence),
    }
    for name, value in expected.items():
        got = envelope.headers.get(name)
        if got is None:
            problems.append(f"{message.type}: no {name} header")
        elif got != value:
            problems.append(f"{message.type}: {name} is {got[:60]!r}, the body says {value[:60]!r}")
    if media == "text/plain" and TIMESTAMP not in envelope.headers:
        problems.append(f"{message.type}: a text/plain body without a {TIMESTAMP} header")
    return problems


def short(received: Sequence[Received], limit: int = 8) -> str:
    """The types (and sequence numbers) of what was read, for a report's detail line."""
    parts = [
        f"{r.message.type}#{r.message.sequence}" if r.message is not None else "undecodable" for r in received[:limit]
    ]
    more = f", ... ({len(received)} in all)" if len(received) > limit else ""
    return "[" + ", ".join(parts) + more + "]"
