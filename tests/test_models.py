"""Message models: frozen, validated, one discriminated union."""

from __future__ import annotations

from datetime import UTC, datetime

import pydantic
import pytest

from tdm_messaging.models import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    Accepted,
    Complete,
    PackageRequest,
    Progress,
    message_adapter,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
BASE = {"docset_id": "5", "request_id": "0190a0b0-0000-7000-8000-000000000001", "timestamp": NOW}


def request(**overrides: object) -> PackageRequest:
    fields: dict[str, object] = {
        **BASE,
        "docset_url": "http://server/api/docsets/5?fmt=meta,txt",
        "reply_to": "package/5",
        "requested_at": NOW,
    }
    fields.update(overrides)
    return PackageRequest.model_validate(fields)


def test_messages_are_frozen() -> None:
    msg = Accepted(**BASE, estimate_seconds=45)  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError):
        msg.estimate_seconds = 3  # type: ignore[misc]


def test_union_dispatches_on_type() -> None:
    for name, cls in MESSAGE_TYPES.items():
        assert cls.model_fields["type"].default == name
    parsed = message_adapter.validate_python({**BASE, "type": "accepted", "estimate_seconds": 4})
    assert isinstance(parsed, Accepted)
    assert parsed.protocol_version == PROTOCOL_VERSION


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"docset_url": "ftp://x/5"}, "must start with http:// or https://"),
        ({"docset_url": "http://x/ 5"}, "without spaces or control characters"),
        ({"reply_to": "package/6"}, "reply_to must be 'package/5'"),
        ({"formats": ("meta", "../x")}, "1 to 32 ASCII letters"),
        ({"docset_id": "a/b"}, "'/'"),
        ({"timestamp": datetime(2026, 1, 1)}, "timezone"),
        ({"protocol_version": "one"}, "ASCII 'MAJOR.MINOR'"),
        ({"surprise": 1}, "Extra inputs"),
    ],
)
def test_request_validation(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        request(**overrides)
    assert fragment in str(info.value)


def test_progress_counts_are_consistent() -> None:
    with pytest.raises(pydantic.ValidationError, match="exceeds items_total"):
        Progress(**BASE, items_done=5, items_total=4, percent=100)  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError):
        Progress(**BASE, items_done=1, items_total=4, percent=101)  # type: ignore[arg-type]


def test_complete_sha256_is_hex() -> None:
    ok = Complete(**BASE, archive_url="https://b/p/5", size_bytes=3, sha256="0" * 64)  # type: ignore[arg-type]
    assert ok.content_type == "application/zip"
    with pytest.raises(pydantic.ValidationError):
        Complete(**BASE, archive_url="https://b/p/5", size_bytes=3, sha256="XYZ")  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError):
        Complete(**BASE, archive_url="https://b/p/5", size_bytes=-1)  # type: ignore[arg-type]
