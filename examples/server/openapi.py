"""The server's OpenAPI 3.1 document, built as data; served at /api/openapi.json and kept in docs/openapi.json."""

from __future__ import annotations

from typing import Any

from examples.server.search_limits import (
    MAX_NEAR_DISTANCE,
    MAX_NEAR_GROUPS,
    MAX_NEAR_TERMS,
    MAX_PREFIX_TERMS,
    MAX_TERMS,
)
from examples.server.web import MAX_JSON_DEPTH

__all__ = ["build_openapi"]

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _header(description: str, schema_type: str = "string") -> dict[str, Any]:
    return {"description": description, "schema": {"type": schema_type}}


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
    "422": _error("The body is JSON but invalid; the message names each field and the problem"),
}
_ID: Schema = {"type": "integer", "minimum": 1, "maximum": (1 << 63) - 1}  # SQLite's INTEGER
_DOCSET_ID = {"name": "docset_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
_DOCUMENT_ID = {"name": "document_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}


def _query(name: str, description: str, schema: Schema) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


_PER_PAGE = _query("per_page", "Items per page (default 50)", {"type": "integer", "minimum": 1, "maximum": 1000})
_PAGE = _query("page", "Page number, from 1", {"type": "integer", "minimum": 1, "maximum": 1000000})
_NULLABLE_URL: Schema = {"type": ["string", "null"], "format": "uri"}

# Text the server strips first: it must hold something besides white space.
_TEXT_200: Schema = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S"}

_SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "description": "Stable machine-readable code"},
                    "message": {"type": "string", "description": "What was wrong and how to fix it"},
                },
                "additionalProperties": True,
            }
        },
    },
    "Collection": {
        "type": "object",
        "required": ["id", "name", "description", "document_count"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "document_count": {"type": "integer", "minimum": 0},
        },
    },
    "Document": {
        "type": "object",
        "description": "A thesis. With ?fmt= on a docset, 'meta' gives the metadata fields and 'txt' the text link.",
        "required": ["id", "links"],
        "properties": {
            "id": {"type": "integer"},
            "collection": {"type": "string"},
            "title": {"type": "string"},
            "authors": {"type": "array", "items": {"type": "string"}},
            "department": {"type": "string"},
            "degree": {"type": "string"},
            "year": {"type": "integer"},
            "abstract": {"type": "string"},
            "handle": {"type": ["string", "null"]},
            "uri": {"type": ["string", "null"]},
            "text_bytes": {"type": "integer", "minimum": 0, "description": "Size of the full text in UTF-8"},
            "links": {
                "type": "object",
                "required": ["self"],
                "properties": {
                    "self": {"type": "string", "format": "uri"},
                    "text": {"type": "string", "format": "uri"},
                },
            },
        },
    },
    "Docset": {
        "type": "object",
        "required": ["id", "name", "owner", "query", "member_count", "version", "created_at", "updated_at", "links"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "owner": {"type": "string"},
            "query": {"oneOf": [{"type": "null"}, _ref("DocsetQuery")]},
            "member_count": {"type": "integer", "minimum": 0},
            "version": {"type": "integer", "minimum": 1, "description": "Bumped whenever the members change"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "links": {
                "type": "object",
                "required": ["self", "members", "dump", "package_source"],
                "properties": {
                    name: {"type": "string", "format": "uri"} for name in ("self", "members", "dump", "package_source")
                },
            },
        },
    },
    "DocsetQuery": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "query": {
                "type": "string",
                "minLength": 1,
                "maxLength": 1000,
                "pattern": "\\S",
                "description": "SQLite FTS5 query over title, abstract and full text; at most "
                f"{MAX_TERMS} words and phrases, {MAX_PREFIX_TERMS} prefix terms (word*), {MAX_NEAR_GROUPS} "
                f"NEAR groups of at most {MAX_NEAR_TERMS} phrases each, a NEAR distance of at most "
                f"{MAX_NEAR_DISTANCE}",
            },
            "year_from": {"type": "integer", "minimum": 1000, "maximum": 9999},
            "year_to": {"type": "integer", "minimum": 1000, "maximum": 9999},
            "department": {**_TEXT_200, "description": "Exact, any case"},
        },
    },
    "DocsetCreate": {
        "description": "A name and either document_ids or at least one query field (not both)",
        "oneOf": [
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "document_ids"],
                "properties": {
                    "name": _TEXT_200,
                    "document_ids": {"type": "array", "items": _ID},
                },
            },
            {
                "allOf": [_ref("DocsetQuery")],
                "anyOf": [{"required": [field]} for field in ("query", "year_from", "year_to", "department")],
                "type": "object",
                "required": ["name"],
                "properties": {"name": _TEXT_200},
            },
        ],
    },
    "DocsetPatch": {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "anyOf": [
            {"required": ["name"]},
            {"required": ["add_document_ids"], "properties": {"add_document_ids": {"minItems": 1}}},
            {"required": ["remove_document_ids"], "properties": {"remove_document_ids": {"minItems": 1}}},
        ],
        "properties": {
            "name": _TEXT_200,
            "add_document_ids": {"type": "array", "items": _ID},
            "remove_document_ids": {"type": "array", "items": _ID},
        },
    },
    "DocsetList": {
        "type": "object",
        "required": ["docsets", "total", "page", "per_page", "links"],
        "properties": {
            "docsets": {"type": "array", "items": _ref("Docset")},
            "total": {"type": "integer"},
            "page": {"type": "integer"},
            "per_page": {"type": "integer"},
            "links": {"type": "object", "properties": {"self": {"type": "string"}, "next": _NULLABLE_URL}},
        },
    },
    "MemberPage": {
        "type": "object",
        "required": ["docset_id", "total", "per_page", "members", "links"],
        "properties": {
            "docset_id": {"type": "integer"},
            "total": {"type": "integer"},
            "per_page": {"type": "integer"},
            "page": {"type": "integer", "description": "Page mode only"},
            "pages": {"type": "integer", "description": "Page mode only"},
            "after": {"type": "integer", "description": "Cursor mode only"},
            "members": {"type": "array", "items": _ref("Document")},
            "links": {
                "type": "object",
                "properties": {name: _NULLABLE_URL for name in ("self", "first", "prev", "next", "last")},
            },
        },
    },
    "PackageSource": {
        "type": "object",
        "description": "What the packager reads: one page of members; follow 'next' until it is null",
        "required": ["docset", "formats", "members", "next"],
        "properties": {
            "docset": _ref("Docset"),
            "formats": {"type": "array", "items": {"type": "string", "enum": ["meta", "txt"]}},
            "members": {"type": "array", "items": _ref("Document")},
            "next": _NULLABLE_URL,
        },
    },
    "DumpStatus": {
        "type": "object",
        "description": "The package's status (fields from tdm_messaging's HTTP view: state, progress, "
        "estimate, archive size and sha256, or the failure), plus links; errors also carry 'error'",
        "required": ["docset_id", "links"],
        "properties": {
            "docset_id": {"type": "string"},
            "state": {"type": "string"},
            "requested_now": {"type": "boolean", "description": "This call sent a package request"},
            "links": {
                "type": "object",
                "properties": {name: {"type": "string", "format": "uri"} for name in ("self", "docset", "retry")},
            },
            "error": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}},
        },
        "additionalProperties": True,
    },
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
        "202": _json(
            _ref("DumpStatus"), "Requested, accepted or in progress; poll again after Retry-After", retry_after
        ),
        "303": {
            "description": "Complete: Location is the archive; the body gives its size and sha256",
            "headers": {"Location": _header("The archive URL")},
            "content": {"application/json": {"schema": _ref("DumpStatus")}},
        },
        **_DOCSET_ERRORS,
        "429": _json(
            _ref("Error"),
            "Over a per-owner quota: too many packages being built at once (too_many_dumps_in_flight), "
            "too many archives kept (too_many_archives), or this docset's package is already being built "
            "(dump_in_progress); the message says what to do",
            _RETRY_AFTER,
        ),
        "410": _json(_ref("DumpStatus"), "The package was deleted; POST to this URL (or GET ?retry=true) to rebuild"),
        "502": _json(
            _ref("DumpStatus"),
            "Packaging failed (the error says why and how to retry), or the replies could not be understood",
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
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["collections"],
                            "properties": {"collections": {"type": "array", "items": _ref("Collection")}},
                        },
                        "The collections with their document counts",
                    ),
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
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("DocsetCreate")}}},
                "responses": {
                    "201": _json(_ref("Docset"), "Created", {"Location": _header("The docset's URL")}),
                    **_BODY_ERRORS,
                    "422": _error(
                        "The body is JSON but invalid (invalid_body, naming each field), names unknown documents "
                        "(unknown_documents), or its query is not FTS5 (invalid_query), over a query limit "
                        "(query_too_complex) or ran out of the search time (query_too_expensive)"
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
                        {"type": "string", "pattern": r"^[\s,]*(meta|txt)\s*(,[\s,]*(meta|txt)\s*)*[\s,]*$"},
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
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("DocsetPatch")}}},
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
                        "retry", "true: request again if the last package failed or was deleted", {"type": "boolean"}
                    ),
                ],
                "responses": dump_responses,
            },
            "post": {
                "summary": "Request a fresh package (after a failure, or after the docset changed)",
                "parameters": [_DOCSET_ID],
                "responses": dump_responses,
            },
            "head": {
                "summary": "Refused: a dump's GET may start a build, so HEAD is not offered (it starts nothing)",
                "security": [],  # refused before any key is looked at
                "parameters": [_DOCSET_ID],
                "responses": {
                    "404": _error("Not a docset id (not an integer in range)"),
                    "405": {
                        "description": "Not allowed; Allow lists GET, POST, DELETE",
                        "headers": {"Allow": _header("GET, POST, DELETE")},
                    },
                },
            },
            "delete": {
                "summary": "Ask the packager to delete the package",
                "parameters": [_DOCSET_ID],
                "responses": {
                    "202": _json(_ref("DumpStatus"), "Deletion requested"),
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
                            "application/zip": {"schema": {"type": "string", "contentMediaType": "application/zip"}}
                        },
                    },
                    "404": _error("No such archive"),
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
            "HTTP server's own 400 (malformed request), 413 (body over the limit) and 431 (headers too large).",
        },
        "security": [{"apiKey": []}],
        "paths": paths,
        "components": {
            "schemas": {name: dict(schema) for name, schema in _SCHEMAS.items()},
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
    }
