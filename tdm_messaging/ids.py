"""Request ids that sort in creation order (UUIDv7 layout), so a newer request is always the larger id."""

from __future__ import annotations

import os
import time
import uuid

__all__ = ["new_request_id", "request_id_from"]


def request_id_from(unix_ms: int, entropy: bytes) -> str:
    """Build a UUIDv7 string from a millisecond timestamp and 10 bytes of entropy (pure).

    Raises:
        ValueError: if ``unix_ms`` is outside 48 bits or ``entropy`` is shorter than 10 bytes.
    """
    if not 0 <= unix_ms < 1 << 48:
        raise ValueError(f"unix_ms {unix_ms} does not fit in 48 bits")
    if len(entropy) < 10:
        raise ValueError("entropy must be at least 10 bytes")
    rand = int.from_bytes(entropy[:10], "big")
    value = (unix_ms << 80) | (0x7 << 76) | ((rand >> 68) & 0xFFF) << 64
    value |= (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def new_request_id() -> str:
    """A fresh time-ordered request id (reads the clock and ``os.urandom``)."""
    return request_id_from(time.time_ns() // 1_000_000, os.urandom(10))
