"""Request bodies of the API, validated with pydantic: what a client may send, and the clear 422s otherwise.

These models are the contract: the OpenAPI document's request schemas are generated from them
(:mod:`examples.server.openapi`). Each rule is one that JSON Schema states exactly, so a body the
document admits is a body the server takes; the two rules JSON Schema cannot state (a year range
in order, a document both added and removed) are written in the schemas' descriptions.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

from examples.server.fields import Department, DocumentId, Name, SearchText, Year

__all__ = ["CREATE_EXAMPLES", "MAX_IDS_PER_BODY", "PATCH_EXAMPLES", "QUERY_FIELDS", "DocsetCreate", "DocsetPatch"]

MAX_IDS_PER_BODY: Final = 100_000
QUERY_FIELDS: Final = ("query", "year_from", "year_to", "department")
"""The fields of a query; a docset is made from these or from ``document_ids``."""

# Strict: JSON's types as JSON Schema reads them ("5" is no integer, true is no integer), with
# one exception JSON Schema makes itself: a number with no fraction (1.0) is an integer.
_STRICT = ConfigDict(extra="forbid", strict=True)


def _given(field: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """JSON Schema: ``field`` is present and not null (and matches ``schema``)."""
    return {"required": [field], "properties": {field: schema or {"not": {"type": "null"}}}}


CREATE_EXAMPLES: Final[dict[str, dict[str, Any]]] = {
    "query": {
        "summary": "From a full-text query (what the demo sends)",
        "value": {"name": "demo docset", "query": "quantum OR protein OR market OR algorithm OR turbine OR catalyst"},
    },
    "filtered_query": {
        "summary": "From a query with every filter",
        "value": {
            "name": "physics in the nineties",
            "query": '"dark matter" OR neutrino*',
            "year_from": 1990,
            "year_to": 1999,
            "department": "Department of Physics",
        },
    },
    "filters_only": {"summary": "From filters alone", "value": {"name": "2001", "year_from": 2001, "year_to": 2001}},
    "document_ids": {"summary": "From chosen documents", "value": {"name": "three theses", "document_ids": [1, 2, 3]}},
}
"""Example bodies of ``POST /api/docsets``, in the OpenAPI document; a test sends each to the server."""

PATCH_EXAMPLES: Final[dict[str, dict[str, Any]]] = {
    "rename": {"summary": "Rename", "value": {"name": "a better name"}},
    "members": {"summary": "Add and remove members", "value": {"add_document_ids": [2, 3], "remove_document_ids": [1]}},
    "everything": {
        "summary": "Rename and add a member",
        "value": {"name": "a renamed docset", "add_document_ids": [1], "remove_document_ids": []},
    },
}
"""Example bodies of ``PATCH /api/docsets/{docset_id}``; a test sends each to the server."""


class DocsetCreate(BaseModel):
    """POST /api/docsets: a name, and either document_ids or a query (any of query, year_from and
    year_to (inclusive), department), not both; a null field counts as absent. A year_from after
    year_to is refused (422), a rule JSON Schema cannot state."""

    model_config = ConfigDict(
        **_STRICT,
        json_schema_extra={
            # The rule of _one_source, for JSON Schema: exactly one of the two sources is given.
            "oneOf": [
                _given("document_ids", {"type": "array"}),
                {"anyOf": [_given(field) for field in QUERY_FIELDS]},
            ],
        },
    )

    name: Name
    document_ids: list[DocumentId] | None = Field(
        default=None, max_length=MAX_IDS_PER_BODY, description="Documents that exist (else 422 unknown_documents)"
    )
    query: SearchText | None = None
    year_from: Year | None = Field(default=None, description="Inclusive; not after year_to")
    year_to: Year | None = Field(default=None, description="Inclusive")
    department: Department | None = None

    @property
    def has_query(self) -> bool:
        """Whether any query field was given."""
        return any(getattr(self, field) is not None for field in QUERY_FIELDS)

    @model_validator(mode="after")
    def _one_source(self) -> DocsetCreate:
        if self.document_ids is not None and self.has_query:
            raise ValueError(
                "give either document_ids or query fields (query, year_from, year_to, department), not both"
            )
        if self.document_ids is None and not self.has_query:
            raise ValueError("give document_ids, or at least one of query, year_from, year_to, department")
        if self.year_from is not None and self.year_to is not None and self.year_from > self.year_to:
            raise ValueError(f"year_from ({self.year_from}) is after year_to ({self.year_to})")
        return self


class DocsetPatch(BaseModel):
    """PATCH /api/docsets/{docset_id}: rename, add members, remove members (at least one of them).

    A document both added and removed is refused (422), a rule JSON Schema cannot state.
    """

    model_config = ConfigDict(
        **_STRICT,
        json_schema_extra={
            # The rule of _something, for JSON Schema.
            "anyOf": [
                _given("name"),
                _given("add_document_ids", {"minItems": 1}),
                _given("remove_document_ids", {"minItems": 1}),
            ],
        },
    )

    name: Name | None = None
    add_document_ids: list[DocumentId] = Field(
        default_factory=list, max_length=MAX_IDS_PER_BODY, description="Documents that exist (else 422)"
    )
    remove_document_ids: list[DocumentId] = Field(default_factory=list, max_length=MAX_IDS_PER_BODY)

    @model_validator(mode="after")
    def _something(self) -> DocsetPatch:
        if self.name is None and not self.add_document_ids and not self.remove_document_ids:
            raise ValueError("give at least one of name, add_document_ids, remove_document_ids")
        overlap = set(self.add_document_ids) & set(self.remove_document_ids)
        if overlap:
            raise ValueError(f"document ids {sorted(overlap)[:10]} are both added and removed; pick one")
        return self
