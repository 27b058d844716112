"""wire_text: the seed's text/plain lines, our text forms, and every rejection quoting the offending line."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tdm_messaging.errors import DecodeError, EncodeError, UnsupportedVersionError
from tdm_messaging.models import (
    Accepted,
    Complete,
    Deleted,
    DeleteRequest,
    Failed,
    Message,
    PackageRequest,
    Progress,
)
from tdm_messaging.wire_text import decode_text, encode_text

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
BASE: dict[str, Any] = {"docset_id": "5", "request_id": "", "timestamp": NOW}


def read(text: str | bytes, headers: dict[str, str] | None = None, docset_id: str | None = "5") -> Message:
    raw = text.encode() if isinstance(text, str) else text
    return decode_text(raw, headers or {}, docset_id=docset_id, request_id="", received_at=NOW)


def write(message: Message) -> str:
    return encode_text(message)[0].decode()


# --- the seed's lines ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "estimate"),
    [
        ("Accepted. 45 seconds", 45.0),
        ("Accepted. 1 second", 1.0),
        ("Accepted. 2.5 seconds\r\n", 2.5),
        ("Accepted.", None),
        ("Accepted.  \n\n", None),
        ("Accepted.\t1e3 seconds", 1000.0),
    ],
)
def test_accepted(text: str, estimate: float | None) -> None:
    assert read(text) == Accepted(**BASE, estimate_seconds=estimate)


def test_complete_seed_form() -> None:
    got = read("Complete: https://host/package/5\r\nSize: 345345\r\n")
    assert got == Complete(**BASE, archive_url="https://host/package/5", size_bytes=345345)


def test_complete_all_lines_any_order() -> None:
    expires = datetime(2026, 12, 4, tzinfo=UTC)
    text = (
        "Complete: https://host/package/5\nExpires: 2026-12-04T00:00:00Z\nContent-Type: application/x-tar\n"
        f"SHA256: {'ab' * 32}\nSize: 7"
    )
    assert read(text) == Complete(
        **BASE,
        archive_url="https://host/package/5",
        size_bytes=7,
        sha256="ab" * 32,
        content_type="application/x-tar",
        url_expires_at=expires,
    )


def test_seed_package_request_is_the_docset_url() -> None:
    got = read("http://server/api/docsets/5?fmt=meta,txt\n", docset_id=None)
    assert got == PackageRequest(
        **BASE,
        docset_url="http://server/api/docsets/5?fmt=meta,txt",
        formats=("meta", "txt"),
        reply_to="package/5",
        requested_at=NOW,
    )
    assert isinstance(got, PackageRequest)
    assert read("https://server/api/docsets/abc-9/?fmt=txt").formats == ("txt",)  # type: ignore[union-attr]
    assert read("https://server/api/docsets/abc-9").formats == ("meta", "txt")  # type: ignore[union-attr]
    assert read("https://server/api/docsets/7?fmt=").formats == ()  # type: ignore[union-attr]


# --- our forms -----------------------------------------------------------------------------


def test_progress_forms() -> None:
    assert write(Progress(**BASE, items_done=4, items_total=10, percent=40)) == "Progress: 4/10 (40%)"
    full = Progress(**BASE, items_done=1, items_total=3, percent=100 / 3, eta_seconds=30)
    assert write(full) == f"Progress: 1/3 ({100 / 3!r}%)\nETA: 30 seconds"
    assert read(write(full)) == full
    assert read("Progress: 4/10") == Progress(**BASE, items_done=4, items_total=10, percent=40)
    assert read("Progress: 0/0").percent == 0  # type: ignore[union-attr]
    assert read("Progress: 4 / 10 ( 40 % )\nETA: 1 second").eta_seconds == 1  # type: ignore[union-attr]


def test_failed_forms_and_escapes() -> None:
    failed = Failed(**BASE, reason="disk full\non C:\\tmp\r", retryable=True)
    assert write(failed) == "Failed: disk full\\non C:\\\\tmp\\r\nRetryable: yes"
    assert read(write(failed)) == failed
    assert read("Failed: no such docset") == Failed(**BASE, reason="no such docset", retryable=False)
    assert read("Failed: C:\\path\nRetryable: no").reason == "C:\\path"  # type: ignore[union-attr]


def test_delete_forms() -> None:
    assert write(DeleteRequest(**BASE)) == "Delete: 5"
    assert write(Deleted(**BASE, archive_url="https://b/p/5")) == "Deleted: 5\nArchive: https://b/p/5"
    assert read("Delete: 9", docset_id=None) == DeleteRequest(**{**BASE, "docset_id": "9"})
    assert read("Deleted: 9\nArchive: https://b/p/9", docset_id=None) == Deleted(
        **{**BASE, "docset_id": "9"}, archive_url="https://b/p/9"
    )


def test_package_request_text_headers() -> None:
    request = PackageRequest(
        **BASE, docset_url="http://server/api/docsets/5", formats=("meta",), reply_to="package/5", requested_at=NOW
    )
    body, extra = encode_text(request)
    assert body == b"http://server/api/docsets/5"
    assert extra == {"tdm-requested-at": "2026-11-27T12:00:00Z", "tdm-formats": "meta", "tdm-reply-to": "package/5"}
    assert read(body, extra) == request


def test_encode_refuses_what_one_line_cannot_carry() -> None:
    # The models refuse such values (tests/test_models.py); model_construct skips the models, and
    # the encoder still refuses rather than write a line break into a body or header.
    with pytest.raises(EncodeError, match="archive_url 'https://b/p 5' contains whitespace"):
        encode_text(Complete.model_construct(**BASE, archive_url="https://b/p 5", size_bytes=1))
    with pytest.raises(EncodeError, match="content_type"):
        encode_text(Complete.model_construct(**BASE, archive_url="https://b/p", size_bytes=1, content_type="a/b\nX: y"))


# --- rejections ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("Hello", "Hello", "line 1 'Hello': not a message of this protocol"),
        ("accepted. 45 seconds", "accepted. 45 seconds", "not a message of this protocol"),
        ("  Accepted.", "  Accepted.", "not a message of this protocol"),
        ("Accepted. soon", "Accepted. soon", "expected 'Accepted.' or 'Accepted. <number> seconds'"),
        ("Accepted. 45", "Accepted. 45", "expected 'Accepted.'"),
        ("Accepted. -3 seconds", "Accepted. -3 seconds", "expected 'Accepted.'"),
        ("Accepted.\nExtra", "Extra", "line 2 'Extra': expected 'Key: value'; allowed keys here: none"),
        ("Accepted. 1e999 seconds", "Accepted. 1e999 seconds", "too large"),
        ("Progress: 4 of 10", "Progress: 4 of 10", "expected 'Progress: <done>/<total>'"),
        ("Progress: 4/10\nETA: soon", "ETA: soon", "expected '<number> seconds'"),
        ("Complete: https://h/p", "Complete: https://h/p", "a 'Size: <bytes>' line must follow"),
        ("Complete: https://h/p x\nSize: 1", "Complete: https://h/p x", "one URL, no spaces"),
        ("Complete: https://h/p\nSize: 3 MB", "Size: 3 MB", "ASCII digits, at most 19"),
        ("Complete: https://h/p\nSize: 1\nSize: 2", "Size: 2", "'Size' appears twice"),
        ("Complete: https://h/p\nSize: 1\nColour: red", "Colour: red", "unknown key 'Colour'"),
        ("Complete: https://h/p\n\nSize: 1", "", "an empty line inside the body"),
        ("Complete: https://h/p\nSize:", "Size:", "'Size' has no value"),
        ("Complete: https://h/p\nSize: 1\nExpires: tomorrow", "Expires: tomorrow", "not an ISO 8601 date-time"),
        ("Complete: https://h/p\nSize: 1\nExpires: 2026-01-01T00:00", "Expires: 2026-01-01T00:00", "no time zone"),
        ("Failed:", "Failed:", "with a reason"),
        ("Failed: x\nRetryable: maybe", "Retryable: maybe", "'Retryable: yes' or 'Retryable: no'"),
        ("Delete:", "Delete:", "expected 'Delete: <docset id>'"),
        ("http://server/api/docsets/5\nmore", "more", "the docset URL alone"),
        ("http://server/", "http://server/", "the docset id (the URL's last path segment) is missing"),
    ],
)
def test_rejections_quote_the_line(text: str, line: str, fragment: str) -> None:
    with pytest.raises(DecodeError) as info:
        read(text)
    assert fragment in str(info.value)
    assert info.value.excerpt == line


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "body is empty"),
        (b" \r\n\n", "body is empty"),
        (b"\nAccepted.", "line 1 '': not a message of this protocol"),
        (b"Accepted. \xff seconds", r"not UTF-8 \(byte 10\)"),
    ],
)
def test_unreadable_bodies(raw: bytes, fragment: str) -> None:
    with pytest.raises(DecodeError, match=fragment):
        read(raw)


def test_field_rules_still_apply() -> None:
    with pytest.raises(DecodeError, match=r"items_done \(11\) exceeds items_total \(10\)") as info:
        read("Progress: 11/10 (50%)")
    assert "invalid text/plain progress message" in str(info.value)
    with pytest.raises(DecodeError, match="field 'docset_id'"):
        read("http://server/api/docsets/a%2Fb")
    with pytest.raises(DecodeError, match="field 'sha256'"):
        read("Complete: https://h/p\nSize: 1\nSHA256: nothex")


def test_docset_must_come_from_somewhere() -> None:
    with pytest.raises(DecodeError, match="send header tdm-docset-id, or decode with DecodeContext"):
        read("Accepted.", docset_id=None)


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({"tdm-type": "complete"}, "header tdm-type says 'complete' but the text/plain body is a 'accepted'"),
        ({"tdm-sequence": "-1"}, "tdm-sequence must be ASCII digits"),
        ({"tdm-timestamp": "noon"}, "header tdm-timestamp: 'noon' is not an ISO 8601 date-time"),
        ({"tdm-protocol-version": "x"}, "protocol_version must be a string like '1.0'"),
    ],
)
def test_bad_headers(headers: dict[str, str], fragment: str) -> None:
    with pytest.raises(DecodeError) as info:
        read("Accepted.", headers)
    assert fragment in str(info.value)


def test_header_major_version_is_checked() -> None:
    with pytest.raises(UnsupportedVersionError, match=r"2\.1"):
        read("Accepted.", {"tdm-protocol-version": "2.1"})
    assert read("Accepted.", {"tdm-protocol-version": "1.4"}).protocol_version == "1.4"


def test_delete_body_and_header_must_agree() -> None:
    with pytest.raises(DecodeError, match="the body names docset '5' but header tdm-docset-id says '6'"):
        read("Delete: 5", {"tdm-docset-id": "6"})
