"""Queries of the server's database: API keys, collections, documents, full-text search and docsets."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "DOCUMENT_COLUMNS",
    "Caller",
    "InvalidSearchError",
    "NewDocument",
    "SearchQuery",
    "SearchTimeoutError",
    "add_members",
    "bump_version",
    "count_docsets",
    "create_docset",
    "delete_docset",
    "ensure_collection",
    "find_caller",
    "get_docset",
    "get_document",
    "get_document_text",
    "hash_key",
    "insert_document",
    "list_collections",
    "list_docsets",
    "list_members",
    "missing_document_ids",
    "remove_members",
    "search_document_ids",
    "update_docset_name",
    "upsert_api_key",
]

ROLES = ("miner", "packager")
# Every document column but the full text, which only the /text endpoint reads.
DOCUMENT_COLUMNS = (
    "d.id, c.name AS collection, d.title, d.authors, d.department, d.degree, d.year, "
    "d.abstract, d.text_bytes, d.handle, d.uri"
)


class InvalidSearchError(ValueError):
    """The full-text query is not valid FTS5 syntax (the message quotes SQLite's reason)."""


class SearchTimeoutError(Exception):
    """The full-text query ran longer than its deadline and was interrupted."""


_PROGRESS_STEPS = 1_000
"""How often (in SQLite VM steps, a few microseconds' worth) a search checks its deadline."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a request: the owner name of the API key and its role (``miner`` or ``packager``)."""

    owner: str
    role: str

    @property
    def is_packager(self) -> bool:
        """The packager may read any docset; miners only their own."""
        return self.role == "packager"


@dataclass(frozen=True, slots=True)
class NewDocument:
    """A thesis to store (see docs/server.md for the field meanings)."""

    title: str
    authors: Sequence[str]
    department: str
    degree: str
    year: int
    abstract: str
    full_text: str
    handle: str | None = None
    uri: str | None = None
    collection: str = "theses"


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """A docset query: FTS5 terms over title, abstract and full text, and filters (all optional)."""

    query: str | None = None
    year_from: int | None = None
    year_to: int | None = None
    department: str | None = None


def now_iso() -> str:
    """The current UTC time as ISO 8601 with seconds, e.g. ``2025-01-31T12:00:00Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def hash_key(key: str) -> str:
    """The SHA-256 hex digest under which an API key is stored."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def upsert_api_key(conn: sqlite3.Connection, *, owner: str, key: str, role: str = "miner") -> None:
    """Store ``key`` (hashed) for ``owner`` with ``role``; a key stored before gets the new owner/role.

    Raises:
        ValueError: unknown role, or an empty key or owner.
    """
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if not key or not owner:
        raise ValueError("an API key needs a non-empty owner and key")
    conn.execute(
        "INSERT INTO api_keys (key_sha256, owner, role, created_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (key_sha256) DO UPDATE SET owner = excluded.owner, role = excluded.role",
        (hash_key(key), owner, role, now_iso()),
    )


def find_caller(conn: sqlite3.Connection, key: str) -> Caller | None:
    """The owner and role of API key ``key``, or ``None`` if it is unknown."""
    row = conn.execute("SELECT owner, role FROM api_keys WHERE key_sha256 = ?", (hash_key(key),)).fetchone()
    return Caller(row["owner"], row["role"]) if row else None


def ensure_collection(conn: sqlite3.Connection, name: str, description: str = "") -> int:
    """The id of collection ``name``, created if missing."""
    conn.execute("INSERT OR IGNORE INTO collections (name, description) VALUES (?, ?)", (name, description))
    return int(conn.execute("SELECT id FROM collections WHERE name = ?", (name,)).fetchone()[0])


def insert_document(conn: sqlite3.Connection, doc: NewDocument) -> int:
    """Store ``doc`` and return its id; a document with the same handle is replaced in place."""
    collection_id = ensure_collection(conn, doc.collection)
    values = (
        collection_id,
        doc.title,
        json.dumps(list(doc.authors)),
        doc.department,
        doc.degree,
        doc.year,
        doc.abstract,
        doc.full_text,
        len(doc.full_text.encode("utf-8")),
        doc.handle,
        doc.uri,
    )
    cursor = conn.execute(
        "INSERT INTO documents (collection_id, title, authors, department, degree, year, abstract, "
        "full_text, text_bytes, handle, uri) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (handle) DO UPDATE SET collection_id = excluded.collection_id, title = excluded.title, "
        "authors = excluded.authors, department = excluded.department, degree = excluded.degree, "
        "year = excluded.year, abstract = excluded.abstract, full_text = excluded.full_text, "
        "text_bytes = excluded.text_bytes, uri = excluded.uri RETURNING id",
        values,
    )
    return int(cursor.fetchone()[0])


def list_collections(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    """Every collection with its ``document_count``, by id."""
    return conn.execute(
        "SELECT c.id, c.name, c.description, COUNT(d.id) AS document_count FROM collections c "
        "LEFT JOIN documents d ON d.collection_id = c.id GROUP BY c.id ORDER BY c.id"
    ).fetchall()


def get_document(conn: sqlite3.Connection, document_id: int) -> sqlite3.Row | None:
    """Document ``document_id``'s metadata (no full text), or ``None``."""
    return conn.execute(  # type: ignore[no-any-return]
        f"SELECT {DOCUMENT_COLUMNS} FROM documents d JOIN collections c ON c.id = d.collection_id WHERE d.id = ?",
        (document_id,),
    ).fetchone()


def get_document_text(conn: sqlite3.Connection, document_id: int) -> str | None:
    """Document ``document_id``'s full text, or ``None``."""
    row = conn.execute("SELECT full_text FROM documents WHERE id = ?", (document_id,)).fetchone()
    return str(row[0]) if row else None


def _search_sql(search: SearchQuery) -> tuple[str, list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    if search.query:
        clauses.append("d.id IN (SELECT rowid FROM documents_fts WHERE documents_fts MATCH ?)")
        params.append(search.query)
    if search.year_from is not None:
        clauses.append("d.year >= ?")
        params.append(search.year_from)
    if search.year_to is not None:
        clauses.append("d.year <= ?")
        params.append(search.year_to)
    if search.department:
        clauses.append("d.department = ? COLLATE NOCASE")
        params.append(search.department)
    where = " AND ".join(clauses) if clauses else "1"
    return f"SELECT d.id FROM documents d WHERE {where} ORDER BY d.id", params


def search_document_ids(conn: sqlite3.Connection, search: SearchQuery, *, timeout: float | None = None) -> list[int]:
    """Ids of the documents matching ``search``, ascending.

    Args:
        conn: the connection.
        search: the query and filters.
        timeout: seconds of work allowed; SQLite's progress handler aborts the query after
            that (``None``: no limit).

    Raises:
        InvalidSearchError: ``search.query`` is not valid FTS5 syntax.
        SearchTimeoutError: the search ran out of ``timeout``.
    """
    sql, params = _search_sql(search)
    if timeout is None:
        try:
            return [int(row[0]) for row in conn.execute(sql, params)]
        except sqlite3.OperationalError as exc:
            raise InvalidSearchError(f"invalid full-text query {search.query!r}: {exc}") from exc
    deadline = time.monotonic() + timeout
    # Two guards, because FTS5 does most of its work inside the virtual table, between VM steps:
    # the progress handler stops a query at its next VM step after the deadline (cheap, in this
    # thread), and a timer interrupts the connection at the deadline wherever SQLite is (a
    # NEAR of prefix terms spends seconds per row where the progress handler never runs).
    conn.set_progress_handler(lambda: time.monotonic() > deadline, _PROGRESS_STEPS)
    guard = threading.Lock()
    done = False
    fired = threading.Event()

    def interrupt() -> None:
        with guard:
            if not done:  # never interrupt the statements that follow the search
                fired.set()
                conn.interrupt()

    timer = threading.Timer(timeout, interrupt)
    timer.daemon = True
    timer.start()
    try:
        return [int(row[0]) for row in conn.execute(sql, params)]
    except sqlite3.OperationalError as exc:
        if fired.is_set() or time.monotonic() > deadline:
            raise SearchTimeoutError(
                f"the full-text query took longer than {timeout:g} s and was stopped; narrow it "
                "(fewer prefix terms, NEAR groups or OR branches) or add year or department filters"
            ) from exc
        raise InvalidSearchError(f"invalid full-text query {search.query!r}: {exc}") from exc
    finally:
        with guard:
            done = True
        timer.cancel()
        conn.set_progress_handler(None, 0)


def missing_document_ids(conn: sqlite3.Connection, ids: Iterable[int]) -> list[int]:
    """Those of ``ids`` that name no document, ascending."""
    wanted = sorted(set(ids))
    found: set[int] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        marks = ",".join("?" * len(chunk))
        found.update(int(r[0]) for r in conn.execute(f"SELECT id FROM documents WHERE id IN ({marks})", chunk))
    return [i for i in wanted if i not in found]


def create_docset(
    conn: sqlite3.Connection, *, owner: str, name: str, query: SearchQuery | None, document_ids: Iterable[int]
) -> int:
    """Create a docset owned by ``owner`` with ``document_ids`` as members; return its id."""
    stamp = now_iso()
    query_json = None
    if query is not None:
        query_json = json.dumps({k: v for k, v in vars_of(query).items() if v is not None}, sort_keys=True)
    cursor = conn.execute(
        "INSERT INTO docsets (owner, name, query, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
        (owner, name, query_json, stamp, stamp),
    )
    docset_id = int(cursor.lastrowid or 0)
    conn.executemany(
        "INSERT OR IGNORE INTO docset_members (docset_id, document_id) VALUES (?, ?)",
        ((docset_id, doc_id) for doc_id in document_ids),
    )
    return docset_id


def vars_of(query: SearchQuery) -> dict[str, object]:
    """``query``'s fields as a dict."""
    return {
        "query": query.query,
        "year_from": query.year_from,
        "year_to": query.year_to,
        "department": query.department,
    }


_DOCSET_SELECT = (
    "SELECT s.id, s.owner, s.name, s.query, s.version, s.created_at, s.updated_at, "
    "(SELECT COUNT(*) FROM docset_members m WHERE m.docset_id = s.id) AS member_count FROM docsets s"
)


def get_docset(conn: sqlite3.Connection, docset_id: int) -> sqlite3.Row | None:
    """Docset ``docset_id`` with its ``member_count``, or ``None``."""
    return conn.execute(f"{_DOCSET_SELECT} WHERE s.id = ?", (docset_id,)).fetchone()  # type: ignore[no-any-return]


def list_docsets(conn: sqlite3.Connection, owner: str, *, limit: int, offset: int) -> list[sqlite3.Row]:
    """A page of ``owner``'s docsets, by id."""
    return conn.execute(
        f"{_DOCSET_SELECT} WHERE s.owner = ? ORDER BY s.id LIMIT ? OFFSET ?", (owner, limit, offset)
    ).fetchall()


def count_docsets(conn: sqlite3.Connection, owner: str) -> int:
    """How many docsets ``owner`` has."""
    return int(conn.execute("SELECT COUNT(*) FROM docsets WHERE owner = ?", (owner,)).fetchone()[0])


def update_docset_name(conn: sqlite3.Connection, docset_id: int, name: str) -> None:
    """Rename docset ``docset_id``."""
    conn.execute("UPDATE docsets SET name = ?, updated_at = ? WHERE id = ?", (name, now_iso(), docset_id))


def add_members(conn: sqlite3.Connection, docset_id: int, document_ids: Iterable[int]) -> int:
    """Add members (existing ones are ignored); return how many were new."""
    added = 0
    for doc_id in document_ids:
        added += conn.execute(
            "INSERT OR IGNORE INTO docset_members (docset_id, document_id) VALUES (?, ?)", (docset_id, doc_id)
        ).rowcount
    return added


def remove_members(conn: sqlite3.Connection, docset_id: int, document_ids: Iterable[int]) -> int:
    """Remove members (absent ones are ignored); return how many went."""
    removed = 0
    for doc_id in document_ids:
        removed += conn.execute(
            "DELETE FROM docset_members WHERE docset_id = ? AND document_id = ?", (docset_id, doc_id)
        ).rowcount
    return removed


def bump_version(conn: sqlite3.Connection, docset_id: int) -> None:
    """Record that docset ``docset_id``'s members changed (its packages are then stale)."""
    conn.execute("UPDATE docsets SET version = version + 1, updated_at = ? WHERE id = ?", (now_iso(), docset_id))


def delete_docset(conn: sqlite3.Connection, docset_id: int) -> None:
    """Delete docset ``docset_id`` and its member list (the documents stay)."""
    conn.execute("DELETE FROM docsets WHERE id = ?", (docset_id,))


def list_members(
    conn: sqlite3.Connection, docset_id: int, *, limit: int, offset: int = 0, after: int | None = None
) -> list[sqlite3.Row]:
    """Members' metadata by document id: a page by ``offset``, or (keyset, for huge docsets) after id ``after``."""
    sql = (
        f"SELECT {DOCUMENT_COLUMNS} FROM docset_members m JOIN documents d ON d.id = m.document_id "
        "JOIN collections c ON c.id = d.collection_id WHERE m.docset_id = ?"
    )
    params: list[object] = [docset_id]
    if after is not None:
        sql += " AND m.document_id > ?"
        params.append(after)
    sql += " ORDER BY m.document_id LIMIT ? OFFSET ?"
    params += [limit, offset]
    return conn.execute(sql, params).fetchall()
