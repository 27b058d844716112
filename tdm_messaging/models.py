"""The protocol's messages: frozen pydantic v2 models, one discriminated union, protocol version 1.0."""

from __future__ import annotations

from typing import Annotated, Final, Literal, TypeAlias

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
    model_validator,
)

from tdm_messaging.destinations import validate_docset_id

__all__ = [
    "LEGACY_REQUEST_ID",
    "MESSAGE_TYPES",
    "PROTOCOL_VERSION",
    "Accepted",
    "Complete",
    "DeleteRequest",
    "Deleted",
    "Failed",
    "Message",
    "MessageBase",
    "PackageRequest",
    "Progress",
    "message_adapter",
]

PROTOCOL_VERSION: Final = "1.0"
"""``major.minor``. Readers accept any minor of their major and ignore fields a newer minor added."""

LEGACY_REQUEST_ID: Final = ""
"""The request id given to seed ``text/plain`` messages, which carry none. Sorts before every real id."""


class MessageBase(BaseModel):
    """Fields every message carries.

    Attributes:
        protocol_version: ``major.minor`` of the protocol the sender spoke.
        docset_id: the docset the message is about (also names its reply queue).
        request_id: correlation id of one package request; every reply to that
            request repeats it. Ids must sort in creation order (see
            :func:`tdm_messaging.ids.new_request_id`); a newer request supersedes an older one.
        sequence: per-request counter set by the sender, 0 for the request itself.
        timestamp: when the sender made the message (timezone-aware).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)

    protocol_version: str = PROTOCOL_VERSION
    docset_id: str
    request_id: str = Field(max_length=128)
    sequence: int = Field(default=0, ge=0)
    timestamp: AwareDatetime

    @field_validator("docset_id")
    @classmethod
    def _check_docset_id(cls, value: str) -> str:
        return validate_docset_id(value)

    @field_validator("protocol_version")
    @classmethod
    def _check_version(cls, value: str) -> str:
        major, sep, minor = value.partition(".")
        if not (sep and major.isdigit() and minor.isdigit()):
            raise ValueError(f"protocol_version must look like '1.0', got {value!r}")
        return value


class PackageRequest(MessageBase):
    """Server → packager on ``docsets/package``: build the archive of a docset.

    Attributes:
        docset_url: the docset on the API, e.g. ``http://server/api/docsets/5?fmt=meta,txt``.
        formats: what to put in the archive, e.g. ``("meta", "txt")``.
        reply_to: logical reply queue, ``package/<docset_id>``.
        requested_at: when the miner asked.
    """

    type: Literal["package_request"] = "package_request"
    docset_url: str = Field(min_length=1, max_length=2048)
    formats: tuple[str, ...] = ("meta", "txt")
    reply_to: str
    requested_at: AwareDatetime

    @field_validator("docset_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"docset_url must be an http(s) URL, got {value!r}")
        if any(ch.isspace() or ord(ch) < 32 for ch in value):
            raise ValueError("docset_url must not contain whitespace or control characters")
        return value

    @field_validator("formats")
    @classmethod
    def _check_formats(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for fmt in value:
            if not fmt or not fmt.isascii() or not fmt.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"format {fmt!r} must be a short ASCII word such as 'meta' or 'txt'")
        return value

    @model_validator(mode="after")
    def _check_reply_to(self) -> PackageRequest:
        expected = f"package/{self.docset_id}"
        if self.reply_to != expected:
            raise ValueError(f"reply_to must be {expected!r} for docset {self.docset_id!r}, got {self.reply_to!r}")
        return self


class Accepted(MessageBase):
    """Packager → server: the request was taken; ``estimate_seconds`` until complete (``None``: no estimate)."""

    type: Literal["accepted"] = "accepted"
    estimate_seconds: float | None = Field(default=None, ge=0)


class Progress(MessageBase):
    """Packager → server: ``items_done`` of ``items_total`` documents packaged.

    ``percent`` is 0 to 100; ``eta_seconds`` estimates the time left.
    """

    type: Literal["progress"] = "progress"
    items_done: int = Field(ge=0)
    items_total: int = Field(ge=0)
    percent: float = Field(ge=0, le=100)
    eta_seconds: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _check_counts(self) -> Progress:
        if self.items_done > self.items_total:
            raise ValueError(f"items_done ({self.items_done}) exceeds items_total ({self.items_total})")
        return self


class Complete(MessageBase):
    """Packager → server: the archive is at ``archive_url``.

    Attributes:
        archive_url: where to download it.
        size_bytes: its size.
        sha256: hex digest of the archive, when known (the seed's text form has none).
        content_type: media type of the archive.
        url_expires_at: when ``archive_url`` stops working (presigned URLs), if it does.
    """

    type: Literal["complete"] = "complete"
    archive_url: str = Field(min_length=1, max_length=4096)
    size_bytes: int = Field(ge=0)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    content_type: str = "application/zip"
    url_expires_at: AwareDatetime | None = None


class Failed(MessageBase):
    """Packager → server: the job failed for ``reason``; ``retryable`` says whether asking again may help."""

    type: Literal["failed"] = "failed"
    reason: str = Field(min_length=1, max_length=4096)
    retryable: bool = False


class DeleteRequest(MessageBase):
    """Server → packager on ``docsets/delete``: delete the package of this docset (``archive_url`` if known)."""

    type: Literal["delete_request"] = "delete_request"
    archive_url: str | None = None


class Deleted(MessageBase):
    """Packager → server: the package was deleted; its URL no longer works."""

    type: Literal["deleted"] = "deleted"
    archive_url: str | None = None


Message: TypeAlias = Annotated[
    PackageRequest | Accepted | Progress | Complete | Failed | DeleteRequest | Deleted,
    Field(discriminator="type"),
]
"""Any protocol message; ``type`` tells which."""

MESSAGE_TYPES: Final[dict[str, type[MessageBase]]] = {
    "package_request": PackageRequest,
    "accepted": Accepted,
    "progress": Progress,
    "complete": Complete,
    "failed": Failed,
    "delete_request": DeleteRequest,
    "deleted": Deleted,
}

message_adapter: TypeAdapter[Message] = TypeAdapter(Message)
"""Validates a dict (or JSON) into the right message class."""
