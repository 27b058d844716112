"""Envelopes to and from kombu messages: content encoding, the application's headers, the redelivered flag."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from tdm_messaging.envelope import Envelope

__all__ = ["content_encoding", "raw_envelope", "raw_redelivered", "redelivered", "to_envelope"]

# What kombu's Producer writes for raw bytes published with no content type: it means "none given".
_KOMBU_UNTYPED = "application/data"
# Headers kombu, RabbitMQ or its STOMP plugin add on their own; not the application's.
_DRIVER_HEADERS = frozenset({"redelivered", "compression", "content-length"})


@functools.lru_cache(maxsize=64)
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
    return _envelope(message.body, message.content_type, message.headers or {})


def raw_envelope(message: Any) -> Envelope | None:
    """The envelope of a py-amqp message read straight from it, as :func:`to_envelope` reads kombu's wrapper.

    None when kombu must unwrap it first: a body kombu would decompress (a ``compression`` header).
    """
    properties = message.properties
    headers = properties.get("application_headers") or {}
    if "compression" in headers:
        return None
    return _envelope(message.body, properties.get("content_type"), headers)


def _envelope(body: Any, content_type: str | None, headers: Mapping[str, Any]) -> Envelope:
    if isinstance(body, str):
        body = body.encode("utf-8")
    elif body is None:
        body = b""
    if not content_type or content_type == _KOMBU_UNTYPED:
        content_type = ""
    return Envelope(bytes(body), content_type, _app_headers(headers))


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


def raw_redelivered(message: Any) -> bool:
    """:func:`redelivered` of a py-amqp message (no kombu wrapper, no virtual transport's mark)."""
    headers = message.properties.get("application_headers") or {}
    return bool(message.delivery_info.get("redelivered") or headers.get("redelivered") is True)


def redelivered(message: Any) -> bool:
    """Whether the broker delivered ``message`` before (AMQP's flag, or a virtual transport's restore mark)."""
    info = message.delivery_info or {}
    headers = message.headers or {}
    raw = getattr(message, "_raw", None)  # virtual transports mark a restored payload itself
    marked = isinstance(raw, dict) and raw.get("redelivered") is True
    return bool(info.get("redelivered") or headers.get("redelivered") is True or marked)
