"""Checks a request or an answer against the OpenAPI document with a Draft 2020-12 validator (OpenAPI 3.1's dialect)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema

from examples.server.openapi import build_openapi

DOCUMENT = build_openapi()


def validator(schema: Mapping[str, Any], document: Mapping[str, Any] = DOCUMENT) -> jsonschema.Draft202012Validator:
    """A Draft 2020-12 validator of ``schema`` (formats checked), resolving ``#/components/...`` in ``document``."""
    root = {**schema, "components": document["components"]}
    return jsonschema.Draft202012Validator(root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def operation(path: str, method: str, document: Mapping[str, Any] = DOCUMENT) -> Mapping[str, Any]:
    """The operation ``method path`` (path as the document spells it, e.g. ``/api/docsets/{docset_id}``)."""
    found: Mapping[str, Any] = document["paths"][path][method.lower()]
    return found


def request_examples(document: Mapping[str, Any] = DOCUMENT) -> Iterator[tuple[str, str, str, Any]]:
    """``(path, method, example name, body)`` of every example request body in ``document``."""
    for path, item in document["paths"].items():
        for method, op in item.items():
            media = op.get("requestBody", {}).get("content", {}).get("application/json")
            for name, example in (media or {}).get("examples", {}).items():
                yield path, method.upper(), name, example["value"]


def check_request_body(path: str, method: str, body: Any, *, document: Mapping[str, Any] = DOCUMENT) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``body`` is valid for ``method path``'s request body."""
    schema = operation(path, method, document)["requestBody"]["content"]["application/json"]["schema"]
    validator(schema, document).validate(body)


def check_answer(
    path: str, method: str, status: int, content_type: str, body: Any, *, document: Mapping[str, Any] = DOCUMENT
) -> None:
    """Raise ``AssertionError`` or ``jsonschema.ValidationError`` unless the answer is one ``method path`` documents."""
    responses = operation(path, method, document)["responses"]
    assert str(status) in responses, f"{method} {path} answered {status}, which it does not document"
    content = responses[str(status)].get("content")
    if content is None:
        return
    media = content_type.split(";", maxsplit=1)[0].strip()
    assert media in content, f"{method} {path} answered {status} as {media}, not as {sorted(content)}"
    validator(content[media]["schema"], document).validate(body)
