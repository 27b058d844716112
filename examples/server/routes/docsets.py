"""The docset routes: list, create, read (and the packager's paged ``?fmt=`` source), change, delete, members."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any, Final

import bottle

from examples.server import repo
from examples.server.bodies import DocsetCreate, DocsetPatch
from examples.server.fields import WHITE_SPACE
from examples.server.responses import DocsetList, ListLinks, MemberPage, PackageSource, PageLinks
from examples.server.routes.access import MAX_SQLITE_INT, authenticate, docset_row
from examples.server.routes.context import AppContext
from examples.server.routes.table import Route
from examples.server.routes.views import PACKAGE_FORMATS, docset_json, document_json
from examples.server.search_limits import QueryTooComplexError, check_query
from examples.server.web import ApiError, json_response, query_int, query_text
from tdm_messaging import MessagingError

__all__ = ["ROUTES"]

log = logging.getLogger(__name__)

DEFAULT_PER_PAGE: Final = 50
MAX_PER_PAGE: Final = 1000


def docsets(ctx: AppContext) -> bottle.HTTPResponse:
    """``GET /api/docsets``: the caller's docsets, a page at a time."""
    page = query_int("page", 1, minimum=1, maximum=1_000_000)
    per_page = query_int("per_page", DEFAULT_PER_PAGE, minimum=1, maximum=MAX_PER_PAGE)
    with ctx.connection() as conn:
        caller = authenticate(conn)
        total = repo.count_docsets(conn, caller.owner)
        rows = repo.list_docsets(conn, caller.owner, limit=per_page, offset=(page - 1) * per_page)
        items = [docset_json(ctx, row) for row in rows]
    last = max(1, -(-total // per_page))
    return json_response(
        DocsetList(
            docsets=items,
            total=total,
            page=page,
            per_page=per_page,
            links=ListLinks(
                self=ctx.page_link("/api/docsets", page=page, per_page=per_page),
                next=ctx.page_link("/api/docsets", page=page + 1, per_page=per_page) if page < last else None,
            ),
        )
    )


def create_docset(ctx: AppContext) -> bottle.HTTPResponse:
    """``POST /api/docsets``: a new docset from a full-text query or a list of document ids (201)."""
    with ctx.connection() as conn:
        caller = authenticate(conn, write=True)
        body = ctx.read_body(DocsetCreate)
        if body.document_ids is not None:
            missing = repo.missing_document_ids(conn, body.document_ids)
            if missing:
                raise ApiError(
                    422, "unknown_documents", f"no documents with ids {missing[:20]}", document_ids=missing[:100]
                )
            query, ids = None, body.document_ids
        else:
            query = repo.SearchQuery(body.query, body.year_from, body.year_to, body.department)
            ids = _search(ctx, conn, query)
        new_id = repo.create_docset(conn, owner=caller.owner, name=body.name, query=query, document_ids=ids)
        result = docset_json(ctx, docset_row(conn, caller, new_id, write=True))
    _prepare_dumps(ctx, new_id)
    return json_response(result, 201, {"Location": result.links.self})


def _prepare_dumps(ctx: AppContext, docset_id: int) -> None:
    """Create the new docset's reply queue now, off its first dump's path (best effort).

    The docset is created and committed whatever the broker does: a dump request creates the
    queue itself when it is missing, so a failure here costs that request a few milliseconds,
    never the docset.
    """
    try:
        ctx.dumps.prepare(ctx.messaging_id(docset_id))
    except MessagingError as exc:
        log.warning("docset %s created; preparing its dumps' reply queue failed: %s", docset_id, exc)
    except Exception:  # the row is committed: answering 500 now would be a lie
        log.exception("docset %s created; preparing its dumps' reply queue failed", docset_id)


def _search(ctx: AppContext, conn: sqlite3.Connection, query: repo.SearchQuery) -> list[int]:
    """The ids matching ``query``, within the query limits, a search slot and the search deadline.

    Raises:
        ApiError: 422 ``query_too_complex`` (a limit of :mod:`~examples.server.search_limits`),
            422 ``invalid_query`` (not FTS5 syntax), 422 ``query_too_expensive`` (ran out of
            ``settings.search_timeout_seconds``), 503 ``search_busy``.
    """
    syntax = "see https://sqlite.org/fts5.html#full_text_query_syntax"
    if query.query is not None:
        try:
            check_query(query.query)
        except QueryTooComplexError as exc:
            raise ApiError(422, "query_too_complex", str(exc)) from exc
    with ctx.search_slot():
        try:
            return repo.search_document_ids(conn, query, timeout=ctx.settings.search_timeout_seconds)
        except repo.InvalidSearchError as exc:
            raise ApiError(422, "invalid_query", f"{exc}; {syntax}") from exc
        except repo.SearchTimeoutError as exc:
            raise ApiError(422, "query_too_expensive", str(exc)) from exc


def docset(ctx: AppContext, docset_id: int) -> bottle.HTTPResponse:
    """``GET /api/docsets/<id>``: the docset; with ``?fmt=`` the packager's paged source instead."""
    fmt = query_text("fmt")
    # Checked with or without fmt: a bad value is refused, never silently ignored.
    after = query_int("after", 0, minimum=0, maximum=MAX_SQLITE_INT)
    limit = query_int("limit", 100, minimum=1, maximum=MAX_PER_PAGE)
    with ctx.connection() as conn:
        caller = authenticate(conn)
        row = docset_row(conn, caller, docset_id, write=False)
        if fmt is None:
            return json_response(docset_json(ctx, row))
        return package_source(ctx, conn, row, fmt, after=after, limit=limit)


def package_source(
    ctx: AppContext, conn: sqlite3.Connection, row: sqlite3.Row, fmt: str, *, after: int, limit: int
) -> bottle.HTTPResponse:
    """``?fmt=meta,txt``: what the packager reads, one keyset page at a time (``after``, ``limit``).

    Raises:
        ApiError: 400 when ``fmt`` lists nothing or an unknown format.
    """
    # WHITE_SPACE, not str.strip()'s own set: the document's pattern for fmt spells out the same one.
    formats = tuple(dict.fromkeys(f.strip(WHITE_SPACE) for f in fmt.split(",") if f.strip(WHITE_SPACE)))
    unknown = [f for f in formats if f not in PACKAGE_FORMATS]
    if not formats or unknown:
        raise ApiError(400, "invalid_parameter", f"fmt must list some of {', '.join(PACKAGE_FORMATS)}; got {fmt!r}")
    rows = repo.list_members(conn, row["id"], limit=limit + 1, after=after)
    members = [document_json(ctx, r, formats) for r in rows[:limit]]
    path = f"/api/docsets/{row['id']}"
    more = len(rows) > limit
    next_url = ctx.page_link(path, fmt=",".join(formats), after=rows[limit - 1]["id"], limit=limit) if more else None
    headers = {"Link": f'<{next_url}>; rel="next"'} if next_url else None
    return json_response(
        PackageSource(docset=docset_json(ctx, row), formats=list(formats), members=members, next=next_url),
        headers=headers,
    )


def patch_docset(ctx: AppContext, docset_id: int) -> bottle.HTTPResponse:
    """``PATCH /api/docsets/<id>``: rename, add and remove members; the version goes up if members changed."""
    with ctx.connection() as conn:
        caller = authenticate(conn, write=True)
        docset_row(conn, caller, docset_id, write=True)
        body = ctx.read_body(DocsetPatch)
        missing = repo.missing_document_ids(conn, body.add_document_ids)
        if missing:
            raise ApiError(
                422, "unknown_documents", f"no documents with ids {missing[:20]}", document_ids=missing[:100]
            )
        if body.name is not None:
            repo.update_docset_name(conn, docset_id, body.name)
        changed = repo.add_members(conn, docset_id, body.add_document_ids)
        changed += repo.remove_members(conn, docset_id, body.remove_document_ids)
        if changed:
            repo.bump_version(conn, docset_id)
        return json_response(docset_json(ctx, docset_row(conn, caller, docset_id, write=True)))


def delete_docset(ctx: AppContext, docset_id: int) -> bottle.HTTPResponse:
    """``DELETE /api/docsets/<id>``: delete the docset (204) and ask the packager to delete its archives.

    The row goes first, in its own transaction: from then on ``/archives/`` refuses the
    docset's archives (see :mod:`~examples.server.routes.archives`), whatever the broker
    does. The delete request is best effort and never turns the answer into an error, since
    the docset *is* deleted: if it cannot be sent, the packager's own expiry collects the files.
    """
    with ctx.connection() as conn:
        caller = authenticate(conn, write=True)
        docset_row(conn, caller, docset_id, write=True)
        repo.delete_docset(conn, docset_id)
    try:
        ctx.dumps.forget(ctx.messaging_id(docset_id))
    except MessagingError as exc:
        log.warning("docset %s deleted, but asking to delete its archives failed: %s", docset_id, exc)
    except Exception:  # the row is gone and committed: answering 500 now would be a lie
        log.exception("docset %s deleted, but asking to delete its archives failed", docset_id)
    return bottle.HTTPResponse(status=204)


def members(ctx: AppContext, docset_id: int) -> bottle.HTTPResponse:
    """``GET /api/docsets/<id>/members``: the members, by page number or, with ``?after=``, by keyset."""
    per_page = query_int("per_page", DEFAULT_PER_PAGE, minimum=1, maximum=MAX_PER_PAGE)
    cursor = bottle.request.query.get("after")
    path = f"/api/docsets/{docset_id}/members"
    with ctx.connection() as conn:
        caller = authenticate(conn)
        row = docset_row(conn, caller, docset_id, write=False)
        total = int(row["member_count"])
        links: dict[str, str | None] = {}
        body: dict[str, Any] = {"docset_id": docset_id, "total": total, "per_page": per_page}
        if cursor is not None:
            after = query_int("after", 0, minimum=0, maximum=MAX_SQLITE_INT)
            rows = repo.list_members(conn, docset_id, limit=per_page + 1, after=after)
            more = len(rows) > per_page
            rows = rows[:per_page]
            body["after"] = after
            links["self"] = ctx.page_link(path, after=after, per_page=per_page)
            links["next"] = ctx.page_link(path, after=rows[-1]["id"], per_page=per_page) if more else None
        else:
            last = max(1, -(-total // per_page))
            page = query_int("page", 1, minimum=1, maximum=1_000_000)
            rows = repo.list_members(conn, docset_id, limit=per_page, offset=(page - 1) * per_page)
            body["page"] = page
            body["pages"] = last
            links["self"] = ctx.page_link(path, page=page, per_page=per_page)
            links["first"] = ctx.page_link(path, page=1, per_page=per_page)
            links["prev"] = ctx.page_link(path, page=page - 1, per_page=per_page) if page > 1 else None
            links["next"] = ctx.page_link(path, page=page + 1, per_page=per_page) if page < last else None
            links["last"] = ctx.page_link(path, page=last, per_page=per_page)
        page_body = MemberPage.model_validate(
            {**body, "members": [document_json(ctx, r) for r in rows], "links": PageLinks.model_validate(links)}
        )
    headers = {"Link": f'<{links["next"]}>; rel="next"'} if links.get("next") else None
    return json_response(page_body, headers=headers)


ROUTES = (
    Route("GET", "/api/docsets", docsets),
    Route("POST", "/api/docsets", create_docset),
    Route("GET", "/api/docsets/<docset_id:int>", docset),
    Route("PATCH", "/api/docsets/<docset_id:int>", patch_docset),
    Route("DELETE", "/api/docsets/<docset_id:int>", delete_docset),
    Route("GET", "/api/docsets/<docset_id:int>/members", members),
)
