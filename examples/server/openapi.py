"""The server's OpenAPI 3.1 document: paths as a table, schemas generated from the models; kept in docs/openapi.json."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema

from examples.server import responses
from examples.server.bodies import CREATE_EXAMPLES, PATCH_EXAMPLES, DocsetCreate, DocsetPatch
from examples.server.fields import MAX_SQLITE_INT, WHITE_SPACE_CLASS
from examples.server.responses import PACKAGE_FORMATS
from examples.server.web import MAX_JSON_DEPTH

__all__ = ["build_openapi", "component_schemas"]

Schema = dict[str, Any]

# The models whose JSON Schemas are the document's components: requests as the server validates
# them, responses as the server serialises them (each answer is built through its model).
_REQUESTS: tuple[type[BaseModel], ...] = (DocsetCreate, DocsetPatch)
_RESPONSES: tuple[type[BaseModel], ...] = (
    responses.Error,
    responses.CollectionList,
    responses.Document,
    responses.Docset,
    responses.DocsetList,
    responses.MemberPage,
    responses.PackageSource,
    responses.DumpPending,
    responses.DumpComplete,
    responses.DumpFailed,
    responses.DumpDeleted,
    responses.DumpDeleteRequested,
)


class _Generator(GenerateJsonSchema):
    """pydantic's JSON Schema (Draft 2020-12, as OpenAPI 3.1 uses), without a title on every field."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def component_schemas() -> dict[str, Schema]:
    """``components.schemas``: the JSON Schemas of the request and response models, by model name."""
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(m, "validation") for m in _REQUESTS]
    models += [(m, "serialization") for m in _RESPONSES]
    _, top = models_json_schema(models, ref_template="#/components/schemas/{model}", schema_generator=_Generator)
    return dict(sorted(top["$defs"].items()))


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    return _json(_ref("Error"), description, headers)


def _header(description: str, schema_type: str = "string") -> dict[str, Any]:
    return {"description": description, "schema": {"type": schema_type}}


def _body(model: type[BaseModel], examples: dict[str, Any]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": _ref(model.__name__), "examples": examples}},
    }


_AUTH_ERRORS = {"401": _error("No X-API-Key header, an unknown key, or one that is not UTF-8")}
_DOCSET_ERRORS = {
    **_AUTH_ERRORS,
    "403": _error("The docset belongs to another API key owner, or the packager's read-only key tried a change"),
    "404": _error("No such docset"),
}
_RETRY_AFTER = {"Retry-After": _header("Seconds to wait before trying again", "integer")}
_BODY_ERRORS = {
    "400": _error(f"The body is not JSON, or nests arrays or objects deeper than {MAX_JSON_DEPTH} levels"),
    "413": _error("The body is larger than the limit (1 MiB by default)"),
    "415": _error("The body is not sent as application/json"),
    "422": _error(
        "The body is JSON but invalid (invalid_body: the message and 'problems' name each field and the "
        "problem), or breaks a rule its schema's description states, or names documents that do not exist "
        "(unknown_documents, listed in 'document_ids')"
    ),
}
_ID: Schema = {"type": "integer", "minimum": 1, "maximum": MAX_SQLITE_INT}  # SQLite's INTEGER
_DOCSET_ID = {"name": "docset_id", "in": "path", "required": True, "schema": _ID}
_DOCUMENT_ID = {"name": "document_id", "in": "path", "required": True, "schema": _ID}


def _query(name: str, description: str, schema: Schema) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


_PER_PAGE = _query("per_page", "Items per page (default 50)", {"type": "integer", "minimum": 1, "maximum": 1000})
_PAGE = _query("page", "Page number, from 1", {"type": "integer", "minimum": 1, "maximum": 1000000})
_REDIRECT = _query(
    "redirect",
    "false: answer a complete package with 200 and the same body instead of 303 (true or false, any case)",
    {"type": "boolean"},
)
_W = WHITE_SPACE_CLASS
_FORMATS = "|".join(PACKAGE_FORMATS)
# fmt: comma-separated formats; white space around each and empty items are ignored; at least one.
_FMT_PATTERN = f"^[{_W},]*({_FORMATS})[{_W}]*(,[{_W},]*({_FORMATS})[{_W}]*)*[{_W},]*$"


def _page_paths() -> dict[str, Any]:
    """The miner's page (examples/server/routes/page.py): static files, no key (the page asks for it)."""
    files = {
        "/miner": ("The miner's page: docsets, dumps with a progress bar, archive downloads", "text/html"),
        "/miner/miner.js": ("The miner's page's script", "text/javascript"),
        "/miner/miner.css": ("The miner's page's stylesheet", "text/css"),
    }
    return {
        path: {
            "get": {
                "summary": summary,
                "security": [],
                "responses": {
                    "200": {
                        "description": "The file, with a strict Content-Security-Policy header",
                        "content": {media: {"schema": {"type": "string"}}},
                    }
                },
            }
        }
        for path, (summary, media) in files.items()
    }


def _ops_paths() -> dict[str, Any]:
    """The operator endpoints (examples/server/routes/ops.py): no key, no parameters."""
    checks = {
        "type": "object",
        "required": ["status", "checks"],
        "properties": {
            "status": {"type": "string", "enum": ["ready", "not_ready"]},
            "checks": {
                "type": "object",
                "description": "database and broker: 'ok', or why not",
                "additionalProperties": {"type": "string"},
            },
        },
    }
    return {
        **_page_paths(),
        "/healthz": {
            "get": {
                "summary": "Liveness: the process serves requests (touches neither database nor broker)",
                "security": [],
                "responses": {
                    "200": _json(
                        {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}, "Up"
                    )
                },
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: the database and the broker answer, each within 2 s",
                "security": [],
                "responses": {
                    "200": _json(checks, "Ready"),
                    "503": _json(checks, "Not ready; the checks say which part failed and why"),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics of the dump client (polls, poll latency, states seen, requests)",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The Prometheus text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "404": _error("prometheus_client is not installed"),
                },
            }
        },
    }


def build_openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the server (a fresh dict each call)."""
    docset_list = _json(_ref("DocsetList"), "The caller's docsets, a page at a time")
    docset = _json(_ref("Docset"), "The docset")
    retry_after = {"Retry-After": _header("Seconds to wait before polling again", "integer")}
    dump_responses = {
        "200": _json(
            _ref("DumpComplete"),
            "Complete, asked with ?redirect=false: the 303's body without the redirect (for browsers, whose "
            "fetch() cannot read a 303's body)",
        ),
        "202": _json(
            _ref("DumpPending"), "Requested, accepted or in progress; poll again after Retry-After", retry_after
        ),
        "303": _json(
            _ref("DumpComplete"),
            "Complete: Location is the archive; the body gives its size and sha256",
            {"Location": _header("The archive URL")},
        ),
        **_DOCSET_ERRORS,
        "429": _json(
            _ref("Error"),
            "Over a per-owner quota: too many packages being built at once (too_many_dumps_in_flight), "
            "too many archives kept (too_many_archives), or this docset's package is already being built "
            "(dump_in_progress); the message says what to do",
            _RETRY_AFTER,
        ),
        "410": _json(
            {"oneOf": [_ref("DumpDeleted"), _ref("DumpComplete")]},
            "The package was deleted, or its URL expired; POST to this URL (or GET ?retry=true) to rebuild",
        ),
        "502": _json(
            {"oneOf": [_ref("DumpFailed"), _ref("Error")]},
            "Packaging failed (DumpFailed: the error says why and how to retry), or talking to the packager "
            "failed (Error: messaging_error)",
        ),
        "503": _json(_ref("Error"), "The message broker is unreachable; retry after Retry-After", _RETRY_AFTER),
    }
    paths: dict[str, Any] = {
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "The OpenAPI document")},
            }
        },
        "/api/collections": {
            "get": {
                "summary": "List the collections",
                "responses": {
                    "200": _json(_ref("CollectionList"), "The collections with their document counts"),
                    **_AUTH_ERRORS,
                },
            }
        },
        "/api/documents/{document_id}": {
            "get": {
                "summary": "A document's metadata",
                "parameters": [_DOCUMENT_ID],
                "responses": {
                    "200": _json(_ref("Document"), "The document"),
                    **_AUTH_ERRORS,
                    "404": _error("No such document"),
                },
            }
        },
        "/api/documents/{document_id}/text": {
            "get": {
                "summary": "A document's full text",
                "parameters": [_DOCUMENT_ID],
                "responses": {
                    "200": {"description": "The text", "content": {"text/plain": {"schema": {"type": "string"}}}},
                    **_AUTH_ERRORS,
                    "404": _error("No such document"),
                },
            }
        },
        "/api/docsets": {
            "get": {
                "summary": "List the caller's docsets",
                "parameters": [_PAGE, _PER_PAGE],
                "responses": {"200": docset_list, "400": _error("A bad query parameter"), **_AUTH_ERRORS},
            },
            "post": {
                "summary": "Create a docset from document ids or from a full-text query with filters",
                "requestBody": _body(DocsetCreate, CREATE_EXAMPLES),
                "responses": {
                    "201": _json(_ref("Docset"), "Created", {"Location": _header("The docset's URL")}),
                    **_BODY_ERRORS,
                    "422": _error(
                        "The body is JSON but invalid (invalid_body: the message and 'problems' name each field), "
                        "has year_from after year_to (invalid_body), names unknown documents (unknown_documents), "
                        "or its query is not FTS5 (invalid_query), over a query limit (query_too_complex) or ran "
                        "out of the search time (query_too_expensive)"
                    ),
                    **_AUTH_ERRORS,
                    "403": _error("The packager's key is read-only (read_only_key)"),
                    "503": _json(_ref("Error"), "Every search slot is busy (search_busy); retry", _RETRY_AFTER),
                },
            },
        },
        "/api/docsets/{docset_id}": {
            "get": {
                "summary": "A docset; with ?fmt=meta,txt the members for the packager, a keyset page at a time",
                "parameters": [
                    _DOCSET_ID,
                    _query(
                        "fmt",
                        "Comma-separated subset of meta,txt",
                        {"type": "string", "pattern": _FMT_PATTERN},
                    ),
                    _query("after", "With fmt: members after this document id", {**_ID, "minimum": 0}),
                    _query(
                        "limit",
                        "With fmt: members per page (default 100)",
                        {"type": "integer", "minimum": 1, "maximum": 1000},
                    ),
                ],
                "responses": {
                    "200": _json({"oneOf": [_ref("Docset"), _ref("PackageSource")]}, "The docset or its members"),
                    "400": _error("A bad query parameter"),
                    **_DOCSET_ERRORS,
                },
            },
            "patch": {
                "summary": "Rename a docset, add or remove members",
                "parameters": [_DOCSET_ID],
                "requestBody": _body(DocsetPatch, PATCH_EXAMPLES),
                "responses": {"200": docset, **_BODY_ERRORS, **_DOCSET_ERRORS},
            },
            "delete": {
                "summary": "Delete a docset (and ask the packager to delete its package)",
                "parameters": [_DOCSET_ID],
                "responses": {"204": {"description": "Deleted"}, **_DOCSET_ERRORS},
            },
        },
        "/api/docsets/{docset_id}/members": {
            "get": {
                "summary": "The members, by page (page, per_page) or by cursor (after, per_page)",
                "parameters": [
                    _DOCSET_ID,
                    _PAGE,
                    _PER_PAGE,
                    _query("after", "Cursor mode: members after this document id", {**_ID, "minimum": 0}),
                ],
                "responses": {
                    "200": _json(_ref("MemberPage"), "A page of members", {"Link": _header('rel="next" link')}),
                    "400": _error("A bad query parameter"),
                    **_DOCSET_ERRORS,
                },
            }
        },
        "/api/docsets/{docset_id}/dump": {
            "get": {
                "summary": "The docset's archive: the first call requests it; poll until 303",
                "parameters": [
                    _DOCSET_ID,
                    _query(
                        "retry",
                        "true: request again if the last package failed or was deleted (true or false, any case)",
                        {"type": "boolean"},
                    ),
                    _REDIRECT,
                ],
                "responses": {**dump_responses, "400": _error("A bad query parameter")},
            },
            "post": {
                "summary": "Request a fresh package (after a failure, or after the docset changed)",
                "parameters": [_DOCSET_ID, _REDIRECT],
                "responses": {**dump_responses, "400": _error("A bad query parameter")},
            },
            "head": {
                "summary": "Refused: a dump's GET may start a build, so HEAD is not offered (it starts nothing)",
                "security": [],  # refused before any key is looked at
                "parameters": [_DOCSET_ID],
                "responses": {
                    "404": _error("Not a docset id (not an integer in range)"),
                    "405": _error("Not allowed; Allow lists GET, POST, DELETE", {"Allow": _header("The methods")}),
                },
            },
            "delete": {
                "summary": "Ask the packager to delete the package",
                "parameters": [_DOCSET_ID],
                "responses": {
                    "202": _json(_ref("DumpDeleteRequested"), "Deletion requested"),
                    **_DOCSET_ERRORS,
                    "503": _json(_ref("Error"), "The message broker is unreachable", _RETRY_AFTER),
                },
            },
        },
        "/archives/{name}": {
            "get": {
                "summary": "An archive from the local-directory storage (its unguessable name is the credential)",
                "security": [],
                "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": {
                        "description": "The archive",
                        "content": {
                            media: {"schema": {"type": "string", "contentMediaType": media}}
                            for media in ("application/zip", "application/octet-stream")
                        },
                    },
                    "206": {"description": "The range asked for with a Range header"},
                    "403": _error("The file exists but cannot be read (archive_unavailable)"),
                    "404": _error("No such archive"),
                    "416": _error("The Range asked for is not within the file (archive_unavailable)"),
                },
            }
        },
    }
    paths.update(_ops_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "TDM API (tdm-messaging reference server)",
            "version": "1.0.0",
            "description": "Theses, docsets built from them, and docset dumps packaged by a separate worker "
            'over a message broker. Errors are JSON: {"error": {"code", "message"}}, including the '
            "HTTP server's own 400 (malformed request), 413 (body over the limit) and 431 (headers too large). "
            "Bodies are I-JSON (RFC 7493): UTF-8, strings of Unicode scalar values (no lone surrogates). "
            "Every schema is generated from the server's own pydantic models: a request body valid here is "
            "taken, except for the rules a schema's description states that JSON Schema cannot.",
        },
        "security": [{"apiKey": []}],
        "paths": paths,
        "components": {
            "schemas": component_schemas(),
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
    }
