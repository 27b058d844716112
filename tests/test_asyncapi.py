"""asyncapi: the generated AsyncAPI 3.0 document, and docs/asyncapi.yaml kept in sync with it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from tdm_messaging.asyncapi import asyncapi_document, message_schemas
from tdm_messaging.cli import render_asyncapi
from tdm_messaging.models import MESSAGE_TYPES, PROTOCOL_VERSION

DOC = Path(__file__).resolve().parent.parent / "docs" / "asyncapi.yaml"


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def all_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in all_refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in all_refs(value)]
    return []


def test_checked_in_yaml_matches_the_models() -> None:
    assert DOC.read_text() == render_asyncapi("yaml"), (
        "docs/asyncapi.yaml is out of date with the models; regenerate it with "
        "`.venv/bin/tdm-messaging asyncapi > docs/asyncapi.yaml`"
    )


def test_document_shape() -> None:
    document = asyncapi_document()
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["version"] == PROTOCOL_VERSION
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {
        "{namespacePrefix}docsets/package",
        "{namespacePrefix}docsets/delete",
        "{namespacePrefix}package/{docsetId}",
        "{namespacePrefix}docsets/dead-letter",
    }
    assert set(document["channels"]["replies"]["parameters"]) == {"namespacePrefix", "docsetId"}
    actions = {op["action"] for op in document["operations"].values()}
    assert actions == {"send", "receive"}
    reply = document["operations"]["requestPackage"]["reply"]
    assert reply["channel"] == {"$ref": "#/channels/replies"}
    assert reply["address"]["location"] == "$message.payload#/reply_to"


def test_every_reference_resolves() -> None:
    document = asyncapi_document()
    refs = all_refs(document)
    assert len(refs) > 20
    for ref in refs:
        resolve(document, ref)


def test_operation_messages_belong_to_their_channel() -> None:
    document = asyncapi_document()
    for name, operation in document["operations"].items():
        channel_ref = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel_ref + "/messages/"), name


def test_payloads_are_the_models_json_schemas() -> None:
    document = asyncapi_document()
    schemas = message_schemas()
    assert set(schemas) == {cls.__name__ for cls in MESSAGE_TYPES.values()}
    for kind, cls in MESSAGE_TYPES.items():
        message = document["components"]["messages"][cls.__name__]
        assert message["name"] == kind
        payload = resolve(document, message["payload"]["$ref"])
        assert payload == cls.model_json_schema()
        assert payload["properties"]["type"]["const"] == kind


def test_document_is_json_and_stable() -> None:
    first = asyncapi_document()
    assert json.loads(json.dumps(first)) == first
    assert asyncapi_document() == first
    assert yaml.safe_load(render_asyncapi("yaml")) == first
    assert json.loads(render_asyncapi("json")) == first


def test_protocol_doc_schemas_match_the_models() -> None:
    text = (DOC.parent / "protocol.md").read_text()
    blocks = dict(re.findall(r"<!-- schema:(\w+) -->\n```json\n(.*?)\n```", text, flags=re.DOTALL))
    schemas = message_schemas()
    assert set(blocks) == set(schemas), "docs/protocol.md must embed one schema block per message"
    for name, schema in schemas.items():
        expected = json.dumps(schema, indent=2)
        assert json.loads(blocks[name]) == schema, (
            f"docs/protocol.md: the schema of {name} is out of date; replace its block with:\n{expected}"
        )


def test_the_yaml_has_no_anchors() -> None:
    """Every part written out where it applies: readers (and some tools) stumble on &id/*id aliases."""
    text = DOC.read_text()
    assert re.search(r"[&*]id\d+", text) is None
