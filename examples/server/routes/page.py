"""The miner's page: one static HTML file, its script and its stylesheet, under a strict Content-Security-Policy."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import bottle

from examples.server.routes.context import AppContext
from examples.server.routes.table import Route

__all__ = ["CONTENT_SECURITY_POLICY", "ROUTES", "STATIC_DIR"]

STATIC_DIR: Final = Path(__file__).resolve().parent.parent / "static"
"""Where the page's files live (``examples/server/static``)."""

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
"""No inline script or style, nothing fetched from elsewhere (``data:`` images: the empty icon); links go anywhere."""

_FILES: Final = {
    "miner.html": "text/html; charset=utf-8",
    "miner.js": "text/javascript; charset=utf-8",
    "miner.css": "text/css; charset=utf-8",
}


def _static(name: str) -> bottle.HTTPResponse:
    # Read on each request (three small files): an edited page shows on reload, no restart.
    body = (STATIC_DIR / name).read_bytes()
    headers = {
        "Content-Type": _FILES[name],
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }
    return bottle.HTTPResponse(body, status=200, headers=headers)


def page(ctx: AppContext) -> bottle.HTTPResponse:
    """``GET /miner``: the page (no key: the miner types it in; the page sends it as ``X-API-Key``)."""
    return _static("miner.html")


def script(ctx: AppContext) -> bottle.HTTPResponse:
    """``GET /miner/miner.js``: the page's script."""
    return _static("miner.js")


def stylesheet(ctx: AppContext) -> bottle.HTTPResponse:
    """``GET /miner/miner.css``: the page's stylesheet."""
    return _static("miner.css")


ROUTES: tuple[Route, ...] = (
    Route("GET", "/miner", page),
    Route("GET", "/miner/miner.js", script),
    Route("GET", "/miner/miner.css", stylesheet),
)
