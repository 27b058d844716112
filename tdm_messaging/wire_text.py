"""The seed's ``text/plain`` lines (``Accepted. 45 seconds``, ...): read here; written by wire_text_write.

Rules (the forms are specified in ``docs/protocol.md``):

- A body is UTF-8 lines separated by LF or CRLF. Trailing spaces, tabs and newlines are
  ignored; anything else that is not one of the forms below is refused, quoting the line.
- The first line says what the message is; the ``Key: value`` lines after it are the
  message's other fields, each at most once, in any order.
- What a line cannot say (docset id, request id, sequence, timestamp, ...) comes from the
  ``tdm-*`` headers when present, which :func:`encode_text`'s caller writes, else from the
  reader's context (the reply queue's docset id, the time of receipt).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from pydantic import ValidationError

from tdm_messaging import headers
from tdm_messaging.errors import DecodeError
from tdm_messaging.models import (
    MAX_COUNT,
    MAX_URL_LENGTH,
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    PROVEN_PATTERNS,
    Message,
    construct_proven,
    construct_proven_whole,
    proven_base,
    proven_content_type,
    proven_formats,
    proven_moment,
    proven_reason,
    proven_reply_to,
)
from tdm_messaging.wire_json import check_major, describe_validation_error
from tdm_messaging.wire_text_write import encode_text

__all__ = [
    "HEADER_DOCSET_ID",
    "HEADER_FORMATS",
    "HEADER_PROTOCOL_VERSION",
    "HEADER_REPLY_TO",
    "HEADER_REQUESTED_AT",
    "HEADER_REQUEST_ID",
    "HEADER_SEQUENCE",
    "HEADER_TIMESTAMP",
    "HEADER_TYPE",
    "decode_text",
    "docset_id_from_url",
    "encode_text",
]

HEADER_TYPE: Final = headers.TYPE
HEADER_PROTOCOL_VERSION: Final = headers.PROTOCOL_VERSION
HEADER_DOCSET_ID: Final = headers.DOCSET_ID
HEADER_REQUEST_ID: Final = headers.REQUEST_ID
HEADER_SEQUENCE: Final = headers.SEQUENCE
HEADER_TIMESTAMP: Final = headers.TIMESTAMP
HEADER_REQUESTED_AT: Final = headers.REQUESTED_AT
"""Package requests only: ``requested_at``, ISO 8601."""
HEADER_FORMATS: Final = headers.FORMATS
HEADER_REPLY_TO: Final = headers.REPLY_TO
"""Package requests only: the formats, comma-separated (may be empty)."""

# ASCII digits only, and few of them: \d and str.isdigit() also take '²' or an Arabic-Indic one, which int() and
# float() then refuse or read as something else; a 5,000-digit number is nobody's size or count.
_INTEGER = r"[0-9]{1,19}"
_NUMBER = r"[0-9]{1,20}(?:\.[0-9]{1,20})?(?:[eE][+-]?[0-9]{1,3})?"
_INTEGER_TEXT = re.compile(_INTEGER)
_SECONDS = re.compile(rf"({_NUMBER})[ \t]+seconds?")
_ACCEPTED = re.compile(rf"Accepted\.(?:[ \t]+({_NUMBER})[ \t]+seconds?)?")
_PROGRESS = re.compile(
    rf"Progress:[ \t]*({_INTEGER})[ \t]*/[ \t]*({_INTEGER})(?:[ \t]*\([ \t]*({_NUMBER})[ \t]*%[ \t]*\))?"
)
_ISO_TEXT = re.compile(r"[0-9T:.+\-Z ]{1,40}")  # what an ISO 8601 date-time may hold, ASCII only
_KEYED = re.compile(r"([A-Za-z][A-Za-z0-9-]*):[ \t]*(.*)")
_EXPECTED_FIRST = (
    "'Accepted.', 'Accepted. <n> seconds', 'Progress: <done>/<total> (<percent>%)', 'Complete: <url>', "
    "'Failed: <reason>', 'Delete: <docset id>', 'Deleted: <docset id>' or a docset URL (http:// or https://)"
)
_UNESCAPE = re.compile(r"\\([\\nr])")
_WHITESPACE = re.compile(r"\s")  # what str.isspace() says yes to (both are Py_UNICODE_ISSPACE), found in C
_ESCAPES = {"\\": "\\", "n": "\n", "r": "\r"}
_STRIP = " \t\r"
_COLLECTION = "docsets"  # the seed API's docset URLs are .../docsets/<docset id>
# model_validate without its Python wrapper (which only forwards to the core validator).
_VALIDATORS: Final = {kind: cls.__pydantic_validator__.validate_python for kind, cls in MESSAGE_TYPES.items()}


# --- reading -------------------------------------------------------------------------------


def decode_text(
    body: bytes,
    headers: Mapping[str, str],
    *,
    docset_id: str | None,
    request_id: str,
    received_at: datetime,
) -> Message:
    """Decode a ``text/plain`` body.

    A well-formed body as :func:`encode_text` writes it is read by one pattern per form
    (:func:`_decode_fast`); anything else, and anything that pattern's reading would refuse,
    takes the line-by-line reader below, which says what is wrong. ``tests/test_text_fast_paths.py``
    holds the two equal for any body and headers.

    Args:
        body: the wire body.
        headers: the envelope's headers; ``tdm-*`` ones win over the arguments below.
        docset_id: the docset when no header or line says it (the reply queue's docset).
        request_id: the request id when no header says it (``""`` for seed messages).
        received_at: the timestamp when no header says it.

    Raises:
        DecodeError: the body is not UTF-8, or a line is not one of the forms (quoted in
            ``excerpt``), or a header is malformed, or the docset is unknown.
        UnsupportedVersionError: ``tdm-protocol-version`` has another major version.
    """
    message = _decode_fast(body, headers, docset_id, request_id, received_at)
    if message is not None:
        return message
    return _decode_full(body, headers, docset_id=docset_id, request_id=request_id, received_at=received_at)


def _decode_full(
    body: bytes,
    headers: Mapping[str, str],
    *,
    docset_id: str | None,
    request_id: str,
    received_at: datetime,
) -> Message:
    """:func:`decode_text` line by line: every form, every spelling, and an error naming the line at fault."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"text/plain body is not UTF-8 (byte {exc.start}); send UTF-8 text") from None
    text = text.rstrip(" \t\r\n")
    # One line (most messages) is already stripped of what each line would lose.
    lines = [line.rstrip(_STRIP) for line in text.split("\n")] if "\n" in text else [text]
    first = lines[0]
    if len(lines) == 1 and not first:
        raise DecodeError(f"text/plain body is empty; expected one of {_EXPECTED_FIRST}", excerpt="")
    reader = _Reader(headers, docset_id, request_id, received_at)
    for keyword, parse in _PARSERS:
        if first.startswith(keyword):
            return parse(reader, first, lines[1:])
    if first.startswith(("http://", "https://")):
        return _package_request(reader, first, lines[1:])
    raise _line_error(1, first, f"not a message of this protocol; expected {_EXPECTED_FIRST}")


def _line_error(number: int, line: str, problem: str) -> DecodeError:
    shown = line if len(line) <= 80 else line[:80] + "..."
    return DecodeError(f"text/plain line {number} {shown!r}: {problem}", excerpt=shown)


def _keyed_lines(rest: list[str], allowed: tuple[str, ...]) -> dict[str, str]:
    """The ``Key: value`` lines after the first one, each known key at most once."""
    found: dict[str, str] = {}
    if not rest:
        return found
    for offset, line in enumerate(rest):
        number = offset + 2
        match = _KEYED.fullmatch(line)
        if not match:
            why = "an empty line inside the body" if not line else "expected 'Key: value'"
            raise _line_error(number, line, f"{why}; allowed keys here: {', '.join(allowed) or 'none'}")
        key, value = match.groups()
        if key not in allowed:
            raise _line_error(number, line, f"unknown key {key!r}; allowed keys here: {', '.join(allowed) or 'none'}")
        if key in found:
            raise _line_error(number, line, f"{key!r} appears twice")
        if not value:
            raise _line_error(number, line, f"{key!r} has no value")
        found[key] = value
    return found


def _parse_number(text: str, line_no: int, line: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _line_error(line_no, line, f"{text} is too large")
    return value


def _parse_seconds(keyed: dict[str, str], key: str) -> float:
    """The ``<number> seconds`` of line ``key``; its line and number are worked out only to report an error."""
    value = keyed[key]
    match = _SECONDS.fullmatch(value)
    if match:
        number = float(match.group(1))
        if math.isfinite(number):
            return number
    line_no, line = 2 + list(keyed).index(key), f"{key}: {value}"
    if not match:
        raise _line_error(line_no, line, "expected '<number> seconds'")
    return _parse_number(match.group(1), line_no, line)


def _parse_datetime(text: str, where: str, excerpt: str) -> datetime:
    try:
        if not _ISO_TEXT.fullmatch(text):
            raise ValueError(text)
        value = datetime.fromisoformat(text)
    except ValueError:
        raise DecodeError(f"{where}: {text[:60]!r} is not an ISO 8601 date-time", excerpt=excerpt[:80]) from None
    if value.tzinfo is None:
        raise DecodeError(f"{where}: {text!r} has no time zone; add one, e.g. 'Z' or '+00:00'", excerpt=excerpt[:80])
    return value


class _Reader:
    """Fills the fields a text body cannot carry: headers first, then the reader's context."""

    __slots__ = ("docset_id", "headers", "received_at", "request_id")

    def __init__(
        self, headers: Mapping[str, str], docset_id: str | None, request_id: str, received_at: datetime
    ) -> None:
        self.headers = headers
        self.docset_id = docset_id
        self.request_id = request_id
        self.received_at = received_at

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def timestamp(self) -> datetime:
        text = self.header(HEADER_TIMESTAMP)
        if text is None:
            return self.received_at
        return _parse_datetime(text, f"header {HEADER_TIMESTAMP}", text)

    def build(self, kind: str, fields: dict[str, Any], *, body_docset_id: str | None = None) -> Message:
        headers = self.headers
        header_type = headers.get(HEADER_TYPE)
        if header_type is not None and header_type != kind:
            raise DecodeError(
                f"header {HEADER_TYPE} says {header_type[:40]!r} but the text/plain body is a {kind!r} message",
                excerpt=header_type[:80],
            )
        version = headers.get(HEADER_PROTOCOL_VERSION) or PROTOCOL_VERSION
        if version != PROTOCOL_VERSION:  # ours passes
            check_major(version)
        header_docset = headers.get(HEADER_DOCSET_ID)
        docset_id = header_docset or body_docset_id or self.docset_id
        if docset_id is None:
            raise DecodeError(
                f"a text/plain {kind!r} message does not say its docset: send header {HEADER_DOCSET_ID}, "
                "or decode with DecodeContext(docset_id=...) (the reply queue's docset id)"
            )
        sequence_text = headers.get(HEADER_SEQUENCE)
        if sequence_text is not None and not _INTEGER_TEXT.fullmatch(sequence_text):
            raise DecodeError(
                f"header {HEADER_SEQUENCE} must be ASCII digits (at most 19), got {sequence_text[:40]!r}",
                excerpt=sequence_text[:80],
            )
        fields.update(
            type=kind,
            protocol_version=version,
            docset_id=docset_id,
            request_id=headers.get(HEADER_REQUEST_ID) if HEADER_REQUEST_ID in headers else self.request_id,
            sequence=int(sequence_text) if sequence_text is not None else 0,
            timestamp=self.timestamp(),
        )
        try:
            return _VALIDATORS[kind](fields)  # type: ignore[no-any-return]
        except ValidationError as exc:
            raise DecodeError(describe_validation_error(exc, prefix=f"invalid text/plain {kind} message")) from None


def _accepted(reader: _Reader, first: str, rest: list[str]) -> Message:
    match = _ACCEPTED.fullmatch(first)
    if not match:
        raise _line_error(1, first, "expected 'Accepted.' or 'Accepted. <number> seconds'")
    _keyed_lines(rest, ())
    estimate = match.group(1)
    return reader.build(
        "accepted", {"estimate_seconds": None if estimate is None else _parse_number(estimate, 1, first)}
    )


def _progress(reader: _Reader, first: str, rest: list[str]) -> Message:
    match = _PROGRESS.fullmatch(first)
    if not match:
        raise _line_error(1, first, "expected 'Progress: <done>/<total>' or 'Progress: <done>/<total> (<percent>%)'")
    done, total, percent = int(match.group(1)), int(match.group(2)), match.group(3)
    keyed = _keyed_lines(rest, ("ETA",))
    fields: dict[str, Any] = {
        "items_done": done,
        "items_total": total,
        "percent": _parse_number(percent, 1, first) if percent is not None else (100 * done / total if total else 0.0),
    }
    if "ETA" in keyed:
        fields["eta_seconds"] = _parse_seconds(keyed, "ETA")
    return reader.build("progress", fields)


def _complete(reader: _Reader, first: str, rest: list[str]) -> Message:
    url = first[len("Complete:") :].lstrip(" \t")
    if not url or _WHITESPACE.search(url):
        raise _line_error(1, first, "expected 'Complete: <archive url>' (one URL, no spaces)")
    keyed = _keyed_lines(rest, ("Size", "SHA256", "Content-Type", "Expires"))
    if "Size" not in keyed:
        raise _line_error(1, first, "a 'Size: <bytes>' line must follow")
    if not _INTEGER_TEXT.fullmatch(keyed["Size"]):
        line = f"Size: {keyed['Size']}"
        raise _line_error(2 + list(keyed).index("Size"), line, "expected 'Size: <bytes>' (ASCII digits, at most 19)")
    fields: dict[str, Any] = {"archive_url": url, "size_bytes": int(keyed["Size"])}
    if "SHA256" in keyed:
        fields["sha256"] = keyed["SHA256"]
    if "Content-Type" in keyed:
        fields["content_type"] = keyed["Content-Type"]
    if "Expires" in keyed:
        line = f"Expires: {keyed['Expires']}"
        fields["url_expires_at"] = _parse_datetime(keyed["Expires"], f"text/plain line {line!r}", line)
    return reader.build("complete", fields)


def _failed(reader: _Reader, first: str, rest: list[str]) -> Message:
    reason = first[len("Failed:") :].lstrip(" \t")
    if not reason:
        raise _line_error(1, first, "expected 'Failed: <reason>' with a reason")
    keyed = _keyed_lines(rest, ("Retryable",))
    retryable = keyed.get("Retryable", "no")
    if retryable not in ("yes", "no"):
        raise _line_error(2, f"Retryable: {retryable}", "expected 'Retryable: yes' or 'Retryable: no'")
    text = _UNESCAPE.sub(lambda m: _ESCAPES[m.group(1)], reason)
    return reader.build("failed", {"reason": text, "retryable": retryable == "yes"})


def _delete_like(kind: str, keyword: str) -> Callable[[_Reader, str, list[str]], Message]:
    def parse(reader: _Reader, first: str, rest: list[str]) -> Message:
        docset_id = first[len(keyword) :].lstrip(" \t")
        if not docset_id or _WHITESPACE.search(docset_id):
            raise _line_error(1, first, f"expected '{keyword} <docset id>'")
        header_docset = reader.header(HEADER_DOCSET_ID)
        if header_docset is not None and header_docset != docset_id:
            raise _line_error(
                1,
                first,
                f"the body names docset {docset_id!r} but header {HEADER_DOCSET_ID} says {header_docset[:40]!r}",
            )
        keyed = _keyed_lines(rest, ("Archive",))
        return reader.build(kind, {"archive_url": keyed.get("Archive")}, body_docset_id=docset_id)

    return parse


def docset_id_from_url(url: str) -> str | None:
    """The docset a docset URL names: its last non-empty path segment, e.g. ``5`` of ``http://s/api/docsets/5/``.

    ``None`` when it names none: no path, an unparsable URL, or a path ending at the collection
    (``.../docsets`` or ``.../docsets/``), whose last segment is not a docset id. Pure.
    """
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    segments = [segment for segment in path.split("/") if segment]
    if not segments or segments[-1] == _COLLECTION:
        return None
    return segments[-1]


def _package_request(reader: _Reader, first: str, rest: list[str]) -> Message:
    if rest:
        raise _line_error(2, rest[0], "a package request is the docset URL alone, on one line")
    try:
        parts = urlsplit(first)
    except ValueError as exc:  # e.g. an unclosed '[' of an IPv6 host
        raise _line_error(1, first, f"not a valid URL: {exc}") from None
    url_docset = docset_id_from_url(first)
    get = reader.headers.get
    if get(HEADER_DOCSET_ID) is None and url_docset is None:
        raise _line_error(1, first, "the docset id (the URL's last path segment) is missing: the URL names no docset")
    header_formats = get(HEADER_FORMATS)
    if header_formats is not None:
        formats: tuple[str, ...] = tuple(filter(None, header_formats.split(",")))  # the non-empty ones
    else:
        fmt = parse_qs(parts.query, keep_blank_values=True).get("fmt")
        formats = tuple(f for value in fmt for f in value.split(",") if f) if fmt is not None else ("meta", "txt")
    requested_text = get(HEADER_REQUESTED_AT)
    requested_at = (
        _parse_datetime(requested_text, f"header {HEADER_REQUESTED_AT}", requested_text)
        if requested_text is not None
        else reader.timestamp()
    )
    docset_id = get(HEADER_DOCSET_ID) or url_docset
    fields: dict[str, Any] = {
        "docset_url": first,
        "formats": formats,
        # The header carries a namespaced address; the seed's bare URL means the plain one.
        "reply_to": get(HEADER_REPLY_TO) or f"package/{docset_id}",
        "requested_at": requested_at,
    }
    return reader.build("package_request", fields, body_docset_id=url_docset)


_PARSERS: tuple[tuple[str, Callable[[_Reader, str, list[str]], Message]], ...] = (
    ("Accepted.", _accepted),
    ("Progress:", _progress),
    ("Complete:", _complete),
    ("Failed:", _failed),
    ("Deleted:", _delete_like("deleted", "Deleted:")),
    ("Delete:", _delete_like("delete_request", "Delete:")),
)


# --- the common case -----------------------------------------------------------------------
#
# Each pattern reads one whole body of one form as encode_text writes it (single spaces, LF, the
# key lines in the writer's order), and only values the line reader would read the same way: no
# leading or trailing whitespace (which it strips), no line break inside. Whatever else the full
# path checks (headers, numbers, date-times) is done here by the same helpers, and anything they
# refuse sends the body to the full path, so that errors keep their one wording. The model is
# built without model_validate when every value is proven as its validators would keep it (by
# these patterns, which fold in models.PROVEN_PATTERNS, or by the models' proven_* predicates);
# otherwise model_validate checks the same fields.

_VALUE = r"(\S+)"  # a value without whitespace: what the line reader reads as is
_TEXT_VALUE = r"(\S(?:[^\n]*\S)?)"  # a one-line value that neither starts nor ends with whitespace
# format_moment's output: a subset of _ISO_TEXT, always with a time zone.
_MOMENT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{6})?Z")
# Longer than any body the patterns could read into a valid message: a failure reason of 4096
# characters, each at most 4 bytes of UTF-8 (an escaped one is 2), and its two keywords.
_FAST_MAX_BYTES: Final = 4096 * 4 + 64
_PROVEN: Final = PROVEN_PATTERNS
# The writer's five common headers, joined by LF (which none of these allows): when they match,
# each value the groups give is proven as MessageBase's validators would keep it.
_HEADERS_PROVEN: Final = re.compile(
    rf"{re.escape(PROTOCOL_VERSION)}\n({_PROVEN['docset_id']})\n((?:{_PROVEN['request_id']})?)"
    rf"\n({_PROVEN['count']})\n({_PROVEN['moment']})"
)
_FIELD_COUNTS: Final = {cls: len(cls.model_fields) for cls in MESSAGE_TYPES.values()}
_FORMATS_PROVEN: Final = re.compile(_PROVEN["formats"])  # the writer's tdm-formats: split, each one proven
_FAST_FORMS: Final = {
    "A": re.compile(rf"Accepted\.(?: ({_NUMBER}) seconds?)?"),
    "P": re.compile(rf"Progress: ({_INTEGER})/({_INTEGER})(?: \(({_NUMBER})%\))?(?:\nETA: ({_NUMBER}) seconds?)?"),
    # Each value as _VALUE reads it, in two groups: the first when it is of the proven form (so
    # that one pattern proves it, see _fast_fields), else the second.
    "C": re.compile(
        rf"Complete: (?:({_PROVEN['http_url']})|(\S+))\nSize: ({_INTEGER})"
        rf"(?:\nSHA256: (?:({_PROVEN['sha256']})|(\S+)))?(?:\nContent-Type: {_TEXT_VALUE})?"
        rf"(?:\nExpires: (?:({_PROVEN['moment']})|(\S+)))?"
    ),
    "F": re.compile(rf"Failed: {_TEXT_VALUE}(?:\nRetryable: (yes|no))?"),
    "D": re.compile(rf"Delete(d?): {_VALUE}(?:\nArchive: (?:({_PROVEN['http_url']})|(\S+)))?"),
    # models' plain http(s) URL, the proven one: urlsplit cannot fail on it (no brackets in the host)
    "h": re.compile(_PROVEN["http_url"]),
}


def _moment(text: str) -> datetime:
    """A date-time as the protocol writes it (UTC, ``Z``), as _parse_datetime reads it; else ``ValueError``."""
    if not _MOMENT.fullmatch(text):
        raise ValueError(text)
    return datetime.fromisoformat(text)  # has a time zone: 'Z'


def _finite(text: str) -> float:
    """``text`` (a number the pattern matched) as a float; ``ValueError`` (the full path then says why) if too large."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _decode_fast(
    body: bytes, headers: Mapping[str, str], docset_id: str | None, request_id: str, received_at: datetime
) -> Message | None:
    """The message of a well-formed body, or ``None``: the full path then reads it (and says what is wrong)."""
    if len(body) > _FAST_MAX_BYTES:
        return None  # no valid message is this long: leave it to the full path, decoded once
    try:
        found = _fast_fields(body, headers, docset_id, request_id, received_at)
        if found is None:
            return None
        kind, fields, proven = found
        if proven:
            cls = MESSAGE_TYPES[kind]
            if len(fields) == _FIELD_COUNTS[cls]:  # every field, in the models' order (see _fast_fields)
                return construct_proven_whole(cls, fields)  # type: ignore[return-value]
            return construct_proven(cls, fields)  # type: ignore[return-value]
        return _VALIDATORS[kind](fields)  # type: ignore[no-any-return]
    except (ValueError, TypeError, DecodeError):  # ValidationError and UnicodeDecodeError are ValueErrors
        return None


def _fast_fields(  # one branch per form, kept together so that each reads as the full one
    body: bytes, headers: Mapping[str, str], docset_id: str | None, request_id: str, received_at: datetime
) -> tuple[str, dict[str, Any], bool] | None:
    """What the model is given for a well-formed body: its type, the fields, and whether all are proven valid.

    ``None`` (or ``ValueError``) when the body is not of the writer's forms or a value needs the
    full path (which reads what this leaves, and words its errors). ``proven`` is True when the
    pattern and the models' ``proven_*`` predicates show that model_validate would keep every
    value as it is, so that :func:`~tdm_messaging.models.construct_proven` builds the same
    message; otherwise model_validate checks them (``tests/test_proven.py`` holds the two equal).
    """
    text = body.decode("utf-8")  # strict: what it returns holds no lone surrogate
    form = _FAST_FORMS.get(text[:1])
    match = form.fullmatch(text) if form is not None else None
    if match is None:
        return None
    first = text[0]
    get = headers.get
    body_docset: str | None = None
    fields: dict[str, Any]
    # Numbers the patterns read are unsigned decimals: once _finite has them, each is a finite
    # float >= 0 other than -0.0, as Seconds keeps it; counts are ASCII digits, proven <= MAX_COUNT.
    if first == "A":
        kind = "accepted"
        estimate = match.group(1)
        fields = {"estimate_seconds": None if estimate is None else _finite(estimate)}
        proven = True
    elif first == "P":
        kind = "progress"
        done_text, total_text, percent, eta = match.groups()
        done, total = int(done_text), int(total_text)
        fields = {
            "items_done": done,
            "items_total": total,
            # with done <= total (proven below), the computed share is at most 100.0
            "percent": _finite(percent) if percent is not None else (100 * done / total if total else 0.0),
        }
        if eta is not None:
            fields["eta_seconds"] = _finite(eta)
        proven = done <= total <= MAX_COUNT and fields["percent"] <= 100
    elif first == "C":
        kind = "complete"
        url, other_url, size, sha256, other_sha256, content_type, expires, other_expires = match.groups()
        size_bytes = int(size)
        # (a value in its proven group: proven by the pattern, the URL's length aside)
        proven = url is not None and len(url) <= MAX_URL_LENGTH and size_bytes <= MAX_COUNT
        fields = {"archive_url": url or other_url, "size_bytes": size_bytes}
        if sha256 is not None:
            fields["sha256"] = sha256
        elif other_sha256 is not None:
            fields["sha256"] = other_sha256
            proven = False
        if content_type is not None:
            fields["content_type"] = content_type
            proven = proven and proven_content_type(content_type)
        if expires is not None:
            fields["url_expires_at"] = datetime.fromisoformat(expires)
        elif other_expires is not None:
            fields["url_expires_at"] = _moment(other_expires)
            proven = False
    elif first == "F":
        kind = "failed"
        reason, retryable = match.groups()
        if "\\" in reason:
            reason = _UNESCAPE.sub(lambda m: _ESCAPES[m.group(1)], reason)
        fields = {"reason": reason, "retryable": retryable == "yes"}
        proven = proven_reason(reason)
    elif first == "D":
        kind = "deleted" if match.group(1) else "delete_request"
        body_docset = match.group(2)
        header_docset = get(HEADER_DOCSET_ID)
        if header_docset is not None and header_docset != body_docset:
            return None
        archive, other_archive = match.group(3, 4)
        fields = {"archive_url": archive or other_archive}
        proven = other_archive is None and (archive is None or len(archive) <= MAX_URL_LENGTH)
    else:
        kind = "package_request"
        header_docset = get(HEADER_DOCSET_ID)
        header_formats = get(HEADER_FORMATS)
        if not header_docset or header_formats is None:
            return None  # the docset or formats come from the URL: the full path parses it
        url = match.group(0)
        formats = tuple(filter(None, header_formats.split(",")))
        reply_to = get(HEADER_REPLY_TO) or f"package/{header_docset}"
        fields = {"docset_url": url, "formats": formats, "reply_to": reply_to}
        # (the pattern is the proven URL's, its length aside)
        proven = (
            len(url) <= MAX_URL_LENGTH
            and (_FORMATS_PROVEN.fullmatch(header_formats) is not None or proven_formats(formats))
            and proven_reply_to(reply_to, header_docset)
        )
    # What _Reader.build and _Reader.timestamp do, the headers read once each.
    header_type = get(HEADER_TYPE)
    if header_type is not None and header_type != kind:
        return None
    try:
        joined = "\n".join(
            (
                headers[HEADER_PROTOCOL_VERSION],
                headers[HEADER_DOCSET_ID],
                headers[HEADER_REQUEST_ID],
                headers[HEADER_SEQUENCE],
                headers[HEADER_TIMESTAMP],
            )
        )
    except (KeyError, TypeError):
        common = None
    else:
        common = _HEADERS_PROVEN.fullmatch(joined)
    if common is not None:  # the writer's headers, all proven by the pattern
        docset_id, request_id, sequence_text, timestamp_text = common.groups()
        timestamp = datetime.fromisoformat(timestamp_text)
        if kind == "package_request":
            requested_text = get(HEADER_REQUESTED_AT)
            if requested_text is None or requested_text == timestamp_text:
                fields["requested_at"] = timestamp
            else:
                fields["requested_at"] = requested_at = _moment(requested_text)
                proven = proven and proven_moment(requested_at)
        # In the models' order (the common fields, the type, then the form's, each written in its
        # order above): a message given every field is then built as it stands, construct_proven_whole.
        fields = {
            "protocol_version": PROTOCOL_VERSION,
            "docset_id": docset_id,
            "request_id": request_id,
            "sequence": int(sequence_text),
            "timestamp": timestamp,
            "type": kind,
            **fields,
        }
        return kind, fields, proven
    version = get(HEADER_PROTOCOL_VERSION) or PROTOCOL_VERSION
    if version != PROTOCOL_VERSION:
        return None  # another minor (or major) version: the full path checks it
    docset_id = get(HEADER_DOCSET_ID) or body_docset or docset_id
    if docset_id is None:
        return None
    sequence_text = get(HEADER_SEQUENCE)
    if sequence_text is not None and not _INTEGER_TEXT.fullmatch(sequence_text):
        return None
    timestamp_text = get(HEADER_TIMESTAMP)
    timestamp = received_at if timestamp_text is None else _moment(timestamp_text)
    if kind == "package_request":
        requested_text = get(HEADER_REQUESTED_AT)
        # A request's requested_at is mostly its timestamp: the same text is the same date-time.
        if requested_text is None or requested_text == timestamp_text:
            fields["requested_at"] = timestamp  # proven with the timestamp, below
        else:
            fields["requested_at"] = requested_at = _moment(requested_text)
            proven = proven and proven_moment(requested_at)
    request_id = get(HEADER_REQUEST_ID, request_id)
    sequence = int(sequence_text) if sequence_text is not None else 0
    fields = {  # in the models' order, as above
        "protocol_version": version,
        "docset_id": docset_id,
        "request_id": request_id,
        "sequence": sequence,
        "timestamp": timestamp,
        "type": kind,
        **fields,
    }
    return kind, fields, proven and proven_base(version, docset_id, request_id, sequence, timestamp)
