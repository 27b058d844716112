"""The state every route shares, as one explicit value: settings, database, dump service, and request helpers."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import bottle
from pydantic import BaseModel

from examples.server.db import Database
from examples.server.dumps import DumpService
from examples.server.settings import Settings
from examples.server.web import ApiError, read_json_body
from tdm_messaging import PrometheusObserver

__all__ = ["AppContext"]

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class AppContext:
    """What the routes of one app share; built once by :func:`~examples.server.app.create_app`.

    Attributes:
        settings: the server's settings.
        db: the database (migrated).
        dumps: the dump endpoints' messaging.
        openapi: the OpenAPI document served at ``/api/openapi.json``.
        archive_root: the resolved directory served under ``/archives/``.
        searches: how many full-text searches may run at once (``settings.max_concurrent_searches``).
        metrics: the dump client's metrics served on ``/metrics`` (``None`` without prometheus_client).
    """

    settings: Settings
    db: Database
    dumps: DumpService
    openapi: dict[str, Any]
    archive_root: Path
    searches: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(2))
    metrics: PrometheusObserver | None = None

    @contextmanager
    def search_slot(self) -> Iterator[None]:
        """Hold one of the search slots for the block, waiting at most one search timeout.

        Raises:
            ApiError: 503 with ``Retry-After`` when every slot stays taken.
        """
        if not self.searches.acquire(timeout=self.settings.search_timeout_seconds):
            raise ApiError(
                503,
                "search_busy",
                f"{self.settings.max_concurrent_searches} full-text searches are running; retry shortly",
                headers={"Retry-After": "2"},
            )
        try:
            yield
        finally:
            self.searches.release()

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """A database connection for the current request (one transaction)."""
        with self.db.connect() as conn:
            yield conn

    def base_url(self) -> str:
        """The public base URL: ``settings.public_url`` if set, else the scheme and host the request came to."""
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/")
        parts = bottle.request.urlparts
        return f"{parts.scheme}://{parts.netloc}"

    def page_link(self, path: str, **params: object) -> str:
        """The absolute URL of ``path`` with the query ``params`` that are not ``None``."""
        return f"{self.base_url()}{path}?{urlencode({k: v for k, v in params.items() if v is not None})}"

    def read_body(self, model: type[M]) -> M:
        """The request's JSON body validated into ``model`` (see :func:`~examples.server.web.read_json_body`).

        Raises:
            ApiError: 400, 413, 415 or 422, as ``read_json_body`` says.
        """
        return read_json_body(model, self.settings.max_body_bytes)

    def messaging_id(self, docset_id: int) -> str:
        """The docset's id on the broker: ``settings.queue_prefix`` then the id."""
        return f"{self.settings.queue_prefix}{docset_id}"
