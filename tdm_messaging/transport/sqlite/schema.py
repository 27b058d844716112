"""The SQLite broker file itself: its schema and version, how it is opened (WAL), and the write transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["SCHEMA_VERSION", "connect", "set_synchronous", "write"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tdm_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tdm_queue (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    expires_ms INTEGER,
    last_used_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tdm_message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    body BLOB NOT NULL,
    content_type TEXT NOT NULL,
    headers TEXT NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 0,
    holder TEXT,
    lease_until_ms INTEGER
);
CREATE INDEX IF NOT EXISTS tdm_message_by_queue ON tdm_message (queue, id);
CREATE INDEX IF NOT EXISTS tdm_message_by_holder ON tdm_message (holder) WHERE holder IS NOT NULL;
"""


def connect(path: Path, *, busy_timeout: float) -> sqlite3.Connection:
    """Open (creating if needed) the broker file at ``path``: WAL mode, busy timeout, schema.

    The connection is in autocommit mode (``isolation_level=None``): every write of more than
    one statement goes through :func:`write`, which opens ``BEGIN IMMEDIATE`` itself. It may be used from any thread;
    the caller guards it with a lock.

    Raises:
        sqlite3.Error: the file cannot be opened or created, or is not a database; a newer schema.
    """
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()
        if mode is None or str(mode[0]).lower() != "wal":
            raise sqlite3.OperationalError(f"could not switch {path} to WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous=FULL")
        _create_schema(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _create_schema(conn: sqlite3.Connection) -> None:
    with write(conn):
        for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
            conn.execute(statement)
        row = conn.execute("SELECT value FROM tdm_meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            conn.execute("INSERT INTO tdm_meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"schema version {row[0]} was written by a newer tdm-messaging (this one reads {SCHEMA_VERSION})"
            )


@contextmanager
def write(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, the write lock taken first; rolled back if anything inside fails."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def set_synchronous(conn: sqlite3.Connection, *, full: bool) -> None:
    """``FULL``: a commit is on disk when it returns (power-loss safe); ``NORMAL``: it survives a process crash."""
    conn.execute("PRAGMA synchronous=FULL" if full else "PRAGMA synchronous=NORMAL")
