"""The operator routes: ``/healthz`` (process up), ``/readyz`` (database and broker answer, bounded), ``/metrics``."""

from __future__ import annotations

import threading
from collections.abc import Callable

import bottle

from examples.server.routes.context import AppContext
from examples.server.routes.table import Route
from examples.server.web import json_response

__all__ = ["READY_TIMEOUT_SECONDS", "ROUTES", "bounded_check"]

READY_TIMEOUT_SECONDS = 2.0
"""How long each readiness check may take before it counts as failed."""

_running: dict[str, threading.Thread] = {}
_running_lock = threading.Lock()


def bounded_check(name: str, check: Callable[[], None], timeout: float) -> str | None:
    """Run ``check`` in a thread for at most ``timeout`` seconds; ``None`` if it passed, else why not.

    A check still running from an earlier probe is not started again (a hung broker must not
    pile up threads): the probe fails at once, saying so.
    """
    with _running_lock:
        earlier = _running.get(name)
        if earlier is not None and earlier.is_alive():
            return f"an earlier check has not answered for over {timeout:g} s"
        outcome: list[str | None] = []

        def run() -> None:
            try:
                check()
            except Exception as exc:
                outcome.append(f"{type(exc).__name__}: {exc}")
            else:
                outcome.append(None)

        thread = threading.Thread(target=run, name=f"readyz-{name}", daemon=True)
        _running[name] = thread
        thread.start()
    thread.join(timeout)
    if not outcome:
        return f"no answer within {timeout:g} s"
    return outcome[0]


def healthz(ctx: AppContext) -> bottle.HTTPResponse:
    """``GET /healthz``: 200 while the process serves requests (no key, touches nothing)."""
    return json_response({"status": "ok"})


def readyz(ctx: AppContext) -> bottle.HTTPResponse:
    """``GET /readyz``: 200 when the database and the broker both answer within the bound, else 503 saying which."""

    def database() -> None:
        with ctx.connection() as conn:
            conn.execute("SELECT 1").fetchone()

    checks = {
        "database": bounded_check("database", database, READY_TIMEOUT_SECONDS),
        "broker": bounded_check("broker", ctx.dumps.probe_broker, READY_TIMEOUT_SECONDS),
    }
    ready = all(problem is None for problem in checks.values())
    body = {
        "status": "ready" if ready else "not_ready",
        "checks": {name: "ok" if problem is None else problem for name, problem in checks.items()},
    }
    return json_response(body, 200 if ready else 503)


def metrics(ctx: AppContext) -> bottle.HTTPResponse:
    """``GET /metrics``: the Prometheus exposition of the dump client's metrics (404 without prometheus_client)."""
    if ctx.metrics is None:
        return json_response(
            {"error": {"code": "not_found", "message": "metrics need prometheus_client (the [metrics] extra)"}}, 404
        )
    body, content_type = ctx.metrics.exposition()
    return bottle.HTTPResponse(body, status=200, headers={"Content-Type": content_type, "Cache-Control": "no-store"})


ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", healthz),
    Route("GET", "/readyz", readyz),
    Route("GET", "/metrics", metrics),
)
