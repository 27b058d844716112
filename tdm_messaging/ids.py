"""Request ids that sort in creation order (UUIDv7 layout), so a newer request is always the larger id."""

from __future__ import annotations

import os
import threading
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


_last_lock = threading.Lock()
_last_id = ""


def new_request_id() -> str:
    """A fresh time-ordered request id (reads the clock and ``os.urandom``).

    Strictly increasing within a process: two ids made in the same millisecond (or
    after the clock stepped back) still sort in the order they were made, because the
    fold lets the greater id supersede the smaller one.
    """
    global _last_id  # noqa: PLW0603 - one process-wide ordering is the point
    candidate = request_id_from(time.time_ns() // 1_000_000, os.urandom(10))
    with _last_lock:
        if candidate <= _last_id:
            candidate = _successor(_last_id)
        _last_id = candidate
        return candidate


def _successor(request_id: str) -> str:
    """The next UUIDv7 after ``request_id``: same millisecond, random bits plus one."""
    value = uuid.UUID(request_id).int
    rand_b = value & ((1 << 62) - 1)
    rand_a = (value >> 64) & 0xFFF
    counter = ((rand_a << 62) | rand_b) + 1
    unix_ms = value >> 80
    if counter >> 74:  # the 74 random bits overflowed: move to the next millisecond
        unix_ms, counter = unix_ms + 1, 0
    out = (unix_ms << 80) | (0x7 << 76) | ((counter >> 62) & 0xFFF) << 64
    out |= (0b10 << 62) | (counter & ((1 << 62) - 1))
    return str(uuid.UUID(int=out))
