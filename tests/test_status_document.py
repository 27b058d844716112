"""status_document: the JSON that ``tdm-messaging status`` prints, and docs/status.schema.json that describes it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given
from jsonschema import Draft202012Validator

from tdm_messaging.status import fold
from tdm_messaging.status_document import status_document, status_document_schema
from tests.strategies import message_lists

DOC = Path(__file__).resolve().parent.parent / "docs" / "status.schema.json"
VALIDATOR = Draft202012Validator(json.loads(DOC.read_text()), format_checker=Draft202012Validator.FORMAT_CHECKER)


def assert_valid(document: dict[str, Any]) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(document)]
    assert not errors, errors


def test_the_checked_in_schema_is_the_generated_one() -> None:
    Draft202012Validator.check_schema(status_document_schema())
    assert DOC.read_text() == json.dumps(status_document_schema(), indent=2) + "\n", (
        "docs/status.schema.json is out of date; regenerate it with: python -c 'import json; "
        "from tdm_messaging.status_document import status_document_schema as s; "
        "print(json.dumps(s(), indent=2))' > docs/status.schema.json"
    )


@given(message_lists("5"))
def test_every_folded_status_validates_and_spells_times_with_z(messages: list[Any]) -> None:
    document = status_document(fold(messages, "5"))
    assert_valid(document)
    assert json.loads(json.dumps(document)) == document
    times = [document["requested_at"], document["updated_at"]]
    if document["result"] is not None:
        times.append(document["result"]["url_expires_at"])
    assert all(t is None or t.endswith("Z") for t in times), times


def test_the_schema_refuses_what_is_not_a_status() -> None:
    good = status_document(fold([], "5"))
    assert_valid(good)
    for bad in ({**good, "state": "lost"}, {**good, "extra": 1}, {k: v for k, v in good.items() if k != "progress"}):
        assert list(VALIDATOR.iter_errors(bad)), bad
