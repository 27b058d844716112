"""The JSON wire format (``application/json``): one object per message, versioned by ``protocol_version``."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from pydantic import ValidationError

from tdm_messaging.errors import DecodeError, UnknownMessageTypeError, UnsupportedVersionError
from tdm_messaging.models import (
    MAX_FORMATS,
    MAX_REPLY_TO_LENGTH,
    MAX_URL_LENGTH,
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    PROVEN_PATTERNS,
    Complete,
    Message,
    MessageBase,
    PackageRequest,
    construct_proven_whole,
    message_adapter,
    proven_content_type,
    proven_reply_to,
)

__all__ = [
    "MAX_JSON_DEPTH",
    "check_depth",
    "check_major",
    "decode_json",
    "describe_validation_error",
    "encode_json",
    "parse_version",
]

MAX_JSON_DEPTH: Final = 8
"""The deepest nesting of arrays and objects a body may have; a message is an object holding one list."""

_MAJOR, _MINOR = (int(part) for part in PROTOCOL_VERSION.split("."))
_MAJOR_PREFIX = f"{_MAJOR}."
# The adapter's core validator, called directly: TypeAdapter.validate_json only forwards to it.
_validate_json = message_adapter.validator.validate_json
_KNOWN_TYPES = ", ".join(sorted(MESSAGE_TYPES))
_MAX_REPORTED_ERRORS = 3
_VERSION = re.compile(r"([0-9]{1,4})\.([0-9]{1,4})")
# A JSON string (skipped whole, so brackets inside it do not count) or one bracket. An unterminated
# string runs to the end of the body, and the group is possessive, so the scan is linear on any input.
_STRING_OR_BRACKET = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)|[\[\]{}]', re.DOTALL)


def encode_json(message: MessageBase) -> bytes:
    """The JSON body of ``message``: compact UTF-8, every field present (``null`` for absent optionals)."""
    # The serializer writes bytes directly: model_dump_json() would build a str to re-encode.
    return message.__pydantic_serializer__.to_json(message)


def parse_version(value: object) -> tuple[int, int]:
    """Split a ``major.minor`` protocol version.

    Raises:
        DecodeError: if ``value`` is not a string of the form ``1.0``.
    """
    # ASCII digits of bounded length only: str.isdigit() also says yes to '²', which int() refuses.
    match = _VERSION.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        shown = _short(repr(value))
        raise DecodeError(
            f"protocol_version must be a string like '1.0' (ASCII MAJOR.MINOR), got {shown}", excerpt=shown
        )
    return int(match.group(1)), int(match.group(2))


def check_depth(body: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse a body whose arrays and objects nest deeper than ``limit``, before any parser recurses into it.

    Raises:
        DecodeError: saying how deep the limit is.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return  # the common case: too few brackets to nest that deep, no scan needed
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                raise DecodeError(
                    f"JSON body nests arrays and objects deeper than {limit} levels; a message is one flat object",
                    excerpt=_excerpt(body),
                )
        elif token in (b"]", b"}"):
            depth = max(0, depth - 1)


def check_major(version: str) -> None:
    """Refuse a version whose major is not ours.

    Raises:
        UnsupportedVersionError: naming both versions.
    """
    major, _minor = parse_version(version)
    if major != _MAJOR:
        raise UnsupportedVersionError(
            f"protocol version {version} is not supported: this library speaks {_MAJOR}.x "
            f"(up to {PROTOCOL_VERSION}); upgrade the reader or have the sender use {_MAJOR}.x",
            excerpt=version,
        )


def decode_json(body: bytes) -> Message:
    """Decode a JSON body into a message.

    The common case (a valid message of our own minor version) is parsed and validated
    once, in pydantic's Rust core. Only a body that fails that is parsed again, in Python,
    to say precisely what is wrong, or to drop the fields a newer minor version added.

    Raises:
        UnsupportedVersionError: ``protocol_version`` has another major version.
        UnknownMessageTypeError: ``type`` names no message of this protocol.
        DecodeError: the body is not JSON, not an object, nests deeper than
            :data:`MAX_JSON_DEPTH`, or a field is missing or invalid; the message names the
            field path and the problem.
    """
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH:  # check_depth's own first test, without its call
        check_depth(body)
    if body.endswith(_PROVEN_ENDS) and len(body) <= _PROVEN_MAX_BYTES:
        proven = _decode_proven(body)
        if proven is not None:
            return proven
    try:
        message: Message = _validate_json(body)
    except ValidationError as exc:
        return _decode_slow(body, exc)
    if not message.protocol_version.startswith(_MAJOR_PREFIX):
        check_major(message.protocol_version)
    return message


# --- the common case: a body as encode_json writes it ---------------------------------------------
#
# validate_json calls the models' Python validators from Rust, and converts each date-time to UTC
# (together over half of a package request's or a completion's decode). A body of those two, as
# encode_json writes it (fields in declaration order, no spaces, no escapes, this protocol's own
# version), is instead read by one pattern whose groups hold the proven forms of models.PROVEN_PATTERNS
# (made JSON's: a string without '"' or '\\', an integer without leading zeros), and the message is
# built by construct_proven_whole. Anything else, and any value not proven, is left to validate_json, so
# messages and errors are the same: tests/test_json_fast_path.py holds the two equal over near misses.

_PROVEN = PROVEN_PATTERNS
_JSON_CHAR = r"[!#-\[\]-~]"  # printable ASCII less '"' and '\\': a JSON string's character, unescaped
_JSON_URL = _PROVEN["http_url"].replace("[!-~]", _JSON_CHAR)  # the proven URL, its tail made a JSON string's
_JSON_COUNT = r"0|[1-9][0-9]{0,17}"  # JSON's spelling of the proven count (a leading zero is not JSON)
_JSON_FORMAT = r'"[A-Za-z0-9_-]{1,32}"'  # a format as PackageRequest's check keeps it
_JSON_FORMS: Final = re.compile(
    rf'\{{"protocol_version":"{re.escape(PROTOCOL_VERSION)}","docset_id":"({_PROVEN["docset_id"]})",'
    rf'"request_id":"((?:{_PROVEN["request_id"]})?)","sequence":({_JSON_COUNT}),"timestamp":"({_PROVEN["moment"]})",'
    rf'"type":(?:"package_request","docset_url":"({_JSON_URL})",'
    rf'"formats":\[((?:{_JSON_FORMAT}(?:,{_JSON_FORMAT}){{0,{MAX_FORMATS - 1}}})?)\],'
    rf'"reply_to":"({_JSON_CHAR}{{1,{MAX_REPLY_TO_LENGTH}}})","requested_at":"({_PROVEN["moment"]})"'
    rf'|"complete","archive_url":"({_JSON_URL})","size_bytes":({_JSON_COUNT}),'
    rf'"sha256":(?:"({_PROVEN["sha256"]})"|null),"content_type":"([ !#-\[\]-~]{{1,255}})",'
    rf'"url_expires_at":(?:"({_PROVEN["moment"]})"|null))\}}'
)
# How the bodies the pattern reads end (a request's requested_at, a completion's url_expires_at), and
# the other messages' mostly do not: those are not run through the pattern only to fail at their type.
_PROVEN_ENDS: Final = (b'Z"}', b'"url_expires_at":null}')
# Longer than any body the pattern reads: two URLs' worth of the longest fields, and the rest.
_PROVEN_MAX_BYTES: Final = 2 * MAX_URL_LENGTH + 4096
_fromisoformat = datetime.fromisoformat


def _decode_proven(body: bytes) -> Message | None:
    """The message of a package request or completion as encode_json writes it, or ``None``: validate_json reads it.

    Each value is in a group that proves it (the fields' validators would keep it as it is), or
    is proven by a models.proven_* predicate; the date-times are read as validate_json reads them
    (then kept in UTC), and a date that is not in the calendar leaves the body to validate_json.
    """
    match = _JSON_FORMS.fullmatch(body.decode("latin-1"))  # every character the pattern takes is ASCII
    if match is None:
        return None
    docset_id, request_id, sequence, timestamp_text, docset_url, formats, reply_to, requested_text = match.group(
        1, 2, 3, 4, 5, 6, 7, 8
    )
    try:
        timestamp = _fromisoformat(timestamp_text)
        if docset_url is not None:
            if len(docset_url) > MAX_URL_LENGTH or not proven_reply_to(reply_to, docset_id):
                return None
            return construct_proven_whole(
                PackageRequest,
                {
                    "protocol_version": PROTOCOL_VERSION,
                    "docset_id": docset_id,
                    "request_id": request_id,
                    "sequence": int(sequence),
                    "timestamp": timestamp,
                    "type": "package_request",
                    "docset_url": docset_url,
                    "formats": tuple(formats[1:-1].split('","')) if formats else (),
                    "reply_to": reply_to,
                    "requested_at": timestamp if requested_text == timestamp_text else _fromisoformat(requested_text),
                },
            )
        archive_url, size, sha256, content_type, expires_text = match.group(9, 10, 11, 12, 13)
        if len(archive_url) > MAX_URL_LENGTH or not proven_content_type(content_type):
            return None
        return construct_proven_whole(
            Complete,
            {
                "protocol_version": PROTOCOL_VERSION,
                "docset_id": docset_id,
                "request_id": request_id,
                "sequence": int(sequence),
                "timestamp": timestamp,
                "type": "complete",
                "archive_url": archive_url,
                "size_bytes": int(size),
                "sha256": sha256,
                "content_type": content_type,
                "url_expires_at": None if expires_text is None else _fromisoformat(expires_text),
            },
        )
    except ValueError:  # a date the pattern let through but the calendar has not (2026-02-30)
        return None


def _decode_slow(body: bytes, first_error: ValidationError) -> Message:
    # pydantic's parser is the judge of the syntax (it refuses lone surrogates that json.loads lets
    # through), and its words say where the syntax is wrong.
    if any(error["type"] == "json_invalid" for error in first_error.errors(include_url=False)):
        raise DecodeError(describe_validation_error(first_error, prefix="invalid JSON body"))
    try:
        data: Any = json.loads(body)
    except (ValueError, RecursionError) as exc:  # e.g. an integer longer than Python's 4,300-digit limit
        raise DecodeError(describe_validation_error(first_error, prefix="invalid JSON body")) from exc
    if not isinstance(data, dict):
        raise DecodeError(f"a message must be a JSON object, got {type(data).__name__}", excerpt=_excerpt(body))
    version = data.get("protocol_version", PROTOCOL_VERSION)
    check_major(version)
    _major, minor = parse_version(version)
    kind = data.get("type")
    if kind is None:
        raise DecodeError(f"field 'type' is missing; expected one of: {_KNOWN_TYPES}", excerpt=_excerpt(body))
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
        raise UnknownMessageTypeError(
            f"unknown message type {_short(repr(kind))} (protocol {version}); known types: {_KNOWN_TYPES}",
            excerpt=_short(repr(kind)),
        )
    if minor <= _MINOR:
        raise DecodeError(describe_validation_error(first_error, prefix=f"invalid {kind} message"))
    # A newer minor may add fields; ignoring them is the versioning rule.
    fields = MESSAGE_TYPES[kind].model_fields
    known = {key: value for key, value in data.items() if key in fields}
    try:
        return message_adapter.validate_python(known)
    except ValidationError as exc:
        raise DecodeError(describe_validation_error(exc, prefix=f"invalid {kind} message")) from None


def describe_validation_error(exc: ValidationError, *, prefix: str) -> str:
    """One readable line per problem (at most three): the field path and what is wrong with it."""
    problems = [_describe(error["loc"], error["msg"], error["type"]) for error in exc.errors(include_url=False)]
    shown = problems[:_MAX_REPORTED_ERRORS]
    more = len(problems) - len(shown)
    text = f"{prefix}: " + "; ".join(shown)
    if more:
        text += f" (and {more} more)"
    return text


def _describe(loc: Sequence[int | str], msg: str, kind: str) -> str:
    # The discriminated union puts the message type first in the location; it is noise here.
    path = [_short(str(part), 40) for part in loc]  # a peer's field names may be any length
    if path and path[0] in MESSAGE_TYPES:
        path = path[1:]
    if kind == "json_invalid" or not path:
        return msg
    if kind == "extra_forbidden":
        return (
            f"field {'.'.join(path)!r} is not part of protocol {PROTOCOL_VERSION} "
            "(unknown fields are only ignored from a newer minor version)"
        )
    if kind == "missing":
        return f"field {'.'.join(path)!r} is missing"
    return f"field {'.'.join(path)!r}: {msg}"


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _excerpt(body: bytes, limit: int = 80) -> str:
    text = body[:limit].decode("utf-8", errors="replace")
    return text + ("..." if len(body) > limit else "")
