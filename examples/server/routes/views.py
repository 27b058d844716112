"""The JSON representations of a document and of a docset, with their links, built through their response models."""

from __future__ import annotations

import json
import sqlite3

from examples.server.responses import PACKAGE_FORMATS, Docset, DocsetLinks, DocsetQuery, Document, DocumentLinks
from examples.server.routes.context import AppContext

__all__ = ["PACKAGE_FORMATS", "docset_json", "document_json"]


def document_json(ctx: AppContext, row: sqlite3.Row, formats: tuple[str, ...] = PACKAGE_FORMATS) -> Document:
    """Document ``row``: its metadata if ``"meta"`` is in ``formats``, its text's size and link if ``"txt"``."""
    self_url = f"{ctx.base_url()}/api/documents/{row['id']}"
    meta = (
        {
            "collection": row["collection"],
            "title": row["title"],
            "authors": json.loads(row["authors"]),
            "department": row["department"],
            "degree": row["degree"],
            "year": row["year"],
            "abstract": row["abstract"],
            "handle": row["handle"],
            "uri": row["uri"],
        }
        if "meta" in formats
        else {}
    )
    if "txt" in formats:
        return Document(
            id=row["id"],
            **meta,
            text_bytes=row["text_bytes"],
            links=DocumentLinks(self=self_url, text=f"{self_url}/text"),
        )
    return Document(id=row["id"], **meta, links=DocumentLinks(self=self_url))


def docset_json(ctx: AppContext, row: sqlite3.Row) -> Docset:
    """Docset ``row``, with links to itself, its members, its dump and the packager's source."""
    url = f"{ctx.base_url()}/api/docsets/{row['id']}"
    return Docset(
        id=row["id"],
        name=row["name"],
        owner=row["owner"],
        query=DocsetQuery.model_validate_json(row["query"]) if row["query"] else None,
        member_count=row["member_count"],
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        links=DocsetLinks(
            self=url,
            members=f"{url}/members",
            dump=f"{url}/dump",
            package_source=f"{url}?fmt={','.join(PACKAGE_FORMATS)}",
        ),
    )
