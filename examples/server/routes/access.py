"""Who may do what: the API key check, and finding a docset or document the caller may see."""

from __future__ import annotations

import sqlite3
from typing import Final

import bottle

from examples.server import repo
from examples.server.repo import Caller
from examples.server.routes.context import AppContext
from examples.server.web import ApiError

__all__ = ["MAX_SQLITE_INT", "authenticate", "docset_row", "document_or_404", "owned"]

MAX_SQLITE_INT: Final = (1 << 63) - 1
"""SQLite's INTEGER is 64-bit: an id above this can name no row."""


def _api_key(challenge: dict[str, str]) -> str | None:
    """The ``X-API-Key`` header as text, or ``None`` when absent.

    WSGI hands header values over as latin-1 strings of the raw bytes; Bottle's own
    ``get_header`` re-decodes them as UTF-8 and raises on a stray byte such as 0xFF, so the
    environ is read here.

    Raises:
        ApiError: 401 ``invalid_api_key`` when the header's bytes are not UTF-8 (no key is).
    """
    raw = bottle.request.environ.get("HTTP_X_API_KEY")
    if raw is None:
        return None
    try:
        return str(raw).encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise ApiError(
            401, "invalid_api_key", "the X-API-Key header is not UTF-8 text, so it is no key", headers=challenge
        ) from None


def authenticate(conn: sqlite3.Connection, *, write: bool = False) -> Caller:
    """The caller named by the request's ``X-API-Key`` header.

    Args:
        conn: the connection.
        write: the request changes something (creates, patches, deletes, requests a dump);
            the packager's key is read-only and is refused.

    Raises:
        ApiError: 401 (with a ``WWW-Authenticate`` challenge) when the key is missing, unknown
            or not UTF-8; 403 ``read_only_key`` for a write with the packager's key.
    """
    challenge = {"WWW-Authenticate": 'ApiKey header="X-API-Key"'}
    key = _api_key(challenge)
    if not key:
        raise ApiError(401, "missing_api_key", "send your API key in the X-API-Key header", headers=challenge)
    caller = repo.find_caller(conn, key)
    if caller is None:
        raise ApiError(
            401, "invalid_api_key", "the X-API-Key is not known; check it or ask for a key", headers=challenge
        )
    if write and caller.is_packager:
        raise ApiError(
            403, "read_only_key", "the packager's key may read docsets and documents, never change or dump them"
        )
    return caller


def docset_row(conn: sqlite3.Connection, caller: Caller, docset_id: int, *, write: bool) -> sqlite3.Row:
    """Docset ``docset_id``, if ``caller`` may read it (``write``: change it).

    The owner may do anything; a packager key may read any docset, never change one.

    Raises:
        ApiError: 404 when there is no such docset, 403 when it belongs to another owner.
    """
    row = repo.get_docset(conn, docset_id) if 0 < docset_id <= MAX_SQLITE_INT else None
    if row is None:
        raise ApiError(404, "docset_not_found", f"docset {docset_id} does not exist")
    if row["owner"] != caller.owner and (write or not caller.is_packager):
        raise ApiError(403, "forbidden", f"docset {docset_id} belongs to another API key owner")
    return row


def document_or_404(conn: sqlite3.Connection, document_id: int) -> sqlite3.Row:
    """Document ``document_id``.

    Raises:
        ApiError: 404 when there is no such document.
    """
    row = repo.get_document(conn, document_id) if document_id <= MAX_SQLITE_INT else None
    if row is None:
        raise ApiError(404, "document_not_found", f"document {document_id} does not exist")
    return row


def owned(ctx: AppContext, docset_id: int) -> tuple[Caller, sqlite3.Row]:
    """The request's caller and docset ``docset_id``, which the caller must own and may change.

    Raises:
        ApiError: 401, 403 or 404, as :func:`authenticate` and :func:`docset_row` say.
    """
    with ctx.connection() as conn:
        caller = authenticate(conn, write=True)
        return caller, docset_row(conn, caller, docset_id, write=True)
