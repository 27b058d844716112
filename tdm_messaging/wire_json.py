"""The JSON wire format (``application/json``): one object per message, versioned by ``protocol_version``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from tdm_messaging.errors import DecodeError, UnknownMessageTypeError, UnsupportedVersionError
from tdm_messaging.models import MESSAGE_TYPES, PROTOCOL_VERSION, Message, MessageBase, message_adapter

__all__ = ["check_major", "decode_json", "describe_validation_error", "encode_json", "parse_version"]

_MAJOR, _MINOR = (int(part) for part in PROTOCOL_VERSION.split("."))
_KNOWN_TYPES = ", ".join(sorted(MESSAGE_TYPES))
_MAX_REPORTED_ERRORS = 3


def encode_json(message: MessageBase) -> bytes:
    """The JSON body of ``message``: compact UTF-8, every field present (``null`` for absent optionals)."""
    # The serializer writes bytes directly: model_dump_json() would build a str to re-encode.
    return message.__pydantic_serializer__.to_json(message)


def parse_version(value: object) -> tuple[int, int]:
    """Split a ``major.minor`` protocol version.

    Raises:
        DecodeError: if ``value`` is not a string of the form ``1.0``.
    """
    if isinstance(value, str):
        major, sep, minor = value.partition(".")
        if sep and major.isdigit() and minor.isdigit():
            return int(major), int(minor)
    raise DecodeError(f"protocol_version must be a string like '1.0', got {value!r}", excerpt=repr(value))


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
        DecodeError: the body is not JSON, not an object, or a field is missing or invalid;
            the message names the field path and the problem.
    """
    try:
        message: Message = message_adapter.validate_json(body)
    except ValidationError as exc:
        return _decode_slow(body, exc)
    if not message.protocol_version.startswith(f"{_MAJOR}."):
        check_major(message.protocol_version)
    return message


def _decode_slow(body: bytes, first_error: ValidationError) -> Message:
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        # pydantic's parser already said where the syntax is wrong; prefer its words.
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
            f"unknown message type {kind!r} (protocol {version}); known types: {_KNOWN_TYPES}",
            excerpt=repr(kind),
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
    path = [str(part) for part in loc]
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


def _excerpt(body: bytes, limit: int = 80) -> str:
    text = body[:limit].decode("utf-8", errors="replace")
    return text + ("..." if len(body) > limit else "")
