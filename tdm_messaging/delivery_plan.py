"""What the worker does with one delivery: run it, retry it, give up on it, dead-letter it, or drop a known refusal.

Rules
-----
1. A request that cannot be decoded (or is too large), or that is not the kind its queue carries
   (``docsets/package`` carries PackageRequests, ``docsets/delete`` DeleteRequests), is
   dead-lettered at once with the reason: redelivering it would fail the same way forever.
2. A request this worker already dead-lettered because the broker refused a reply comes back
   when the refusal also cost its acknowledgement (RabbitMQ closes the connection): recognised
   by its :class:`RefusalKey`, it is acknowledged and nothing else is done.
3. Anything else runs, as attempt ``tdm-attempt`` (1 when absent or not a positive integer),
   its replies numbered from ``tdm-next-sequence`` (likewise 1).
4. A run that raised (other than the handler's own ``JobFailed``) is retried while
   ``attempt < max_attempts``: after a pause of ``backoff * 2 ** (attempt - 1)`` seconds, at most
   30, a copy goes back to its queue with the attempt raised by one and (package requests) the
   next reply's sequence number. On the last attempt the worker gives up: ``Failed(retryable=True)``
   for a package request, then the request is dead-lettered with the reason.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from tdm_messaging.codec import DecodeContext, decode
from tdm_messaging.destinations import PACKAGE_REQUESTS, Destination
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import DecodeError
from tdm_messaging.headers import ATTEMPT, NEXT_SEQUENCE
from tdm_messaging.models import MAX_COUNT, DeleteRequest, PackageRequest

__all__ = [
    "MAX_RETRY_DELAY_SECONDS",
    "AcknowledgeRefused",
    "DeadLetterIt",
    "DeliveryPlan",
    "FailurePlan",
    "GiveUp",
    "RefusalKey",
    "Refusals",
    "Retry",
    "Run",
    "plan_delivery",
    "plan_failure",
    "positive_int_header",
    "retry_delay",
]

MAX_RETRY_DELAY_SECONDS = 30.0
"""The longest pause before a retry is re-sent."""

RefusalKey = tuple[str, ...]
"""What identifies one delivery's request, redelivered or not (seed requests share the empty request id)."""


@dataclass(frozen=True, slots=True)
class Run:
    """Run the job: ``request`` as attempt ``attempt``, its replies numbered from ``next_sequence``."""

    request: PackageRequest | DeleteRequest
    attempt: int
    next_sequence: int
    refusal_key: RefusalKey


@dataclass(frozen=True, slots=True)
class DeadLetterIt:
    """Park the delivery on ``docsets/dead-letter`` with ``reason``, then acknowledge it."""

    reason: str


@dataclass(frozen=True, slots=True)
class AcknowledgeRefused:
    """Acknowledge the delivery and do nothing else: it was dead-lettered already for a refused reply."""

    request: PackageRequest | DeleteRequest


DeliveryPlan = Run | DeadLetterIt | AcknowledgeRefused


@dataclass(frozen=True, slots=True)
class Retry:
    """Pause ``delay_seconds``, then send ``envelope`` (the request with raised attempt headers) to its queue."""

    delay_seconds: float
    envelope: Envelope


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Report ``Failed(reason, retryable=True)`` (package requests), then dead-letter the delivery with ``reason``."""

    reason: str


FailurePlan = Retry | GiveUp


class Refusals:
    """The requests dead-lettered for a refused reply, the newest ``capacity`` of them (oldest forgotten first).

    Args:
        capacity: how many to remember (at least 1).
    """

    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = max(1, capacity)
        self._keys: OrderedDict[RefusalKey, None] = OrderedDict()

    def remember(self, key: RefusalKey) -> None:
        """Note ``key``; forget the oldest beyond the capacity."""
        self._keys[key] = None
        while len(self._keys) > self._capacity:
            self._keys.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)


_ASCII_DIGITS = re.compile(r"[0-9]{1,19}")
_MAX_HEADER_COUNT = MAX_COUNT // 2


def positive_int_header(envelope: Envelope, name: str) -> int:
    """Header ``name`` as a positive integer; 1 when it is absent, not 1-19 ASCII digits, or out of range.

    Never raises: the header comes from whoever wrote to the queue, and its value becomes a reply's
    sequence number, which :data:`~tdm_messaging.models.MAX_COUNT` bounds: half of it leaves a job room for
    its replies.
    """
    raw = envelope.header(name)
    if raw is None or not _ASCII_DIGITS.fullmatch(raw):
        return 1
    value = int(raw)
    return value if 1 <= value <= _MAX_HEADER_COUNT else 1


def refusal_key(source: Destination, request: PackageRequest | DeleteRequest, attempt: int, body: bytes) -> RefusalKey:
    """The :data:`RefusalKey` of a delivery: its queue, docset, request id, attempt and body digest."""
    digest = hashlib.sha256(body).hexdigest()
    return (source.name, request.docset_id, request.request_id, str(attempt), digest)


def plan_delivery(
    envelope: Envelope,
    *,
    source: Destination,
    now: datetime,
    max_body_bytes: int,
    refused: Refusals,
) -> DeliveryPlan:
    """Decide what to do with a delivered request before any work (pure; rules 1 to 3 of the module).

    Args:
        envelope: the delivery's envelope.
        source: the queue it came from.
        now: "now", timezone-aware: dates text requests that carry no time.
        max_body_bytes: larger bodies are dead-lettered unread.
        refused: the requests already dead-lettered for a refused reply.

    Returns:
        :class:`Run`, :class:`DeadLetterIt` or :class:`AcknowledgeRefused`.
    """
    try:
        message = decode(envelope, context=DecodeContext(received_at=now), max_body_bytes=max_body_bytes)
    except DecodeError as exc:
        return DeadLetterIt(f"undecodable request: {exc}")
    expected = PackageRequest if source == PACKAGE_REQUESTS else DeleteRequest
    if not isinstance(message, expected):
        return DeadLetterIt(f"expected a {expected.__name__} on {source.name}, got {message.type}")
    assert isinstance(message, PackageRequest | DeleteRequest)
    attempt = positive_int_header(envelope, ATTEMPT)
    key = refusal_key(source, message, attempt, envelope.body)
    if key in refused:
        return AcknowledgeRefused(message)
    return Run(message, attempt, positive_int_header(envelope, NEXT_SEQUENCE), key)


def retry_delay(attempt: int, backoff_seconds: float) -> float:
    """The pause before attempt ``attempt + 1`` is re-sent: ``backoff * 2 ** (attempt - 1)``, at most 30 s."""
    # The exponent is capped so a huge attempt number gives the cap, not an OverflowError.
    delay = backoff_seconds * 2.0 ** min(attempt - 1, 1000)
    return min(MAX_RETRY_DELAY_SECONDS, delay)


def plan_failure(
    envelope: Envelope,
    *,
    attempt: int,
    max_attempts: int,
    backoff_seconds: float,
    next_sequence: int | None,
    error: str,
) -> FailurePlan:
    """Decide what follows a run that raised (pure; rule 4 of the module).

    Args:
        envelope: the delivery's envelope.
        attempt: the attempt that failed.
        max_attempts: deliveries of one request before giving up.
        backoff_seconds: the base of the pause before a retry.
        next_sequence: the sequence number the next reply takes (``None``: no replies are
            numbered, as for a delete, and the header is not written).
        error: what went wrong, one line, e.g. ``"OSError: upload refused"``.

    Returns:
        :class:`Retry` or :class:`GiveUp`.
    """
    if attempt < max_attempts:
        headers = dict(envelope.headers)
        headers[ATTEMPT] = str(attempt + 1)
        if next_sequence is not None:
            headers[NEXT_SEQUENCE] = str(next_sequence)
        again = Envelope(envelope.body, envelope.content_type, headers)
        return Retry(retry_delay(attempt, backoff_seconds), again)
    return GiveUp(f"gave up after {attempt} attempts; last error: {error}")
