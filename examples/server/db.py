"""The server's SQLite database: URL parsing, connections, and schema migrations applied on start."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["MIGRATIONS", "Database", "DatabaseError"]

log = logging.getLogger(__name__)


class DatabaseError(Exception):
    """The database URL is wrong or the database cannot be opened; the message says how to fix it."""


# Rules: one entry per schema version, applied in order, never edited once released;
# PRAGMA user_version records how many have been applied.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE collections (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE documents (
        id INTEGER PRIMARY KEY,
        collection_id INTEGER NOT NULL REFERENCES collections(id),
        title TEXT NOT NULL,
        authors TEXT NOT NULL,              -- JSON array of names
        department TEXT NOT NULL,
        degree TEXT NOT NULL,
        year INTEGER NOT NULL,
        abstract TEXT NOT NULL,
        full_text TEXT NOT NULL,
        text_bytes INTEGER NOT NULL,        -- UTF-8 size, so listings never read the text
        handle TEXT UNIQUE,
        uri TEXT
    );
    CREATE INDEX documents_year ON documents(year);
    CREATE INDEX documents_department ON documents(department);
    CREATE VIRTUAL TABLE documents_fts USING fts5(
        title, abstract, full_text, content='documents', content_rowid='id', tokenize='porter unicode61'
    );
    CREATE TRIGGER documents_ai AFTER INSERT ON documents BEGIN
        INSERT INTO documents_fts(rowid, title, abstract, full_text)
        VALUES (new.id, new.title, new.abstract, new.full_text);
    END;
    CREATE TRIGGER documents_ad AFTER DELETE ON documents BEGIN
        INSERT INTO documents_fts(documents_fts, rowid, title, abstract, full_text)
        VALUES ('delete', old.id, old.title, old.abstract, old.full_text);
    END;
    CREATE TRIGGER documents_au AFTER UPDATE ON documents BEGIN
        INSERT INTO documents_fts(documents_fts, rowid, title, abstract, full_text)
        VALUES ('delete', old.id, old.title, old.abstract, old.full_text);
        INSERT INTO documents_fts(rowid, title, abstract, full_text)
        VALUES (new.id, new.title, new.abstract, new.full_text);
    END;
    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        key_sha256 TEXT NOT NULL UNIQUE,    -- keys are stored hashed, never in clear
        owner TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('miner', 'packager')),
        created_at TEXT NOT NULL
    );
    -- AUTOINCREMENT: a docset id is never reused, because it also names the docset's
    -- reply queue and package, which outlive the row.
    CREATE TABLE docsets (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        query TEXT,                         -- JSON of the query it was built from, if any
        version INTEGER NOT NULL DEFAULT 1, -- bumped when the members change
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX docsets_owner ON docsets(owner);
    CREATE TABLE docset_members (
        docset_id INTEGER NOT NULL REFERENCES docsets(id) ON DELETE CASCADE,
        document_id INTEGER NOT NULL REFERENCES documents(id),
        PRIMARY KEY (docset_id, document_id)
    ) WITHOUT ROWID;
    """,
    """
    -- What the server last saw of each docset's dump, for the per-owner quotas
    -- (examples/server/quotas.py); the broker's reply queue stays the state of record.
    CREATE TABLE dump_quota (
        docset_id INTEGER PRIMARY KEY REFERENCES docsets(id) ON DELETE CASCADE,
        owner TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('building', 'stored')),
        version INTEGER NOT NULL,           -- the docset version requested
        requested_at REAL NOT NULL          -- epoch seconds of the last request sent
    );
    CREATE INDEX dump_quota_owner ON dump_quota(owner);
    """,
)


PRIVATE_MODE = 0o600
"""The mode of the database file and its -wal/-shm companions: they hold key digests and every docset."""


def _private_files(path: Path) -> None:
    """Create the database file owner-only if it is new, and make it and its companions owner-only.

    SQLite creates the -wal and -shm files with the main file's permissions, so a main file
    made 0600 before the first connection keeps all three private whatever the umask.

    Raises:
        DatabaseError: the file cannot be created or its mode set.
    """
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_MODE))
        for companion in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if companion.exists():
                os.chmod(companion, PRIVATE_MODE)
    except OSError as exc:
        raise DatabaseError(f"cannot create database file {str(path)!r} owner-only: {exc}") from exc


class Database:
    """An SQLite database named by a URL: ``sqlite:///relative/path.db``, ``sqlite:////abs/path.db``
    or ``sqlite:///:memory:`` (one private in-memory database, shared by this object's connections).

    Connections are opened per unit of work (:meth:`connect`), so request threads never share one.

    Raises:
        DatabaseError: the URL is not an ``sqlite:///`` URL.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._keeper: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        if not url.startswith("sqlite:///"):
            raise DatabaseError(
                f"database URL {url!r} is not supported; use sqlite:///relative.db or sqlite:////absolute/path.db"
            )
        path = url[len("sqlite:///") :]
        if not path:
            raise DatabaseError(f"database URL {url!r} names no file; use e.g. sqlite:///tdm.db")
        if path == ":memory:":
            self._target = f"file:tdm-{uuid.uuid4().hex}?mode=memory&cache=shared"
            # A shared in-memory database lives as long as one connection to it is open.
            self._keeper = sqlite3.connect(self._target, uri=True, check_same_thread=False)
            self._uri = True
        else:
            parent = Path(path).parent
            if not parent.is_dir():
                raise DatabaseError(f"directory {str(parent)!r} of database {url!r} does not exist; create it first")
            self._target = path
            self._uri = False
            _private_files(Path(path))

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection for one unit of work: committed if the block succeeds, rolled back if it raises."""
        try:
            conn = sqlite3.connect(self._target, uri=self._uri, timeout=10.0, check_same_thread=False)
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open database {self.url!r}: {exc}") from exc
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        try:
            with conn:
                yield conn
        finally:
            conn.close()

    def migrate(self) -> int:
        """Apply the migrations not yet applied; return the schema version now in force."""
        with self._lock, self.connect() as conn:
            if not self._uri:
                conn.execute("PRAGMA journal_mode = WAL")
            current = int(conn.execute("PRAGMA user_version").fetchone()[0])
            for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
                log.info("applying schema migration %d to %s", version, self.url)
                conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;")
            return len(MIGRATIONS) if current < len(MIGRATIONS) else current

    def close(self) -> None:
        """Release the in-memory database, if this is one."""
        if self._keeper is not None:
            self._keeper.close()
            self._keeper = None
