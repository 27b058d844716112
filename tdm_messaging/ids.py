"""Request ids that sort in creation order (UUIDv7 layout), so a newer request is always the larger id."""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Final

__all__ = [
    "MAX_CLOCK_SKEW",
    "check_request_id",
    "is_request_id",
    "new_request_id",
    "request_id_from",
    "request_id_time",
]

MAX_CLOCK_SKEW: Final = timedelta(minutes=5)
"""How far ahead of the reader's clock a request id's time may be (see :func:`check_request_id`)."""

# Canonical lower-case UUIDv7: version nibble 7, variant bits 10 (8, 9, a or b). \Z, not $: no newline.
_UUID7: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z")


def is_request_id(value: object) -> bool:
    """Whether ``value`` is a well-formed request id: a canonical lower-case UUIDv7, or the seed's legacy ``""``."""
    return isinstance(value, str) and (value == "" or _UUID7.match(value) is not None)


def check_request_id(value: str, *, now: datetime | None = None) -> str:
    """Return ``value`` if it is a well-formed request id, dated no later than ``now + MAX_CLOCK_SKEW``.

    Request ids decide which request a docset's status is about (the greatest wins), so an id
    nobody could have made yet (``zzzz``, or a UUIDv7 of the year 10889) would pin a status.

    Args:
        value: the id.
        now: the reader's clock; ``None`` checks the form only (pure).

    Raises:
        ValueError: naming what is wrong (the models turn it into a validation error).
    """
    if not is_request_id(value):
        raise ValueError(
            f"request_id {value[:40]!r} is not a request id: expected a lower-case UUIDv7 "
            "(xxxxxxxx-xxxx-7xxx-[89ab]xxx-xxxxxxxxxxxx) or '' for seed messages"
        )
    if now is not None and value:
        # In integer milliseconds: a 48-bit timestamp reaches the year 10889, past datetime's range.
        made_ms = int(value[:8] + value[9:13], 16)
        limit_ms = (now - _EPOCH + MAX_CLOCK_SKEW) // timedelta(milliseconds=1)
        if made_ms > limit_ms:
            raise ValueError(
                f"request_id {value} is dated {made_ms - limit_ms} ms beyond {now.isoformat()} plus the allowed "
                f"clock skew of {MAX_CLOCK_SKEW}: no server made it yet"
            )
    return value


def request_id_time(request_id: str) -> datetime | None:
    """When a UUIDv7 request id was made (UTC, clamped to ``datetime.max``); ``None`` for ``""`` or a non-id."""
    if not request_id or not _UUID7.match(request_id):
        return None
    unix_ms = int(request_id[:8] + request_id[9:13], 16)
    try:
        return _EPOCH + timedelta(milliseconds=unix_ms)
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC)


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


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
    # str(uuid.UUID(int=value)), spelled out: the UUID object cost a third of a new id.
    digits = f"{value:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


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
