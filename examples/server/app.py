"""The reference TDM API server as a Bottle app: ``create_app(settings)`` builds it, waitress serves it."""

from __future__ import annotations

import functools
import json
import logging
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

import bottle

from examples.server import repo
from examples.server.bodies import DocsetCreate, DocsetPatch
from examples.server.db import Database
from examples.server.dumps import DumpService, Poll, TransportPool, pool_for_url
from examples.server.openapi import build_openapi
from examples.server.repo import Caller
from examples.server.settings import Settings
from examples.server.web import ApiError, default_error_handler, json_errors_plugin, json_response, query_int
from examples.server.web import read_json_body as _read_body
from tdm_messaging import MessagingError, State, Transport, TransportError, http_view, validate_docset_id

__all__ = ["create_app"]

log = logging.getLogger(__name__)

MAX_SQLITE_INT = (1 << 63) - 1
DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 1000
PACKAGE_FORMATS = ("meta", "txt")
_F = TypeVar("_F", bound=Callable[..., Any])
_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")


def create_app(settings: Settings, *, transport_factory: Callable[[], Transport] | None = None) -> bottle.Bottle:
    """Build the app: open the database (applying migrations), provision ``settings.api_keys``,
    and wire the routes.

    Args:
        settings: see :class:`~examples.server.settings.Settings`.
        transport_factory: opens a transport (tests pass an in-memory one); by default
            :func:`tdm_messaging.transport.open_transport` on ``settings.broker_url``, opened lazily
            on the first dump request, so the API works while the broker is down.

    Returns:
        The WSGI app. ``app.config["tdm.db"]`` is the :class:`Database`; call
        ``app.config["tdm.close"]()`` to release transports on shutdown.

    Raises:
        DatabaseError: the database URL is wrong or the file cannot be opened.
    """
    validate_docset_id(settings.queue_prefix + "1")
    db = Database(settings.db_url)
    db.migrate()
    with db.connect() as conn:
        for spec in settings.api_keys:
            repo.upsert_api_key(conn, owner=spec.owner, key=spec.key, role=spec.role)
    if transport_factory is not None:
        pool = TransportPool(transport_factory, max_idle=settings.threads)
    else:
        pool = pool_for_url(settings.broker_url, max_idle=settings.threads)
    dumps = DumpService(pool)
    openapi_doc = build_openapi()
    archive_root = settings.archive_dir.resolve()

    app = bottle.Bottle(catchall=True)
    app.default_error_handler = default_error_handler
    app.install(json_errors_plugin)
    app.config["tdm.db"] = db
    app.config["tdm.close"] = pool.close
    get, post, patch, delete = (_router(app, method) for method in ("GET", "POST", "PATCH", "DELETE"))

    @contextmanager
    def connection() -> Iterator[sqlite3.Connection]:
        with db.connect() as conn:
            yield conn

    def base_url() -> str:
        if settings.public_url:
            return settings.public_url.rstrip("/")
        parts = bottle.request.urlparts
        return f"{parts.scheme}://{parts.netloc}"

    def authenticate(conn: sqlite3.Connection) -> Caller:
        key = bottle.request.get_header("X-API-Key")
        challenge = {"WWW-Authenticate": 'ApiKey header="X-API-Key"'}
        if not key:
            raise ApiError(401, "missing_api_key", "send your API key in the X-API-Key header", headers=challenge)
        caller = repo.find_caller(conn, key)
        if caller is None:
            raise ApiError(
                401, "invalid_api_key", "the X-API-Key is not known; check it or ask for a key", headers=challenge
            )
        return caller

    def docset_row(conn: sqlite3.Connection, caller: Caller, docset_id: int, *, write: bool) -> sqlite3.Row:
        row = repo.get_docset(conn, docset_id) if 0 < docset_id <= MAX_SQLITE_INT else None
        if row is None:
            raise ApiError(404, "docset_not_found", f"docset {docset_id} does not exist")
        if row["owner"] != caller.owner and (write or not caller.is_packager):
            raise ApiError(403, "forbidden", f"docset {docset_id} belongs to another API key owner")
        return row

    def read_body(model: Any) -> Any:
        return _read_body(model, settings.max_body_bytes)

    def document_json(row: sqlite3.Row, formats: tuple[str, ...] = PACKAGE_FORMATS) -> dict[str, Any]:
        base = base_url()
        doc: dict[str, Any] = {"id": row["id"]}
        if "meta" in formats:
            doc.update(
                collection=row["collection"],
                title=row["title"],
                authors=json.loads(row["authors"]),
                department=row["department"],
                degree=row["degree"],
                year=row["year"],
                abstract=row["abstract"],
                handle=row["handle"],
                uri=row["uri"],
            )
        links = {"self": f"{base}/api/documents/{row['id']}"}
        if "txt" in formats:
            doc["text_bytes"] = row["text_bytes"]
            links["text"] = f"{base}/api/documents/{row['id']}/text"
        doc["links"] = links
        return doc

    def docset_json(row: sqlite3.Row) -> dict[str, Any]:
        url = f"{base_url()}/api/docsets/{row['id']}"
        return {
            "id": row["id"],
            "name": row["name"],
            "owner": row["owner"],
            "query": json.loads(row["query"]) if row["query"] else None,
            "member_count": row["member_count"],
            "version": row["version"],
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
            "links": {
                "self": url,
                "members": f"{url}/members",
                "dump": f"{url}/dump",
                "package_source": f"{url}?fmt={','.join(PACKAGE_FORMATS)}",
            },
        }

    def page_link(path: str, **params: object) -> str:
        return f"{base_url()}{path}?{urlencode({k: v for k, v in params.items() if v is not None})}"

    # ---- catalogue ------------------------------------------------------------------------

    @get("/api/openapi.json")
    def openapi() -> bottle.HTTPResponse:
        return json_response(openapi_doc)

    @get("/api/collections")
    def collections() -> bottle.HTTPResponse:
        with connection() as conn:
            authenticate(conn)
            rows = repo.list_collections(conn)
        return json_response({"collections": [dict(row) for row in rows]})

    def document_or_404(conn: sqlite3.Connection, document_id: int) -> sqlite3.Row:
        row = repo.get_document(conn, document_id) if document_id <= MAX_SQLITE_INT else None
        if row is None:
            raise ApiError(404, "document_not_found", f"document {document_id} does not exist")
        return row

    @get("/api/documents/<document_id:int>")
    def document(document_id: int) -> bottle.HTTPResponse:
        with connection() as conn:
            authenticate(conn)
            return json_response(document_json(document_or_404(conn, document_id)))

    @get("/api/documents/<document_id:int>/text")
    def document_text(document_id: int) -> bottle.HTTPResponse:
        with connection() as conn:
            authenticate(conn)
            document_or_404(conn, document_id)
            text = repo.get_document_text(conn, document_id) or ""
        return bottle.HTTPResponse(text.encode("utf-8"), headers={"Content-Type": "text/plain; charset=utf-8"})

    # ---- docsets --------------------------------------------------------------------------

    @get("/api/docsets")
    def docsets() -> bottle.HTTPResponse:
        page = query_int("page", 1, minimum=1, maximum=1_000_000)
        per_page = query_int("per_page", DEFAULT_PER_PAGE, minimum=1, maximum=MAX_PER_PAGE)
        with connection() as conn:
            caller = authenticate(conn)
            total = repo.count_docsets(conn, caller.owner)
            rows = repo.list_docsets(conn, caller.owner, limit=per_page, offset=(page - 1) * per_page)
            items = [docset_json(row) for row in rows]
        last = max(1, -(-total // per_page))
        return json_response(
            {
                "docsets": items,
                "total": total,
                "page": page,
                "per_page": per_page,
                "links": {
                    "self": page_link("/api/docsets", page=page, per_page=per_page),
                    "next": page_link("/api/docsets", page=page + 1, per_page=per_page) if page < last else None,
                },
            }
        )

    @post("/api/docsets")
    def create_docset() -> bottle.HTTPResponse:
        body: DocsetCreate = read_body(DocsetCreate)
        with connection() as conn:
            caller = authenticate(conn)
            if body.document_ids is not None:
                missing = repo.missing_document_ids(conn, body.document_ids)
                if missing:
                    raise ApiError(
                        422, "unknown_documents", f"no documents with ids {missing[:20]}", document_ids=missing[:100]
                    )
                query, ids = None, body.document_ids
            else:
                query = repo.SearchQuery(body.query, body.year_from, body.year_to, body.department)
                try:
                    ids = repo.search_document_ids(conn, query)
                except repo.InvalidSearchError as exc:
                    raise ApiError(
                        422, "invalid_query", f"{exc}; see https://sqlite.org/fts5.html#full_text_query_syntax"
                    ) from exc
            new_id = repo.create_docset(conn, owner=caller.owner, name=body.name, query=query, document_ids=ids)
            row = docset_row(conn, caller, new_id, write=True)
            result = docset_json(row)
        return json_response(result, 201, {"Location": result["links"]["self"]})

    @get("/api/docsets/<docset_id:int>")
    def docset(docset_id: int) -> bottle.HTTPResponse:
        fmt = bottle.request.query.get("fmt")
        with connection() as conn:
            caller = authenticate(conn)
            row = docset_row(conn, caller, docset_id, write=False)
            if fmt is None:
                return json_response(docset_json(row))
            return package_source(conn, row, fmt)

    def package_source(conn: sqlite3.Connection, row: sqlite3.Row, fmt: str) -> bottle.HTTPResponse:
        """``?fmt=meta,txt``: what the packager reads, one keyset page at a time (``after``, ``limit``)."""
        formats = tuple(dict.fromkeys(f.strip() for f in fmt.split(",") if f.strip()))
        unknown = [f for f in formats if f not in PACKAGE_FORMATS]
        if not formats or unknown:
            raise ApiError(400, "invalid_parameter", f"fmt must list some of {', '.join(PACKAGE_FORMATS)}; got {fmt!r}")
        after = query_int("after", 0, minimum=0, maximum=MAX_SQLITE_INT)
        limit = query_int("limit", 100, minimum=1, maximum=MAX_PER_PAGE)
        rows = repo.list_members(conn, row["id"], limit=limit + 1, after=after)
        members = [document_json(r, formats) for r in rows[:limit]]
        path = f"/api/docsets/{row['id']}"
        more = len(rows) > limit
        next_url = page_link(path, fmt=",".join(formats), after=rows[limit - 1]["id"], limit=limit) if more else None
        headers = {"Link": f'<{next_url}>; rel="next"'} if next_url else None
        return json_response(
            {"docset": docset_json(row), "formats": list(formats), "members": members, "next": next_url},
            headers=headers,
        )

    @patch("/api/docsets/<docset_id:int>")
    def patch_docset(docset_id: int) -> bottle.HTTPResponse:
        body: DocsetPatch = read_body(DocsetPatch)
        with connection() as conn:
            caller = authenticate(conn)
            docset_row(conn, caller, docset_id, write=True)
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
            return json_response(docset_json(docset_row(conn, caller, docset_id, write=True)))

    @delete("/api/docsets/<docset_id:int>")
    def delete_docset(docset_id: int) -> bottle.HTTPResponse:
        with connection() as conn:
            caller = authenticate(conn)
            docset_row(conn, caller, docset_id, write=True)
            repo.delete_docset(conn, docset_id)
        try:  # best effort: a package left behind is collected by the packager's own expiry
            dumps.delete(messaging_id(docset_id))
        except MessagingError as exc:
            log.warning("docset %s deleted, but asking to delete its package failed: %s", docset_id, exc)
        return bottle.HTTPResponse(status=204)

    @get("/api/docsets/<docset_id:int>/members")
    def members(docset_id: int) -> bottle.HTTPResponse:
        per_page = query_int("per_page", DEFAULT_PER_PAGE, minimum=1, maximum=MAX_PER_PAGE)
        cursor = bottle.request.query.get("after")
        path = f"/api/docsets/{docset_id}/members"
        with connection() as conn:
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
                links["self"] = page_link(path, after=after, per_page=per_page)
                links["next"] = page_link(path, after=rows[-1]["id"], per_page=per_page) if more else None
            else:
                last = max(1, -(-total // per_page))
                page = query_int("page", 1, minimum=1, maximum=1_000_000)
                rows = repo.list_members(conn, docset_id, limit=per_page, offset=(page - 1) * per_page)
                body["page"] = page
                body["pages"] = last
                links["self"] = page_link(path, page=page, per_page=per_page)
                links["first"] = page_link(path, page=1, per_page=per_page)
                links["prev"] = page_link(path, page=page - 1, per_page=per_page) if page > 1 else None
                links["next"] = page_link(path, page=page + 1, per_page=per_page) if page < last else None
                links["last"] = page_link(path, page=last, per_page=per_page)
            body["members"] = [document_json(r) for r in rows]
            body["links"] = links
        headers = {"Link": f'<{links["next"]}>; rel="next"'} if links.get("next") else None
        return json_response(body, headers=headers)

    # ---- dumps ----------------------------------------------------------------------------

    def dump_response(docset_id: int, poll: Poll) -> bottle.HTTPResponse:
        dump_url = f"{base_url()}/api/docsets/{docset_id}/dump"
        status = poll.status
        if status.state is State.UNKNOWN:
            # The request was sent but this broker does not show it back yet: still pending.
            return json_response(
                {
                    "state": "requested",
                    "docset_id": str(docset_id),
                    "requested_now": poll.requested,
                    "detail": "the dump was requested and waits for the packager; poll again in 1 s",
                    "links": {"self": dump_url},
                },
                202,
                {"Retry-After": "1", "Location": dump_url},
            )
        view = http_view(status, now=datetime.now(UTC))
        headers = dict(view.headers)
        body: dict[str, Any] = dict(view.body)
        body["docset_id"] = str(docset_id)
        body["requested_now"] = poll.requested
        links: dict[str, str] = {"self": dump_url, "docset": f"{base_url()}/api/docsets/{docset_id}"}
        if status.state in (State.FAILED, State.DELETED):
            links["retry"] = f"{dump_url}?retry=true"
        body["links"] = links
        if view.status_code >= 400:
            if status.failure is not None:
                what = f"packaging docset {docset_id} failed: {status.failure.reason}"
            else:
                what = f"the package of docset {docset_id} is {status.state.name.lower()}"
            hint = f"request a new package with POST {dump_url} (or GET {dump_url}?retry=true)"
            if "error" in body:
                body["detail"] = body.pop("error")
            body["error"] = {"code": f"package_{status.state.name.lower()}", "message": f"{what}; {hint}"}
        return json_response(body, view.status_code, headers)

    @contextmanager
    def broker_errors() -> Iterator[None]:
        try:
            yield
        except TransportError as exc:
            log.warning("broker unavailable while serving %s: %s", bottle.request.path, exc)
            raise ApiError(
                503,
                "broker_unavailable",
                "the message broker cannot be reached right now; retry later",
                headers={"Retry-After": "5"},
            ) from exc
        except MessagingError as exc:
            log.warning("messaging error while serving %s: %s", bottle.request.path, exc)
            raise ApiError(502, "messaging_error", f"talking to the packager failed: {exc}") from exc

    def messaging_id(docset_id: int) -> str:
        return f"{settings.queue_prefix}{docset_id}"

    def owned(docset_id: int) -> None:
        with connection() as conn:
            caller = authenticate(conn)
            docset_row(conn, caller, docset_id, write=True)

    @get("/api/docsets/<docset_id:int>/dump")
    def dump(docset_id: int) -> bottle.HTTPResponse:
        retry = bottle.request.query.get("retry", "").lower() in {"1", "true", "yes"}
        owned(docset_id)
        source = f"{base_url()}/api/docsets/{docset_id}?fmt={','.join(PACKAGE_FORMATS)}"
        with broker_errors():
            poll = dumps.poll(messaging_id(docset_id), source, retry=retry)
        return dump_response(docset_id, poll)

    @post("/api/docsets/<docset_id:int>/dump")
    def redo_dump(docset_id: int) -> bottle.HTTPResponse:
        owned(docset_id)
        source = f"{base_url()}/api/docsets/{docset_id}?fmt={','.join(PACKAGE_FORMATS)}"
        with broker_errors():
            poll = dumps.request(messaging_id(docset_id), source)
        return dump_response(docset_id, poll)

    @delete("/api/docsets/<docset_id:int>/dump")
    def delete_dump(docset_id: int) -> bottle.HTTPResponse:
        owned(docset_id)
        with broker_errors():
            before = dumps.delete(messaging_id(docset_id))
        if before.state is State.UNKNOWN:
            raise ApiError(404, "no_package", f"docset {docset_id} has no package to delete; none was requested")
        dump_url = f"{base_url()}/api/docsets/{docset_id}/dump"
        return json_response(
            {"state": "delete_requested", "docset_id": str(docset_id), "links": {"self": dump_url}}, 202
        )

    # ---- archives (the local-directory storage) -------------------------------------------

    @get("/archives/<name:path>")
    def archive(name: str) -> bottle.HTTPResponse:
        segments = name.split("/")
        if not all(_SAFE_SEGMENT.fullmatch(s) for s in segments):
            raise ApiError(404, "archive_not_found", "no such archive")
        path = archive_root.joinpath(*segments).resolve()
        if not path.is_relative_to(archive_root) or not path.is_file():
            raise ApiError(404, "archive_not_found", f"no archive named {name!r}")
        mimetype = "application/zip" if path.suffix == ".zip" else "application/octet-stream"
        response = bottle.static_file(
            str(path.relative_to(archive_root)), root=str(archive_root), mimetype=mimetype, download=path.name
        )
        if isinstance(response, bottle.HTTPError):  # unreadable, or a bad Range: answer as JSON
            raise ApiError(int(response.status_code), "archive_unavailable", str(response.body))
        return response

    return app


def _router(app: bottle.Bottle, method: str) -> Callable[[str], Callable[[_F], _F]]:
    """A typed route decorator for ``method`` (Bottle ships no type hints)."""

    def route(path: str) -> Callable[[_F], _F]:
        def register(callback: _F) -> _F:
            @functools.wraps(callback)
            def bounded(**ids: Any) -> Any:
                # <x:int> path parts reach SQLite, whose INTEGER is 64-bit: a larger id is no row.
                for name, value in ids.items():
                    if isinstance(value, int) and not 0 <= value <= MAX_SQLITE_INT:
                        raise ApiError(404, "not_found", f"{name.replace('_', ' ')} {value} does not exist")
                return callback(**ids)

            app.route(path, method=method, callback=bounded)
            return callback

        return register

    return route
