"""Response bodies of the API as pydantic models: every JSON answer is built through one, as the document says.

The OpenAPI document's response schemas are generated from these models
(:mod:`examples.server.openapi`). A field typed ``X | MISSING`` is left out of the JSON when not
set: it is optional in the schema, and never ``null`` unless its type says ``None`` too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final, Literal

from pydantic import MISSING, AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from examples.server.fields import MAX_SQLITE_INT

__all__ = [
    "DUMP_ANSWERS",
    "PACKAGE_FORMATS",
    "Collection",
    "CollectionList",
    "Docset",
    "DocsetLinks",
    "DocsetList",
    "DocsetQuery",
    "Document",
    "DocumentLinks",
    "DumpComplete",
    "DumpDeleteRequested",
    "DumpDeleted",
    "DumpFailed",
    "DumpLinks",
    "DumpPending",
    "Error",
    "ErrorDetail",
    "ListLinks",
    "MemberPage",
    "PackageSource",
    "PageLinks",
    "Problem",
]

PACKAGE_FORMATS: Final = ("meta", "txt")
"""What a package holds of each document: its metadata and its full text."""

Url = Annotated[str, Field(json_schema_extra={"format": "uri"})]
Id = Annotated[int, Field(ge=1, le=MAX_SQLITE_INT)]
Count = Annotated[int, Field(ge=0)]
Format = Literal["meta", "txt"]


def _in_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


Moment = Annotated[AwareDatetime, AfterValidator(_in_utc), Field(description="RFC 3339, in UTC, spelled with Z")]
"""A date-time as every answer spells it: in UTC, with ``Z`` (a packager's offset is converted)."""


class _Body(BaseModel):
    # Frozen, and no field the document does not name: an answer that drifts from it fails here.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Problem(_Body):
    """One invalid field of a request body."""

    field: str = Field(description="Dotted path of the field, or '(body)'")
    problem: str


class ErrorDetail(_Body):
    """What went wrong: a stable code, and a message saying what was wrong and how to fix it."""

    code: str = Field(description="Stable machine-readable code")
    message: str = Field(description="What was wrong and how to fix it")
    problems: list[Problem] | MISSING = Field(default=MISSING, description="invalid_body: each invalid field")
    document_ids: list[int] | MISSING = Field(default=MISSING, description="unknown_documents: the unknown ids")


class Error(_Body):
    """Every error answer: {"error": {"code", "message"}}."""

    error: ErrorDetail


class Collection(_Body):
    """A collection of theses."""

    id: Id
    name: str
    description: str
    document_count: Count


class CollectionList(_Body):
    """Every collection."""

    collections: list[Collection]


class DocumentLinks(_Body):
    """Where a document is."""

    self: Url
    text: Url | MISSING = Field(default=MISSING, description="Its full text; with the txt format")


class Document(_Body):
    """A thesis. The metadata fields come with the format meta, text_bytes and links.text with the format
    txt; /api/documents/{document_id} gives both."""

    id: Id
    collection: str | MISSING = MISSING
    title: str | MISSING = MISSING
    authors: list[str] | MISSING = MISSING
    department: str | MISSING = MISSING
    degree: str | MISSING = MISSING
    year: int | MISSING = MISSING
    abstract: str | MISSING = MISSING
    handle: str | MISSING | None = MISSING
    uri: str | MISSING | None = MISSING
    text_bytes: Count | MISSING = Field(default=MISSING, description="Size of the full text in UTF-8")
    links: DocumentLinks


class DocsetQuery(_Body):
    """The query a docset was made from, as stored (text fields stripped); at least one field."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    query: str | MISSING = MISSING
    year_from: int | MISSING = MISSING
    year_to: int | MISSING = MISSING
    department: str | MISSING = MISSING


class DocsetLinks(_Body):
    """Where a docset and what hangs from it are."""

    self: Url
    members: Url
    dump: Url
    package_source: Url = Field(description="What the packager reads (?fmt=meta,txt)")


class Docset(_Body):
    """A docset: a named set of documents owned by one API key owner."""

    id: Id
    name: str
    owner: str
    query: DocsetQuery | None = Field(description="null when made from document_ids")
    member_count: Count
    version: Annotated[int, Field(ge=1)] = Field(description="Bumped whenever the members change")
    created_at: Moment
    updated_at: Moment
    links: DocsetLinks


class ListLinks(_Body):
    """The links of a page of docsets."""

    self: Url
    next: Url | None


class DocsetList(_Body):
    """The caller's docsets, a page at a time."""

    docsets: list[Docset]
    total: Count
    page: Annotated[int, Field(ge=1)]
    per_page: Annotated[int, Field(ge=1)]
    links: ListLinks


class PageLinks(_Body):
    """The links of a page of members: self and next always; first, prev and last in page mode."""

    self: Url
    first: Url | MISSING = MISSING
    prev: Url | MISSING | None = MISSING
    next: Url | None
    last: Url | MISSING = MISSING


class MemberPage(_Body):
    """A page of a docset's members: by page number (page, pages) or by cursor (after)."""

    docset_id: Id
    total: Count
    per_page: Annotated[int, Field(ge=1)]
    page: Annotated[int, Field(ge=1)] | MISSING = Field(default=MISSING, description="Page mode only")
    pages: Annotated[int, Field(ge=1)] | MISSING = Field(default=MISSING, description="Page mode only")
    after: Count | MISSING = Field(default=MISSING, description="Cursor mode only")
    members: list[Document]
    links: PageLinks


class PackageSource(_Body):
    """What the packager reads: one page of members, in id order; follow next until it is null."""

    docset: Docset
    formats: list[Format]
    members: list[Document]
    next: Url | None


class DumpLinks(_Body):
    """Where the dump and its docset are, and, after a failure or a deletion, how to request it again."""

    self: Url
    docset: Url
    retry: Url | MISSING = Field(default=MISSING, description="After a failure or a deletion: request it again")


class _DumpAnswer(_Body):
    docset_id: str = Field(description="The docset's id, as a string")
    detail: str = Field(description="What the state means and what to do, for people")
    links: DumpLinks


class _DumpView(_DumpAnswer):
    # The fields of tdm_messaging's http_view, which every answer to a poll carries.
    request_id: str | None = Field(description="The request the status is about (null before the packager said)")
    requested_at: Moment | None
    updated_at: Moment | None = Field(description="The newest time that shaped this status")
    requested_now: bool = Field(description="This call sent a package request")


class DumpPending(_DumpView):
    """202: the package is requested, accepted or being built; poll again after Retry-After seconds."""

    state: Literal["requested", "accepted", "in_progress"]
    percent: Annotated[float, Field(ge=0, le=100)]
    items_done: Count | None
    items_total: Count | None
    estimate_seconds: Annotated[float, Field(ge=0)] | None = Field(description="The packager's first estimate")
    eta_seconds: Annotated[float, Field(ge=0)] | None = Field(description="Seconds left, as far as known")
    retry_after_seconds: Annotated[int, Field(ge=1)] = Field(description="As the Retry-After header says")


class DumpComplete(_DumpView):
    """303: the archive is at archive_url (and Location); 410 once that URL expired (gone_because, error)."""

    state: Literal["complete"]
    archive_url: Url
    size_bytes: Count
    sha256: Annotated[str, Field(pattern="^[0-9a-f]{64}$")] | None
    content_type: str
    url_expires_at: Moment | None
    gone_because: Literal["url_expired"] | MISSING = MISSING
    error: ErrorDetail | MISSING = MISSING


class DumpFailed(_DumpView):
    """502: packaging failed; retryable says whether asking again may help, links.retry how."""

    state: Literal["failed"]
    reason: str
    retryable: bool
    error: ErrorDetail


class DumpDeleted(_DumpView):
    """410: the archive was deleted; links.retry requests it again."""

    state: Literal["deleted"]
    gone_because: Literal["deleted"]
    error: ErrorDetail


class DumpDeleteRequested(_DumpAnswer):
    """202 to DELETE .../dump: the packager was asked to delete the package."""

    state: Literal["delete_requested"]


DUMP_ANSWERS: Final[dict[str, type[_DumpView]]] = {
    "requested": DumpPending,
    "accepted": DumpPending,
    "in_progress": DumpPending,
    "complete": DumpComplete,
    "failed": DumpFailed,
    "deleted": DumpDeleted,
}
"""The answer's model for each state a poll can show (``unknown`` is answered as ``requested``)."""
