"""Envelope: what transports move — a body of bytes, its content type, and string headers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["Envelope"]

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message as the broker sees it.

    Attributes:
        body: the wire body, exactly as sent.
        content_type: its media type, e.g. ``application/json`` or ``text/plain``
            (parameters such as ``; charset=utf-8`` may follow).
        headers: application headers, names lower-case, values strings. Transports
            carry them unchanged; broker-specific headers (``message-id``,
            ``subscription``, ...) are not included.
    """

    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    def header(self, name: str, default: str | None = None) -> str | None:
        """Return header ``name`` (case-insensitive), or ``default``."""
        return self.headers.get(name.lower(), default)
