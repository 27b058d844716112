"""Envelopes to and from kombu messages: content encoding, the application's headers, the redelivered flag."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tdm_messaging.envelope import Envelope

__all__ = ["content_encoding", "redelivered", "to_envelope"]

# What kombu's Producer writes for raw bytes published with no content type: it means "none given".
_KOMBU_UNTYPED = "application/data"
# Headers kombu, RabbitMQ or its STOMP plugin add on their own; not the application's.
_DRIVER_HEADERS = frozenset({"redelivered", "compression", "content-length"})


def content_encoding(content_type: str) -> str:
    """``utf-8`` for text and JSON bodies, ``binary`` otherwise (the body is never re-encoded)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media.startswith("text/") or media == "application/json" or media.endswith("+json"):
        return "utf-8"
    return "binary"


def to_envelope(message: Any) -> Envelope:
    """The envelope a kombu message carries: its body as bytes, its content type, the application's headers.

    A message without a content type (a foreign AMQP peer may send none) gives ``""``, not a
    made-up type: the codec then guesses the format from the body (docs/protocol.md § 3). So
    does kombu's own ``application/data``, which its Producer puts on bytes sent with no type.
    """
    body = message.body
    if isinstance(body, str):
        body = body.encode("utf-8")
    elif body is None:
        body = b""
    headers = _app_headers(message.headers or {})
    content_type = message.content_type or ""
    if content_type == _KOMBU_UNTYPED:
        content_type = ""
    return Envelope(bytes(body), content_type, headers)


def _app_headers(raw: Mapping[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw.items():
        key = str(name).lower()
        if key in _DRIVER_HEADERS or key.startswith("x-"):
            continue
        if isinstance(value, bytes):
            headers[key] = value.decode("utf-8", "replace")
        else:
            headers[key] = value if isinstance(value, str) else str(value)
    return headers


def redelivered(message: Any) -> bool:
    """Whether the broker delivered ``message`` before (AMQP's flag, or a virtual transport's restore mark)."""
    info = message.delivery_info or {}
    headers = message.headers or {}
    raw = getattr(message, "_raw", None)  # virtual transports mark a restored payload itself
    marked = isinstance(raw, dict) and raw.get("redelivered") is True
    return bool(info.get("redelivered") or headers.get("redelivered") is True or marked)
