"""construct_proven and the proven_* predicates give exactly what model_validate gives, for every input.

``tdm_messaging.models.construct_proven`` builds a message without running the validators, for
values a reader has proven: each ``proven_*`` predicate must say True only where the field's
validators return the value unchanged (same type, same repr), and what text/plain's fast reader
builds that way must be model_validate's message of the same fields in every respect (values and
their order, defaults, fields set, repr, JSON, hash, frozen, no extra). Inputs: full Unicode,
near misses of every accepted form, huge values and values of the wrong type.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from bench.codec import sample_messages
from tdm_messaging.codec import TEXT_CONTENT_TYPE, encode
from tdm_messaging.models import (
    MAX_COUNT,
    MAX_REPLY_TO_LENGTH,
    MAX_URL_LENGTH,
    MESSAGE_TYPES,
    PROVEN_PATTERNS,
    Accepted,
    Complete,
    Deleted,
    Failed,
    Message,
    MessageBase,
    PackageRequest,
    construct_proven,
    construct_proven_whole,
    format_moment,
    proven_base,
    proven_content_type,
    proven_formats,
    proven_http_url,
    proven_moment,
    proven_reason,
    proven_reply_to,
    proven_sha256,
)
from tdm_messaging.wire_text import _decode_fast, _fast_fields
from tests import strategies
from tests.test_text_fast_paths import BODIES, DOCSET_IDS, HEADERS, RECEIVED, REQUEST_IDS, _written_and_changed

SETTINGS = settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
NOW = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)
REQUEST_ID = "019a6f2e-8c1b-7d3e-9f40-1a2b3c4d5e6f"
BASE: dict[str, Any] = {"docset_id": "5", "request_id": REQUEST_ID, "timestamp": NOW}
URL = "https://tdm-packages.s3.amazonaws.com/package/5.zip"


class Text(str):
    """A str subclass: equal to its value, but not what the validators return (they return a str)."""


def _wrong_types(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``values``, and the same values as other types that compare or print alike."""
    return st.one_of(
        values,
        values.filter(lambda v: isinstance(v, str)).map(Text),
        values.filter(lambda v: isinstance(v, str)).map(lambda v: v.encode("utf-8", "surrogatepass")),
        st.sampled_from([None, 0, 1, -1, True, False, 1.0, b"", (), ("meta",), ["meta"], NOW]),
    )


def _near(pattern: str, *extra: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Strings of ``pattern``, and the same with one character inserted, dropped or changed (full Unicode)."""
    exact = st.from_regex(pattern, fullmatch=True)

    def mutate(parts: tuple[str, int, str, int]) -> str:
        text, at, junk, mode = parts
        at = min(at, len(text))
        return [text[:at] + junk + text[at:], text[:at] + text[at + 1 :], text[:at] + junk + text[at + 1 :]][mode]

    changed = st.tuples(exact, st.integers(0, 80), st.characters(), st.integers(0, 2)).map(mutate)
    return st.one_of(exact, changed, st.text(), *extra)


def _kept(cls: type[BaseModel], data: dict[str, Any], field: str, value: Any) -> None:
    """model_validate accepts ``data`` and keeps ``value`` for ``field`` as it is: same type, repr and value."""
    result = cls.model_validate(data).__dict__[field]
    assert type(result) is type(value)
    assert repr(result) == repr(value)
    assert result == value


def _snapshot(message: BaseModel) -> tuple[Any, ...]:
    """Everything a message shows: class, values with their types and order, fields set, repr, JSON, hash, extras."""
    return (
        type(message),
        [(name, type(value), repr(value)) for name, value in message.__dict__.items()],
        message.model_fields_set,
        repr(message),
        message.model_dump_json(),
        message.model_dump(),
        hash(message),
        message.__pydantic_extra__,
        message.__pydantic_private__,
    )


# --- each predicate holds to its validators ------------------------------------------------------

MOMENTS = st.one_of(
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(0)), timezone(timedelta(hours=2))])),
    st.datetimes(timezones=st.just(UTC)).map(lambda moment: moment.replace(fold=1)),
    st.datetimes(),  # naive
    st.sampled_from(
        [
            datetime(1970, 1, 1, tzinfo=UTC),
            datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            datetime(9998, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            datetime(9999, 1, 1, tzinfo=UTC),
            datetime(1970, 1, 1, 1, tzinfo=timezone(timedelta(hours=2))),  # 1969 in UTC
        ]
    ),
)


@SETTINGS
@given(MOMENTS)
def test_proven_moment_is_kept_by_the_model(value: datetime) -> None:
    if proven_moment(value):
        _kept(Accepted, {**BASE, "timestamp": value}, "timestamp", value)
        _kept(Complete, {**BASE, "archive_url": URL, "size_bytes": 1, "url_expires_at": value}, "url_expires_at", value)


DOCSET_ID_TEXT = _near(r"[A-Za-z0-9._~:@+-]{1,130}", strategies.docset_ids())
REQUEST_ID_TEXT = _near(
    r"[0-9a-fA-F]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", strategies.request_ids(legacy=True)
)
SEQUENCES = st.one_of(st.integers(-2, 2), st.integers(MAX_COUNT - 2, MAX_COUNT + 2), st.integers(), st.booleans())


@SETTINGS
@given(
    _wrong_types(st.sampled_from(["1.0", "1.1", "2.0", " 1.0", "1.0\n", "\u0661.0"])),
    _wrong_types(DOCSET_ID_TEXT),
    _wrong_types(REQUEST_ID_TEXT),
    st.one_of(SEQUENCES, st.sampled_from([1.0, "1", None])),
    st.one_of(MOMENTS, st.sampled_from([None, "2026-11-27T12:00:00Z", 0])),
)
@example("1.0", "5", "", 0, NOW)
@example("1.0", "x" * 128, REQUEST_ID, MAX_COUNT, datetime(9998, 12, 31, tzinfo=UTC))
@example("1.0", "x" * 129, REQUEST_ID, 0, NOW)
@example("1.0", "5", REQUEST_ID, MAX_COUNT + 1, NOW)
@example("1.0", "5", REQUEST_ID, True, NOW)
@example("1.0", Text("5"), REQUEST_ID, 0, NOW)
@example("1.0", "5", REQUEST_ID.upper(), 0, NOW)
def test_proven_base_is_kept_by_the_model(
    version: Any, docset_id: Any, request_id: Any, sequence: Any, timestamp: Any
) -> None:
    if proven_base(version, docset_id, request_id, sequence, timestamp):
        data = {
            "protocol_version": version,
            "docset_id": docset_id,
            "request_id": request_id,
            "sequence": sequence,
            "timestamp": timestamp,
        }
        for field, value in data.items():
            _kept(Accepted, data, field, value)


URLS = _near(
    r"https?://[A-Za-z0-9.-]{1,20}(:[0-9]{0,6})?([/?#][!-~]{0,30})?",
    strategies.archive_urls(),
    st.integers(MAX_URL_LENGTH - 12, MAX_URL_LENGTH - 8).map(lambda n: "http://h/" + "a" * n),  # 2048 either side
    st.sampled_from(
        ["http://[::1]/x", "http://h:99999/x", "HTTP://h/x", "http:///x", "http://h/\u00e9", "http://h x/"]
    ),
)


@SETTINGS
@given(_wrong_types(URLS))
@example("http://h/" + "a" * (MAX_URL_LENGTH - 9))
@example("http://h/" + "a" * (MAX_URL_LENGTH - 8))
def test_proven_http_url_is_kept_by_the_model(value: Any) -> None:
    if proven_http_url(value):
        _kept(Complete, {**BASE, "archive_url": value, "size_bytes": 1}, "archive_url", value)
        _kept(Deleted, {**BASE, "archive_url": value}, "archive_url", value)
        request = {**BASE, "docset_url": value, "reply_to": "package/5", "requested_at": NOW}
        _kept(PackageRequest, request, "docset_url", value)


@SETTINGS
@given(_wrong_types(_near(r"[0-9a-f]{64}", st.binary(min_size=32, max_size=32).map(bytes.hex))))
@example("a" * 64 + "\n")
@example("A" * 64)
def test_proven_sha256_is_kept_by_the_model(value: Any) -> None:
    if proven_sha256(value):
        _kept(Complete, {**BASE, "archive_url": URL, "size_bytes": 1, "sha256": value}, "sha256", value)


TOKEN = r"[A-Za-z0-9!#$&^_.+-]{1,20}"
CONTENT_TYPES = _near(
    rf"{TOKEN}/{TOKEN}([ \t]*;[ \t]*{TOKEN}=({TOKEN}|\"[ !#-\[\]-~]{{0,10}}\"))?",
    st.sampled_from(["application/zip", "application/zip\n", "a/b; c=d", 'a/b;c="\u00e9"']),
    st.integers(250, 260).map(lambda n: "a/" + "b" * n),  # 255 characters either side
)


@SETTINGS
@given(_wrong_types(CONTENT_TYPES))
def test_proven_content_type_is_kept_by_the_model(value: Any) -> None:
    if proven_content_type(value):
        data = {**BASE, "archive_url": URL, "size_bytes": 1, "content_type": value}
        _kept(Complete, data, "content_type", value)


REASONS = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(), min_size=4090, max_size=4100),  # 4096 characters either side
    st.sampled_from(["", " ", "x\ud800y", "\udfff", "\U0001f600" * 4096, "a" * 4097, "\x00", "a\nb"]),
)


@SETTINGS
@given(_wrong_types(REASONS))
def test_proven_reason_is_kept_by_the_model(value: Any) -> None:
    if proven_reason(value):
        _kept(Failed, {**BASE, "reason": value}, "reason", value)


FORMAT = _near(r"[A-Za-z0-9_-]{1,33}")
FORMATS = st.one_of(
    st.lists(FORMAT, max_size=4).map(tuple),
    st.lists(st.just("m"), min_size=31, max_size=33).map(tuple),  # 32 formats either side
    st.lists(FORMAT.map(Text), min_size=1, max_size=2).map(tuple),
    st.lists(FORMAT, max_size=2),  # a list, not a tuple
)


@SETTINGS
@given(st.one_of(FORMATS, _wrong_types(st.just("meta"))))
def test_proven_formats_is_kept_by_the_model(value: Any) -> None:
    if proven_formats(value):
        data = {**BASE, "docset_url": "http://h/5", "formats": value, "reply_to": "package/5", "requested_at": NOW}
        _kept(PackageRequest, data, "formats", value)


REPLY_TOS = st.one_of(
    st.tuples(
        st.sampled_from(["", "ns/", "a/b/", "x" * 128 + "/", "x" * 129 + "/", "\u00e9/", "/"]), DOCSET_ID_TEXT
    ).map(lambda parts: f"{parts[0]}package/{parts[1]}"),
    _near(r"([A-Za-z0-9._~:@+-]{1,10}/)?package/[A-Za-z0-9._~:@+-]{1,10}"),
)


@SETTINGS
@given(st.one_of(st.just("5"), strategies.docset_ids()), _wrong_types(REPLY_TOS))
@example("5", "x" * 128 + "/package/5")
@example("x" * 128, "x" * 128 + "/package/" + "x" * 128)
@example("5", "package/5")
def test_proven_reply_to_is_kept_by_the_model(docset_id: str, value: Any) -> None:
    assert len("x" * 128 + "/package/" + "x" * 128) == MAX_REPLY_TO_LENGTH
    if proven_reply_to(value, docset_id):
        data = {**BASE, "docset_id": docset_id, "docset_url": "http://h/5", "reply_to": value, "requested_at": NOW}
        _kept(PackageRequest, data, "reply_to", value)


# --- construct_proven is model_validate ---------------------------------------------------------


def _fast_outcome(
    body: bytes, headers: dict[str, str], docset_id: str | None, request_id: str, received: datetime
) -> tuple[str, dict[str, Any], bool] | None:
    try:
        return _fast_fields(body, headers, docset_id, request_id, received)
    except (ValueError, TypeError):  # the fast path's way of saying "not mine" (decode_text then reads it fully)
        return None


def _assert_constructed_is_validated(
    found: tuple[str, dict[str, Any], bool] | None, decoded: Message | None = None
) -> None:
    """construct_proven of ``found`` is model_validate's message; so is ``decoded``, what _decode_fast built from it."""
    if found is None or not found[2]:
        return  # not the fast path's, or not proven: model_validate builds it
    kind, fields, _proven = found
    cls = MESSAGE_TYPES[kind]
    constructed = construct_proven(cls, dict(fields))
    validated = cls.model_validate(fields)
    assert _snapshot(constructed) == _snapshot(validated)
    assert constructed == validated
    assert validated == constructed
    if decoded is not None:  # (construct_proven_whole when every field is given, in the models' order)
        assert _snapshot(decoded) == _snapshot(validated)


def _decoded(body: bytes, headers: dict[str, str], docset_id: str | None, request_id: str, received: datetime) -> Any:
    return _decode_fast(body, headers, docset_id, request_id, received)


@SETTINGS
@given(BODIES, HEADERS, DOCSET_IDS, REQUEST_IDS, RECEIVED)
@example(b"Accepted.", {"tdm-timestamp": "1969-12-31T23:59:59Z"}, "5", "", NOW)
@example(b"Accepted.", {"tdm-timestamp": "9999-01-01T00:00:00Z"}, "5", "", NOW)
@example(b"Accepted.", {"tdm-sequence": "9223372036854775808"}, "5", "", NOW)
@example(b"Accepted.", {}, "5", "", NOW.replace(fold=1))
@example(b"Progress: 3/2", {}, "5", "", NOW)
@example(b"Progress: 1/2 (100.0000001%)", {}, "5", "", NOW)
@example(b"Progress: 9223372036854775808/9223372036854775809", {}, "5", "", NOW)
@example(b"Complete: http://h/x\nSize: 9223372036854775808", {}, "5", "", NOW)
@example(b"Complete: http://h/x\nSize: 1\nSHA256: " + b"A" * 64, {}, "5", "", NOW)
@example(b"Complete: http://h/x\nSize: 1\nContent-Type: a/" + b"b" * 254, {}, "5", "", NOW)
@example(b"Complete: http://h/x\nSize: 1\nExpires: 9999-01-01T00:00:00Z", {}, "5", "", NOW)
@example(b"Failed: " + b"x" * 4097, {}, "5", "", NOW)
@example(b"Deleted: 5\nArchive: http://h/" + b"a" * 2040, {}, "5", "", NOW)
@example(b"http://h/5", {"tdm-docset-id": "5", "tdm-formats": ",".join(["m"] * 33)}, None, "", NOW)
@example(b"http://h/5", {"tdm-docset-id": "5", "tdm-formats": "m", "tdm-reply-to": "ns/package/5"}, None, "", NOW)
@example(b"http://h/5", {"tdm-docset-id": "5", "tdm-formats": "m", "tdm-reply-to": "package/6"}, None, "", NOW)
@example(
    b"http://h/5", {"tdm-docset-id": "5", "tdm-formats": "m", "tdm-requested-at": "1900-01-01T00:00:00Z"}, None, "", NOW
)
def test_what_the_fast_reader_constructs_is_what_model_validate_gives(
    body: bytes, headers: dict[str, str], docset_id: str | None, request_id: str, received: datetime
) -> None:
    _assert_constructed_is_validated(
        _fast_outcome(body, headers, docset_id, request_id, received),
        _decoded(body, headers, docset_id, request_id, received),
    )


@SETTINGS
@given(_written_and_changed(), DOCSET_IDS, REQUEST_IDS, RECEIVED)
def test_what_the_fast_reader_constructs_near_written_messages_is_what_model_validate_gives(
    written: tuple[bytes, dict[str, str]], docset_id: str | None, request_id: str, received: datetime
) -> None:
    _assert_constructed_is_validated(
        _fast_outcome(*written, docset_id, request_id, received), _decoded(*written, docset_id, request_id, received)
    )


@SETTINGS
@given(strategies.messages())
def test_the_writers_messages_are_proven_and_constructed(message: Message) -> None:
    """What the codec writes is proven by the fast reader (so it is built without model_validate), and equal."""
    envelope = encode(message, TEXT_CONTENT_TYPE)
    found = _fast_fields(envelope.body, envelope.headers, None, "", NOW)
    assert found is not None and found[2], found
    _assert_constructed_is_validated(found, _decode_fast(envelope.body, envelope.headers, None, "", NOW))
    assert _decode_fast(envelope.body, envelope.headers, None, "", NOW) == message


def test_the_bench_messages_are_constructed() -> None:
    for message in sample_messages():
        envelope = encode(message, TEXT_CONTENT_TYPE)
        found = _fast_fields(envelope.body, envelope.headers, None, "", NOW)
        assert found is not None and found[2], message.type
        assert _decode_fast(envelope.body, envelope.headers, None, "", NOW) == message


@SETTINGS
@given(strategies.messages())
def test_construct_proven_of_a_validated_messages_fields_is_that_message(message: Message) -> None:
    """Validated values pass the validators unchanged: built from them, the message is the same in every respect."""
    given_fields = {name: message.__dict__[name] for name in message.model_fields_set}
    constructed = construct_proven(type(message), given_fields)
    assert _snapshot(constructed) == _snapshot(type(message).model_validate(given_fields))
    assert _snapshot(constructed) == _snapshot(message)


def test_a_constructed_message_is_frozen_and_refuses_extra_fields() -> None:
    message = construct_proven(Accepted, {**BASE, "type": "accepted"})
    with pytest.raises(ValidationError):
        message.docset_id = "6"  # type: ignore[misc]
    assert message.model_fields_set == {"docset_id", "request_id", "timestamp", "type"}
    assert message.estimate_seconds is None and message.sequence == 0 and message.protocol_version == "1.0"
    assert message.model_copy(update={"sequence": 3}).sequence == 3
    assert message.model_fields_set == {"docset_id", "request_id", "timestamp", "type"}  # not the copy's


@pytest.mark.parametrize(
    "fields",
    [
        {**BASE, "extra": 1},  # not a field: extra="forbid"
        {"docset_id": "5", "timestamp": NOW},  # request_id is required
        {**BASE, "type": "progress"},  # another message's type
    ],
)
def test_construct_proven_refuses_fields_that_are_not_the_models(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="are not those of the model"):
        construct_proven(Accepted, fields)


# What the predicates stand for. A validator added, removed or changed in models.py changes this
# table and fails the test below: look at construct_proven's predicates (and text/plain's fast
# reader, which proves some values by its patterns) before updating it.
VALIDATORS = {
    "PackageRequest": (
        ["_check_docset_id", "_check_request_id", "_check_url", "_check_version", "_check_formats"],
        ["_check_reply_to"],
    ),
    "Accepted": (["_check_docset_id", "_check_request_id", "_check_version"], []),
    "Progress": (["_check_docset_id", "_check_request_id", "_check_version"], ["_check_counts"]),
    "Complete": (["_check_content_type", "_check_docset_id", "_check_request_id", "_check_version"], []),
    "Failed": (["_check_docset_id", "_check_reason", "_check_request_id", "_check_version"], []),
    "DeleteRequest": (["_check_docset_id", "_check_request_id", "_check_version"], []),
    "Deleted": (["_check_docset_id", "_check_request_id", "_check_version"], []),
}
FIELDS = {
    "MessageBase.protocol_version": "str [] '1.0'",
    "MessageBase.docset_id": "str [] required",
    "MessageBase.request_id": "str [MaxLen(max_length=36)] required",
    "MessageBase.sequence": "int [Ge(ge=0), Le(le=9223372036854775807)] 0",
    "MessageBase.timestamp": "AwareDatetime [AfterValidator(func=_check_datetime)] required",
    "PackageRequest.docset_url": "str [MinLen(min_length=1), MaxLen(max_length=2048)] required",
    "PackageRequest.formats": "tuple[str, ...] [MaxLen(max_length=32)] ('meta', 'txt')",
    "PackageRequest.reply_to": "str [MaxLen(max_length=265)] required",
    "PackageRequest.requested_at": "AwareDatetime [AfterValidator(func=_check_datetime)] required",
    "Accepted.estimate_seconds": (
        "Optional[Annotated[float, FieldInfo(annotation=NoneType, required=True, "
        "metadata=[Ge(ge=0), AllowInfNan(allow_inf_nan=False)]), AfterValidator(func=_positive_zero)]] [] None"
    ),
    "Progress.items_done": "int [Ge(ge=0), Le(le=9223372036854775807)] required",
    "Progress.items_total": "int [Ge(ge=0), Le(le=9223372036854775807)] required",
    "Progress.percent": (
        "float [Ge(ge=0), Le(le=100), AllowInfNan(allow_inf_nan=False), AfterValidator(func=_positive_zero)] required"
    ),
    "Progress.eta_seconds": (
        "Optional[Annotated[float, FieldInfo(annotation=NoneType, required=True, "
        "metadata=[Ge(ge=0), AllowInfNan(allow_inf_nan=False)]), AfterValidator(func=_positive_zero)]] [] None"
    ),
    "Complete.archive_url": "str [AfterValidator(func=_check_archive_url)] required",
    "Complete.size_bytes": "int [Ge(ge=0), Le(le=9223372036854775807)] required",
    "Complete.sha256": "str | None [_PydanticGeneralMetadata(pattern='^[0-9a-f]{64}$')] None",
    "Complete.content_type": "str [MaxLen(max_length=255)] 'application/zip'",
    "Complete.url_expires_at": (
        "Optional[Annotated[pydantic.types.AwareDatetime, AfterValidator(func=_check_datetime)]] [] None"
    ),
    "Failed.reason": "str [MinLen(min_length=1), MaxLen(max_length=4096)] required",
    "Failed.retryable": "bool [] False",
    "DeleteRequest.archive_url": "Optional[Annotated[str, AfterValidator(func=_check_archive_url)]] [] None",
    "Deleted.archive_url": "Optional[Annotated[str, AfterValidator(func=_check_archive_url)]] [] None",
}


def _describe(field: Any) -> str:
    """A field's type, constraints and default, as text (functions by name, without their addresses)."""
    default = "required" if field.is_required() else repr(field.get_default())
    text = f"{field.annotation!r} {field.metadata!r} {default}".replace("typing.", "")
    text = re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", text)
    return re.sub(r"<function (\w+) at 0x[0-9a-f]+>", r"\1", text)


def test_the_validators_the_predicates_stand_for_are_pinned() -> None:
    seen_fields: dict[str, str] = {}
    for cls in MESSAGE_TYPES.values():
        decorators = cls.__pydantic_decorators__
        pinned_fields, pinned_models = VALIDATORS[cls.__name__]
        assert sorted(decorators.field_validators) == sorted(pinned_fields), cls.__name__
        assert sorted(decorators.model_validators) == sorted(pinned_models), cls.__name__
        assert not decorators.root_validators and not decorators.validators and not decorators.model_serializers
        assert cls.model_config.get("extra") == "forbid" and cls.model_config.get("frozen") is True
        for name, field in cls.model_fields.items():
            if name != "type":
                owner = "MessageBase" if name in MessageBase.model_fields else cls.__name__
                seen_fields[f"{owner}.{name}"] = _describe(field)
    assert seen_fields == FIELDS


def test_format_moment_writes_every_utc_date_time_as_isoformat_does() -> None:
    """The fast spelling (the date and time halves) over the whole datetime range, as isoformat writes it."""
    for value in [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(999, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
        datetime(2026, 11, 27, 12, 0, tzinfo=UTC),
        datetime(2026, 11, 27, 12, 0, 0, 500000, tzinfo=UTC, fold=1),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]:
        assert format_moment(value) == value.isoformat().replace("+00:00", "Z")


@SETTINGS
@given(st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(0)), timezone(timedelta(hours=-3))])))
def test_format_moment_is_isoformat_in_utc_over_all_years(value: datetime) -> None:
    try:
        expected = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    except OverflowError:
        return  # beyond datetime's range once in UTC
    assert format_moment(value) == expected


def test_format_moment_of_a_subclass_is_its_isoformat() -> None:
    class Moment(datetime):
        def isoformat(self, sep: str = "T", timespec: str = "auto") -> str:
            return "custom+00:00"

    assert format_moment(Moment(2026, 1, 1, tzinfo=UTC)) == "customZ"


@SETTINGS
@given(strategies.package_requests(), st.sampled_from(["same", "equal", "other"]))
def test_the_request_time_header_is_written_from_the_request_time(message: PackageRequest, how: str) -> None:
    """``tdm-requested-at`` reuses the written timestamp only when it is the same date-time object."""
    timestamp = message.timestamp
    requested_at = {
        "same": timestamp,
        "equal": timestamp.astimezone(timezone(timedelta(hours=1))),
        "other": timestamp - timedelta(microseconds=1),
    }[how]
    message = message.model_copy(update={"requested_at": requested_at})
    headers = encode(message, TEXT_CONTENT_TYPE).headers
    assert headers["tdm-requested-at"] == format_moment(requested_at)
    assert headers["tdm-timestamp"] == format_moment(timestamp)


def test_every_message_class_has_a_template() -> None:
    for cls in MESSAGE_TYPES.values():
        assert issubclass(cls, MessageBase)
        fields = {name: field.get_default() for name, field in cls.model_fields.items() if not field.is_required()}
        message = construct_proven(cls, {**BASE, **_required_extras(cls)})
        assert list(message.__dict__) == list(cls.model_fields)
        for name, default in fields.items():
            assert message.__dict__[name] == default


def _required_extras(cls: type[MessageBase]) -> dict[str, Any]:
    return {
        "PackageRequest": {"docset_url": "http://h/5", "reply_to": "package/5", "requested_at": NOW},
        "Progress": {"items_done": 1, "items_total": 2, "percent": 50.0},
        "Complete": {"archive_url": URL, "size_bytes": 1},
        "Failed": {"reason": "x"},
    }.get(cls.__name__, {})


# --- the proofs as patterns (text/plain's fast reader folds them into its own) --------------------


def _full(name: str, text: str) -> bool:
    return re.fullmatch(PROVEN_PATTERNS[name], text) is not None


@SETTINGS
@given(DOCSET_ID_TEXT, REQUEST_ID_TEXT, st.one_of(st.text(max_size=20), st.from_regex(r"[0-9]{1,20}", fullmatch=True)))
@example("x" * 128, REQUEST_ID, "9" * 18)
@example("x" * 129, REQUEST_ID, "9" * 19)
def test_the_id_and_count_patterns_are_the_predicates(docset_id: str, request_id: str, count: str) -> None:
    ids_proven = _full("docset_id", docset_id) and (not request_id or _full("request_id", request_id))
    if ids_proven:
        assert proven_base("1.0", docset_id, request_id, 0, NOW)
    if _full("count", count):
        assert proven_base("1.0", "5", "", int(count), NOW)


MOMENT_TEXTS = st.one_of(
    MOMENTS.filter(lambda moment: moment.tzinfo is not None).map(lambda moment: moment.isoformat()),
    st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,7})?(Z|\+00:00)?", fullmatch=True),
    st.sampled_from(["1969-12-31T23:59:59Z", "1970-01-01T00:00:00Z", "9998-12-31T23:59:59.999999Z"]),
    st.sampled_from(
        ["9999-01-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-27T24:00:00Z", "\u0662026-01-01T00:00:00Z"]
    ),
)


@SETTINGS
@given(MOMENT_TEXTS)
def test_the_moment_pattern_is_proven_moment(text: str) -> None:
    if not _full("moment", text):
        return
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return  # not a real date: the reader then leaves it to the full path
    assert proven_moment(value)


@SETTINGS
@given(st.one_of(URLS, _near(r"[0-9a-f]{64}")))
def test_the_url_and_digest_patterns_are_the_predicates(text: str) -> None:
    if _full("http_url", text) and len(text) <= MAX_URL_LENGTH:
        assert proven_http_url(text)
    if _full("sha256", text):
        assert proven_sha256(text)


WRITTEN_HEADERS = {message.type: dict(encode(message, TEXT_CONTENT_TYPE).headers) for message in sample_messages()}
VALUE_TEXTS = st.one_of(URLS, _near(r"[0-9a-f]{64}"), MOMENT_TEXTS, CONTENT_TYPES)


@SETTINGS
@given(
    st.sampled_from(
        [
            ("complete", "Complete: {}\nSize: 1"),
            ("complete", "Complete: http://h/x\nSize: 1\nSHA256: {}"),
            ("complete", "Complete: http://h/x\nSize: 1\nContent-Type: {}"),
            ("complete", "Complete: http://h/x\nSize: 1\nExpires: {}"),
            ("deleted", "Deleted: 5\nArchive: {}"),
            ("delete_request", "Delete: 5\nArchive: {}"),
            ("package_request", "{}"),
        ]
    ),
    VALUE_TEXTS,
)
@example(("complete", "Complete: {}\nSize: 1"), "http://[::1]/x")
@example(("complete", "Complete: {}\nSize: 1"), "ftp://h/x")
@example(("complete", "Complete: http://h/x\nSize: 1\nSHA256: {}"), "A" * 64)
@example(("complete", "Complete: http://h/x\nSize: 1\nExpires: {}"), "9999-01-01T00:00:00Z")
@example(("deleted", "Deleted: 5\nArchive: {}"), "http://h:99999/x")
def test_values_in_written_bodies_are_proven_only_when_valid(form: tuple[str, str], value: str) -> None:
    """Each value of a body the writer's headers go with: in its proven group or not, the message is the same."""
    kind, template = form
    body = template.format(value).encode("utf-8", "surrogatepass")
    _assert_constructed_is_validated(
        _fast_outcome(body, WRITTEN_HEADERS[kind], None, "", NOW), _decoded(body, WRITTEN_HEADERS[kind], None, "", NOW)
    )


FORMAT_TEXTS = st.one_of(
    _near(r"[A-Za-z0-9_-]{1,33}(,[A-Za-z0-9_-]{0,33}){0,33}"),
    st.lists(st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True), max_size=34).map(",".join),
)


@SETTINGS
@given(FORMAT_TEXTS)
@example(",".join(["m"] * 32))
@example(",".join(["m"] * 33))
@example("meta,,txt")
@example("")
def test_the_formats_pattern_is_proven_formats(text: str) -> None:
    """A tdm-formats header the pattern matches is, split as the reader splits it, formats the model keeps."""
    if _full("formats", text):
        formats = tuple(filter(None, text.split(",")))
        assert formats == (tuple(text.split(",")) if text else ())  # no empty one dropped
        assert proven_formats(formats)
        data = {**BASE, "docset_url": "http://h/5", "formats": formats, "reply_to": "package/5", "requested_at": NOW}
        _kept(PackageRequest, data, "formats", formats)


def test_construct_proven_whole_refuses_what_is_not_every_field() -> None:
    whole = dict(construct_proven(Accepted, {**BASE, "type": "accepted"}).__dict__)
    assert _snapshot(construct_proven_whole(Accepted, dict(whole))) == _snapshot(Accepted.model_validate(whole))
    with pytest.raises(ValueError, match="are not those of the model"):
        construct_proven_whole(Accepted, {**BASE, "type": "accepted"})  # defaults left out
    with pytest.raises(ValueError, match="are not those of the model"):
        construct_proven_whole(Accepted, {**whole, "type": "progress"})


def test_format_moment_keeps_few_days_and_writes_every_one() -> None:
    from tdm_messaging import models

    start = datetime(2026, 1, 1, 23, 59, 59, 5, tzinfo=UTC)
    for days in range(models._MAX_DAY_HEADS + 100):
        value = start + timedelta(days=days)
        assert format_moment(value) == value.isoformat().replace("+00:00", "Z")
        assert format_moment(value) == format_moment(value)  # written from the kept day
        assert len(models._DAY_HEADS) <= models._MAX_DAY_HEADS
