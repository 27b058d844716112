"""The response models every JSON answer is built through: fields left out, not null; UTC date-times; no strays."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from examples.server.responses import Document, DocumentLinks, DumpPending


def test_unset_fields_are_left_out_and_null_ones_kept() -> None:
    doc = Document(id=1, handle=None, links=DocumentLinks(self="http://tdm.test/api/documents/1"))
    assert doc.model_dump(mode="json") == {
        "id": 1,
        "handle": None,
        "links": {"self": "http://tdm.test/api/documents/1"},
    }


def test_date_times_are_spelled_in_utc_with_z() -> None:
    status = DumpPending.model_validate(
        {
            "docset_id": "5",
            "state": "accepted",
            "request_id": None,
            "requested_at": "2026-12-06T11:49:06.5+02:00",
            "updated_at": "2026-12-06T09:49:07+00:00",
            "requested_now": False,
            "percent": 0.0,
            "items_done": None,
            "items_total": None,
            "estimate_seconds": 45,
            "eta_seconds": None,
            "retry_after_seconds": 45,
            "detail": "accepted",
            "links": {"self": "http://tdm.test/api/docsets/5/dump", "docset": "http://tdm.test/api/docsets/5"},
        }
    )
    dumped = status.model_dump(mode="json")
    assert dumped["requested_at"] == "2026-12-06T09:49:06.500000Z"
    assert dumped["updated_at"] == "2026-12-06T09:49:07Z"


def test_a_field_the_document_does_not_name_is_refused() -> None:
    with pytest.raises(ValidationError, match="surprise"):
        Document.model_validate({"id": 1, "links": {"self": "x"}, "surprise": 1})
    with pytest.raises(ValidationError, match="timezone"):
        DumpPending.model_validate({"requested_at": "2026-12-06T09:49:06"})
