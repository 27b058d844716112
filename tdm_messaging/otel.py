"""The Tracer over OpenTelemetry (``opentelemetry-api``, imported when one is made): spans and W3C propagation."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tdm_messaging.errors import ConfigurationError
from tdm_messaging.tracing import SpanStart, TraceContext, Tracer

__all__ = ["OpenTelemetryTracer"]


class OpenTelemetryTracer(Tracer):
    """Opens OpenTelemetry spans for the helpers, and carries them on messages as W3C trace context.

    A span continues ``SpanStart.parent`` when given (a job continues its request's trace), else
    the current span (a package request is a child of the HTTP request being served). With the
    API alone (no SDK configured) spans are not recorded and messages carry no new trace.

    Args:
        tracer_provider: the provider to take a tracer from; default the global one
            (``opentelemetry.trace.set_tracer_provider``).
        name: the instrumentation scope's name.

    Raises:
        ConfigurationError: ``opentelemetry-api`` is not installed (the message says how to install it).
    """

    def __init__(self, *, tracer_provider: Any = None, name: str = "tdm_messaging") -> None:
        try:
            trace = importlib.import_module("opentelemetry.trace")
            tracecontext = importlib.import_module("opentelemetry.trace.propagation.tracecontext")
        except ImportError as exc:
            raise ConfigurationError("tracing needs opentelemetry-api: pip install 'tdm-messaging[tracing]'") from exc
        self._trace = trace
        self._tracer = trace.get_tracer(name, tracer_provider=tracer_provider)
        self._propagator = tracecontext.TraceContextTextMapPropagator()

    @contextmanager
    def span(self, start: SpanStart) -> Iterator[TraceContext | None]:
        context = None if start.parent is None else self._propagator.extract(start.parent.headers())
        kind = getattr(self._trace.SpanKind, start.kind.name)
        with self._tracer.start_as_current_span(
            start.name, context=context, kind=kind, attributes=dict(start.attributes)
        ):
            carrier: dict[str, str] = {}
            self._propagator.inject(carrier)  # the current span, just opened
            yield TraceContext.parse(carrier.get("traceparent"), carrier.get("tracestate"))
