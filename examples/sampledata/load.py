"""Read a directory of real theses: one ``<name>.json`` of metadata per document, its text in ``<name>.txt``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from examples.server.repo import NewDocument

__all__ = ["LoadError", "ThesisMetadata", "read_directory"]

_Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class LoadError(Exception):
    """A file of the directory is missing or invalid; the message names the file and the field."""


class ThesisMetadata(BaseModel):
    """The JSON metadata of one thesis (the format is documented in docs/server.md)."""

    model_config = ConfigDict(extra="forbid")

    title: _Text
    authors: list[_Text] = Field(min_length=1)
    department: _Text
    degree: _Text
    year: int = Field(ge=1000, le=9999)
    abstract: str = ""
    handle: _Text | None = None
    uri: _Text | None = None
    collection: _Text = "theses"
    text_file: _Text | None = None


def read_directory(directory: Path) -> list[NewDocument]:
    """Read and validate every ``*.json`` of ``directory`` (sorted by name) with its text file.

    Nothing is returned unless every file is valid, so a load is all or nothing.

    Raises:
        LoadError: the directory does not exist or holds no ``*.json``; or a file is invalid
            (every problem is listed, one per line, each naming its file).
    """
    if not directory.is_dir():
        raise LoadError(f"{directory} is not a directory")
    files = sorted(directory.glob("*.json"))
    if not files:
        raise LoadError(f"{directory} holds no *.json metadata files; see docs/server.md for the format")
    documents: list[NewDocument] = []
    problems: list[str] = []
    for path in files:
        try:
            documents.append(_read_one(path))
        except LoadError as exc:
            problems.append(str(exc))
    if problems:
        raise LoadError("\n".join(problems))
    return documents


def _read_one(path: Path) -> NewDocument:
    try:
        meta = ThesisMetadata.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, ValidationError):
            fields = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors())
            raise LoadError(f"{path}: {fields}") from exc
        raise LoadError(f"{path}: not valid UTF-8 JSON ({exc})") from exc
    text_path = path.with_suffix(".txt") if meta.text_file is None else path.parent / meta.text_file
    if text_path.resolve().parent != path.parent.resolve():
        raise LoadError(f"{path}: text_file {meta.text_file!r} must name a file in the same directory")
    try:
        full_text = text_path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise LoadError(f"{path}: its text file {text_path.name} is missing") from exc
    except UnicodeDecodeError as exc:
        raise LoadError(f"{text_path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return NewDocument(
        title=meta.title,
        authors=meta.authors,
        department=meta.department,
        degree=meta.degree,
        year=meta.year,
        abstract=meta.abstract,
        full_text=full_text,
        handle=meta.handle,
        uri=meta.uri,
        collection=meta.collection,
    )
