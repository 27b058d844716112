"""text/plain's fast paths give exactly what the full paths give, for any body and any headers.

``decode_text`` reads a well-formed body with one pattern per form and hands everything else
(and everything that reading would refuse) to the line-by-line reader; ``encode_text`` writes
each form with one format string. These properties hold the fast reader equal to the full one
(the same message, or the same error type, text and excerpt) over full Unicode, junk and near
misses of every form, and hold every valid message equal to itself after encode and decode.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bench.codec import sample_messages
from tdm_messaging import headers as h
from tdm_messaging.codec import TEXT_CONTENT_TYPE, DecodeContext, decode, encode
from tdm_messaging.errors import EncodeError
from tdm_messaging.models import Complete, Failed, Message, format_moment
from tdm_messaging.wire_text import _decode_fast, _decode_full, decode_text
from tdm_messaging.wire_text_write import encode_text
from tests import strategies

SETTINGS = settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
NOW = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)
REQUEST_ID = "019a6f2e-8c1b-7d3e-9f40-1a2b3c4d5e6f"
URL = "https://tdm-packages.s3.amazonaws.com/package/5.zip"

# Pieces of every form, spelled right and nearly right: the fast patterns' edges are there.
NUMBERS = st.one_of(
    st.sampled_from(["0", "1", "45", "2.5", "1e3", "1E+2", "9" * 20, "1e999", "1e308", "٣", "1.", ".5", "-1", "00"]),
    st.from_regex(r"[0-9]{1,22}(\.[0-9]{1,22})?([eE][+-]?[0-9]{1,4})?", fullmatch=True),
)
MOMENTS = st.one_of(
    st.sampled_from(
        [
            "2026-11-27T12:00:00Z",
            "2026-11-27T12:00:00.123456Z",
            "2026-11-27T12:00:00+02:00",
            "2026-11-27T12:00:00",
            "2026-02-30T12:00:00Z",
            "2026-11-27T24:00:00Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "1969-12-31T23:59:59Z",
            "2026-11-27 12:00:00Z",
            "2026-11-27T12:00:00.1Z",
            "2026-11-27T12:00:60Z",
            "",
        ]
    ),
    strategies.timestamps().map(lambda moment: moment.isoformat().replace("+00:00", "Z")),
    st.from_regex(
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,7})?(Z|[+-][0-9]{2}:[0-9]{2})?",
        fullmatch=True,
    ),
)
SPACE = st.sampled_from(["", " ", "  ", "\t", " \t", "\r", "\u00a0", "\u2028", "\x0b", "\x1c", "\u3000"])
JUNK = st.one_of(st.text(max_size=12), SPACE, st.sampled_from(["\\", "\\n", "\\r", "\\\\", "\n", "\r\n", ":", "%"]))
VALUES = st.one_of(
    st.sampled_from([URL, "http://h/a b.zip", "5", "x y", "", "yes", "no", "Yes", "application/x-tar", "a/b; c=d"]),
    strategies.archive_urls(),
    st.text(max_size=40),
    st.binary(min_size=32, max_size=32).map(bytes.hex),
    NUMBERS,
    MOMENTS,
)


def _line(template: str, *parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(*parts).map(lambda drawn: template.format(*drawn))


LINES = st.one_of(
    st.just("Accepted."),
    _line("Accepted.{}{}{}seconds", SPACE, NUMBERS, SPACE),
    _line("Accepted. {} second", NUMBERS),
    _line("Progress: {}/{}", NUMBERS, NUMBERS),
    _line("Progress:{}{}/{} ({}%)", SPACE, NUMBERS, NUMBERS, NUMBERS),
    _line("ETA: {} seconds", NUMBERS),
    _line("Complete:{}{}", SPACE, VALUES),
    _line("Size: {}", NUMBERS),
    _line("SHA256: {}", VALUES),
    _line("Content-Type: {}", VALUES),
    _line("Expires: {}", MOMENTS),
    _line("Failed:{}{}", SPACE, st.text(max_size=30)),
    _line("Retryable: {}", st.sampled_from(["yes", "no", "Yes", "", "maybe"])),
    _line("Delete:{}{}", SPACE, VALUES),
    _line("Deleted:{}{}", SPACE, VALUES),
    _line("Archive: {}", VALUES),
    _line("http{}://{}", st.sampled_from(["", "s", "S"]), st.text(max_size=40)),
    st.sampled_from(["http://server/api/docsets/5?fmt=meta,txt", "http://server/api/docsets/", "http://[::1/x"]),
    _line("{}: {}", st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,8}", fullmatch=True), VALUES),
    st.text(max_size=30),
)


def _mutate(text: str, at: int, junk: str, mode: int) -> str:
    at = min(at, len(text))
    if mode == 0:
        return text[:at] + junk + text[at:]  # something inserted
    if mode == 1:
        return text[:at] + text[at + 1 :]  # a character dropped
    if mode == 2:
        return text.replace("\n", "\r\n") + junk  # CRLF, and maybe trailing whitespace
    if mode == 3:
        lines = text.split("\n")
        return "\n".join(lines + lines[-1:])  # a key line twice
    return text


def _written(message: Message) -> str:
    return encode(message, TEXT_CONTENT_TYPE).body.decode("utf-8", "surrogatepass")


FIRST_LINES = st.sampled_from(
    [
        *["Accepted.", "Accepted. 1 second", "Progress: 1/2", "Progress: 1/2 (50%)", "Failed: x", "Failed: a\\nb"],
        "Delete: 5",
        "Deleted: 5",
        f"Complete: {URL}",
        "http://server/api/docsets/5?fmt=meta,txt",
    ]
)
KEY_LINES = st.sampled_from(
    [
        *["ETA: 30 seconds", "Size: 7", f"SHA256: {'ab' * 32}", "Content-Type: application/x-tar", "Retryable: yes"],
        *["Expires: 2026-12-04T12:00:00.123456Z", f"Archive: {URL}", "Retryable: no", "Content-Type: a/b; c=d"],
    ]
)
NEAR_MISSES = st.tuples(st.lists(st.one_of(KEY_LINES, LINES), max_size=4), st.lists(JUNK, min_size=5, max_size=5))
TEXTS = st.one_of(
    st.tuples(FIRST_LINES, NEAR_MISSES).map(
        lambda parts: (
            parts[1][1][0].join([parts[0] + parts[1][1][1]] + [line + parts[1][1][2] for line in parts[1][0]])
            + parts[1][1][3]
        )
    ),
    st.tuples(FIRST_LINES, st.lists(KEY_LINES, max_size=4), SPACE, SPACE).map(
        lambda parts: "\n".join([parts[0] + parts[2], *parts[1]]) + parts[3]
    ),
    st.lists(LINES, min_size=1, max_size=5).map("\n".join),
    st.tuples(st.lists(LINES, min_size=1, max_size=5), SPACE).map(lambda parts: "\r\n".join(parts[0]) + parts[1]),
    st.tuples(strategies.messages().map(_written), st.integers(0, 300), JUNK, st.integers(0, 4)).map(
        lambda parts: _mutate(*parts)
    ),
    st.sampled_from([_written(message) for message in sample_messages()]),
    st.text(),
)
BODIES = st.one_of(
    TEXTS.map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.binary(max_size=200),
    st.sampled_from([b"Accepted. 4\xff seconds", b"\xef\xbb\xbfAccepted.", b"Failed: a\x00b", b"A" * 5000]),
)
HEADER_VALUES: dict[str, st.SearchStrategy[str]] = {
    h.TYPE: st.sampled_from(
        ["accepted", "progress", "complete", "failed", "delete_request", "deleted", "package_request", "x", ""]
    ),
    h.PROTOCOL_VERSION: st.sampled_from(["1.0", "1.7", "2.0", "", "1", "x.y", "\u0661.0"]),
    h.DOCSET_ID: st.one_of(st.sampled_from(["5", "6", "", "a b", "x" * 200]), st.text(max_size=10)),
    h.REQUEST_ID: st.one_of(st.sampled_from([REQUEST_ID, "", REQUEST_ID.upper(), "nope"]), strategies.request_ids()),
    h.SEQUENCE: st.one_of(NUMBERS, st.sampled_from(["", "-1", "9223372036854775808", "9223372036854775807"])),
    h.TIMESTAMP: MOMENTS,
    h.REQUESTED_AT: MOMENTS,
    h.FORMATS: st.sampled_from(["meta,txt", "", ",", "meta,,txt", "a b", "x" * 40, "meta"]),
    h.REPLY_TO: st.sampled_from(["package/5", "", "ns/package/5", "package/6", "a/b/package/5"]),
}
HEADERS = st.fixed_dictionaries({}, optional={name: values for name, values in HEADER_VALUES.items()}).flatmap(
    lambda found: st.one_of(
        st.just(found),
        st.dictionaries(st.sampled_from(sorted(HEADER_VALUES)), st.text(max_size=30)).map(
            lambda more: {**found, **more}
        ),
    )
)
DOCSET_IDS = st.sampled_from([None, "5", "", "x y", "\u0665"])
REQUEST_IDS = st.sampled_from(["", REQUEST_ID, "nope"])
RECEIVED = st.sampled_from(
    [NOW, NOW.astimezone(timezone(timedelta(hours=2))), datetime(2026, 1, 1), datetime(1, 1, 1, tzinfo=UTC)]
)


def _outcome(func: Callable[[], Message]) -> tuple[Any, ...]:
    """What a call gave, all of it: the message (class, fields, which were set, repr) or the error."""
    try:
        message = func()
    except Exception as exc:  # the very point: the same error, whatever it is
        return type(exc), str(exc), getattr(exc, "excerpt", None)
    return type(message), message.model_dump(), message.model_fields_set, repr(message)


def _both(body: bytes, headers: dict[str, str], docset_id: str | None, request_id: str, received: datetime) -> Any:
    def fast() -> Message:
        return decode_text(body, headers, docset_id=docset_id, request_id=request_id, received_at=received)

    def full() -> Message:
        return _decode_full(body, headers, docset_id=docset_id, request_id=request_id, received_at=received)

    return _outcome(fast), _outcome(full)


@SETTINGS
@given(BODIES, HEADERS, DOCSET_IDS, REQUEST_IDS, RECEIVED)
@example(b"Accepted. 1e999 seconds", {}, "5", "", NOW)
@example(b"Progress: 1/2 (1e999%)", {}, "5", "", NOW)
@example(b"Progress: 3/2", {}, "5", "", NOW)
@example(b"Progress: 1/2\nETA: 1e400 seconds", {}, "5", "", NOW)
@example(b"Failed: a\\nb\\\\c\\x\nRetryable: yes", {}, "5", "", NOW)
@example(b"Failed: \\", {}, "5", "", NOW)
@example(b"Delete: 5", {h.DOCSET_ID: "6"}, "5", "", NOW)
@example(b"Deleted: 5\nArchive: http://h/x", {h.DOCSET_ID: ""}, None, "", NOW)
@example(b"Complete: http://h/x\nSize: 1\nExpires: 2026-02-30T00:00:00Z", {}, "5", "", NOW)
@example(b"Complete: http://h/x\nSize: 1\nContent-Type: a/b ; c=d", {}, "5", "", NOW)
@example(b"Complete: http://h/x\nSize: 9223372036854775808", {}, "5", "", NOW)
@example(b"http://server/api/docsets/5", {h.DOCSET_ID: "5", h.FORMATS: ""}, None, "", NOW)
@example(b"http://server/api/docsets/5", {h.DOCSET_ID: "", h.FORMATS: "meta"}, None, "", NOW)
@example(b"http://server:99999/5", {h.DOCSET_ID: "5", h.FORMATS: "meta"}, None, "", NOW)
@example(b"Accepted.", {h.TIMESTAMP: "2026-11-27T12:00:00"}, "5", "", NOW)
@example(b"Accepted.", {h.TIMESTAMP: "2026-11-27T12:00:00+02:00"}, "5", "", NOW)
@example(b"Accepted.", {h.PROTOCOL_VERSION: "2.0"}, "5", "", NOW)
@example(b"Accepted.", {h.PROTOCOL_VERSION: "1.7"}, "5", "", NOW)
@example(b"Accepted.", {}, "5", "", datetime(2026, 1, 1))
@example(b"Failed: x \nRetryable: yes", {}, "5", "", NOW)
@example(b"Failed: x\t", {}, "5", "", NOW)
@example(b"Failed:  x", {}, "5", "", NOW)
@example(b"Complete: http://h/x\nSize: 1\nContent-Type: a/b ", {}, "5", "", NOW)
@example(b"Complete: http://h/x\nSize: 1\nContent-Type: a/b \nExpires: 2026-12-04T00:00:00Z", {}, "5", "", NOW)
@example(b"http://server/api/docsets/7", {h.DOCSET_ID: "", h.FORMATS: "meta", h.REPLY_TO: "package/5"}, "5", "", NOW)
@example(b"Failed: x\nRetryable: maybe", {}, "5", "", NOW)
@example(b"Failed: x\nRetryable: yes", {}, "5", "", NOW)
@example(b"Progress: 0/0", {}, "5", "", NOW)
@example(("Failed: " + "\U0001f600" * 4096).encode(), {}, "5", "", NOW)
@example(b"Failed: " + b"\\n" * 4096 + b"\nRetryable: yes", {}, "5", "", NOW)
@example(b"Failed: " + b"x" * 40_000, {}, "5", "", NOW)
@example(b"Complete: http://h/" + b"x" * 3000 + b"\nSize: 1", {}, "5", "", NOW)
@example(b"Accepted.", {h.SEQUENCE: "\u0663"}, "5", "", NOW)
@example(b"Accepted.", {h.SEQUENCE: "9" * 20}, "5", "", NOW)
@example(b"Accepted.", {h.REQUEST_ID: ""}, "5", REQUEST_ID, NOW)
@example(
    b"http://server/api/docsets/5",
    {h.DOCSET_ID: "5", h.FORMATS: "m", h.TIMESTAMP: "2026-11-27T13:00:00Z"},
    None,
    "",
    NOW,
)
def test_fast_decode_is_the_full_decode(
    body: bytes, headers: dict[str, str], docset_id: str | None, request_id: str, received: datetime
) -> None:
    fast, full = _both(body, headers, docset_id, request_id, received)
    assert fast == full


@st.composite
def _written_and_changed(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """A message as the writer writes it, then some of its headers dropped or changed, maybe its body too."""
    envelope = encode(draw(strategies.messages()), TEXT_CONTENT_TYPE)
    headers = dict(envelope.headers)
    for name in draw(st.lists(st.sampled_from(sorted(HEADER_VALUES)), max_size=3)):
        if draw(st.booleans()):
            headers.pop(name, None)
        else:
            headers[name] = draw(st.one_of(HEADER_VALUES[name], st.text(max_size=20)))
    body = envelope.body.decode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        body = _mutate(body, draw(st.integers(0, 300)), draw(JUNK), draw(st.integers(0, 4)))
    return body.encode("utf-8", "surrogatepass"), headers


@SETTINGS
@given(_written_and_changed(), DOCSET_IDS, REQUEST_IDS, RECEIVED)
def test_fast_decode_is_the_full_decode_near_written_messages(
    written: tuple[bytes, dict[str, str]], docset_id: str | None, request_id: str, received: datetime
) -> None:
    fast, full = _both(*written, docset_id, request_id, received)
    assert fast == full


@SETTINGS
@given(strategies.messages())
def test_every_valid_message_round_trips(message: Message) -> None:
    envelope = encode(message, TEXT_CONTENT_TYPE)
    assert decode(envelope) == message  # (not repr: a message may hold fold=1, which no wire form carries)
    args = (envelope.body, dict(envelope.headers), None, "", NOW)
    fast, full = _both(*args)
    assert fast == full


@SETTINGS
@given(
    strategies.messages(),
    st.sampled_from(["reason", "docset", "request"]),
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=60),
)
def test_full_unicode_values_round_trip_or_are_refused_alike(message: Message, field: str, value: str) -> None:
    """Full Unicode where the fields allow it: a failure reason, and the headers that carry ids."""
    if field == "reason" and isinstance(message, Failed):
        try:
            message = Failed.model_validate({**message.model_dump(), "reason": value})
        except ValueError:
            return
    envelope = encode(message, TEXT_CONTENT_TYPE)
    headers = dict(envelope.headers)
    if field == "docset":
        headers[h.DOCSET_ID] = value
    elif field == "request":
        headers[h.REQUEST_ID] = value
    fast, full = _both(envelope.body, headers, None, "", NOW)
    assert fast == full
    if field == "reason" and fast[0] is Failed and value == value.strip() and "\\" not in value:
        assert fast[1] == message.model_dump()


def test_the_fast_path_answers_what_the_writer_writes() -> None:
    """Each sample message (the bench's) is read by the fast path, not handed over."""
    for message in sample_messages():
        envelope = encode(message, TEXT_CONTENT_TYPE)
        fast = _decode_fast(envelope.body, envelope.headers, None, "", NOW)
        assert fast == message, message.type
        assert decode(envelope, context=DecodeContext(docset_id=message.docset_id)) == message


@SETTINGS
@given(strategies.messages())
def test_the_fast_path_answers_every_generated_message(message: Message) -> None:
    """The writer's output always takes the fast path (except failure reasons with edge whitespace)."""
    envelope = encode(message, TEXT_CONTENT_TYPE)
    assert _decode_fast(envelope.body, envelope.headers, None, "", NOW) == message


def _complete_as_lines(message: Complete) -> bytes:
    """The Complete writer as it was (a list of lines, joined), and its checks in the same order."""
    if not message.archive_url or any(ch.isspace() for ch in message.archive_url):
        raise EncodeError(
            f"archive_url {message.archive_url!r} contains whitespace; text/plain cannot carry it, use application/json"
        )
    lines = [f"Complete: {message.archive_url}", f"Size: {message.size_bytes}"]
    if message.sha256 is not None:
        lines.append(f"SHA256: {message.sha256}")
    content_type = message.content_type
    if content_type != "application/zip":
        if (
            "\n" in content_type
            or "\r" in content_type
            or content_type != content_type.strip(" \t")
            or not content_type
        ):
            raise EncodeError(
                f"content_type {content_type!r} cannot be written in text/plain (empty, line break, or surrounding "
                "spaces); fix the value or use application/json"
            )
        lines.append(f"Content-Type: {content_type}")
    if message.url_expires_at is not None:
        lines.append(f"Expires: {format_moment(message.url_expires_at)}")
    return "\n".join(lines).encode()


@SETTINGS
@given(strategies.completes(), st.one_of(st.none(), st.text(max_size=20)), st.one_of(st.none(), st.text(max_size=20)))
def test_complete_writer_is_the_lines_joined(message: Complete, url: str | None, content_type: str | None) -> None:
    """Built without validation too (model_construct), so odd values reach the writer's checks."""
    changes = {k: v for k, v in {"archive_url": url, "content_type": content_type}.items() if v is not None}
    odd = Complete.model_construct(**{**message.__dict__, **changes})

    def new() -> Any:
        return encode_text(odd)[0]

    def old() -> Any:
        return _complete_as_lines(odd)

    assert _outcome_any(new) == _outcome_any(old)


def _outcome_any(func: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        return ("value", func())
    except Exception as exc:  # the same error, whatever it is
        return type(exc), str(exc)


def test_the_longest_valid_failure_takes_the_fast_path() -> None:
    """The fast path's length limit lets through the longest body it could read into a valid message."""
    reason = "\U0001f600" * 4096  # 4096 characters of 4 bytes each
    message = Failed(docset_id="5", request_id="", timestamp=NOW, reason=reason, retryable=True)
    body, _extra = encode_text(message)
    assert _decode_fast(body, {}, "5", "", NOW) == message
    longest = ("Failed: " + "\\n" * 4096 + "\nRetryable: yes").encode()
    assert _decode_fast(longest, {}, "5", "", NOW) is not None
