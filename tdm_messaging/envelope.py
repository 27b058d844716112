"""Envelope: what transports move — a body of bytes, its content type, and string headers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["Envelope"]

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True, init=False)
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

    def __init__(
        self, body: bytes, content_type: str = "application/json", headers: Mapping[str, str] = _EMPTY
    ) -> None:
        # What dataclass would write, less its object.__setattr__ look-ups: every message sent or
        # received builds one, and the generated __init__ was a sixth of a JSON encode.
        _set_body(self, body)
        _set_content_type(self, content_type)
        _set_headers(self, headers)

    def header(self, name: str, default: str | None = None) -> str | None:
        """Return header ``name`` (case-insensitive), or ``default``."""
        return self.headers.get(name.lower(), default)


# The slots' own setters (the frozen class's __setattr__ refuses every assignment).
_set_body = Envelope.__dict__["body"].__set__
_set_content_type = Envelope.__dict__["content_type"].__set__
_set_headers = Envelope.__dict__["headers"].__set__
