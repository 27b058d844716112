"""Request bodies of the API, validated with pydantic: what a client may send, and the clear 422s otherwise."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

__all__ = ["DocsetCreate", "DocsetPatch", "MAX_IDS_PER_BODY"]

MAX_IDS_PER_BODY = 100_000
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
# SQLite's INTEGER is 64-bit: a larger id would fail at the query instead of as a 422 here.
DocumentId = Annotated[int, Field(ge=1, le=(1 << 63) - 1)]
Year = Annotated[int, Field(ge=1000, le=9999)]


class DocsetCreate(BaseModel):
    """``POST /api/docsets``: a name, and either explicit ``document_ids`` or a query.

    A query is any of ``query`` (FTS5 terms over title, abstract and full text),
    ``year_from``/``year_to`` (inclusive) and ``department`` (exact, case-insensitive).
    """

    model_config = ConfigDict(extra="forbid")

    name: Name
    document_ids: list[DocumentId] | None = Field(default=None, max_length=MAX_IDS_PER_BODY)
    query: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)] | None = None
    year_from: Year | None = None
    year_to: Year | None = None
    department: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = None

    @property
    def has_query(self) -> bool:
        """Whether any query field was given."""
        return any(v is not None for v in (self.query, self.year_from, self.year_to, self.department))

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
    """``PATCH /api/docsets/<id>``: rename, add members, remove members (any of them, at least one)."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    add_document_ids: list[DocumentId] = Field(default_factory=list, max_length=MAX_IDS_PER_BODY)
    remove_document_ids: list[DocumentId] = Field(default_factory=list, max_length=MAX_IDS_PER_BODY)

    @model_validator(mode="after")
    def _something(self) -> DocsetPatch:
        if self.name is None and not self.add_document_ids and not self.remove_document_ids:
            raise ValueError("give at least one of name, add_document_ids, remove_document_ids")
        overlap = set(self.add_document_ids) & set(self.remove_document_ids)
        if overlap:
            raise ValueError(f"document ids {sorted(overlap)[:10]} are both added and removed; pick one")
        return self
