"""codec under hostile input (issue 10): every case the issue reports is refused with a DecodeError, never a crash."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tdm_messaging.codec import JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE, DecodeContext, decode, encode
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import DecodeError, EncodeError
from tdm_messaging.http_view import http_view
from tdm_messaging.ids import MAX_CLOCK_SKEW, request_id_from
from tdm_messaging.models import Accepted, Complete, Message
from tdm_messaging.status import DocsetStatus, State

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
RID = request_id_from(int(NOW.timestamp() * 1000), bytes(10))
CONTEXT = DecodeContext(docset_id="5", received_at=NOW)


DROP = object()
"""A field value meaning "leave the field out"."""


def json_body(**fields: Any) -> bytes:
    """An Accepted as JSON, with ``fields`` changed (``DROP`` removes one)."""
    base: dict[str, Any] = {
        "type": "accepted",
        "docset_id": "5",
        "request_id": RID,
        "timestamp": NOW.isoformat(),
        "estimate_seconds": 45,
    }
    merged = {key: value for key, value in {**base, **fields}.items() if value is not DROP}
    return json.dumps(merged).encode()


def refuse(envelope: Envelope, fragment: str = "", context: DecodeContext = CONTEXT) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(envelope, context=context)
    assert fragment in str(info.value)
    return info.value


def text(body: bytes, **headers: str) -> Envelope:
    return Envelope(body, TEXT_CONTENT_TYPE, headers)


def as_json(body: bytes) -> Envelope:
    return Envelope(body, JSON_CONTENT_TYPE)


# --- 1. poison messages ----------------------------------------------------------------------

REQUEST_LINE = b"http://127.0.0.1:8080/api/docsets/1"


@pytest.mark.parametrize("sequence", ["\u00b2", "\u0661", "1" * 5000, "-1", "1 ", ""])
def test_text_request_with_a_bad_tdm_sequence(sequence: str) -> None:
    refuse(text(REQUEST_LINE, **{"tdm-sequence": sequence}), "tdm-sequence must be ASCII digits")


@pytest.mark.parametrize("version", ["\u00b9.0", "1." + "0" * 5000, "\u0661.\u0660", "1.\u00b2", "1.0\n", " 1.0"])
def test_json_protocol_version_must_be_ascii_major_minor(version: str) -> None:
    refuse(as_json(json_body(protocol_version=version)), "protocol_version")


def test_delete_request_with_a_superscript_minor() -> None:
    body = json.dumps(
        {"type": "delete_request", "docset_id": "5", "request_id": RID, "timestamp": NOW.isoformat(),
         "protocol_version": "1.\u00b2"}
    ).encode()  # fmt: skip
    refuse(as_json(body), "protocol_version")


def test_text_protocol_version_header_must_be_ascii() -> None:
    refuse(text(b"Accepted.", **{"tdm-protocol-version": "\u00b9.0"}), "protocol_version")


@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_json_nested_100000_deep(opener: bytes) -> None:
    refuse(as_json(opener * 100_000), "deeper than")


def test_json_nesting_inside_a_known_field() -> None:
    refuse(as_json(json_body(formats=[[[[[[[[[["x"]]]]]]]]]])), "deeper than")


def test_json_brackets_inside_strings_do_not_count() -> None:
    message = decode(as_json(json_body(type="failed", reason='[[[[[[[[[[{{{{{{{{{{\\"', estimate_seconds=DROP)))
    assert message.type == "failed"


def test_json_integer_longer_than_pythons_limit() -> None:
    refuse(as_json(json_body(sequence=int("9" * 4000)).replace(b"9" * 4000, b"9" * 5000)))


def test_text_size_superscript_is_refused() -> None:
    refuse(text(b"Complete: http://x/a.zip\nSize: \xc2\xb2"), "ASCII digits")


def test_text_progress_with_foreign_digits() -> None:
    refuse(text("Progress: \u0661/\u0662".encode()), "Progress")


def test_text_request_url_that_does_not_parse() -> None:
    refuse(text(b"http://[::1/api/docsets/5"))


def test_text_request_url_naming_no_docset() -> None:
    refuse(text(b"http://server/api/docsets/"), "names no docset")


# --- 2. JSON accepts what text refuses -------------------------------------------------------


@pytest.mark.parametrize("raw", [b"1e400", b"Infinity", b"-Infinity", b"NaN"])
@pytest.mark.parametrize("field", ["estimate_seconds", "eta_seconds"])
def test_non_finite_seconds_are_refused(raw: bytes, field: str) -> None:
    if field == "estimate_seconds":
        body = json_body(estimate_seconds=12345).replace(b"12345", raw)
    else:
        body = json_body(
            type="progress", items_done=1, items_total=2, percent=50, eta_seconds=12345, estimate_seconds=DROP
        ).replace(b"12345", raw)
    refuse(as_json(body), field)


def complete_body(**fields: Any) -> bytes:
    complete = {"type": "complete", "estimate_seconds": DROP, "archive_url": "https://b/p.zip", "size_bytes": 1}
    return json_body(**{**complete, **fields})


@pytest.mark.parametrize(
    "url",
    [
        "https://b/p.zip\r\nSet-Cookie: x=1",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "HTTPS://b/p.zip",
        "https://b/\u00e9.zip",
        "https://b/p.zip\x00",
        "https:///no-host",
        "https://" + "a" * 5000,
    ],
)
def test_archive_url_must_be_plain_http(url: str) -> None:
    refuse(as_json(complete_body(archive_url=url)), "archive_url")


@pytest.mark.parametrize("content_type", ["application/zip\r\nX-Evil: 1", "zip", "application/zip\n", "a/b; c"])
def test_content_type_must_be_a_media_type(content_type: str) -> None:
    refuse(as_json(complete_body(content_type=content_type)), "content_type")


def test_content_type_with_parameters_is_a_media_type() -> None:
    message = decode(as_json(complete_body(content_type='application/zip; name="p.zip"')))
    assert isinstance(message, Complete)


def test_text_archive_line_refuses_a_javascript_url() -> None:
    refuse(text(b"Complete: javascript:alert(1)\nSize: 1"), "archive_url")


# --- 3. forged replies ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_id",
    ["zzzz", RID.upper(), RID.replace("-7", "-4", 1), RID[:19] + "c" + RID[20:], RID + "\n", " " + RID, "\u0660" * 36],
)
def test_request_ids_must_be_uuid7_or_legacy(request_id: str) -> None:
    refuse(as_json(json_body(request_id=request_id)), "request_id")
    refuse(text(b"Accepted.", **{"tdm-request-id": request_id}), "request_id")


def test_legacy_empty_request_id_is_still_read() -> None:
    assert decode(as_json(json_body(request_id=""))).request_id == ""


def test_request_id_from_the_future_is_refused_when_the_reader_has_a_clock() -> None:
    ahead = NOW + MAX_CLOCK_SKEW + timedelta(seconds=1)
    future = request_id_from(int(ahead.timestamp() * 1000), bytes(10))
    clocked = DecodeContext(docset_id="5", received_at=NOW, now=NOW)
    refuse(as_json(json_body(request_id=future)), "no server made it", context=clocked)
    refuse(text(b"Accepted.", **{"tdm-request-id": future}), "no server made it", context=clocked)
    within = request_id_from(int((NOW + MAX_CLOCK_SKEW).timestamp() * 1000), bytes(10))
    assert decode(as_json(json_body(request_id=within)), context=clocked).request_id == within
    assert decode(as_json(json_body(request_id=future))).request_id == future  # no clock: form only


def test_the_last_48_bit_request_id_is_refused_without_overflow() -> None:
    last = "ffffffff-ffff-7fff-bfff-ffffffffffff"
    refuse(as_json(json_body(request_id=last)), "no server made it", context=DecodeContext(now=NOW))


# --- encode never writes a header value that breaks a frame ------------------------------------


@pytest.mark.parametrize("content_type", [JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE])
@pytest.mark.parametrize("bad", ["5\r\nX: 1", "5\n", "5\x00"])
def test_encode_refuses_header_values_with_line_breaks(content_type: str, bad: str) -> None:
    # The models refuse such a docset id; model_construct skips them, the encoder still refuses.
    forged: Message = Accepted.model_construct(
        docset_id=bad, request_id=RID, sequence=0, timestamp=NOW, estimate_seconds=None
    )
    with pytest.raises(EncodeError, match="CR, LF or NUL"):
        encode(forged, content_type)


# --- the HTTP view of a hand-built status cannot overflow ------------------------------------


def test_http_view_of_an_infinite_estimate_is_no_500() -> None:
    status = DocsetStatus(
        "5", State.ACCEPTED, RID, None, float("inf"), None, None, None, NOW
    )  # built by hand: fold() only ever holds finite estimates now
    view = http_view(status, now=NOW)
    assert view.status_code == 202
    assert view.header("Retry-After") == "5"
