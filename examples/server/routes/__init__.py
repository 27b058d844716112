"""The server's routes, one module per area; each lists its routes as data in ``ROUTES``.

Every handler takes the app's :class:`~examples.server.routes.context.AppContext` first: the
shared state is passed explicitly, never captured in a closure.
"""

from examples.server.routes import archives, catalog, docsets, dump, ops, page
from examples.server.routes.context import AppContext
from examples.server.routes.table import Route, install

__all__ = ["ROUTES", "AppContext", "Route", "install"]

ROUTES: tuple[Route, ...] = (
    *catalog.ROUTES,
    *docsets.ROUTES,
    *dump.ROUTES,
    *archives.ROUTES,
    *ops.ROUTES,
    *page.ROUTES,
)
"""Every route of the app, in registration order."""
