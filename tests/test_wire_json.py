"""wire_json: the versioned JSON format — minor-version tolerance, and every rejection with a readable message."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tdm_messaging.errors import DecodeError, UnknownMessageTypeError, UnsupportedVersionError
from tdm_messaging.models import MESSAGE_TYPES, PROTOCOL_VERSION, Accepted, Complete
from tdm_messaging.wire_json import decode_json, encode_json, parse_version

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def body(**fields: Any) -> bytes:
    data: dict[str, Any] = {
        "protocol_version": PROTOCOL_VERSION,
        "type": "complete",
        "docset_id": "5",
        "request_id": "0190a0b0-0000-7000-8000-000000000001",
        "sequence": 3,
        "timestamp": "2026-11-27T12:00:00Z",
        "archive_url": "https://host/package/5",
        "size_bytes": 345345,
    }
    data.update(fields)
    return json.dumps({k: v for k, v in data.items() if v is not ...}).encode()


def test_encode_is_compact_json_with_every_field() -> None:
    message = Accepted(
        docset_id="5", request_id="0190a0b0-0000-7000-8000-000000000001", timestamp=NOW, estimate_seconds=45
    )
    data = json.loads(encode_json(message))
    assert data == {
        "protocol_version": "1.0",
        "type": "accepted",
        "docset_id": "5",
        "request_id": "0190a0b0-0000-7000-8000-000000000001",
        "sequence": 0,
        "timestamp": "2026-11-27T12:00:00Z",
        "estimate_seconds": 45.0,
    }
    assert b" " not in encode_json(message)


def test_decode_valid_body() -> None:
    message = decode_json(body())
    assert isinstance(message, Complete)
    assert (message.archive_url, message.size_bytes, message.sequence) == ("https://host/package/5", 345345, 3)


@given(st.integers(1, 999), st.dictionaries(st.from_regex(r"x_[a-z]{1,8}", fullmatch=True), st.integers()))
def test_newer_minor_unknown_fields_are_ignored(minor: int, extra: dict[str, int]) -> None:
    message = decode_json(body(protocol_version=f"1.{minor}", **extra))
    assert isinstance(message, Complete)
    assert message.protocol_version == f"1.{minor}"
    assert message.size_bytes == 345345


def test_newer_minor_still_validates_known_fields() -> None:
    with pytest.raises(DecodeError, match=r"field 'size_bytes': Input should be greater than or equal to 0"):
        decode_json(body(protocol_version="1.9", size_bytes=-1, novelty=True))


def test_unknown_fields_at_own_minor_are_refused() -> None:
    with pytest.raises(DecodeError, match=r"field 'novelty' is not part of protocol 1\.0") as info:
        decode_json(body(novelty=True))
    assert "{" not in str(info.value)  # no raw pydantic dump


@pytest.mark.parametrize("version", ["2.0", "0.9", "10.1"])
def test_other_major_is_unsupported(version: str) -> None:
    with pytest.raises(UnsupportedVersionError, match=f"protocol version {version} is not supported") as info:
        decode_json(body(protocol_version=version))
    assert info.value.excerpt == version
    # also when the rest of the body would not validate (checked before the type)
    with pytest.raises(UnsupportedVersionError):
        decode_json(body(protocol_version=version, type="teleport", size_bytes="lots"))


@pytest.mark.parametrize("version", ["1", "one", "1.x", 1.0, None])
def test_malformed_version(version: object) -> None:
    with pytest.raises(DecodeError, match="protocol_version"):
        decode_json(body(protocol_version=version))


def test_unknown_type_lists_the_known_ones() -> None:
    with pytest.raises(UnknownMessageTypeError) as info:
        decode_json(body(type="teleport"))
    text = str(info.value)
    assert "'teleport'" in text
    for name in MESSAGE_TYPES:
        assert name in text
    with pytest.raises(UnknownMessageTypeError):
        decode_json(body(type=42))


def test_missing_type() -> None:
    with pytest.raises(DecodeError, match="field 'type' is missing; expected one of: accepted"):
        decode_json(body(type=...))


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b'{"type": "complete", ', "invalid JSON body: Invalid JSON: EOF while parsing"),
        (b"\xff\xfe", "invalid JSON body"),
        (b"[1, 2]", "must be a JSON object, got list"),
        (b'"complete"', "must be a JSON object, got str"),
        (b"", "invalid JSON body"),
    ],
)
def test_not_a_json_object(raw: bytes, fragment: str) -> None:
    with pytest.raises(DecodeError, match=fragment):
        decode_json(raw)


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"size_bytes": ...}, "field 'size_bytes' is missing"),
        ({"size_bytes": "big"}, "field 'size_bytes': Input should be a valid integer"),
        ({"sha256": "XYZ"}, "field 'sha256': String should match pattern"),
        ({"docset_id": "a/b"}, "field 'docset_id': Value error, invalid docset id 'a/b' at position 1"),
        ({"timestamp": "2026-11-27T12:00:00"}, "field 'timestamp': Input should have timezone info"),
        ({"sequence": -1}, "field 'sequence': Input should be greater than or equal to 0"),
    ],
)
def test_invalid_fields_are_named(fields: dict[str, Any], fragment: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_json(body(**fields))
    assert fragment in str(info.value)
    assert str(info.value).startswith("invalid complete message: ")
    assert "https://errors.pydantic.dev" not in str(info.value)


def test_many_errors_are_summarised() -> None:
    raw = json.dumps({"type": "progress", "items_done": "x", "items_total": "y", "percent": "z"}).encode()
    with pytest.raises(DecodeError, match=r"\(and \d+ more\)"):
        decode_json(raw)


def test_parse_version() -> None:
    assert parse_version("1.0") == (1, 0)
    assert parse_version("12.345") == (12, 345)
    with pytest.raises(DecodeError):
        parse_version("1.")
