"""wire_json's proven reader gives exactly what validate_json gives, for every body it takes.

``decode_json`` reads a package request or a completion as ``encode_json`` writes it with one
pattern and ``construct_proven_whole``; anything that pattern leaves goes to ``validate_json`` as
before. So it is enough that every message the proven reader builds is validate_json's message of
the same body in every respect (class, values, their types and order, fields set, repr, JSON, hash),
over the writer's bodies and their near misses (a character inserted, dropped or changed, full
Unicode, values of every near-valid form), and that the writer's bodies do take it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from bench.codec import sample_messages
from tdm_messaging.models import MAX_REPLY_TO_LENGTH, PROVEN_PATTERNS, Complete, PackageRequest, message_adapter
from tdm_messaging.wire_json import _JSON_URL, _decode_proven, decode_json, encode_json
from tests import strategies
from tests.test_proven import (
    CONTENT_TYPES,
    DOCSET_ID_TEXT,
    MOMENT_TEXTS,
    REQUEST_ID_TEXT,
    SETTINGS,
    URLS,
    _near,
    _snapshot,
)


def _assert_proven_is_validated(body: bytes) -> None:
    """If the proven reader takes ``body``, validate_json takes it too, and the two messages are the same."""
    proven = _decode_proven(body)
    if proven is None:
        return
    validated = message_adapter.validate_json(body)
    assert _snapshot(proven) == _snapshot(validated)
    assert proven == validated and validated == proven
    assert decode_json(body) == validated


def _mutated(body: bytes, at: int, junk: str, mode: int) -> bytes:
    text = body.decode("utf-8")
    at = min(at, len(text))
    changed = [text[:at] + junk + text[at:], text[:at] + text[at + 1 :], text[:at] + junk + text[at + 1 :]][mode]
    return changed.encode("utf-8", "surrogatepass")


WRITTEN = st.one_of(strategies.package_requests(), strategies.completes()).map(encode_json)


@SETTINGS
@given(st.one_of(strategies.package_requests(), strategies.completes()))
def test_the_writers_requests_and_completions_take_the_proven_reader(message: PackageRequest | Complete) -> None:
    body = encode_json(message)
    proven = _decode_proven(body)
    if message.sequence >= 10**18 or getattr(message, "size_bytes", 0) >= 10**18:
        assert proven is None  # 19 digits: more than the proven count's, validate_json checks the bound
        return
    assert proven is not None, body
    assert _snapshot(proven) == _snapshot(message_adapter.validate_json(body))
    assert proven == message


def test_the_bench_messages_take_the_proven_reader_when_of_its_types() -> None:
    for message in sample_messages():
        proven = _decode_proven(encode_json(message))
        assert (proven is not None) == (message.type in ("package_request", "complete")), message.type
        assert proven is None or proven == message


@SETTINGS
@given(WRITTEN, st.integers(0, 600), st.characters(), st.integers(0, 2))
@example(b'{"sequence":1}', 0, "x", 0)
def test_near_misses_of_written_bodies_are_validate_jsons_messages(body: bytes, at: int, junk: str, mode: int) -> None:
    _assert_proven_is_validated(_mutated(body, at, junk, mode))


def _request_body(**changes: Any) -> bytes:
    fields: dict[str, Any] = {
        "protocol_version": "1.0",
        "docset_id": "5",
        "request_id": "019a6f2e-8c1b-7d3e-9f40-1a2b3c4d5e6f",
        "sequence": 0,
        "timestamp": "2026-11-27T12:00:00.123456Z",
        "type": "package_request",
        "docset_url": "http://server/api/docsets/5?fmt=meta,txt",
        "formats": ["meta", "txt"],
        "reply_to": "package/5",
        "requested_at": "2026-11-27T12:00:00.123456Z",
    }
    fields.update(changes)
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")


def _complete_body(**changes: Any) -> bytes:
    fields: dict[str, Any] = {
        "protocol_version": "1.0",
        "docset_id": "5",
        "request_id": "019a6f2e-8c1b-7d3e-9f40-1a2b3c4d5e6f",
        "sequence": 3,
        "timestamp": "2026-11-27T12:00:00Z",
        "type": "complete",
        "archive_url": "https://h/package/5.zip",
        "size_bytes": 1,
        "sha256": None,
        "content_type": "application/zip",
        "url_expires_at": None,
    }
    fields.update(changes)
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")


FORMAT_LISTS = st.lists(st.one_of(_near(r"[A-Za-z0-9_-]{1,32}"), st.just("")), max_size=34)
REPLY_TOS = st.one_of(
    _near(r"package/[0-9]{1,3}"),
    _near(r"[A-Za-z0-9._~:@+-]{1,130}/package/[0-9]{1,3}"),
    st.integers(MAX_REPLY_TO_LENGTH - 12, MAX_REPLY_TO_LENGTH - 8).map(lambda n: "x" * n + "/package/5"),
)
COUNTS = st.one_of(
    st.integers(-2, 2),
    st.integers(2**63 - 3, 2**63 + 1),
    st.integers(10**17, 10**19),
    st.sampled_from(["1", "01", 1.0, 1e3, True, None]),
)


REQUEST_VALUES = st.fixed_dictionaries(
    {
        "docset_id": DOCSET_ID_TEXT,
        "request_id": REQUEST_ID_TEXT,
        "sequence": COUNTS,
        "timestamp": MOMENT_TEXTS,
        "docset_url": URLS,
        "formats": FORMAT_LISTS,
        "reply_to": REPLY_TOS,
        "requested_at": MOMENT_TEXTS,
    }
)


@SETTINGS
@given(REQUEST_VALUES)
@example({"timestamp": "2026-02-30T00:00:00Z"})
@example({"formats": ["m"] * 33})
@example({"formats": ["m"] * 32})
@example({"reply_to": "package/6"})
@example({"reply_to": "ns/package/5"})
@example({"docset_url": "http://h/" + "a" * 2040})
@example({"docset_url": "http://h/" + "a" * 2039})
@example({"docset_url": 'http://h/"'})
@example({"docset_url": "http://h/\\"})
@example({"requested_at": "2026-11-27T12:00:00.123457Z"})
def test_package_request_values_are_validate_jsons(values: dict[str, Any]) -> None:
    _assert_proven_is_validated(_request_body(**values))


@SETTINGS
@given(
    URLS,
    COUNTS,
    st.one_of(st.none(), _near(r"[0-9a-f]{64}")),
    st.one_of(CONTENT_TYPES, st.just("application/zip")),
    st.one_of(st.none(), MOMENT_TEXTS),
)
@example("http://h/x", 1, "A" * 64, "application/zip", None)
@example("http://h/x", 1, None, 'a/b;x="y"', None)
@example("http://h/x", 1, None, "a/" + "b" * 254, None)
@example("http://h/x", 1, None, "application/zip", "9999-01-01T00:00:00Z")
@example("http://h/x", 1, None, "application/zip", "2026-11-27T24:00:00Z")
def test_complete_values_are_validate_jsons(
    url: str, size: Any, sha256: str | None, content_type: str, expires: str | None
) -> None:
    _assert_proven_is_validated(
        _complete_body(
            archive_url=url, size_bytes=size, sha256=sha256, content_type=content_type, url_expires_at=expires
        )
    )


@SETTINGS
@given(st.text(max_size=60))
@example('http://h/a"b')
@example("http://h/a\\b")
def test_the_json_url_is_the_proven_url_without_quotes_or_backslashes(text: str) -> None:
    assert PROVEN_PATTERNS["http_url"] != _JSON_URL  # the replace found the tail's class
    for candidate in (text, "http://h/" + text):
        if re.fullmatch(_JSON_URL, candidate):
            assert re.fullmatch(PROVEN_PATTERNS["http_url"], candidate)
            assert '"' not in candidate and "\\" not in candidate


@SETTINGS
@given(WRITTEN, st.sampled_from([b" ", b"\n", b"\xef\xbb\xbf"]), st.booleans())
def test_other_spellings_of_written_bodies_are_left_to_validate_json(body: bytes, space: bytes, before: bool) -> None:
    """Whitespace around the object (valid JSON) is not the writer's spelling: validate_json reads it, the same."""
    spelled = space + body if before else body + space
    assert _decode_proven(spelled) is None
    try:
        validated = message_adapter.validate_json(spelled)
    except ValidationError:
        return
    assert decode_json(spelled) == validated


def test_a_number_with_a_leading_zero_is_not_json() -> None:
    """``"sequence":03`` is not JSON: validate_json refuses it, so the proven reader must leave it."""
    for message in sample_messages()[:4]:
        for key in (b'"sequence":', b'"size_bytes":'):
            body = encode_json(message)
            if key in body:
                spelled = body.replace(key, key + b"0")
                assert _decode_proven(spelled) is None
                with pytest.raises(ValidationError):
                    message_adapter.validate_json(spelled)
