"""HTTP plumbing for the Bottle app: JSON responses, JSON errors, the error-catching plugin, body and query parsing."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import bottle
from pydantic import BaseModel, ValidationError

from examples.server.responses import Error, ErrorDetail

__all__ = [
    "ApiError",
    "error_response",
    "json_errors_plugin",
    "json_response",
    "json_too_deep",
    "query_bool",
    "query_int",
    "query_text",
    "read_json_body",
]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


class ApiError(Exception):
    """An error answered to the client as ``{"error": {"code": ..., "message": ...}}`` with ``status``."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.extra = extra


def json_response(
    body: BaseModel | Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None
) -> bottle.HTTPResponse:
    """A JSON response (``application/json``) with ``status`` and extra ``headers``.

    ``body`` is one of the models of :mod:`examples.server.responses` (the OpenAPI document's
    response schemas are theirs); a plain mapping only for the OpenAPI document itself.
    """
    all_headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
    all_headers.update(headers or {})
    data = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    return bottle.HTTPResponse(json.dumps(data, ensure_ascii=False), status=status, headers=all_headers)


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> bottle.HTTPResponse:
    """The JSON error body every failure uses (:class:`~examples.server.responses.Error`).

    Raises:
        pydantic.ValidationError: ``extra`` names a field :class:`~examples.server.responses.ErrorDetail` lacks.
    """
    return json_response(Error(error=ErrorDetail(code=code, message=message, **extra)), status, headers)


_DEFAULT_CODES = {
    400: ("bad_request", "the request is malformed"),
    404: ("not_found", "no such endpoint; see /api/openapi.json for the API"),
    405: ("method_not_allowed", "this method is not allowed here; see /api/openapi.json"),
    413: ("body_too_large", "the request body is too large"),
    500: ("internal_error", "the server failed; the error was logged"),
}


def default_error_handler(error: bottle.HTTPError) -> bottle.HTTPResponse:
    """Bottle's own errors (unknown route, wrong method, ...) as JSON, never HTML or a traceback."""
    status = int(error.status_code)
    code, message = _DEFAULT_CODES.get(status, ("http_error", str(error.status_line)))
    headers = {"Allow": error.headers["Allow"]} if "Allow" in error.headers else None
    if status >= 500:
        log.error("unhandled error answered with %d: %s", status, error.exception or error.body)
    return error_response(status, code, message, headers)


def json_errors_plugin(callback: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a route: :class:`ApiError` becomes its JSON error; anything unexpected is logged and
    answered as a JSON 500 (the traceback stays in the log, never in the response)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message, exc.headers, **exc.extra)
        except bottle.HTTPResponse:
            raise
        except Exception:
            log.exception("error while serving %s %s", bottle.request.method, bottle.request.path)
            return error_response(500, *_DEFAULT_CODES[500])

    return wrapper


MAX_JSON_DEPTH = 32
"""The deepest nesting of arrays and objects a body may have (the API's own bodies need 2)."""

_STRUCTURE = re.compile(rb'[\[\]{}"\\]')
_ASCII_NUMBER = re.compile(r"[0-9]{1,19}")


def json_too_deep(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``raw`` nests arrays/objects deeper than ``limit`` (brackets in strings do not count).

    Linear, and never recursive: it runs before the recursive JSON parser, which would
    otherwise overflow the stack on ``[[[[...``. Malformed JSON is measured as far as it goes.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:  # the common case: cannot be too deep
        return False
    depth = 0
    in_string = False
    escaped_at = -1
    for match in _STRUCTURE.finditer(raw):
        char, at = match.group(), match.start()
        if in_string:
            if at == escaped_at:
                continue
            if char == b"\\":
                escaped_at = at + 1
            elif char == b'"':
                in_string = False
        elif char == b'"':
            in_string = True
        elif char in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif char in (b"]", b"}"):
            depth -= 1
    return False


def read_json_body(model: type[M], max_bytes: int) -> M:
    """The request body, parsed as JSON and validated into ``model``.

    Raises:
        ApiError: 413 when larger than ``max_bytes``; 415 when not ``application/json``;
            400 when not JSON or nested deeper than :data:`MAX_JSON_DEPTH`; 422 naming each invalid field and why.
    """
    request = bottle.request
    length = request.content_length
    if length > max_bytes:
        raise ApiError(413, "body_too_large", f"the request body has {length} bytes; the limit is {max_bytes}")
    content_type = (request.content_type or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the body as JSON with 'Content-Type: application/json' (got {content_type or 'none'!r})",
        )
    raw = request.environ["wsgi.input"].read(max_bytes + 1) if length < 0 else request.body.read()
    if len(raw) > max_bytes:
        raise ApiError(413, "body_too_large", f"the request body is larger than the limit of {max_bytes} bytes")
    if json_too_deep(raw):
        raise ApiError(
            400, "json_too_deep", f"the request body nests arrays or objects deeper than {MAX_JSON_DEPTH} levels"
        )
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the request body is not valid JSON: {exc}") from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in err["loc"]) or "(body)", "problem": err["msg"]} for err in exc.errors()
        ]
        summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
        raise ApiError(422, "invalid_body", f"the request body is invalid: {summary}", problems=problems) from exc


def query_text(name: str) -> str | None:
    """Query parameter ``name`` as text (UTF-8, percent-decoded), or ``None`` when absent.

    WSGI hands the query over as latin-1 characters of its bytes, and so does Bottle's
    ``request.query``: ``fmt=%E2%80%88txt`` would read as mojibake, not as a space and ``txt``.

    Raises:
        ApiError: 400 when the parameter's bytes are not UTF-8.
    """
    raw = bottle.request.query.get(name)
    if raw is None:
        return None
    try:
        return str(raw).encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise ApiError(
            400, "invalid_parameter", f"query parameter {name!r} is not UTF-8 text; percent-encode its UTF-8 bytes"
        ) from None


def query_bool(name: str, *, default: bool) -> bool:
    """Query parameter ``name`` as a boolean, ``true`` or ``false`` in any case; ``default`` when absent.

    Raises:
        ApiError: 400 naming the parameter for any other value (``1`` or ``yes`` would be guesses).
    """
    raw = bottle.request.query.get(name)
    if raw is None:
        return default
    word = str(raw).lower()
    if word not in ("true", "false"):
        raise ApiError(400, "invalid_parameter", f"query parameter {name!r} must be true or false")
    return word == "true"


def query_int(name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
    """Query parameter ``name`` as an int within bounds, or ``default`` when absent.

    Raises:
        ApiError: 400 naming the parameter and the accepted range.
    """
    raw = bottle.request.query.get(name)
    if raw is None:
        return default
    upper = f" and at most {maximum}" if maximum is not None else ""
    # ASCII digits only: int() would also take '', ' 5', '+5', '1_0' and other scripts' digits.
    value = int(raw) if _ASCII_NUMBER.fullmatch(raw) else minimum - 1
    if value < minimum or (maximum is not None and value > maximum):
        raise ApiError(
            400, "invalid_parameter", f"query parameter {name!r} must be an integer at least {minimum}{upper}"
        )
    return value
