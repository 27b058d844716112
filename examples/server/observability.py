"""The server's metrics and tracing: Prometheus and OpenTelemetry when installed, and a span per HTTP request."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import bottle

from tdm_messaging import (
    ConfigurationError,
    OpenTelemetryTracer,
    PrometheusObserver,
    SpanKind,
    SpanStart,
    TraceContext,
    Tracer,
)

__all__ = ["prometheus_or_none", "tracer_or_none", "tracing_plugin"]

log = logging.getLogger(__name__)


def prometheus_or_none() -> PrometheusObserver | None:
    """Metrics when ``prometheus_client`` is installed (the ``[metrics]`` extra); without it, none."""
    try:
        return PrometheusObserver()
    except ConfigurationError:
        log.info("prometheus_client is not installed: /metrics answers 404 (pip install 'tdm-messaging[metrics]')")
        return None


def tracer_or_none() -> Tracer | None:
    """Spans when ``opentelemetry-api`` is installed; recorded where an SDK is configured (e.g. under
    ``opentelemetry-instrument``), and package requests carry W3C trace context either way."""
    try:
        return OpenTelemetryTracer()
    except ConfigurationError:
        return None


def tracing_plugin(tracer: Tracer) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A Bottle plugin: each request runs in a server span named ``METHOD /route/<rule>``, continuing
    the caller's trace when the request carries a ``traceparent`` header (W3C Trace Context)."""

    def plugin(callback: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(callback)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            request = bottle.request
            parent = TraceContext.parse(request.get_header("traceparent"), request.get_header("tracestate"))
            route = request.route.rule if request.route is not None else request.path
            start = SpanStart(f"{request.method} {route}", SpanKind.SERVER, parent=parent)
            with tracer.span(start):
                return callback(*args, **kwargs)

        return wrapper

    return plugin
