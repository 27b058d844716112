"""Set-up of the server's database before it starts: the schema, synthetic theses, and API keys."""

from __future__ import annotations

import secrets

from examples.sampledata.generate import generate_documents
from examples.server.db import Database
from examples.server.repo import insert_document, upsert_api_key

__all__ = ["add_key", "load_sample_theses"]


def load_sample_theses(db_url: str, count: int, *, seed: int = 0, min_kb: int = 4, max_kb: int = 40) -> int:
    """Create the server's schema and store ``count`` synthetic theses; return their text bytes."""
    db = Database(db_url)
    db.migrate()
    size = 0
    try:
        with db.connect() as conn:
            for doc in generate_documents(count, seed=seed, min_text_kb=min_kb, max_text_kb=max_kb):
                insert_document(conn, doc)
                size += len(doc.full_text.encode("utf-8"))
    finally:
        db.close()
    return size


def add_key(db_url: str, owner: str, *, role: str = "miner") -> str:
    """Store a new random API key for ``owner`` with ``role`` (``miner`` or ``packager``); return it."""
    key = secrets.token_urlsafe(24)
    db = Database(db_url)
    db.migrate()
    try:
        with db.connect() as conn:
            upsert_api_key(conn, owner=owner, key=key, role=role)
    finally:
        db.close()
    return key
