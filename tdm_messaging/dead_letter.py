"""Dead letters: the envelope parked on ``docsets/dead-letter``, with the two headers saying why and whence."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tdm_messaging.destinations import DEAD_LETTER, Destination
from tdm_messaging.envelope import Envelope
from tdm_messaging.headers import DEAD_LETTER_QUEUE, DEAD_LETTER_REASON

if TYPE_CHECKING:  # the send only needs something with send(); the core imports no transport
    from tdm_messaging.transport.base import Transport

__all__ = ["MAX_REASON_CHARS", "dead_letter", "dead_lettered"]

MAX_REASON_CHARS = 1000
"""Longest reason header kept: headers travel in STOMP frames and AMQP properties, so they stay short."""


def dead_lettered(envelope: Envelope, *, source: Destination, reason: str) -> Envelope:
    """``envelope`` as it is parked: unchanged but for the reason and source-queue headers (pure).

    Args:
        envelope: the envelope that could not be used.
        source: the queue it was read from (header ``tdm-dead-letter-queue``).
        reason: why (header ``tdm-dead-letter-reason``; made one line, cut to 1,000 characters).

    Returns:
        A new envelope, same body and content type.
    """
    one_line = " ".join(reason.split())[:MAX_REASON_CHARS] or "no reason given"
    headers = dict(envelope.headers)
    headers[DEAD_LETTER_REASON] = one_line
    headers[DEAD_LETTER_QUEUE] = source.name
    return Envelope(envelope.body, envelope.content_type, headers)


def dead_letter(transport: Transport, envelope: Envelope, *, source: Destination, reason: str) -> None:
    """Park ``envelope`` on ``docsets/dead-letter`` (see :func:`dead_lettered`), confirmed.

    Args:
        transport: where to send it.
        envelope: the envelope that could not be used.
        source: the queue it was read from.
        reason: why.

    Raises:
        TransportError: the send failed; the caller must then not acknowledge the original.
    """
    transport.send(DEAD_LETTER, dead_lettered(envelope, source=source, reason=reason), confirm=True)
