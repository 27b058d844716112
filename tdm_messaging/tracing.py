"""W3C trace context on messages (``traceparent``/``tracestate`` headers) and the Tracer interface the helpers call.

Rules
-----
1. A message carries its trace in two envelope headers, ``traceparent`` and ``tracestate``,
   spelled as in W3C Trace Context (HTTP headers of the same names). Transports carry them as
   they carry every application header (STOMP frame headers; AMQP application headers).
2. A ``traceparent`` that is not well formed is ignored, and ``tracestate`` with it (W3C: a
   receiver that cannot parse ``traceparent`` starts a new trace). A ``tracestate`` longer than
   512 characters is dropped.
3. The client's package request carries the trace of its request span (a child of whatever span
   is current, e.g. the HTTP request's). The worker's job span is a child of the request's trace,
   and every reply of the job carries the job span's trace. With no tracer installed the worker
   passes the request's trace on to its replies unchanged, so the chain is never broken.
4. A poll that re-sends a reply keeps the trace headers it was read with.

This module is pure; :mod:`tdm_messaging.otel` implements :class:`Tracer` over OpenTelemetry.
"""

from __future__ import annotations

import enum
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from tdm_messaging.envelope import Envelope
from tdm_messaging.headers import TRACEPARENT, TRACESTATE

__all__ = ["SpanKind", "SpanStart", "TraceContext", "Tracer", "trace_of", "with_trace"]

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_MAX_TRACESTATE_CHARS = 512


@dataclass(frozen=True, slots=True)
class TraceContext:
    """A W3C trace context: where a message sits in a distributed trace.

    Attributes:
        traceparent: ``version-traceid-parentid-flags``, e.g.
            ``00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01``.
        tracestate: vendor entries (may be empty).
    """

    traceparent: str
    tracestate: str = ""

    @classmethod
    def parse(cls, traceparent: str | None, tracestate: str | None = None) -> TraceContext | None:
        """A context from the two header values, or ``None`` when ``traceparent`` is absent or malformed.

        Version ``ff`` and all-zero trace or parent ids are invalid (W3C); a version above ``00``
        may carry more fields after the four known ones, which are kept.
        """
        if traceparent is None:
            return None
        value = traceparent.strip()  # lower-case hex only: W3C tells receivers to ignore anything else
        match = _TRACEPARENT.fullmatch(value)
        if match is None:
            return None
        version, trace_id, parent_id, _flags, rest = match.groups()
        if version == "ff" or trace_id == "0" * 32 or parent_id == "0" * 16 or (version == "00" and rest):
            return None
        state = (tracestate or "").strip()
        return cls(value, state if len(state) <= _MAX_TRACESTATE_CHARS else "")

    @property
    def trace_id(self) -> str:
        """The 32 hex digits that every span of the trace shares."""
        return self.traceparent.split("-")[1]

    @property
    def parent_id(self) -> str:
        """The 16 hex digits of the span that sent it."""
        return self.traceparent.split("-")[2]

    def headers(self) -> dict[str, str]:
        """The envelope (or HTTP) headers that carry it."""
        headers = {TRACEPARENT: self.traceparent}
        if self.tracestate:
            headers[TRACESTATE] = self.tracestate
        return headers


def trace_of(headers: Mapping[str, str]) -> TraceContext | None:
    """The trace context in ``headers`` (an envelope's, names lower-case), or ``None``."""
    return TraceContext.parse(headers.get(TRACEPARENT), headers.get(TRACESTATE))


def with_trace(envelope: Envelope, trace: TraceContext | None) -> Envelope:
    """``envelope`` carrying ``trace`` (any trace headers it had are replaced); unchanged when ``trace`` is None."""
    if trace is None:
        return envelope
    headers = {k: v for k, v in envelope.headers.items() if k not in (TRACEPARENT, TRACESTATE)}
    headers.update(trace.headers())
    return replace(envelope, headers=MappingProxyType(headers))


class SpanKind(enum.Enum):
    """What a span does, as OpenTelemetry names it."""

    INTERNAL = "internal"
    SERVER = "server"
    CLIENT = "client"
    PRODUCER = "producer"
    CONSUMER = "consumer"


@dataclass(frozen=True, slots=True)
class SpanStart:
    """What a helper asks a :class:`Tracer` to open.

    Attributes:
        name: e.g. ``"tdm.request_package"``, ``"tdm.job"``, ``"tdm.poll"``.
        kind: producer (sends a request), consumer (runs a job), client (a poll), server (an
            HTTP request an app serves).
        parent: the trace to continue (a job continues its request's); ``None``: the current one.
        attributes: what the span is about, e.g. ``{"tdm.docset_id": "5"}``.
    """

    name: str
    kind: SpanKind
    parent: TraceContext | None = None
    attributes: Mapping[str, str | int] = field(default_factory=dict)


class Tracer(ABC):
    """Opens spans for the helpers; :class:`~tdm_messaging.otel.OpenTelemetryTracer` is one."""

    @abstractmethod
    def span(self, start: SpanStart) -> AbstractContextManager[TraceContext | None]:
        """Open a span for the ``with`` block; yield the context that messages sent within it carry.

        The span ends when the block does; an exception leaving the block marks it as an error.
        Yielding ``None`` sends messages without trace headers.
        """
