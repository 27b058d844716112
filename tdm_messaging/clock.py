"""The helpers' default clock: "now" is read here and passed into the pure core as an argument."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["Clock", "utc_now"]

Clock = Callable[[], datetime]
"""What the helpers take as ``clock``: returns "now", timezone-aware."""


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC (the default clock of the helpers)."""
    return datetime.now(UTC)
