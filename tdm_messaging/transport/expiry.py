"""Lazy reply expiry for brokers that cannot expire queues: stamp on send, drop stale on read (pure)."""

from __future__ import annotations

from collections.abc import Mapping

from tdm_messaging.envelope import Envelope
from tdm_messaging.headers import EXPIRES_AT

__all__ = ["EXPIRES_AT_HEADER", "is_expired", "stamp_expiry"]

EXPIRES_AT_HEADER = EXPIRES_AT
"""Header holding the absolute expiry of a reply, in Unix epoch milliseconds."""


def stamp_expiry(envelope: Envelope, *, now_ms: int, ttl_ms: int) -> Envelope:
    """``envelope`` with :data:`EXPIRES_AT_HEADER` set to ``now_ms + ttl_ms``."""
    headers: dict[str, str] = dict(envelope.headers)
    headers[EXPIRES_AT_HEADER] = str(now_ms + ttl_ms)
    return Envelope(envelope.body, envelope.content_type, headers)


def is_expired(headers: Mapping[str, str], *, now_ms: int) -> bool:
    """True when the headers carry an expiry stamp that ``now_ms`` has passed.

    An envelope with no stamp, or an unreadable one, never expires here: dropping a
    message we cannot prove stale would lose it.
    """
    raw = headers.get(EXPIRES_AT_HEADER)
    if raw is None:
        return False
    try:
        return int(raw) <= now_ms
    except ValueError:
        return False
