"""Every header the library writes or reads (``tdm-*``, W3C trace context), in one table: who sets it, what it means."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "ATTEMPT",
    "DEAD_LETTER_QUEUE",
    "DEAD_LETTER_REASON",
    "DECLARE_PROBE",
    "DOCSET_ID",
    "EXPIRES_AT",
    "FORMATS",
    "HEADERS",
    "NEXT_SEQUENCE",
    "PROTOCOL_VERSION",
    "READ_MARKER",
    "READ_MARKER_AT",
    "REQUESTED_AT",
    "REPLY_TO",
    "REQUEST_ID",
    "SEQUENCE",
    "TIMESTAMP",
    "TRACEPARENT",
    "TRACESTATE",
    "TYPE",
    "Header",
]

# Message headers: the codec writes them on every message (text/plain bodies are read from them too).
TYPE: Final = "tdm-type"
PROTOCOL_VERSION: Final = "tdm-protocol-version"
DOCSET_ID: Final = "tdm-docset-id"
REQUEST_ID: Final = "tdm-request-id"
SEQUENCE: Final = "tdm-sequence"
TIMESTAMP: Final = "tdm-timestamp"
REQUESTED_AT: Final = "tdm-requested-at"
FORMATS: Final = "tdm-formats"
REPLY_TO: Final = "tdm-reply-to"
# Worker headers: on a request the worker re-sends for a retry.
ATTEMPT: Final = "tdm-attempt"
NEXT_SEQUENCE: Final = "tdm-next-sequence"
# Dead-letter headers: on an envelope parked on docsets/dead-letter.
DEAD_LETTER_REASON: Final = "tdm-dead-letter-reason"
DEAD_LETTER_QUEUE: Final = "tdm-dead-letter-queue"
# Transport headers: written and consumed by one backend, never seen by the protocol core.
EXPIRES_AT: Final = "tdm-expires-at"
READ_MARKER: Final = "tdm-read-marker"
READ_MARKER_AT: Final = "tdm-read-marker-at"
DECLARE_PROBE: Final = "tdm-declare-probe"
# Trace headers (W3C Trace Context, spelled as the HTTP headers are): the only names without tdm-.
TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"


@dataclass(frozen=True, slots=True)
class Header:
    """One row of :data:`HEADERS`.

    Attributes:
        name: the header's name on the wire.
        set_by: the module that writes it (readers are documented in ``meaning``).
        meaning: what its value says.
    """

    name: str
    set_by: str
    meaning: str


HEADERS: Final[tuple[Header, ...]] = (
    Header(TYPE, "codec", "the message's type, e.g. 'accepted'; text/plain bodies must agree with it"),
    Header(PROTOCOL_VERSION, "codec", "the protocol version the message was written in, e.g. '1.0'"),
    Header(DOCSET_ID, "codec", "the docset the message is about"),
    Header(REQUEST_ID, "codec", "the request the message answers ('' for a seed peer's reply)"),
    Header(SEQUENCE, "codec", "the message's sequence number within its request, a non-negative integer"),
    Header(TIMESTAMP, "codec", "when the message was made, ISO 8601 (text/plain only; JSON carries it in the body)"),
    Header(REQUESTED_AT, "codec", "package requests in text/plain: requested_at, ISO 8601"),
    Header(FORMATS, "codec", "package requests in text/plain: the formats, comma-separated (may be empty)"),
    Header(REPLY_TO, "codec", "package requests in text/plain: reply_to, the reply queue's full (namespaced) name"),
    Header(ATTEMPT, "worker", "a re-sent request: which attempt its next delivery is (1 when absent)"),
    Header(
        NEXT_SEQUENCE, "worker", "a re-sent request: the sequence number of its next reply, so attempts never reuse one"
    ),
    Header(DEAD_LETTER_REASON, "dead_letter", "a dead-lettered envelope: why it could not be used (one line)"),
    Header(DEAD_LETTER_QUEUE, "dead_letter", "a dead-lettered envelope: the queue it was taken from"),
    Header(
        EXPIRES_AT,
        "transport.expiry",
        "a reply on a backend without queue expiry: its absolute expiry, Unix epoch ms (dropped on read once past)",
    ),
    Header(READ_MARKER, "transport (STOMP)", "a marker message: the read that sent it, which stops at it"),
    Header(READ_MARKER_AT, "transport (STOMP)", "a marker message: when it was first sent, Unix epoch ms"),
    Header(DECLARE_PROBE, "transport (STOMP)", "the empty message a RabbitMQ declare sends; readers drop it"),
    Header(
        TRACEPARENT,
        "server, worker (tracing)",
        "W3C traceparent: the trace a request belongs to; its replies carry the job's (see tracing.py)",
    ),
    Header(TRACESTATE, "server, worker (tracing)", "W3C tracestate: vendor entries travelling with traceparent"),
)
"""The table: every header, each once (a test pins that the constants and the rows agree)."""
