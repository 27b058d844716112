"""The OpenAPI document: generated from the server's models, valid 3.1, printed equal to docs/openapi.json, exact.

Issue 11: the hand-written document refused the demo's own request body and left out the
models' limits; now every schema is generated from a model the server validates or answers with.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType

import bottle
import jsonschema
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator
from pydantic import BaseModel

from examples.server import bodies, responses
from examples.server.__main__ import main
from examples.server.fields import MAX_SQLITE_INT
from examples.server.openapi import build_openapi
from tdm_messaging.models import Complete, Message, PackageRequest
from tdm_messaging.testing import InMemoryBroker
from tests.examples.server.conftest import (
    Client,
    FakePackager,
    accepted,
    complete,
    failed,
    make_docset,
    progress,
)
from tests.examples.server.openapi_check import check_answer, check_request_body, request_examples, validator

DOCS = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"
DOCS_DOCUMENT = json.loads(DOCS.read_text(encoding="utf-8"))


def test_document_is_valid_openapi_31() -> None:
    document = build_openapi()
    OpenAPIV31SpecValidator(document).validate()  # raises, naming the first problem
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["apiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
    }


def test_docs_copy_is_what_the_generator_prints(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["openapi"]) == 0
    printed = capsys.readouterr().out
    assert printed == DOCS.read_text(encoding="utf-8"), (
        "docs/openapi.json is stale: regenerate it with `python -m examples.server openapi > docs/openapi.json`"
    )


def test_served_document_equals_docs_copy(client: Client) -> None:
    served = client.get("/api/openapi.json", key=None).json()
    assert served == DOCS_DOCUMENT


def _models(module: ModuleType) -> dict[str, type[BaseModel]]:
    return {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, type) and issubclass(value, BaseModel) and value.__module__ == module.__name__
    }


def test_every_schema_is_a_models_own() -> None:
    """No hand-written schema: each component is the JSON Schema pydantic makes of a model of the server."""
    models = {**_models(bodies), **_models(responses)}
    schemas = build_openapi()["components"]["schemas"]
    assert set(schemas) <= set(models), f"schemas with no model: {sorted(set(schemas) - set(models))}"
    for name, schema in schemas.items():
        mode = "validation" if name in _models(bodies) else "serialization"
        own = models[name].model_json_schema(mode=mode, ref_template="#/components/schemas/{model}")
        own.pop("$defs", None)
        assert set(schema) == set(own), name
        assert schema.get("additionalProperties") is False, f"{name} admits fields the server does not know"


def test_the_demo_body_is_valid_and_the_limits_are_stated() -> None:
    """Issue 11, item 9, checked on docs/openapi.json itself with a Draft 2020-12 validator."""
    create = {"$ref": "#/components/schemas/DocsetCreate"}
    validator(create, DOCS_DOCUMENT).validate({"name": "q", "query": "quantum"})
    assert not validator(create, DOCS_DOCUMENT).is_valid({"name": "q", "query": "quantum", "document_ids": [1]})
    schemas = DOCS_DOCUMENT["components"]["schemas"]
    ids = schemas["DocsetCreate"]["properties"]["document_ids"]["anyOf"][0]
    assert ids["maxItems"] == bodies.MAX_IDS_PER_BODY
    assert ids["items"] == {"type": "integer", "minimum": 1, "maximum": MAX_SQLITE_INT}
    for field in ("add_document_ids", "remove_document_ids"):
        assert schemas["DocsetPatch"]["properties"][field]["maxItems"] == bodies.MAX_IDS_PER_BODY
    assert schemas["DocsetCreate"]["properties"]["name"]["maxLength"] == 200


def test_every_route_is_documented_with_responses(app: bottle.Bottle) -> None:
    paths = build_openapi()["paths"]
    for route in app.routes:
        path = re.sub(r"<(\w+)(?::\w+)?>", r"{\1}", route.rule)
        assert path in paths, f"{route.rule} is not in the OpenAPI document"
        operation = paths[path][route.method.lower()]
        assert operation["responses"], route.rule
        if (route.method == "POST" and path == "/api/docsets") or route.method == "PATCH":
            assert "requestBody" in operation
            assert operation["requestBody"]["content"]["application/json"]["examples"], route.rule


EXAMPLES = list(request_examples())


def test_the_demo_body_is_a_documented_example() -> None:
    bodies_sent = [body for path, method, _, body in EXAMPLES if (path, method) == ("/api/docsets", "POST")]
    assert any(set(body) == {"name", "query"} for body in bodies_sent)


@pytest.mark.parametrize(("path", "method", "name", "body"), EXAMPLES, ids=[f"{m} {p} {n}" for p, m, n, _ in EXAMPLES])
def test_every_example_request_is_valid_and_taken(
    client: Client, path: str, method: str, name: str, body: object
) -> None:
    check_request_body(path, method, body)
    concrete = path
    if "{docset_id}" in path:
        concrete = path.replace("{docset_id}", str(make_docset(client, [1, 2, 3])))
    response = client.request(method, concrete, json_body=body)
    assert 200 <= response.status < 300, f"example {name!r} of {method} {path} got {response.status}: {response.body!r}"
    check_answer(path, method, response.status, response.headers["content-type"], response.json())


def test_answers_are_checked_against_the_document(client: Client) -> None:
    """The checker can fail: an answer with a field the document does not name is refused."""
    docset = client.get(f"/api/docsets/{make_docset(client)}")
    body = docset.json()
    check_answer("/api/docsets/{docset_id}", "GET", docset.status, docset.headers["content-type"], body)
    with pytest.raises(jsonschema.ValidationError):
        check_answer("/api/docsets/{docset_id}", "GET", 200, "application/json", {**body, "surprise": 1})
    with pytest.raises(AssertionError, match="does not document"):
        check_answer("/api/docsets/{docset_id}", "GET", 418, "application/json", body)


def _expired(request: PackageRequest, now: datetime) -> Message:
    done = complete(request, now)
    assert isinstance(done, Complete)
    return done.model_copy(update={"url_expires_at": now - timedelta(minutes=1)})


def test_every_state_of_a_dump_is_answered_as_documented(client: Client, broker: InMemoryBroker) -> None:
    """Requested, accepted, in progress, complete, delete requested, deleted, failed, expired: each answer fits."""
    seen: list[tuple[str, int]] = []

    def call(method: str, docset_id: int, query: str = "") -> None:
        response = client.request(method, f"/api/docsets/{docset_id}/dump{query}")
        body = response.json()
        check_answer("/api/docsets/{docset_id}/dump", method, response.status, response.headers["content-type"], body)
        seen.append((body["state"], response.status))

    for script in ([accepted, progress, complete], [accepted, failed], [_expired]):
        docset_id = make_docset(client)
        packager = FakePackager(broker, script).start()
        try:
            call("GET", docset_id)
            for _ in script:
                packager.step()
                call("GET", docset_id)
            if script[-1] is complete:
                call("DELETE", docset_id)
                packager.wait_delete()
                call("GET", docset_id)
        finally:
            packager.stop()
    assert seen == [
        ("requested", 202),
        ("accepted", 202),
        ("in_progress", 202),
        ("complete", 303),
        ("delete_requested", 202),
        ("deleted", 410),
        ("requested", 202),
        ("accepted", 202),
        ("failed", 502),
        ("requested", 202),
        ("complete", 410),
    ]
