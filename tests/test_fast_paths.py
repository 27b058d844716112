"""The codec's fast paths give exactly what the full checks give, for any input (full Unicode and junk).

Each fast path answers the common case in fewer steps and hands everything else to the full
check; these properties hold the two equal: the same value, or the same error type and text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tdm_messaging.codec import JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE, DecodeContext, _checked, decode, encode
from tdm_messaging.destinations import validate_docset_id
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import EncodeError
from tdm_messaging.ids import check_request_id
from tdm_messaging.models import (
    Accepted,
    Complete,
    Deleted,
    DeleteRequest,
    Failed,
    Message,
    MessageBase,
    PackageRequest,
    Progress,
    _check_url_fully,
    _checked_url,
    check_reply_to,
    format_moment,
    message_adapter,
)
from tdm_messaging.wire_json import _decode_slow, check_depth, check_major, decode_json
from tdm_messaging.wire_text import _WHITESPACE as READ_WHITESPACE
from tdm_messaging.wire_text_write import _WHITESPACE as WRITE_WHITESPACE
from tdm_messaging.wire_text_write import encode_text
from tests import strategies

_COMMON = {
    "docset_id": "5",
    "request_id": "019a6f2e-8c1b-7d3e-9f40-1a2b3c4d5e6f",
    "timestamp": datetime(2026, 11, 27, 12, 0, tzinfo=UTC),
}
ACCEPTED = _COMMON
COMPLETE = {**_COMMON, "sequence": 3, "archive_url": "https://h/a.zip", "size_bytes": 1}
DELETED = {**_COMMON, "archive_url": "https://h/a.zip"}
SETTINGS = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
# Text near the accepted forms as well as anything at all: the fast paths' edges are there.
TEXT = st.one_of(
    st.text(),
    st.text(alphabet="0123456789abcdef-7.", max_size=40),
    st.text(alphabet=st.sampled_from("Aa0._~:@+-/ *\n"), min_size=0, max_size=140),
    st.from_regex(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", fullmatch=True),
)


def _outcome(func: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "value", func()
    except Exception as exc:  # the very point: the same error, whatever it is
        return type(exc).__name__, str(exc)


@SETTINGS
@given(TEXT)
@example("")
@example("a" * 128)
@example("a" * 129)
@example("5\n")
@example("٣")
def test_docset_id_fast_path_is_validate_docset_id(value: str) -> None:
    assert _outcome(lambda: MessageBase._check_docset_id(value)) == _outcome(lambda: validate_docset_id(value))


@SETTINGS
@given(TEXT)
@example("")
@example("019a6f2e-8c1b-7d3e-9f40-1a2b3c4d5e6f\n")
@example("019A6F2E-8C1B-7D3E-9F40-1A2B3C4D5E6F")
def test_request_id_fast_path_is_check_request_id(value: str) -> None:
    assert _outcome(lambda: MessageBase._check_request_id(value)) == _outcome(lambda: check_request_id(value))


def _full_version_check(value: str) -> str:
    if not re.fullmatch(r"[0-9]{1,4}\.[0-9]{1,4}", value):
        raise ValueError(f"protocol_version must be ASCII 'MAJOR.MINOR' such as '1.0', got {value[:20]!r}")
    return value


@SETTINGS
@given(TEXT)
@example("1.0")
@example("1.0\n")
@example("¹.0")
def test_version_fast_path_is_the_full_check(value: str) -> None:
    assert _outcome(lambda: MessageBase._check_version(value)) == _outcome(lambda: _full_version_check(value))


@SETTINGS
@given(st.one_of(st.text(), st.sampled_from(["application/zip", "application/zip ", "application/zip\n"])))
def test_content_type_fast_path_is_the_full_check(value: str) -> None:
    full = Complete.model_fields["content_type"]
    assert full.default == "application/zip"
    pattern = re.compile(
        r"[A-Za-z0-9!#$&^_.+-]{1,127}/[A-Za-z0-9!#$&^_.+-]{1,127}"
        r"(?:[ \t]*;[ \t]*[A-Za-z0-9!#$&^_.+-]{1,127}=(?:[A-Za-z0-9!#$&^_.+-]{1,127}|\"[ !#-\[\]-~]*\"))*"
    )
    fast = _outcome(lambda: Complete._check_content_type(value))
    assert (fast[0] == "value") == (pattern.fullmatch(value) is not None)
    if fast[0] == "value":
        assert fast[1] == value


def _slow_format_moment(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"date-time {value.isoformat()} has no time-zone offset")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


ZONES = st.sampled_from([UTC, timezone(timedelta(0)), timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))])


@SETTINGS
@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9997, 1, 1), timezones=ZONES))
def test_format_moment_fast_path_is_the_full_one(value: datetime) -> None:
    assert format_moment(value) == _slow_format_moment(value)


@SETTINGS
@given(st.text())
@example("a\u00a0b")
@example("a\u2028b")
@example("a\x1cb")
@example("a\u200bb")
def test_whitespace_search_is_str_isspace(value: str) -> None:
    expected = any(ch.isspace() for ch in value)
    assert (READ_WHITESPACE.search(value) is not None) == expected
    assert (WRITE_WHITESPACE.search(value) is not None) == expected


def _slow_checked(headers: dict[str, Any]) -> dict[str, Any]:
    breakers = frozenset("\r\n\x00")
    for name, value in headers.items():
        if not breakers.isdisjoint(value):
            raise EncodeError(f"header {name} value {value[:40]!r} holds CR, LF or NUL; no header may carry them")
    return headers


HEADER_VALUES = st.one_of(st.text(), st.text(alphabet="ab\r\n\x00", max_size=6), st.none(), st.integers())


@SETTINGS
@given(st.dictionaries(st.sampled_from(["tdm-type", "tdm-docset-id", "tdm-sequence"]), HEADER_VALUES))
def test_header_check_fast_path_is_the_loop(headers: dict[str, Any]) -> None:
    assert _outcome(lambda: _checked(dict(headers))) == _outcome(lambda: _slow_checked(dict(headers)))


def _slow_decode_json(body: bytes) -> Any:
    check_depth(body)
    try:
        message = message_adapter.validate_json(body)
    except ValidationError as exc:
        return _decode_slow(body, exc)
    if not message.protocol_version.startswith("1."):
        check_major(message.protocol_version)
    return message


VALID_BODY = (
    b'{"protocol_version":"1.0","docset_id":"5","request_id":"019a6f2e-8c1b-7d3e-9f40-1a2b3c4d5e6f",'
    b'"sequence":1,"timestamp":"2026-11-27T12:00:00.123456Z","type":"accepted","estimate_seconds":45.0}'
)
BODIES = st.one_of(
    st.binary(max_size=300),
    st.text().map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.integers(0, len(VALID_BODY)).flatmap(
        lambda at: st.binary(max_size=12).map(lambda junk: VALID_BODY[:at] + junk + VALID_BODY[at:])
    ),
    st.integers(0, 12).map(lambda depth: VALID_BODY[:-1] + b',"x":' + b"[" * depth + b"]" * depth + b"}"),
    st.integers(0, 12).map(lambda depth: b'{"docset_id":' + b"[" * depth + b"]" * depth + b"," + VALID_BODY[1:]),
)


@SETTINGS
@given(BODIES)
@example(VALID_BODY)
@example(VALID_BODY.replace(b'"1.0"', b'"2.0"'))
@example(VALID_BODY.replace(b'"1.0"', b'"1.7"'))
def test_json_decode_is_the_depth_check_then_the_adapter(body: bytes) -> None:
    assert _outcome(lambda: decode_json(body)) == _outcome(lambda: _slow_decode_json(body))


@given(st.binary(), st.text(), st.dictionaries(st.text(), st.text()))
def test_envelope_init_is_the_dataclass_one(body: bytes, content_type: str, headers: dict[str, str]) -> None:
    envelope = Envelope(body, content_type, headers)
    assert (envelope.body, envelope.content_type, envelope.headers) == (body, content_type, headers)
    assert envelope == Envelope(body=body, content_type=content_type, headers=headers)
    assert Envelope(body).content_type == "application/json"
    assert dict(Envelope(body).headers) == {}


@SETTINGS
@given(st.one_of(st.text(), st.text(alphabet=st.characters(min_codepoint=0xD000, max_codepoint=0xE000))))
@example("a\ud800b")
@example("\udfff")
@example("\ue000")
def test_reason_surrogate_check_is_the_character_scan(value: str) -> None:
    def full(reason: str) -> str:
        if any("\ud800" <= ch <= "\udfff" for ch in reason):
            raise ValueError("reason holds a lone surrogate, which UTF-8 cannot carry")
        return reason

    assert _outcome(lambda: Failed._check_reason(value)) == _outcome(lambda: full(value))


def _reference_encode_text(message: MessageBase) -> tuple[bytes, dict[str, str]]:
    """The isinstance chain encode_text was before it dispatched by class (kept here as the reference)."""
    extra: dict[str, str] = {}

    def url(value: str) -> str:
        if not value or any(ch.isspace() for ch in value):
            raise EncodeError(
                f"archive_url {value!r} contains whitespace; text/plain cannot carry it, use application/json"
            )
        return value

    def number(value: float) -> str:
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)

    def seconds(value: float) -> str:
        return f"{number(value)} second" if value == 1 else f"{number(value)} seconds"

    if isinstance(message, Accepted):
        lines = ["Accepted." if message.estimate_seconds is None else f"Accepted. {seconds(message.estimate_seconds)}"]
    elif isinstance(message, Progress):
        lines = [f"Progress: {message.items_done}/{message.items_total} ({number(message.percent)}%)"]
        if message.eta_seconds is not None:
            lines.append(f"ETA: {seconds(message.eta_seconds)}")
    elif isinstance(message, Complete):
        lines = [f"Complete: {url(message.archive_url)}", f"Size: {message.size_bytes}"]
        if message.sha256 is not None:
            lines.append(f"SHA256: {message.sha256}")
        if message.content_type != "application/zip":
            lines.append(f"Content-Type: {message.content_type}")
        if message.url_expires_at is not None:
            lines.append(f"Expires: {_slow_format_moment(message.url_expires_at)}")
    elif isinstance(message, Failed):
        reason = message.reason.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
        lines = [f"Failed: {reason}", f"Retryable: {'yes' if message.retryable else 'no'}"]
    elif isinstance(message, DeleteRequest | Deleted):
        keyword = "Delete" if isinstance(message, DeleteRequest) else "Deleted"
        lines = [f"{keyword}: {message.docset_id}"]
        if message.archive_url is not None:
            lines.append(f"Archive: {url(message.archive_url)}")
    elif isinstance(message, PackageRequest):
        lines = [message.docset_url]
        extra["tdm-requested-at"] = _slow_format_moment(message.requested_at)
        extra["tdm-formats"] = ",".join(message.formats)
        extra["tdm-reply-to"] = message.reply_to
    else:
        raise EncodeError(f"{type(message).__name__} has no text/plain form; use application/json")
    return "\n".join(lines).encode(), extra


class _SubclassedAccepted(Accepted):
    pass


JUNK_URLS = st.one_of(
    st.text(max_size=30),
    st.just("https://a b/c"),
    # every kind of whitespace, and printable or not: each is a URL the writer refuses or keeps as the pattern does
    st.sampled_from(["\u2028", "\xa0", "\x85", "\u3000", "\x1c", "\t", "\u200b", "\u00ad", "\ud800", ""]).map(
        lambda junk: "https://x/" + junk
    ),
    st.just(""),
)


@SETTINGS
@given(
    st.one_of(
        strategies.messages(),
        st.builds(lambda u: Complete.model_construct(**{**COMPLETE, "archive_url": u}), JUNK_URLS),
        st.builds(lambda u: Deleted.model_construct(**{**DELETED, "archive_url": u}), JUNK_URLS),
        st.builds(lambda e: _SubclassedAccepted(**{**ACCEPTED, "estimate_seconds": e}), st.none() | st.floats(0, 1e20)),
    )
)
def test_text_writer_dispatch_is_the_isinstance_chain(message: MessageBase) -> None:
    assert _outcome(lambda: encode_text(message)) == _outcome(lambda: _reference_encode_text(message))


@SETTINGS
@given(strategies.messages(), st.sampled_from([JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE]))
def test_round_trip_through_the_fast_paths(message: Message, content_type: str) -> None:
    envelope = encode(message, content_type)
    if content_type == TEXT_CONTENT_TYPE:
        body, extra = _reference_encode_text(message)
        assert envelope.body == body
        assert envelope.headers["tdm-timestamp"] == _slow_format_moment(message.timestamp)
        assert extra.items() <= envelope.headers.items()
    else:
        assert envelope.body == message.model_dump_json().encode()
    decoded = decode(envelope, context=DecodeContext(docset_id=message.docset_id))
    if content_type == JSON_CONTENT_TYPE:
        assert decoded == message
    assert decoded.timestamp.tzinfo is UTC


def _full_formats_check(value: tuple[str, ...]) -> tuple[str, ...]:
    for fmt in value:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", fmt):
            raise ValueError(
                f"format {fmt[:40]!r} must be 1 to 32 ASCII letters, digits, '-' or '_', such as 'meta' or 'txt'"
            )
    return value


@SETTINGS
@given(st.lists(st.one_of(st.text(max_size=40), st.sampled_from(["meta", "txt", "a" * 32, "a" * 33, "x\n"]))))
def test_formats_fast_path_is_the_loop(value: list[str]) -> None:
    formats = tuple(value)
    assert _outcome(lambda: PackageRequest._check_formats(formats)) == _outcome(lambda: _full_formats_check(formats))


@SETTINGS
@given(
    st.sampled_from(["5", "a.b", "x"]), st.one_of(st.text(max_size=30), st.sampled_from(["package/5", "ns/package/5"]))
)
def test_reply_to_fast_path_is_check_reply_to(docset_id: str, reply_to: str) -> None:
    def build() -> PackageRequest:
        return PackageRequest(
            **{**_COMMON, "docset_id": docset_id},
            docset_url="http://server/api/docsets/5",
            reply_to=reply_to,
            requested_at=_COMMON["timestamp"],
        )

    def expected() -> str:
        return check_reply_to(reply_to, docset_id)

    built, checked = _outcome(build), _outcome(expected)
    assert (built[0] == "value") == (checked[0] == "value")
    if built[0] == "value":
        assert built[1].reply_to == checked[1]
    else:
        assert checked[1] in built[1]


URLS = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from("htps:/[]@.-_?#%:0123456789aZ \\\x00é"), max_size=40).map(lambda t: "http" + t),
    st.from_regex(r"https?://[A-Za-z0-9.\[\]@:-]{0,20}(?::[0-9]{0,7})?(?:[/?#\\][!-~]{0,20})?", fullmatch=True),
)


@SETTINGS
@given(URLS)
@example("http://")
@example("http://:80/")
@example("http://./")
@example("https://h")
@example("https://h:/x")
@example("http://[::1]/")
@example("http://[::1/")
@example("http://u@/x")
@example("HTTP://h/")
@example("http://h\\x")
@example("https://h/a b")
def test_url_fast_path_is_the_full_check(value: str) -> None:
    _checked_url.cache_clear()  # the cached answer would hide the path taken
    assert _outcome(lambda: _checked_url(value, "url")) == _outcome(lambda: _check_url_fully(value, "url"))
