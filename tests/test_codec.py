"""codec: encode/decode round trips (hypothesis, JSON and text/plain), headers, content types, size limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tdm_messaging.codec import (
    DEFAULT_MAX_BODY_BYTES,
    EPOCH_UTC,
    JSON_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    DecodeContext,
    decode,
    encode,
    guess_content_type,
)
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import BodyTooLargeError, DecodeError, EncodeError, LocalProtocolError, RemoteProtocolError
from tdm_messaging.models import (
    LEGACY_REQUEST_ID,
    Accepted,
    Complete,
    Deleted,
    DeleteRequest,
    Failed,
    Message,
    PackageRequest,
    Progress,
)
from tests import strategies

# --- strategies ----------------------------------------------------------------------------

docset_ids = st.from_regex(r"[A-Za-z0-9._~:@+-]{1,24}", fullmatch=True)
request_ids = strategies.request_ids(legacy=True)
zones = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))])
moments = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=zones)
seconds = st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False)
urls = st.from_regex(r"https://[a-z]{1,12}\.example/[A-Za-z0-9/._~%=?&-]{0,40}", fullmatch=True)
words = st.from_regex(r"[a-z][a-z0-9_-]{0,7}", fullmatch=True)
# Any text, line breaks and backslashes included; the text form trims surrounding spaces and tabs.
reasons = st.text(min_size=1, max_size=60).filter(lambda s: s == s.strip(" \t") and s != "")


@st.composite
def messages(draw: st.DrawFn) -> Message:
    """Any valid message, with values at the edges of what each form can carry."""
    common = {
        "docset_id": draw(docset_ids),
        "request_id": draw(request_ids),
        "sequence": draw(st.integers(0, 10**9)),
        "timestamp": draw(moments),
    }
    kind = draw(st.sampled_from(["request", "accepted", "progress", "complete", "failed", "delete", "deleted"]))
    if kind == "request":
        query = draw(st.sampled_from(["", "?fmt=meta,txt", "?fmt=txt", "?a=1"]))
        return PackageRequest(
            **common,
            docset_url=f"http://server/api/docsets/{common['docset_id']}{query}",
            formats=tuple(draw(st.lists(words, max_size=3))),
            reply_to=f"package/{common['docset_id']}",
            requested_at=draw(moments),
        )
    if kind == "accepted":
        return Accepted(**common, estimate_seconds=draw(st.none() | seconds))
    if kind == "progress":
        total = draw(st.integers(0, 10**6))
        return Progress(
            **common,
            items_done=draw(st.integers(0, total)),
            items_total=total,
            percent=draw(st.floats(0, 100)),
            eta_seconds=draw(st.none() | seconds),
        )
    if kind == "complete":
        return Complete(
            **common,
            archive_url=draw(urls),
            size_bytes=draw(st.integers(0, 2**53)),
            sha256=draw(st.none() | st.from_regex(r"[0-9a-f]{64}", fullmatch=True)),
            content_type=draw(st.sampled_from(["application/zip", "application/x-tar", "application/gzip"])),
            url_expires_at=draw(st.none() | moments),
        )
    if kind == "failed":
        return Failed(**common, reason=draw(reasons), retryable=draw(st.booleans()))
    cls = DeleteRequest if kind == "delete" else Deleted
    return cls(**common, archive_url=draw(st.none() | urls))


NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
RID = "0190a0b0-0000-7000-8000-000000000001"
BASE = {"docset_id": "5", "request_id": RID, "sequence": 2, "timestamp": NOW}

# --- round trips ---------------------------------------------------------------------------


@settings(max_examples=300)
@given(messages())
def test_json_round_trip(message: Message) -> None:
    envelope = encode(message)
    assert envelope.content_type == JSON_CONTENT_TYPE
    assert decode(envelope) == message


@settings(max_examples=300)
@given(messages())
def test_text_round_trip_with_headers(message: Message) -> None:
    envelope = encode(message, TEXT_CONTENT_TYPE)
    assert envelope.content_type == TEXT_CONTENT_TYPE
    decoded = decode(envelope)
    assert decoded == message
    assert type(decoded) is type(message)


@given(messages())
def test_text_body_alone_keeps_what_the_lines_say(message: Message) -> None:
    """Without headers (a seed peer), the lines still carry every field but the ones the context gives."""
    envelope = encode(message, TEXT_CONTENT_TYPE)
    bare = Envelope(envelope.body, TEXT_CONTENT_TYPE)
    context = DecodeContext(docset_id=message.docset_id, request_id=message.request_id, received_at=message.timestamp)
    decoded = decode(bare, context=context)
    expected = message.model_copy(update={"sequence": 0})
    if isinstance(message, PackageRequest):
        # formats come from the URL's fmt (default meta,txt), requested_at from the time of receipt
        expected = expected.model_copy(update={"formats": decoded.formats, "requested_at": message.timestamp})  # type: ignore[union-attr]
    assert decoded == expected


@given(messages(), st.sampled_from(["\n", "\r\n", "  \n\n", " \t\r\n"]))
def test_text_tolerates_crlf_and_trailing_whitespace(message: Message, ending: str) -> None:
    envelope = encode(message, TEXT_CONTENT_TYPE)
    body = envelope.body.decode().replace("\n", ending.replace("\n", "") + "\n") + ending
    assert decode(Envelope(body.encode(), TEXT_CONTENT_TYPE, envelope.headers)) == message


@given(messages())
def test_headers_describe_the_message(message: Message) -> None:
    for content_type in (JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE):
        headers = encode(message, content_type).headers
        assert headers["tdm-type"] == message.type
        assert headers["tdm-protocol-version"] == message.protocol_version
        assert headers["tdm-docset-id"] == message.docset_id
        assert headers["tdm-request-id"] == message.request_id
        assert headers["tdm-sequence"] == str(message.sequence)
    # the timestamp header is for text bodies only: a JSON body carries its own
    assert "tdm-timestamp" not in encode(message, JSON_CONTENT_TYPE).headers
    text_headers = encode(message, TEXT_CONTENT_TYPE).headers
    assert datetime.fromisoformat(text_headers["tdm-timestamp"]) == message.timestamp


def test_text_decode_defaults_come_from_the_context() -> None:
    got = decode(Envelope(b"Accepted. 45 seconds", TEXT_CONTENT_TYPE), context=DecodeContext(docset_id="5"))
    assert got == Accepted(docset_id="5", request_id=LEGACY_REQUEST_ID, timestamp=EPOCH_UTC, estimate_seconds=45)
    when = datetime(2026, 1, 2, tzinfo=UTC)
    got = decode(
        Envelope(b"Accepted.", TEXT_CONTENT_TYPE),
        context=DecodeContext(docset_id="7", request_id=RID, received_at=when),
    )
    assert (got.docset_id, got.request_id, got.timestamp) == ("7", RID, when)


def test_text_headers_win_over_the_context() -> None:
    headers = {"tdm-docset-id": "9", "tdm-request-id": RID, "tdm-sequence": "4", "tdm-timestamp": NOW.isoformat()}
    got = decode(Envelope(b"Accepted.", TEXT_CONTENT_TYPE, headers), context=DecodeContext(docset_id="5"))
    assert (got.docset_id, got.request_id, got.sequence, got.timestamp) == ("9", RID, 4, NOW)


# --- content types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"type": "accepted"}', JSON_CONTENT_TYPE),
        (b'  \n {"a": 1}', JSON_CONTENT_TYPE),
        (b"Accepted. 45 seconds", TEXT_CONTENT_TYPE),
        (b"http://server/api/docsets/5", TEXT_CONTENT_TYPE),
        (b"", TEXT_CONTENT_TYPE),
    ],
)
def test_guess_content_type(body: bytes, expected: str) -> None:
    assert guess_content_type(body) == expected


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "APPLICATION/JSON", "application/vnd.tdm+json", ""],
)
def test_json_content_type_variants(content_type: str) -> None:
    message = Accepted(**BASE, estimate_seconds=3)
    assert decode(Envelope(encode(message).body, content_type)) == message


@pytest.mark.parametrize("content_type", ["text/plain; charset=UTF-8", "Text/Plain", ""])
def test_text_content_type_variants(content_type: str) -> None:
    got = decode(Envelope(b"Accepted. 3 seconds\r\n", content_type), context=DecodeContext(docset_id="5"))
    assert isinstance(got, Accepted)
    assert got.estimate_seconds == 3


@pytest.mark.parametrize(
    ("content_type", "fragment"),
    [("application/xml", "not a format of this protocol"), ("text/plain; charset=latin-1", "charset 'latin-1'")],
)
def test_unsupported_content_types_are_decode_errors(content_type: str, fragment: str) -> None:
    with pytest.raises(DecodeError, match=fragment) as info:
        decode(Envelope(b"Accepted.", content_type), context=DecodeContext(docset_id="5"))
    assert info.value.excerpt == content_type
    assert isinstance(info.value, RemoteProtocolError)


# --- limits and local errors ---------------------------------------------------------------


def test_body_too_large_is_refused_before_parsing() -> None:
    body = b"{" + b" " * DEFAULT_MAX_BODY_BYTES  # not JSON: proves no parser ran
    with pytest.raises(BodyTooLargeError, match=f"exceeds the limit of {DEFAULT_MAX_BODY_BYTES} bytes"):
        decode(Envelope(body))
    with pytest.raises(BodyTooLargeError, match="limit of 10 bytes"):
        decode(Envelope(b"Accepted. 45 seconds", TEXT_CONTENT_TYPE), max_body_bytes=10)
    exact = encode(Accepted(**BASE))
    assert decode(exact, max_body_bytes=len(exact.body)) == Accepted(**BASE)


def test_encode_refuses_unknown_content_type_and_non_messages() -> None:
    with pytest.raises(EncodeError, match="'application/xml'"):
        encode(Accepted(**BASE), "application/xml")
    with pytest.raises(EncodeError, match="dict"):
        encode({"type": "accepted"})  # type: ignore[arg-type]
    assert issubclass(EncodeError, LocalProtocolError)


def test_seed_example_lines() -> None:
    accepted = encode(Accepted(**BASE, estimate_seconds=45), TEXT_CONTENT_TYPE)
    assert accepted.body == b"Accepted. 45 seconds"
    complete = encode(Complete(**BASE, archive_url="https://host/package/5", size_bytes=345345), TEXT_CONTENT_TYPE)
    assert complete.body == b"Complete: https://host/package/5\nSize: 345345"
