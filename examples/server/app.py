"""The reference TDM API server as a Bottle app: ``create_app(settings)`` builds it, waitress serves it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import bottle

from examples.server import repo
from examples.server.db import Database
from examples.server.dumps import DumpService, TransportPool, pool_for_url
from examples.server.observability import prometheus_or_none, tracer_or_none, tracing_plugin
from examples.server.openapi import build_openapi
from examples.server.routes import ROUTES, AppContext, install
from examples.server.settings import Settings
from examples.server.web import default_error_handler, json_errors_plugin
from tdm_messaging import PrometheusObserver, Tracer, Transport, validate_docset_id

__all__ = ["create_app"]


_DEFAULT: Any = object()


def create_app(
    settings: Settings,
    *,
    transport_factory: Callable[[], Transport] | None = None,
    metrics: PrometheusObserver | None = _DEFAULT,
    tracer: Tracer | None = _DEFAULT,
) -> bottle.Bottle:
    """Build the app: open the database (applying migrations), provision ``settings.api_keys``,
    and install the routes of :mod:`examples.server.routes`.

    Args:
        settings: see :class:`~examples.server.settings.Settings`.
        transport_factory: opens a transport (tests pass an in-memory one); by default
            :func:`tdm_messaging.transport.open_transport` on ``settings.broker_url``, opened lazily
            on the first dump request, so the API works while the broker is down.
        metrics: the dump client's metrics, served on ``/metrics``; by default a new
            :class:`~tdm_messaging.PrometheusObserver` when ``prometheus_client`` is installed.
        tracer: opens a span per HTTP request and per request/poll of the broker; by default an
            :class:`~tdm_messaging.OpenTelemetryTracer` when ``opentelemetry-api`` is installed.

    Returns:
        The WSGI app. ``app.config["tdm.db"]`` is the :class:`Database`; call
        ``app.config["tdm.close"]()`` to release transports on shutdown.

    Raises:
        DatabaseError: the database URL is wrong or the file cannot be opened.
        InvalidDestinationError: ``settings.queue_prefix`` cannot start a docset id.
    """
    validate_docset_id(settings.queue_prefix + "1")
    db = Database(settings.db_url)
    db.migrate()
    with db.connect() as conn:
        for spec in settings.keys_to_provision:
            repo.upsert_api_key(conn, owner=spec.owner, key=spec.key, role=spec.role)
    if transport_factory is not None:
        pool = TransportPool(transport_factory, max_idle=settings.threads)
    else:
        pool = pool_for_url(settings.broker_url, max_idle=settings.threads)
    metrics = prometheus_or_none() if metrics is _DEFAULT else metrics
    tracer = tracer_or_none() if tracer is _DEFAULT else tracer
    ctx = AppContext(
        settings=settings,
        db=db,
        dumps=DumpService(pool, observer=metrics, tracer=tracer),
        metrics=metrics,
        openapi=build_openapi(),
        archive_root=settings.archive_dir.resolve(),
        searches=threading.BoundedSemaphore(max(1, settings.max_concurrent_searches)),
    )
    app = bottle.Bottle(catchall=True)
    app.default_error_handler = default_error_handler
    app.install(json_errors_plugin)
    if tracer is not None:
        app.install(tracing_plugin(tracer))  # inside json_errors_plugin: an error leaving a route marks its span
    app.config["tdm.db"] = db
    app.config["tdm.close"] = pool.close
    install(app, ctx, ROUTES)
    return app
