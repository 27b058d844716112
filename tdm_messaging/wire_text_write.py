"""Writing the seed's ``text/plain`` lines (``Accepted. 45 seconds``, ``Complete: <url>``...); read in wire_text.py."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tdm_messaging.errors import EncodeError
from tdm_messaging.headers import FORMATS as _FORMATS
from tdm_messaging.headers import REPLY_TO as _REPLY_TO
from tdm_messaging.headers import REQUESTED_AT as _REQUESTED_AT
from tdm_messaging.headers import TIMESTAMP as _TIMESTAMP
from tdm_messaging.models import (
    Accepted,
    Complete,
    Deleted,
    DeleteRequest,
    Failed,
    MessageBase,
    PackageRequest,
    Progress,
    format_moment,
)

__all__ = ["encode_text", "write_text"]

_WHITESPACE = re.compile(r"\s")  # what str.isspace() says yes to (both are Py_UNICODE_ISSPACE), found in C
_DEFAULT_ARCHIVE_TYPE = Complete.model_fields["content_type"].default


def encode_text(message: MessageBase) -> tuple[bytes, dict[str, str]]:
    """The ``text/plain`` body of ``message``, and the extra headers its form needs.

    The first line is the seed's (``Accepted. 45 seconds``, ``Complete: <url>``, ...), so a
    seed peer reads it. The returned headers are only those particular to the text form
    (``tdm-requested-at``, ``tdm-formats`` of a package request); the caller adds the
    common ``tdm-*`` headers.

    Raises:
        EncodeError: a value cannot be written on one line (a URL with whitespace, a
            content type with a line break).
    """
    extra: dict[str, str] = {}
    return write_text(message, extra), extra


def write_text(message: MessageBase, headers: dict[str, str]) -> bytes:
    """:func:`encode_text`'s body of ``message``; the headers its form needs are added to ``headers``.

    The codec's way, which writes the common headers first: a ``tdm-timestamp`` already in
    ``headers`` is taken as ``message.timestamp`` written, and reused for a package request's
    ``tdm-requested-at`` when the two are the same date-time object (as a request is made).

    Raises:
        EncodeError: as :func:`encode_text`.
    """
    # By exact class first (isinstance on a model class goes through ABCMeta, seven times for the
    # last one); a subclass of a message class still finds its writer, in the same order as before.
    writer = _WRITERS.get(type(message))
    if writer is None:
        writer = next((w for cls, w in _WRITERS.items() if isinstance(message, cls)), None)
        if writer is None:
            raise EncodeError(f"{type(message).__name__} has no text/plain form; use application/json")
    return writer(message, headers)


def _accepted(message: Accepted, headers: dict[str, str]) -> bytes:
    estimate = message.estimate_seconds
    return b"Accepted." if estimate is None else f"Accepted. {_seconds(estimate)}".encode()


def _progress(message: Progress, headers: dict[str, str]) -> bytes:
    line = f"Progress: {message.items_done}/{message.items_total} ({_number(message.percent)}%)"
    if message.eta_seconds is not None:
        line += f"\nETA: {_seconds(message.eta_seconds)}"
    return line.encode()


def _complete(message: Complete, headers: dict[str, str]) -> bytes:
    # One string grown in place (CPython appends to a str it holds the only reference to).
    text = f"Complete: {_url(message.archive_url, 'archive_url')}\nSize: {message.size_bytes}"
    if message.sha256 is not None:
        text += f"\nSHA256: {message.sha256}"
    if message.content_type != _DEFAULT_ARCHIVE_TYPE:
        text += f"\nContent-Type: {_one_line(message.content_type, 'content_type')}"
    if message.url_expires_at is not None:
        text += f"\nExpires: {format_moment(message.url_expires_at)}"
    return text.encode()


def _failed(message: Failed, headers: dict[str, str]) -> bytes:
    return f"Failed: {_escape(message.reason)}\nRetryable: {'yes' if message.retryable else 'no'}".encode()


def _delete_request(message: DeleteRequest | Deleted, headers: dict[str, str]) -> bytes:
    keyword = "Delete" if isinstance(message, DeleteRequest) else "Deleted"
    line = f"{keyword}: {message.docset_id}"
    if message.archive_url is not None:
        line += f"\nArchive: {_url(message.archive_url, 'archive_url')}"
    return line.encode()


def _package_request(message: PackageRequest, headers: dict[str, str]) -> bytes:
    requested_at = message.requested_at
    stamp = headers.get(_TIMESTAMP) if requested_at is message.timestamp else None  # written once, not twice
    headers[_REQUESTED_AT] = stamp if stamp is not None else format_moment(requested_at)
    headers[_FORMATS] = ",".join(message.formats)
    headers[_REPLY_TO] = message.reply_to
    return message.docset_url.encode()


_WRITERS: dict[type[MessageBase], Callable[[Any, dict[str, str]], bytes]] = {
    Accepted: _accepted,
    Progress: _progress,
    Complete: _complete,
    Failed: _failed,
    DeleteRequest: _delete_request,
    Deleted: _delete_request,
    PackageRequest: _package_request,
}


def _number(value: float) -> str:
    if value.is_integer() and -1e15 < value < 1e15:
        return str(int(value))
    return repr(value)


def _seconds(value: float) -> str:
    return f"{_number(value)} second" if value == 1 else f"{_number(value)} seconds"


def _one_line(value: str, field: str) -> str:
    if "\n" in value or "\r" in value or value != value.strip(" \t") or not value:
        raise EncodeError(
            f"{field} {value!r} cannot be written in text/plain (empty, line break, or surrounding spaces); "
            "fix the value or use application/json"
        )
    return value


def _url(value: str, field: str) -> str:
    # What isprintable() says yes to holds no whitespace but the space (every other one is a
    # control or separator character), found without the pattern.
    if value.isprintable() and " " not in value and value:
        return value
    if not value or _WHITESPACE.search(value):
        raise EncodeError(f"{field} {value!r} contains whitespace; text/plain cannot carry it, use application/json")
    return value


def _escape(reason: str) -> str:
    return reason.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
