"""The OpenAPI document: valid 3.1, served equal to docs/openapi.json, covering every route of the app."""

from __future__ import annotations

import json
import re
from pathlib import Path

import bottle
from openapi_spec_validator import validate

from examples.server.openapi import build_openapi
from tests.examples.server.conftest import Client

DOCS = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"


def test_document_is_valid_openapi_31() -> None:
    document = build_openapi()
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["apiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
    }


def test_served_document_equals_docs_copy(client: Client) -> None:
    served = client.get("/api/openapi.json", key=None).json()
    assert served == json.loads(DOCS.read_text(encoding="utf-8")), (
        "docs/openapi.json is stale: regenerate it with `python -m examples.server openapi > docs/openapi.json`"
    )


def test_every_route_is_documented_with_responses(app: bottle.Bottle) -> None:
    paths = build_openapi()["paths"]
    for route in app.routes:
        path = re.sub(r"<(\w+)(?::\w+)?>", r"{\1}", route.rule)
        assert path in paths, f"{route.rule} is not in the OpenAPI document"
        operation = paths[path][route.method.lower()]
        assert operation["responses"], route.rule
        if (route.method == "POST" and path == "/api/docsets") or route.method == "PATCH":
            assert "requestBody" in operation
