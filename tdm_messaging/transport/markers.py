"""Read markers and declare probes met by a reader that did not send them: the rule of docs/protocol.md § 6.2."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from tdm_messaging import headers

__all__ = ["MARKER_TTL_MS", "is_probe", "marker_of", "marker_remaining_ms"]

MARKER_TTL_MS: Final = 60_000
"""How long a read marker lives after ``tdm-read-marker-at``; a reader drops an older one."""


def marker_of(envelope_headers: Mapping[str, str]) -> str | None:
    """The read id of a marker message (its ``tdm-read-marker``), or ``None`` for any other message."""
    return envelope_headers.get(headers.READ_MARKER)


def is_probe(envelope_headers: Mapping[str, str]) -> bool:
    """Whether this is a declare probe (``tdm-declare-probe``): an empty message nobody reads."""
    return headers.DECLARE_PROBE in envelope_headers


def marker_remaining_ms(envelope_headers: Mapping[str, str], *, now_ms: int) -> int:
    """How long a foreign marker still lives: ``tdm-read-marker-at`` + 60 s - now; 0 or less means stale.

    An unreadable or missing ``tdm-read-marker-at`` counts as stale (its reader has long given up).
    """
    text = envelope_headers.get(headers.READ_MARKER_AT, "")
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        return 0
    return int(text) + MARKER_TTL_MS - now_ms
