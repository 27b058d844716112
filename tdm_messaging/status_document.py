"""The status document: a DocsetStatus as JSON (what ``tdm-messaging status`` prints), and its JSON Schema."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tdm_messaging.models import Count, Moment, Seconds
from tdm_messaging.status import DocsetStatus, State

__all__ = [
    "StatusDocument",
    "StatusFailure",
    "StatusProgress",
    "StatusResult",
    "status_document",
    "status_document_schema",
]

StateName = Literal["unknown", "requested", "accepted", "in_progress", "failed", "complete", "deleted"]

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class StatusProgress(BaseModel):
    """The furthest progress of the request (state ``in_progress`` only)."""

    model_config = _FROZEN
    items_done: Count
    items_total: Count
    percent: float = Field(ge=0, le=100)
    eta_seconds: Seconds | None


class StatusResult(BaseModel):
    """The archive (state ``complete`` only), as the packager's ``complete`` message gave it."""

    model_config = _FROZEN
    archive_url: str
    size_bytes: Count
    sha256: str | None = Field(pattern=r"^[0-9a-f]{64}$")
    content_type: str
    url_expires_at: Moment | None


class StatusFailure(BaseModel):
    """Why the job failed (state ``failed`` only)."""

    model_config = _FROZEN
    reason: str
    retryable: bool


class StatusDocument(BaseModel):
    """One docset's folded status (docs/status.md). Every key is always present; what does not apply is ``null``.

    Date-times are ISO 8601 in UTC with ``Z``. After a delete, ``request_id`` is the delete
    request's id (the ``deleted`` reply carries it) and ``requested_at`` is ``null``: no package
    request has that id.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", title="DocsetStatus")
    docset_id: str = Field(description="The docset.")
    state: StateName = Field(description="Where the dump stands (docs/status.md, States).")
    request_id: str | None = Field(description="The request the status is about; null when unknown.")
    requested_at: Moment | None = Field(description="When the miner asked, if that request's copy was seen.")
    estimate_seconds: Seconds | None = Field(description="The packager's estimate (accepted, in_progress).")
    progress: StatusProgress | None = Field(description="The furthest progress (in_progress only).")
    result: StatusResult | None = Field(description="The archive (complete only).")
    failure: StatusFailure | None = Field(description="The failure (failed only).")
    updated_at: Moment | None = Field(description="The newest timestamp among the messages kept.")


def status_document(status: DocsetStatus) -> dict[str, Any]:
    """``status`` as the JSON-serialisable status document (validates against :func:`status_document_schema`)."""
    progress = status.progress
    result = status.result
    failure = status.failure
    document = StatusDocument(
        docset_id=status.docset_id,
        state=_STATE_NAMES[status.state],
        request_id=status.request_id,
        requested_at=status.requested_at,
        estimate_seconds=status.estimate_seconds,
        progress=None
        if progress is None
        else StatusProgress(
            items_done=progress.items_done,
            items_total=progress.items_total,
            percent=progress.percent,
            eta_seconds=progress.eta_seconds,
        ),
        result=None
        if result is None
        else StatusResult(
            archive_url=result.archive_url,
            size_bytes=result.size_bytes,
            sha256=result.sha256,
            content_type=result.content_type,
            url_expires_at=result.url_expires_at,
        ),
        failure=None if failure is None else StatusFailure(reason=failure.reason, retryable=failure.retryable),
        updated_at=status.updated_at,
    )
    return document.model_dump(mode="json")


_STATE_NAMES: dict[State, StateName] = {
    State.UNKNOWN: "unknown",
    State.REQUESTED: "requested",
    State.ACCEPTED: "accepted",
    State.IN_PROGRESS: "in_progress",
    State.FAILED: "failed",
    State.COMPLETE: "complete",
    State.DELETED: "deleted",
}


def status_document_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the status document: docs/status.schema.json is this, pretty-printed."""
    schema = StatusDocument.model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
