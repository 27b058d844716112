"""Message <-> Envelope: the one bridge between the models and the transports (JSON and text/plain)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import BodyTooLargeError, DecodeError, EncodeError
from tdm_messaging.ids import check_request_id
from tdm_messaging.models import LEGACY_REQUEST_ID, Message, MessageBase, format_moment
from tdm_messaging.wire_json import decode_json
from tdm_messaging.wire_text import (
    HEADER_DOCSET_ID,
    HEADER_FORMATS,
    HEADER_PROTOCOL_VERSION,
    HEADER_REPLY_TO,
    HEADER_REQUEST_ID,
    HEADER_REQUESTED_AT,
    HEADER_SEQUENCE,
    HEADER_TIMESTAMP,
    HEADER_TYPE,
    decode_text,
)
from tdm_messaging.wire_text_write import write_text

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "EPOCH_UTC",
    "HEADER_DOCSET_ID",
    "HEADER_FORMATS",
    "HEADER_PROTOCOL_VERSION",
    "HEADER_REPLY_TO",
    "HEADER_REQUESTED_AT",
    "HEADER_REQUEST_ID",
    "HEADER_SEQUENCE",
    "HEADER_TIMESTAMP",
    "HEADER_TYPE",
    "JSON_CONTENT_TYPE",
    "TEXT_CONTENT_TYPE",
    "DecodeContext",
    "decode",
    "encode",
    "guess_content_type",
]

JSON_CONTENT_TYPE: Final = "application/json"
TEXT_CONTENT_TYPE: Final = "text/plain"
DEFAULT_MAX_BODY_BYTES: Final = 1 << 20
"""Bodies larger than this (1 MiB) are refused before parsing, unless the caller sets another limit."""
EPOCH_UTC: Final = datetime(1970, 1, 1, tzinfo=UTC)
"""The timestamp a seed text message gets when the caller gives no time of receipt."""

_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})


@dataclass(frozen=True)
class DecodeContext:
    """What a ``text/plain`` body cannot say for itself; ``tdm-*`` headers win over it.

    Attributes:
        docset_id: the docset, from the reply queue's name (``package/<docset id>``).
        request_id: the request id; ``""`` (:data:`~tdm_messaging.models.LEGACY_REQUEST_ID`)
            for seed messages, which carry none.
        received_at: the message's timestamp; the caller supplies "now" (the core reads no clock).
        now: the reader's clock, timezone-aware. When given, a message whose request id is dated
            more than :data:`~tdm_messaging.ids.MAX_CLOCK_SKEW` after it is refused: no server
            made that id, and as the greatest id it would pin the docset's status.
    """

    docset_id: str | None = None
    request_id: str = LEGACY_REQUEST_ID
    received_at: datetime = EPOCH_UTC
    now: datetime | None = None


_DEFAULT_CONTEXT = DecodeContext()


def encode(message: Message, content_type: str = JSON_CONTENT_TYPE) -> Envelope:
    """Turn ``message`` into an envelope of ``content_type``.

    The envelope carries headers ``tdm-type``, ``tdm-protocol-version``, ``tdm-docset-id``,
    ``tdm-request-id`` and ``tdm-sequence``; a ``text/plain`` one also ``tdm-timestamp``
    (and, for a package request, ``tdm-requested-at``, ``tdm-formats`` and ``tdm-reply-to``), so that a text
    body written here decodes back to the same message.

    Args:
        message: any protocol message.
        content_type: ``application/json`` (the default) or ``text/plain``.

    Returns:
        The envelope to hand to a transport.

    Raises:
        EncodeError: ``content_type`` is neither, ``message`` is not a protocol message, or a
            value cannot be written in ``text/plain`` (e.g. an archive URL containing spaces).
    """
    if not isinstance(message, MessageBase):
        raise EncodeError(f"can only encode protocol messages, got {type(message).__name__}")
    headers = {
        HEADER_TYPE: message.type,
        HEADER_PROTOCOL_VERSION: message.protocol_version,
        HEADER_DOCSET_ID: message.docset_id,
        HEADER_REQUEST_ID: message.request_id,
        HEADER_SEQUENCE: str(message.sequence),
    }
    if content_type == JSON_CONTENT_TYPE:
        # The JSON body carries the timestamp; formatting it again for a header cost a third of
        # an encode, and nothing routes on it. The serializer is encode_json's, called inline.
        return Envelope(message.__pydantic_serializer__.to_json(message), JSON_CONTENT_TYPE, _checked(headers))
    if content_type == TEXT_CONTENT_TYPE:
        headers[HEADER_TIMESTAMP] = format_moment(message.timestamp)
        return Envelope(write_text(message, headers), TEXT_CONTENT_TYPE, _checked(headers))
    raise EncodeError(
        f"cannot encode to content type {content_type!r}; use {JSON_CONTENT_TYPE!r} or {TEXT_CONTENT_TYPE!r}"
    )


_HEADER_BREAKERS = frozenset("\r\n\x00")


def _checked(headers: dict[str, str]) -> dict[str, str]:
    # The models already refuse such values; this holds for messages built without validation
    # (model_construct) too, since a CR/LF in a STOMP or AMQP header would let a value forge others.
    # One scan of all values joined is the common case; the loop below names the header at fault
    # (or meets a value that is not a string, as before).
    try:
        joined = "".join(headers.values())
    except TypeError:
        joined = "\n"
    if joined.isprintable() or ("\n" not in joined and "\r" not in joined and "\x00" not in joined):
        return headers  # (CR, LF and NUL are not printable: one scan answers the common case)
    for name, value in headers.items():
        if not _HEADER_BREAKERS.isdisjoint(value):
            raise EncodeError(f"header {name} value {value[:40]!r} holds CR, LF or NUL; no header may carry them")
    return headers


def decode(
    envelope: Envelope,
    *,
    context: DecodeContext | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> Message:
    """Turn an envelope back into a message.

    The content type picks the format (``application/json`` or any ``+json`` type;
    ``text/plain``); an empty content type is guessed from the body. A ``text/plain`` body
    takes what it cannot say from the ``tdm-*`` headers, else from ``context``.

    Total: for any bytes and any headers this returns a message or raises :class:`DecodeError`
    (or a subclass), never anything else.

    Args:
        envelope: what the transport delivered.
        context: defaults for ``text/plain`` bodies (docset id, request id, time of receipt).
        max_body_bytes: refuse larger bodies before parsing them.

    Returns:
        The message (one of the classes of :data:`~tdm_messaging.models.Message`).

    Raises:
        BodyTooLargeError: the body is larger than ``max_body_bytes``.
        UnsupportedVersionError: the message's protocol major version is not ours.
        UnknownMessageTypeError: its ``type`` is not a message of this protocol.
        DecodeError: anything else that makes the body unreadable, with the field or line, or
            (with ``context.now``) a request id dated in the future.
    """
    try:
        # _decode's steps, inline: one call fewer on every message read
        body = envelope.body
        if len(body) > max_body_bytes:
            raise BodyTooLargeError(
                f"body of {len(body)} bytes exceeds the limit of {max_body_bytes} bytes; "
                "it was refused unread (raise max_body_bytes if such bodies are legitimate)"
            )
        content_type = envelope.content_type
        # The common cases first, as _format_of would answer them.
        if content_type == JSON_CONTENT_TYPE or (
            content_type != TEXT_CONTENT_TYPE and _format_of(content_type, body) == JSON_CONTENT_TYPE
        ):
            message = decode_json(body)
        else:
            ctx = context or _DEFAULT_CONTEXT
            message = decode_text(
                body, envelope.headers, docset_id=ctx.docset_id, request_id=ctx.request_id, received_at=ctx.received_at
            )
    except (ValueError, TypeError, OverflowError, RecursionError, UnicodeError) as exc:
        # The formats check every value before computing with it; this net makes "total" hold even
        # for a case they missed, so a peer's bytes can never crash a reader, only be refused.
        kind = envelope.content_type[:40] or "untyped"
        raise DecodeError(f"unreadable {kind!r} body: {type(exc).__name__}") from exc
    if context is not None and context.now is not None:
        try:
            check_request_id(message.request_id, now=context.now)
        except ValueError as exc:
            raise DecodeError(str(exc), excerpt=message.request_id) from None
    return message


def guess_content_type(body: bytes) -> str:
    """``application/json`` if ``body`` (after leading whitespace) opens a JSON object, else ``text/plain``."""
    return JSON_CONTENT_TYPE if body.lstrip()[:1] == b"{" else TEXT_CONTENT_TYPE


def _format_of(content_type: str, body: bytes) -> str:
    if content_type == JSON_CONTENT_TYPE:  # the common cases, before any parsing of parameters
        return JSON_CONTENT_TYPE
    if content_type == TEXT_CONTENT_TYPE:
        return TEXT_CONTENT_TYPE
    media, _sep, params = content_type.partition(";")
    media = media.strip().lower()
    for param in params.split(";"):
        name, _eq, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in _CHARSETS:
            raise DecodeError(
                f"content type {content_type[:80]!r}: charset {charset[:40]!r} is not supported; bodies are UTF-8",
                excerpt=content_type[:80],
            )
    if not media:
        return guess_content_type(body)
    if media == JSON_CONTENT_TYPE or media.endswith("+json"):
        return JSON_CONTENT_TYPE
    if media == TEXT_CONTENT_TYPE:
        return TEXT_CONTENT_TYPE
    raise DecodeError(
        f"content type {content_type[:80]!r} is not a format of this protocol; "
        f"expected {JSON_CONTENT_TYPE!r} or {TEXT_CONTENT_TYPE!r}",
        excerpt=content_type[:80],
    )
