"""Issue 10, deliver 1: the decoders are total over full Unicode, any header map and any bytes, in both formats.

For any envelope, ``decode`` returns a message or raises ``DecodeError`` (or a subclass), nothing
else; and whatever it returns can be used: it re-encodes (JSON always; text/plain or EncodeError),
no header written carries CR/LF/NUL, it folds, and its HTTP view is computed without error.
Example counts are explicit so the file runs in well under a minute on two cores.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tdm_messaging.codec import JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE, DecodeContext, decode, encode
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import DecodeError, EncodeError
from tdm_messaging.http_view import http_view
from tdm_messaging.models import Message
from tdm_messaging.status import fold
from tests import strategies

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
CONTEXTS = st.sampled_from(
    [DecodeContext(), DecodeContext(docset_id="5", received_at=NOW), DecodeContext(docset_id="5", now=NOW)]
)


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )


# Values that broke the seed-era decoders, mixed with anything at all.
HOSTILE_TEXT = (
    st.sampled_from(
        [
            "\u00b2",
            "\u00b9.0",
            "1.\u00b2",
            "\u0661.\u0660",
            "1" * 5000,
            "1." + "0" * 5000,
            "1e400",
            "Infinity",
            "NaN",
            "-1",
            "zzzz",
            "ffffffff-ffff-7fff-bfff-ffffffffffff",
            "javascript:alert(1)",
            "file:///etc/passwd",
            "https://b/p.zip\r\nSet-Cookie: x",
            "application/zip\r\nX: y",
            "http://[::1/api/docsets/5",
            "\x00",
            "\ud800",
            "9999-12-31T23:59:59+14:00",
            "0001-01-01T00:00:00-12:00",
        ]
    )
    | st.text()
)
HEADER_NAMES = st.sampled_from(
    [
        "tdm-type",
        "tdm-protocol-version",
        "tdm-docset-id",
        "tdm-request-id",
        "tdm-sequence",
        "tdm-timestamp",
        "tdm-requested-at",
        "tdm-formats",
        "tdm-attempt",
        "content-type",
    ]
) | st.text(max_size=20)
HEADERS = st.dictionaries(HEADER_NAMES, HOSTILE_TEXT, max_size=8)
CONTENT_TYPES = st.sampled_from([JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE, "", "application/x+json", "text/plain; x=y"])
CONTENT_TYPES = CONTENT_TYPES | st.text(max_size=40)

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**30, max_value=10**300)
    | st.floats(allow_nan=True, allow_infinity=True)
    | HOSTILE_TEXT
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


def _utf8(text: str) -> bytes:
    # surrogatepass: full Unicode text includes lone surrogates, which become invalid UTF-8 bytes.
    return text.encode("utf-8", "surrogatepass")


def _deep(depth: int, opener: str) -> bytes:
    closer = {"[": "]", '{"a":': "}"}[opener]
    return (opener * depth + "1" + closer * depth).encode()


BODIES = st.one_of(
    st.binary(max_size=2000),
    st.text().map(_utf8),
    st.lists(HOSTILE_TEXT, max_size=4).map(lambda lines: _utf8("\n".join(lines))),
    JSON_VALUES.map(lambda value: json.dumps(value, allow_nan=True).encode()),
    st.builds(_deep, st.integers(1, 150_000), st.sampled_from(["[", '{"a":'])),
)


def check_usable(message: Message) -> None:
    """What a reader does next with a decoded message must not fail either."""
    as_json = encode(message, JSON_CONTENT_TYPE)
    assert decode(as_json) == message
    try:
        as_text = encode(message, TEXT_CONTENT_TYPE)
    except EncodeError:
        as_text = None
    for envelope in (as_json, as_text):
        if envelope is not None:
            assert not any(ch in value for value in envelope.headers.values() for ch in "\r\n\x00")
    status = fold([message], message.docset_id)
    http_view(status, now=NOW)


def decode_totally(envelope: Envelope, context: DecodeContext) -> None:
    try:
        message = decode(envelope, context=context)
    except DecodeError:
        return
    check_usable(message)


@_settings(1200)
@given(body=BODIES, content_type=CONTENT_TYPES, headers=HEADERS, context=CONTEXTS)
def test_decode_is_total_over_any_envelope(
    body: bytes, content_type: str, headers: dict[str, str], context: DecodeContext
) -> None:
    decode_totally(Envelope(body, content_type, headers), context)


@_settings(400)
@given(message=strategies.messages(), headers=HEADERS, context=CONTEXTS, data=st.data())
def test_text_messages_with_hostile_headers(
    message: Message, headers: dict[str, str], context: DecodeContext, data: st.DataObject
) -> None:
    try:
        envelope = encode(message, TEXT_CONTENT_TYPE)
    except EncodeError:
        envelope = encode(message, JSON_CONTENT_TYPE)
    merged = {**envelope.headers, **headers}
    decode_totally(Envelope(envelope.body, data.draw(st.sampled_from([TEXT_CONTENT_TYPE, ""])), merged), context)


@_settings(500)
@given(message=strategies.messages(), changes=st.dictionaries(st.text(max_size=20), JSON_VALUES, max_size=3))
def test_json_messages_with_hostile_fields(message: Message, changes: dict[str, Any]) -> None:
    fields: dict[str, Any] = json.loads(encode(message).body)
    # Half the time change fields the message has (a valid shape with a bad value), else add any.
    names = sorted(fields)
    renamed = {names[sum(map(ord, key)) % len(names)] if len(key) % 2 else key: value for key, value in changes.items()}
    body = json.dumps({**fields, **renamed}, allow_nan=True).encode()
    decode_totally(Envelope(body, JSON_CONTENT_TYPE), DecodeContext(now=NOW))


@_settings(200)
@given(message=strategies.messages(), depth=st.integers(9, 120_000), field=st.text(max_size=10))
def test_json_messages_with_a_deeply_nested_field(message: Message, depth: int, field: str) -> None:
    fields: dict[str, Any] = json.loads(encode(message).body)
    head = json.dumps({**fields, field: 0})[:-1].rsplit("0", 1)[0]
    body = (head + "[" * depth + "]" * depth + "}").encode()
    decode_totally(Envelope(body, JSON_CONTENT_TYPE), DecodeContext())


@_settings(300)
@given(message=strategies.messages(), content_type=st.sampled_from([JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE]))
def test_every_valid_message_round_trips_and_is_usable(message: Message, content_type: str) -> None:
    try:
        envelope = encode(message, content_type)
    except EncodeError:
        return  # a value text/plain cannot carry (said in the error); JSON carries every message
    context = DecodeContext(docset_id=message.docset_id, request_id=message.request_id, received_at=message.timestamp)
    got = decode(envelope, context=context)
    assert got == message
    check_usable(got)
