"""The JSON representations of a document and of a docset, with their links."""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Final

from examples.server.routes.context import AppContext

__all__ = ["PACKAGE_FORMATS", "docset_json", "document_json"]

PACKAGE_FORMATS: Final = ("meta", "txt")
"""What a package holds of each document: its metadata and its full text."""


def document_json(ctx: AppContext, row: sqlite3.Row, formats: tuple[str, ...] = PACKAGE_FORMATS) -> dict[str, Any]:
    """Document ``row`` as JSON: its metadata if ``"meta"`` is in ``formats``, its text's size and link if ``"txt"``."""
    base = ctx.base_url()
    doc: dict[str, Any] = {"id": row["id"]}
    if "meta" in formats:
        doc.update(
            collection=row["collection"],
            title=row["title"],
            authors=json.loads(row["authors"]),
            department=row["department"],
            degree=row["degree"],
            year=row["year"],
            abstract=row["abstract"],
            handle=row["handle"],
            uri=row["uri"],
        )
    links = {"self": f"{base}/api/documents/{row['id']}"}
    if "txt" in formats:
        doc["text_bytes"] = row["text_bytes"]
        links["text"] = f"{base}/api/documents/{row['id']}/text"
    doc["links"] = links
    return doc


def docset_json(ctx: AppContext, row: sqlite3.Row) -> dict[str, Any]:
    """Docset ``row`` as JSON, with links to itself, its members, its dump and the packager's source."""
    url = f"{ctx.base_url()}/api/docsets/{row['id']}"
    return {
        "id": row["id"],
        "name": row["name"],
        "owner": row["owner"],
        "query": json.loads(row["query"]) if row["query"] else None,
        "member_count": row["member_count"],
        "version": row["version"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "links": {
            "self": url,
            "members": f"{url}/members",
            "dump": f"{url}/dump",
            "package_source": f"{url}?fmt={','.join(PACKAGE_FORMATS)}",
        },
    }
