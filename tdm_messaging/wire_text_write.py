"""Writing the seed's ``text/plain`` lines (``Accepted. 45 seconds``, ``Complete: <url>``...); read in wire_text.py."""

from __future__ import annotations

from tdm_messaging import headers
from tdm_messaging.errors import EncodeError
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

__all__ = ["encode_text"]


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
    if isinstance(message, Accepted):
        lines = ["Accepted." if message.estimate_seconds is None else f"Accepted. {_seconds(message.estimate_seconds)}"]
    elif isinstance(message, Progress):
        lines = [f"Progress: {message.items_done}/{message.items_total} ({_number(message.percent)}%)"]
        if message.eta_seconds is not None:
            lines.append(f"ETA: {_seconds(message.eta_seconds)}")
    elif isinstance(message, Complete):
        lines = [f"Complete: {_url(message.archive_url, 'archive_url')}", f"Size: {message.size_bytes}"]
        if message.sha256 is not None:
            lines.append(f"SHA256: {message.sha256}")
        if message.content_type != Complete.model_fields["content_type"].default:
            lines.append(f"Content-Type: {_one_line(message.content_type, 'content_type')}")
        if message.url_expires_at is not None:
            lines.append(f"Expires: {format_moment(message.url_expires_at)}")
    elif isinstance(message, Failed):
        lines = [f"Failed: {_escape(message.reason)}", f"Retryable: {'yes' if message.retryable else 'no'}"]
    elif isinstance(message, DeleteRequest | Deleted):
        keyword = "Delete" if isinstance(message, DeleteRequest) else "Deleted"
        lines = [f"{keyword}: {message.docset_id}"]
        if message.archive_url is not None:
            lines.append(f"Archive: {_url(message.archive_url, 'archive_url')}")
    elif isinstance(message, PackageRequest):
        lines = [message.docset_url]
        extra[headers.REQUESTED_AT] = format_moment(message.requested_at)
        extra[headers.FORMATS] = ",".join(message.formats)
        extra[headers.REPLY_TO] = message.reply_to
    else:
        raise EncodeError(f"{type(message).__name__} has no text/plain form; use application/json")
    return "\n".join(lines).encode(), extra


def _number(value: float) -> str:
    if value.is_integer() and abs(value) < 1e15:
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
    if not value or any(ch.isspace() for ch in value):
        raise EncodeError(f"{field} {value!r} contains whitespace; text/plain cannot carry it, use application/json")
    return value


def _escape(reason: str) -> str:
    return reason.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
