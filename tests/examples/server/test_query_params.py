"""Query parameters read as the document says: fmt as UTF-8 trimmed of White_Space, retry as true or false only."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest

from examples.server.openapi import build_openapi
from tests.examples.server.conftest import Client, make_docset

FMT_PATTERN = next(
    p["schema"]["pattern"]
    for p in build_openapi()["paths"]["/api/docsets/{docset_id}"]["get"]["parameters"]
    if p["name"] == "fmt"
)


@pytest.mark.parametrize(
    ("raw", "formats"),
    [
        ("txt", ["txt"]),
        ("%E2%80%88txt%E3%80%80,,meta%C2%85", ["txt", "meta"]),  # U+2008, U+3000, U+0085 around the names
        ("meta,%20meta,", ["meta"]),
    ],
)
def test_fmt_is_utf8_and_trimmed_of_white_space(client: Client, raw: str, formats: list[str]) -> None:
    assert re.search(FMT_PATTERN, unquote(raw)) is not None
    docset_id = make_docset(client)
    response = client.get(f"/api/docsets/{docset_id}?fmt={raw}")
    assert response.status == 200, response.body
    assert response.json()["formats"] == formats


@pytest.mark.parametrize("raw", ["%FF", "%1Ctxt", "txt%EF%BB%BF", "meta%20txt", ","])
def test_a_bad_fmt_is_a_400_and_outside_the_documented_pattern(client: Client, raw: str) -> None:
    docset_id = make_docset(client)
    response = client.get(f"/api/docsets/{docset_id}?fmt={raw}")
    assert response.status == 400, response.body
    assert response.error_code == "invalid_parameter"
    assert re.search(FMT_PATTERN, unquote(raw, errors="replace")) is None


@pytest.mark.parametrize(("raw", "status"), [("true", 202), ("FALSE", 202), ("maybe", 400), ("1", 400), ("", 400)])
def test_retry_is_true_or_false(client: Client, raw: str, status: int) -> None:
    response = client.get(f"/api/docsets/{make_docset(client)}/dump?retry={raw}")
    assert response.status == status, response.body
    if status == 400:
        assert "true or false" in response.json()["error"]["message"]
