"""What operators see of a packager: an HTTP listener for /healthz, /readyz and /metrics; the metrics and the tracer."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tdm_messaging import (
    ConfigurationError,
    HealthReport,
    OpenTelemetryTracer,
    PrometheusObserver,
    Tracer,
    WorkerHealth,
)

__all__ = ["OpsListener", "prometheus_or_none", "tracer_or_none"]

log = logging.getLogger(__name__)


class OpsListener:
    """Answers probes and scrapes from a thread of its own while the worker runs.

    - ``GET /healthz``: 200 while the worker's loop runs and no job hangs (liveness), else 503;
      the body is the :class:`~tdm_messaging.HealthReport` as JSON (state, since when, the running
      job's start, the last job's end).
    - ``GET /readyz``: 200 while the worker is consuming (its broker answers), else 503.
    - ``GET /metrics``: the Prometheus exposition (404 when ``prometheus_client`` is not installed).

    Args:
        host: the address to listen on (``0.0.0.0`` for probes from outside the machine).
        port: the port (0: any free one; :attr:`port` says which).
        health: the worker's health, kept by the worker's observer.
        metrics: the metrics to serve, or ``None``.

    Raises:
        OSError: the address cannot be bound.
    """

    def __init__(self, *, host: str, port: int, health: WorkerHealth, metrics: PrometheusObserver | None) -> None:
        handler = _handler_class(health.report, metrics)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="ops-http", daemon=True)

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Start answering (in a daemon thread)."""
        self._thread.start()

    def close(self) -> None:
        """Stop answering and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler_class(
    report: Callable[[], HealthReport], metrics: PrometheusObserver | None
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "tdm-packager"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/healthz", "/readyz"):
                now = report()
                ok = now.live if path == "/healthz" else now.ready
                self._send(200 if ok else 503, json.dumps(now.as_json()).encode(), "application/json")
            elif path == "/metrics" and metrics is not None:
                body, content_type = metrics.exposition()
                self._send(200, body, content_type)
            else:
                self._send(404, b'{"error": "not found: try /healthz, /readyz or /metrics"}', "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("ops http: " + format, *args)

    return Handler


def prometheus_or_none() -> PrometheusObserver | None:
    """Metrics when ``prometheus_client`` is installed (the ``[metrics]`` extra); without it, none."""
    try:
        return PrometheusObserver()
    except ConfigurationError:
        log.info("prometheus_client is not installed: no /metrics (pip install 'tdm-messaging[metrics]')")
        return None


def tracer_or_none() -> Tracer | None:
    """Spans when ``opentelemetry-api`` is installed; they are recorded where an SDK is configured
    (e.g. under ``opentelemetry-instrument``), and messages carry W3C trace context either way."""
    try:
        return OpenTelemetryTracer()
    except ConfigurationError:
        return None
