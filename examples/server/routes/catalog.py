"""The catalogue routes: the OpenAPI document, collections, documents and their full texts."""

from __future__ import annotations

import bottle

from examples.server import repo
from examples.server.responses import Collection, CollectionList
from examples.server.routes.access import authenticate, document_or_404
from examples.server.routes.context import AppContext
from examples.server.routes.table import Route
from examples.server.routes.views import document_json
from examples.server.web import json_response

__all__ = ["ROUTES"]


def openapi(ctx: AppContext) -> bottle.HTTPResponse:
    """``GET /api/openapi.json``: the API's description (no key needed)."""
    return json_response(ctx.openapi)


def collections(ctx: AppContext) -> bottle.HTTPResponse:
    """``GET /api/collections``: every collection."""
    with ctx.connection() as conn:
        authenticate(conn)
        rows = repo.list_collections(conn)
    return json_response(CollectionList(collections=[Collection.model_validate(dict(row)) for row in rows]))


def document(ctx: AppContext, document_id: int) -> bottle.HTTPResponse:
    """``GET /api/documents/<id>``: one document's metadata and links."""
    with ctx.connection() as conn:
        authenticate(conn)
        return json_response(document_json(ctx, document_or_404(conn, document_id)))


def document_text(ctx: AppContext, document_id: int) -> bottle.HTTPResponse:
    """``GET /api/documents/<id>/text``: one document's full text, as UTF-8 plain text."""
    with ctx.connection() as conn:
        authenticate(conn)
        document_or_404(conn, document_id)
        text = repo.get_document_text(conn, document_id) or ""
    return bottle.HTTPResponse(text.encode("utf-8"), headers={"Content-Type": "text/plain; charset=utf-8"})


ROUTES = (
    Route("GET", "/api/openapi.json", openapi),
    Route("GET", "/api/collections", collections),
    Route("GET", "/api/documents/<document_id:int>", document),
    Route("GET", "/api/documents/<document_id:int>/text", document_text),
)
