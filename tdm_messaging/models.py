"""The protocol's messages: frozen pydantic v2 models, one discriminated union, protocol version 1.0."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from functools import lru_cache
from typing import Annotated, Any, Final, Literal, TypeAlias, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
    model_validator,
)

from tdm_messaging.destinations import MAX_DOCSET_ID_LENGTH, validate_docset_id
from tdm_messaging.ids import check_request_id

__all__ = [
    "LEGACY_REQUEST_ID",
    "MAX_COUNT",
    "MAX_FORMATS",
    "MAX_REPLY_TO_LENGTH",
    "MAX_URL_LENGTH",
    "MESSAGE_TYPES",
    "PROTOCOL_VERSION",
    "PROVEN_PATTERNS",
    "Accepted",
    "Complete",
    "DeleteRequest",
    "Deleted",
    "Failed",
    "Message",
    "MessageBase",
    "PackageRequest",
    "Progress",
    "check_http_url",
    "check_reply_to",
    "construct_proven",
    "construct_proven_whole",
    "format_moment",
    "message_adapter",
    "proven_base",
    "proven_content_type",
    "proven_formats",
    "proven_http_url",
    "proven_moment",
    "proven_reason",
    "proven_reply_to",
    "proven_sha256",
]

PROTOCOL_VERSION: Final = "1.0"
"""``major.minor``. Readers accept any minor of their major and ignore fields a newer minor added."""

LEGACY_REQUEST_ID: Final = ""
"""The request id given to seed ``text/plain`` messages, which carry none. Sorts before every real id."""
MAX_COUNT: Final = (1 << 63) - 1
"""The largest sequence number, size or item count: what a signed 64-bit integer holds (every peer can store it)."""
MAX_URL_LENGTH: Final = 2048
"""The longest docset or archive URL (browsers, proxies and S3 presigned URLs all stay below it)."""
MAX_FORMATS: Final = 32
"""The most formats one package request may ask for; each is 1 to 32 characters."""

# Rules on values. Every field a peer sends is bounded and of one spelling, so no reader ever
# meets a value it cannot compute with (an infinite float, a 5,000-digit number, a year 0) or
# pass on (a CR/LF in what ends up in a header, a javascript: URL in a Location header).
_VERSION = re.compile(r"[0-9]{1,4}\.[0-9]{1,4}")
_MEDIA_TOKEN = r"[A-Za-z0-9!#$&^_.+-]{1,127}"
_MEDIA_TYPE = re.compile(
    rf"{_MEDIA_TOKEN}/{_MEDIA_TOKEN}(?:[ \t]*;[ \t]*{_MEDIA_TOKEN}=(?:{_MEDIA_TOKEN}|\"[ !#-\[\]-~]*\"))*"
)
_REQUEST_ID_PATTERN = r"^$|^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"  # for the schema
# Fast paths of the checks below: a value these match passes the full check unchanged (a
# property test holds them equal); anything else takes the full check, which says what is wrong.
_DOCSET_ID_FAST = re.compile(rf"[A-Za-z0-9._~:@+-]{{1,{MAX_DOCSET_ID_LENGTH}}}")
_REQUEST_ID_FAST = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_SURROGATE = re.compile("[\ud800-\udfff]")
_URL_CHARS = re.compile(r"[!-~]+")  # printable ASCII: no space, no control character, no non-ASCII
# A plain http(s) URL: a host of letters, digits, dots and hyphens (so urlsplit finds it, and
# cannot fail: no brackets), an optional port, then nothing or a path, query or fragment.
_HTTP_URL_FAST = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{0,5})?(?:[/?#][!-~]*)?")
_FORMAT = re.compile(r"[A-Za-z0-9_-]{1,32}")
_MIN_YEAR, _MAX_YEAR = 1970, 9998  # arithmetic of a few days either side never overflows datetime
# A reply address: package/<docset id>, optionally inside a namespace (docs/protocol.md § 2.3).
_NAMESPACE = re.compile(r"[A-Za-z0-9._~:@+-]{1,128}")
MAX_REPLY_TO_LENGTH: Final = 128 + len("/package/") + 128


def check_http_url(value: str, field: str = "url") -> str:
    """Return ``value`` if it is an absolute ``http``/``https`` URL of printable ASCII with a host.

    Raises:
        ValueError: naming the field and the problem (pydantic turns it into a validation error).
    """
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"{field} is {len(value)} characters long; the limit is {MAX_URL_LENGTH}")
    # A request's URL is checked when it is made, then on every read of its copy: the URLs
    # passed lately are remembered (exact str only: a subclass may hash or compare otherwise).
    check = _checked_url if type(value) is str else _checked_url.__wrapped__
    return check(value, field)


@lru_cache(maxsize=4096)
def _checked_url(value: str, field: str) -> str:
    """:func:`check_http_url` past the length check; what it returns is remembered, what it raises is not."""
    if _HTTP_URL_FAST.fullmatch(value):
        return value  # what the checks below accept, without urlsplit (a property test holds the two equal)
    return _check_url_fully(value, field)


def _check_url_fully(value: str, field: str) -> str:
    if not _URL_CHARS.fullmatch(value):
        raise ValueError(
            f"{field} must be printable ASCII without spaces or control characters (percent-encode anything else)"
        )
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"{field} must start with http:// or https:// (lower case), got {value[:40]!r}")
    try:
        host = urlsplit(value).hostname
    except ValueError as exc:
        raise ValueError(f"{field} is not a valid URL: {exc}") from None
    if not host:
        raise ValueError(f"{field} names no host")
    return value


def _check_datetime(value: datetime) -> datetime:
    # Kept in UTC: a message has one spelling of each instant (written with "Z"), so the fold's
    # tie-break and every re-send compare and write instants, never the offsets peers chose.
    value = value.astimezone(UTC)
    if not _MIN_YEAR <= value.year <= _MAX_YEAR:
        raise ValueError(f"year {value.year} (in UTC) is outside {_MIN_YEAR}-{_MAX_YEAR}")
    return value


def format_moment(value: datetime) -> str:
    """``value`` as the protocol writes every date-time: ISO 8601 in UTC with ``Z``, e.g. ``2026-01-02T03:04:05Z``.

    Microseconds are written when not zero (``2026-01-02T03:04:05.250000Z``), as in JSON bodies.

    Raises:
        ValueError: ``value`` is naive (it names no instant).
    """
    if value.tzinfo is UTC:  # every validated message's date-times (see _check_datetime)
        if type(value) is datetime:
            # isoformat()'s date and time halves, less its "+00:00": CPython writes an offset by
            # calling the tzinfo's utcoffset(), which was half the cost of the whole (3.11).
            day = _date_of(value)
            head = _DAY_HEADS.get(day)
            if head is None:
                head = _day_head(day)
            return f"{head}{_time_iso(_time_of(value))}Z"
        return value.isoformat()[:-6] + "Z"  # a subclass may write itself otherwise: as it does
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"date-time {value.isoformat()} has no time-zone offset")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


_date_of, _time_of, _date_iso, _time_iso = datetime.date, datetime.time, date.isoformat, time.isoformat
# "2026-01-02T" by day: the messages of a day share it, and writing it was a third of format_moment.
# Bounded (a peer's messages may carry any day): emptied when full, as no day is dearer than another.
_DAY_HEADS: dict[date, str] = {}
_MAX_DAY_HEADS: Final = 1024


def _day_head(day: date) -> str:
    if len(_DAY_HEADS) >= _MAX_DAY_HEADS:
        _DAY_HEADS.clear()
    head = _DAY_HEADS[day] = _date_iso(day) + "T"
    return head


def _positive_zero(value: float) -> float:
    return value + 0.0  # -0.0 + 0.0 is +0.0: one spelling of zero, so equal values compare and print alike


def check_reply_to(value: str, docset_id: str) -> str:
    """Return ``value`` if it is the reply address of ``docset_id``: ``package/<id>`` or ``<namespace>/package/<id>``.

    Raises:
        ValueError: naming what was expected.
    """
    expected = f"package/{docset_id}"
    if value == expected:
        return value
    namespace, sep, rest = value.partition("/")
    if sep and rest == expected and _NAMESPACE.fullmatch(namespace):
        return value
    raise ValueError(
        f"reply_to must be {expected!r}, or '<namespace>/{expected}' inside a namespace, "
        f"for docset {docset_id!r}; got {value[:80]!r}"
    )


def _check_archive_url(value: str) -> str:
    return check_http_url(value, "archive_url")


Moment = Annotated[AwareDatetime, AfterValidator(_check_datetime)]
"""A timezone-aware date-time of years 1970 to 9998."""
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False), AfterValidator(_positive_zero)]
"""A finite, non-negative number of seconds."""
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
"""A whole number from 0 to 2**63 - 1."""
ArchiveUrl = Annotated[str, AfterValidator(_check_archive_url)]


class MessageBase(BaseModel):
    """Fields every message carries.

    Attributes:
        protocol_version: ``major.minor`` of the protocol the sender spoke.
        docset_id: the docset the message is about (also names its reply queue).
        request_id: correlation id of one package request; every reply to that
            request repeats it. Ids must sort in creation order (see
            :func:`tdm_messaging.ids.new_request_id`); a newer request supersedes an older one.
        sequence: per-request counter set by the sender, 0 for the request itself.
        timestamp: when the sender made the message (timezone-aware).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)

    protocol_version: str = Field(default=PROTOCOL_VERSION, json_schema_extra={"pattern": r"^[0-9]{1,4}\.[0-9]{1,4}$"})
    docset_id: str
    request_id: str = Field(max_length=36, json_schema_extra={"pattern": _REQUEST_ID_PATTERN})
    sequence: Count = 0
    timestamp: Moment

    @field_validator("docset_id")
    @classmethod
    def _check_docset_id(cls, value: str) -> str:
        if _DOCSET_ID_FAST.fullmatch(value):
            return value
        return validate_docset_id(value)

    @field_validator("protocol_version")
    @classmethod
    def _check_version(cls, value: str) -> str:
        if value != PROTOCOL_VERSION and not _VERSION.fullmatch(value):
            raise ValueError(f"protocol_version must be ASCII 'MAJOR.MINOR' such as '1.0', got {value[:20]!r}")
        return value

    @field_validator("request_id")
    @classmethod
    def _check_request_id(cls, value: str) -> str:
        if not value or _REQUEST_ID_FAST.fullmatch(value):
            return value
        return check_request_id(value)


class PackageRequest(MessageBase):
    """Server → packager on ``docsets/package``: build the archive of a docset.

    Attributes:
        docset_url: the docset on the API, e.g. ``http://server/api/docsets/5?fmt=meta,txt``.
        formats: what to put in the archive, e.g. ``("meta", "txt")``.
        reply_to: the reply queue's full name: ``package/<docset_id>``, or
            ``<namespace>/package/<docset_id>`` when the request was sent inside a namespace.
        requested_at: when the miner asked.
    """

    type: Literal["package_request"] = "package_request"
    docset_url: str = Field(min_length=1, max_length=MAX_URL_LENGTH)
    formats: tuple[str, ...] = Field(default=("meta", "txt"), max_length=MAX_FORMATS)
    reply_to: str = Field(max_length=MAX_REPLY_TO_LENGTH)
    requested_at: Moment

    @field_validator("docset_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return check_http_url(value, "docset_url")

    @field_validator("formats")
    @classmethod
    def _check_formats(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if all(map(_FORMAT.fullmatch, value)):  # the common case, without a Python-level loop
            return value
        for fmt in value:
            if not _FORMAT.fullmatch(fmt):
                raise ValueError(
                    f"format {fmt[:40]!r} must be 1 to 32 ASCII letters, digits, '-' or '_', such as 'meta' or 'txt'"
                )
        return value

    @model_validator(mode="after")
    def _check_reply_to(self) -> PackageRequest:
        if self.reply_to != "package/" + self.docset_id:  # the plain address passes check_reply_to as is
            check_reply_to(self.reply_to, self.docset_id)
        return self


class Accepted(MessageBase):
    """Packager → server: the request was taken; ``estimate_seconds`` until complete (``None``: no estimate)."""

    type: Literal["accepted"] = "accepted"
    estimate_seconds: Seconds | None = None


class Progress(MessageBase):
    """Packager → server: ``items_done`` of ``items_total`` documents packaged.

    ``percent`` is 0 to 100; ``eta_seconds`` estimates the time left.
    """

    type: Literal["progress"] = "progress"
    items_done: Count
    items_total: Count
    percent: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False), AfterValidator(_positive_zero)]
    eta_seconds: Seconds | None = None

    @model_validator(mode="after")
    def _check_counts(self) -> Progress:
        if self.items_done > self.items_total:
            raise ValueError(f"items_done ({self.items_done}) exceeds items_total ({self.items_total})")
        return self


class Complete(MessageBase):
    """Packager → server: the archive is at ``archive_url``.

    Attributes:
        archive_url: where to download it.
        size_bytes: its size.
        sha256: hex digest of the archive, when known (the seed's text form has none).
        content_type: media type of the archive.
        url_expires_at: when ``archive_url`` stops working (presigned URLs), if it does.
    """

    type: Literal["complete"] = "complete"
    archive_url: ArchiveUrl
    size_bytes: Count
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    content_type: str = Field(default="application/zip", max_length=255)
    url_expires_at: Moment | None = None

    @field_validator("content_type")
    @classmethod
    def _check_content_type(cls, value: str) -> str:
        if value != "application/zip" and not _MEDIA_TYPE.fullmatch(value):  # the default, checked once here
            raise ValueError(
                f"content_type {value[:40]!r} is not a media type such as 'application/zip' "
                "(ASCII type/subtype with optional ;name=value parameters, no line breaks)"
            )
        return value


class Failed(MessageBase):
    """Packager → server: the job failed for ``reason``; ``retryable`` says whether asking again may help."""

    type: Literal["failed"] = "failed"
    reason: str = Field(min_length=1, max_length=4096)
    retryable: bool = False

    @field_validator("reason")
    @classmethod
    def _check_reason(cls, value: str) -> str:
        # A lone surrogate cannot be written as UTF-8: the message could be read but never re-sent.
        if not value.isascii() and _SURROGATE.search(value):
            raise ValueError("reason holds a lone surrogate, which UTF-8 cannot carry")
        return value


class DeleteRequest(MessageBase):
    """Server → packager on ``docsets/delete``: delete the package of this docset (``archive_url`` if known)."""

    type: Literal["delete_request"] = "delete_request"
    archive_url: ArchiveUrl | None = None


class Deleted(MessageBase):
    """Packager → server: the package was deleted; its URL no longer works."""

    type: Literal["deleted"] = "deleted"
    archive_url: ArchiveUrl | None = None


Message: TypeAlias = Annotated[
    PackageRequest | Accepted | Progress | Complete | Failed | DeleteRequest | Deleted,
    Field(discriminator="type"),
]
"""Any protocol message; ``type`` tells which."""

MESSAGE_TYPES: Final[dict[str, type[MessageBase]]] = {
    "package_request": PackageRequest,
    "accepted": Accepted,
    "progress": Progress,
    "complete": Complete,
    "failed": Failed,
    "delete_request": DeleteRequest,
    "deleted": Deleted,
}

message_adapter: TypeAdapter[Message] = TypeAdapter(Message)
"""Validates a dict (or JSON) into the right message class."""


# --- building a message whose values are already proven ----------------------------------------
#
# model_validate runs every check above (2-3 µs a message, most of a text/plain decode). A reader
# whose pattern has already pinned a value's form (text/plain's fast reader: ASCII digits, a
# date-time ending in 'Z', ...) proves the rest with the predicates below, each True only where
# the field's validators return the value unchanged, and then builds the message with
# construct_proven; anything not proven is left to model_validate. tests/test_proven.py holds
# each predicate to its validators, and construct_proven to model_validate, over full Unicode,
# near misses and huge values; it also pins the validators each model has, so that a new one
# cannot be missed here.

_M = TypeVar("_M", bound=MessageBase)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PROVEN_YEAR = r"(?:19[7-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"  # 1970 to 9998

PROVEN_PATTERNS: Final = {
    "docset_id": _DOCSET_ID_FAST.pattern,
    "request_id": _REQUEST_ID_FAST.pattern,  # or "" (seed messages)
    "count": r"[0-9]{1,18}",  # below MAX_COUNT, whatever the digits
    "moment": rf"{_PROVEN_YEAR}-[0-9]{{2}}-[0-9]{{2}}T[0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}(?:\.[0-9]{{6}})?Z",
    "http_url": _HTTP_URL_FAST.pattern,  # of at most MAX_URL_LENGTH characters
    "sha256": _SHA256.pattern,
    # formats joined by commas, as text/plain's tdm-formats header carries them ("": none)
    "formats": rf"(?:{_FORMAT.pattern}(?:,{_FORMAT.pattern}){{0,{MAX_FORMATS - 1}}})?",
}
"""The proofs as patterns, for a reader that folds them into its own (text/plain's fast reader).

A ``str`` that fully matches one is kept unchanged by its field's validators: a docset id, a
request id; a count once ``int()``; a date-time once ``datetime.fromisoformat()`` (if a real
date: the pattern checks digits, not the calendar); an http(s) URL no longer than
:data:`MAX_URL_LENGTH`; a SHA-256 digest; formats once split at commas (``()`` for
``""``). ``tests/test_proven.py`` holds each to its predicate.
"""
_MAX_CONTENT_TYPE_LENGTH: Final = 255
_MAX_REASON_LENGTH: Final = 4096


def proven_moment(value: object) -> bool:
    """True if a ``Moment`` field keeps ``value`` as it is: a ``datetime`` in UTC, of years 1970 to 9998."""
    return (
        type(value) is datetime
        and value.tzinfo is UTC  # so _check_datetime's astimezone(UTC) returns it unchanged
        and _MIN_YEAR <= value.year <= _MAX_YEAR
    )


def proven_base(version: object, docset_id: object, request_id: object, sequence: object, timestamp: object) -> bool:
    """True if :class:`MessageBase`'s validators keep these values as they are (this protocol's own version only)."""
    return (
        version == PROTOCOL_VERSION
        and type(version) is str
        and type(docset_id) is str
        and _DOCSET_ID_FAST.fullmatch(docset_id) is not None
        and type(request_id) is str
        and (not request_id or _REQUEST_ID_FAST.fullmatch(request_id) is not None)
        and type(sequence) is int
        and 0 <= sequence <= MAX_COUNT
        and type(timestamp) is datetime
        and timestamp.tzinfo is UTC
        and _MIN_YEAR <= timestamp.year <= _MAX_YEAR
    )


def proven_http_url(value: object) -> bool:
    """True if a docset or archive URL field keeps ``value``: a plain http(s) URL of at most 2048 characters."""
    return type(value) is str and len(value) <= MAX_URL_LENGTH and _HTTP_URL_FAST.fullmatch(value) is not None


def proven_sha256(value: object) -> bool:
    """True if ``Complete.sha256`` keeps ``value``: 64 lower-case hex digits."""
    return type(value) is str and _SHA256.fullmatch(value) is not None


def proven_content_type(value: object) -> bool:
    """True if ``Complete.content_type`` keeps ``value``: a media type of at most 255 characters."""
    return (
        type(value) is str
        and len(value) <= _MAX_CONTENT_TYPE_LENGTH
        and (value == "application/zip" or _MEDIA_TYPE.fullmatch(value) is not None)
    )


def proven_reason(value: object) -> bool:
    """True if ``Failed.reason`` keeps ``value``: 1 to 4096 characters, no lone surrogate."""
    return (
        type(value) is str
        and 0 < len(value) <= _MAX_REASON_LENGTH
        and (value.isascii() or _SURROGATE.search(value) is None)
    )


def proven_formats(value: object) -> bool:
    """True if ``PackageRequest.formats`` keeps ``value``: a tuple of at most 32 formats, each a ``str``."""
    return (
        type(value) is tuple
        and len(value) <= MAX_FORMATS
        and all(type(fmt) is str and _FORMAT.fullmatch(fmt) is not None for fmt in value)
    )


def proven_reply_to(value: object, docset_id: str) -> bool:
    """True if ``PackageRequest.reply_to`` keeps ``value`` for ``docset_id`` (proven apart)."""
    if type(value) is not str or len(value) > MAX_REPLY_TO_LENGTH:
        return False
    if value == "package/" + docset_id:
        return True
    try:
        check_reply_to(value, docset_id)
    except ValueError:
        return False
    return True


def _template(cls: type[MessageBase]) -> tuple[dict[str, Any], frozenset[str]]:
    """Every field of ``cls`` in declaration order with its default (``...`` if required), and the required names."""
    if cls.__pydantic_post_init__ is not None or cls.__private_attributes__:
        raise TypeError(f"construct_proven cannot build {cls.__name__}: it has a model_post_init or private attributes")
    fields = cls.model_fields
    return (
        {name: ... if field.is_required() else field.get_default() for name, field in fields.items()},
        frozenset(name for name, field in fields.items() if field.is_required()),
    )


_TEMPLATES: Final = {cls: _template(cls) for cls in MESSAGE_TYPES.values()}
_new = object.__new__
_set_dict = object.__setattr__
# The slots' own setters, as model_construct sets them (less its look-ups by name).
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def construct_proven(cls: type[_M], fields: dict[str, Any]) -> _M:
    """``cls.model_validate(fields)``, without running the validators: ``fields`` are proven to pass them unchanged.

    The same message as model_validate would give: the same values in the same order, defaults
    for the fields not given, ``model_fields_set`` the names given, frozen like any other. The
    caller has proven every value with the ``proven_*`` predicates above, or by a pattern that
    allows nothing else (e.g. ASCII digits for a count, checked against its bounds), and gives
    each value in the exact type the validators return (``str``, ``int``, ``float``, ``datetime``,
    ``tuple``); the model validators' rules between fields (``items_done <= items_total``,
    ``reply_to`` naming the docset) are the caller's to prove too.

    Args:
        cls: one of the message classes (:data:`MESSAGE_TYPES`).
        fields: the values, by field name.

    Raises:
        ValueError: ``fields`` names a field ``cls`` does not have, misses a required one, or
            gives another ``type`` (a caller's mistake; nothing is built).
    """
    template, required = _TEMPLATES[cls]
    values = template.copy()
    values.update(fields)  # keeps the declaration order: every key is in the template already
    if len(values) != len(template) or not fields.keys() >= required or values["type"] != template["type"]:
        raise ValueError(f"construct_proven({cls.__name__}): fields {sorted(fields)} are not those of the model")
    return _built(cls, values, set(fields))


def construct_proven_whole(cls: type[_M], values: dict[str, Any]) -> _M:
    """:func:`construct_proven` of every field of ``cls``, given in declaration order: ``values`` becomes the message's.

    For a reader whose pattern yields every field in the model's order (JSON as ``encode_json``
    writes it): no template to merge, so nothing to check but the count and the type; the order
    is the caller's to keep (``tests/test_json_fast_path.py`` holds the message to model_validate's,
    order included). ``values`` must not be used after.

    Raises:
        ValueError: ``values`` has not as many fields as ``cls``, or another ``type``.
    """
    template, _required = _TEMPLATES[cls]
    if len(values) != len(template) or values["type"] != template["type"]:
        raise ValueError(f"construct_proven_whole({cls.__name__}): fields {list(values)} are not those of the model")
    return _built(cls, values, set(values))


def _built(cls: type[_M], values: dict[str, Any], fields_set: set[str]) -> _M:
    """A ``cls`` instance with ``values`` as its ``__dict__`` and ``fields_set``, as pydantic builds one."""
    message = _new(cls)
    _set_dict(message, "__dict__", values)
    _set_fields_set(message, fields_set)
    _set_extra(message, None)
    _set_private(message, None)
    return message
