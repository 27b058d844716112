"""A route table as data: each route module lists its routes, and :func:`install` registers them on the app."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import bottle

from examples.server.routes.access import MAX_SQLITE_INT
from examples.server.routes.context import AppContext
from examples.server.web import ApiError

__all__ = ["Handler", "Route", "install"]

Handler = Callable[..., bottle.HTTPResponse]
"""A route's function: the :class:`AppContext` first, then the path's parts by name."""


@dataclass(frozen=True)
class Route:
    """One endpoint: ``method path`` answered by ``handler(ctx, **path_parts)``."""

    method: str
    path: str
    handler: Handler


def install(app: bottle.Bottle, ctx: AppContext, routes: Iterable[Route]) -> None:
    """Register ``routes`` on ``app``, each handler given ``ctx``.

    ``<x:int>`` path parts reach SQLite, whose INTEGER is 64-bit, so a larger (or negative) id
    is answered 404 before the handler runs.
    """
    for route in routes:
        app.route(route.path, method=route.method, callback=_bound(ctx, route.handler))


def _bound(ctx: AppContext, handler: Handler) -> Callable[..., Any]:
    @functools.wraps(handler)
    def callback(**parts: Any) -> Any:
        for name, value in parts.items():
            if isinstance(value, int) and not 0 <= value <= MAX_SQLITE_INT:
                raise ApiError(404, "not_found", f"{name.replace('_', ' ')} {value} does not exist")
        return handler(ctx, **parts)

    return callback
