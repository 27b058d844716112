"""Every queue operation of the native SQLite transport, as SQL on the broker file (schema.py opens it).

Rules:
- A message is *visible* when it has no lease (``lease_until_ms IS NULL``) or its lease has run
  out (``lease_until_ms <= now``). Taking it sets ``holder``, ``lease_until_ms`` and counts one
  more delivery; acknowledging deletes it; releasing clears the lease.
- Acks and releases are fenced by ``(holder, deliveries)``: once a lease ran out and someone
  else took the message, the old holder can neither delete nor release it.
- A reply queue (``expires_ms`` set) unused for ``expires_ms`` is removed with its messages,
  unless one of them is under a live lease. Every write that uses a queue checks this first,
  so the outcome never depends on when a sweep ran.
- Every write runs in ``BEGIN IMMEDIATE``, or is one autocommitted statement (``append``): the
  write lock is taken before anything is read, so two processes never take the same message.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import cast

from tdm_messaging.transport.sqlite.schema import SCHEMA_VERSION, connect, set_synchronous
from tdm_messaging.transport.sqlite.schema import write as _write

__all__ = [
    "SCHEMA_VERSION",
    "QueueSpec",
    "Taken",
    "ack",
    "append",
    "connect",
    "declare",
    "delete_queue",
    "has_visible",
    "headers_json",
    "live_holders",
    "message_count",
    "queue_exists",
    "release",
    "release_all",
    "renew",
    "send",
    "set_synchronous",
    "stale_queues",
    "still_held",
    "sweep",
    "take",
    "touch",
    "visible_count",
]

# connect, set_synchronous and SCHEMA_VERSION are re-exported: the transport and its tests reach the
# file through this one module.

_VISIBLE = "(lease_until_ms IS NULL OR lease_until_ms <= :now)"

_APPEND = (
    "INSERT INTO tdm_message (queue, body, content_type, headers) "
    "SELECT ?, ?, ?, ? FROM tdm_queue WHERE name = ? AND expires_ms IS NULL"
)

_HEADERS_ENCODER = json.JSONEncoder(separators=(",", ":"))


def _prebuilt_encoder() -> Callable[[dict[str, str], int], Sequence[str]] | None:
    """The C encoder that JSONEncoder.encode builds anew on every call (as json.dumps does), built once.

    That build was half of a send's header encoding. Built with the arguments
    JSONEncoder.iterencode passes (markers None: headers are flat strings, nothing to recurse
    into), it writes the same text; ``None`` (use the JSONEncoder) where the json module has no C
    accelerator, or where this Python's private constructor differs or writes other text.
    """
    if c_make_encoder is None:
        return None
    try:
        encoder = c_make_encoder(
            None, _HEADERS_ENCODER.default, encode_basestring_ascii, None, ":", ",", False, False, True
        )
        probe = {"a": 'é"\n', "b": ""}
        if "".join(encoder(probe, 0)) != _HEADERS_ENCODER.encode(probe):
            return None
    except TypeError:
        return None
    return cast("Callable[[dict[str, str], int], Sequence[str]]", encoder)


_C_HEADERS_ENCODER = _prebuilt_encoder()


def headers_json(headers: Mapping[str, str]) -> str:
    """``headers`` as stored: compact JSON, ASCII only (``{"a":"b"}``)."""
    as_dict = headers if type(headers) is dict else dict(headers)
    if _C_HEADERS_ENCODER is None:
        return _HEADERS_ENCODER.encode(as_dict)
    return "".join(_C_HEADERS_ENCODER(as_dict, 0))


def _blob(body: bytes) -> bytes | sqlite3.Binary:
    # bytes bind as a BLOB as they are; anything else goes through memoryview, as before (a str
    # body fails here instead of being stored as TEXT).
    return body if type(body) is bytes else sqlite3.Binary(body)


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A queue as stored: its name, kind (``permanent``, ``reply``, ``dead-letter``) and idle lifetime.

    Attributes:
        name: the logical queue name.
        kind: the destination kind's value.
        expires_ms: milliseconds of disuse after which the queue is removed; ``None``: never.
    """

    name: str
    kind: str
    expires_ms: int | None


@dataclass(frozen=True, slots=True)
class Taken:
    """One message taken under a lease.

    Attributes:
        id: its row id (its place in the queue's order).
        body, content_type, headers: the envelope's parts.
        deliveries: how many times it was taken, this time included (the fencing token).
        previous_holder: who held it before, when its lease ran out unacknowledged; else ``None``.
    """

    id: int
    body: bytes
    content_type: str
    headers: Mapping[str, str]
    deliveries: int
    previous_holder: str | None


def _expire_if_stale(conn: sqlite3.Connection, name: str, now_ms: int) -> bool:
    """Inside a write: remove queue ``name`` if it is a reply queue unused past its lifetime; say whether it was."""
    # The lease check is correlated with the queue row on purpose: SQLite then runs it only for a
    # queue whose time is up. Written against :name it ran first, over every message of the queue,
    # on every send, take and declare (sends fell to ~400 a second once a queue held a few thousand).
    row = conn.execute(
        "SELECT 1 FROM tdm_queue AS q WHERE q.name = :name AND q.expires_ms IS NOT NULL "
        "AND q.last_used_ms + q.expires_ms <= :now "
        "AND NOT EXISTS (SELECT 1 FROM tdm_message AS m WHERE m.queue = q.name AND m.lease_until_ms > :now)",
        {"name": name, "now": now_ms},
    ).fetchone()
    if row is None:
        return False
    _delete(conn, name)
    return True


def _delete(conn: sqlite3.Connection, name: str) -> None:
    conn.execute("DELETE FROM tdm_message WHERE queue = ?", (name,))
    conn.execute("DELETE FROM tdm_queue WHERE name = ?", (name,))


def _upsert(conn: sqlite3.Connection, queue: QueueSpec, now_ms: int) -> None:
    # The latest declarer's lifetime wins (SQLite has no immutable queue arguments to refuse). A queue
    # that never expires, used again as one that never expires, is left as it is: its last use is
    # read by nothing, and not rewriting its row spares a page in every send's commit.
    conn.execute(
        "INSERT INTO tdm_queue (name, kind, expires_ms, last_used_ms) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET expires_ms = excluded.expires_ms, last_used_ms = excluded.last_used_ms "
        "WHERE excluded.expires_ms IS NOT NULL OR tdm_queue.expires_ms IS NOT NULL",
        (queue.name, queue.kind, queue.expires_ms, now_ms),
    )


def declare(conn: sqlite3.Connection, queue: QueueSpec, *, now_ms: int) -> bool:
    """Create ``queue`` if missing and mark it used; return whether a stale one was removed first."""
    with _write(conn):
        expired = _expire_if_stale(conn, queue.name, now_ms)
        _upsert(conn, queue, now_ms)
    return expired


def append(
    cursor: sqlite3.Cursor | sqlite3.Connection, name: str, body: bytes, content_type: str, headers: Mapping[str, str]
) -> int | None:
    """Append one message to ``name`` if it is stored as a queue that never expires; return its id, else ``None``.

    The send of a permanent queue in one autocommitted statement: such a queue has nothing to
    expire and no last use to record (see :func:`send`), so the INSERT is the whole transaction.
    A write statement takes the write lock before it reads, as ``BEGIN IMMEDIATE`` does, and
    its commit is the confirmation. It inserts nothing (``None``) when the queue is missing or
    stored as a reply queue: then :func:`send` must do the full work. ``cursor`` may be one
    the caller keeps for its sends (no new cursor per message), or the connection.
    """
    done = cursor.execute(_APPEND, (name, _blob(body), content_type, headers_json(headers), name))
    return int(done.lastrowid or 0) if done.rowcount == 1 else None


def send(
    conn: sqlite3.Connection,
    queue: QueueSpec,
    *,
    body: bytes,
    content_type: str,
    headers: Mapping[str, str],
    now_ms: int,
) -> int:
    """Append one message to ``queue`` (created if missing, a stale one replaced); return its id.

    The commit is the confirmation: the message is in the file when this returns.
    """
    with _write(conn):
        _expire_if_stale(conn, queue.name, now_ms)
        _upsert(conn, queue, now_ms)
        cursor = conn.execute(
            "INSERT INTO tdm_message (queue, body, content_type, headers) VALUES (?, ?, ?, ?)",
            (queue.name, _blob(body), content_type, headers_json(headers)),
        )
        return int(cursor.lastrowid or 0)


def has_visible(conn: sqlite3.Connection, name: str, *, now_ms: int) -> bool:
    """Whether ``name`` holds a message that a take would get now (read-only: takes no write lock)."""
    row = conn.execute(
        "SELECT 1 FROM tdm_message WHERE queue = :name AND " + _VISIBLE + " LIMIT 1",
        {"name": name, "now": now_ms},
    ).fetchone()
    return row is not None


def take(
    conn: sqlite3.Connection,
    name: str,
    *,
    holder: str,
    limit: int,
    now_ms: int,
    lease_ms: int,
) -> list[Taken]:
    """Lease up to ``limit`` visible messages of ``name`` to ``holder``, oldest first.

    A take is a use of the queue: a stale reply queue is removed first (and nothing is
    taken), a live one gets its lifetime restarted.
    """
    with _write(conn):
        if _expire_if_stale(conn, name, now_ms):
            return []
        conn.execute("UPDATE tdm_queue SET last_used_ms = ? WHERE name = ?", (now_ms, name))
        rows = conn.execute(
            "SELECT id, body, content_type, headers, deliveries, holder FROM tdm_message "
            "WHERE queue = :name AND " + _VISIBLE + " ORDER BY id LIMIT :limit",
            {"name": name, "now": now_ms, "limit": limit},
        ).fetchall()
        if not rows:
            return []
        conn.executemany(
            "UPDATE tdm_message SET holder = ?, lease_until_ms = ?, deliveries = deliveries + 1 WHERE id = ?",
            [(holder, now_ms + lease_ms, row[0]) for row in rows],
        )
    return [
        Taken(
            id=int(row[0]),
            body=bytes(row[1]),
            content_type=str(row[2]),
            headers=_headers(row[3]),
            deliveries=int(row[4]) + 1,
            previous_holder=row[5],
        )
        for row in rows
    ]


def _headers(raw: str) -> dict[str, str]:
    loaded = json.loads(raw)
    return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}


def ack(conn: sqlite3.Connection, *, holder: str, taken: Iterable[tuple[int, int]]) -> int:
    """Delete the ``(id, deliveries)`` messages ``holder`` still holds; return how many were deleted."""
    pairs = [(holder, message_id, deliveries) for message_id, deliveries in taken]
    if not pairs:
        return 0
    with _write(conn):
        before = conn.total_changes
        conn.executemany("DELETE FROM tdm_message WHERE holder = ? AND id = ? AND deliveries = ?", pairs)
        return conn.total_changes - before


def release(conn: sqlite3.Connection, *, holder: str, taken: Iterable[tuple[int, int]]) -> int:
    """Make the ``(id, deliveries)`` messages ``holder`` still holds visible again at once; return how many."""
    pairs = [(holder, message_id, deliveries) for message_id, deliveries in taken]
    if not pairs:
        return 0
    with _write(conn):
        before = conn.total_changes
        conn.executemany(
            "UPDATE tdm_message SET holder = NULL, lease_until_ms = NULL "
            "WHERE holder = ? AND id = ? AND deliveries = ?",
            pairs,
        )
        return conn.total_changes - before


def settle(
    conn: sqlite3.Connection, *, holder: str, drop: Iterable[tuple[int, int]], keep: Iterable[tuple[int, int]]
) -> tuple[int, int]:
    """In one transaction: delete the ``drop`` messages and make the ``keep`` ones visible again
    (only those ``holder`` still holds); return how many of each."""
    dropped = [(holder, message_id, deliveries) for message_id, deliveries in drop]
    kept = [(holder, message_id, deliveries) for message_id, deliveries in keep]
    with _write(conn):
        before = conn.total_changes
        conn.executemany("DELETE FROM tdm_message WHERE holder = ? AND id = ? AND deliveries = ?", dropped)
        deleted = conn.total_changes - before
        conn.executemany(
            "UPDATE tdm_message SET holder = NULL, lease_until_ms = NULL "
            "WHERE holder = ? AND id = ? AND deliveries = ?",
            kept,
        )
        return deleted, conn.total_changes - before - deleted


def release_all(conn: sqlite3.Connection, *, holder: str) -> int:
    """Give back everything ``holder`` holds (on close); return how many messages."""
    with _write(conn):
        cursor = conn.execute("UPDATE tdm_message SET holder = NULL, lease_until_ms = NULL WHERE holder = ?", (holder,))
        return cursor.rowcount


def renew(conn: sqlite3.Connection, *, holder: str, taken: Sequence[tuple[int, int]], until_ms: int) -> int:
    """Extend the leases ``holder`` still holds on ``taken`` to ``until_ms``; return how many were renewed."""
    if not taken:
        return 0
    with _write(conn):
        before = conn.total_changes
        conn.executemany(
            "UPDATE tdm_message SET lease_until_ms = ? WHERE holder = ? AND id = ? AND deliveries = ?",
            [(until_ms, holder, message_id, deliveries) for message_id, deliveries in taken],
        )
        return conn.total_changes - before


def still_held(conn: sqlite3.Connection, *, holder: str, taken: Sequence[tuple[int, int]]) -> set[int]:
    """The ids of ``taken`` that ``holder`` still holds (read-only)."""
    held: set[int] = set()
    for message_id, deliveries in taken:
        row = conn.execute(
            "SELECT 1 FROM tdm_message WHERE id = ? AND holder = ? AND deliveries = ?", (message_id, holder, deliveries)
        ).fetchone()
        if row is not None:
            held.add(message_id)
    return held


def touch(conn: sqlite3.Connection, names: Sequence[str], *, now_ms: int) -> None:
    """Mark the reply queues ``names`` used now (a consumer is attached to them)."""
    if not names:
        return
    with _write(conn):
        conn.executemany(
            "UPDATE tdm_queue SET last_used_ms = ? WHERE name = ? AND expires_ms IS NOT NULL",
            [(now_ms, name) for name in names],
        )


def delete_queue(conn: sqlite3.Connection, name: str) -> None:
    """Remove queue ``name`` and every message in it, held ones included (a missing queue is no error)."""
    with _write(conn):
        _delete(conn, name)


_STALE = (
    "SELECT name FROM tdm_queue AS q WHERE expires_ms IS NOT NULL AND last_used_ms + expires_ms <= :now "
    "AND NOT EXISTS (SELECT 1 FROM tdm_message AS m WHERE m.queue = q.name AND m.lease_until_ms > :now) ORDER BY name"
)


def stale_queues(conn: sqlite3.Connection, *, now_ms: int) -> list[str]:
    """Reply queues unused past their lifetime and holding no live lease (read-only)."""
    return [str(row[0]) for row in conn.execute(_STALE, {"now": now_ms}).fetchall()]


def sweep(conn: sqlite3.Connection, *, now_ms: int) -> list[str]:
    """Remove every stale reply queue with its messages; return their names."""
    if not stale_queues(conn, now_ms=now_ms):
        return []  # the usual case, found without taking the write lock
    with _write(conn):
        names = stale_queues(conn, now_ms=now_ms)
        for name in names:
            _delete(conn, name)
    return names


def queue_exists(conn: sqlite3.Connection, name: str) -> bool:
    """Whether queue ``name`` is in the file (for inspection and tests)."""
    return conn.execute("SELECT 1 FROM tdm_queue WHERE name = ?", (name,)).fetchone() is not None


def message_count(conn: sqlite3.Connection, name: str) -> int:
    """How many messages ``name`` holds, taken ones included (for inspection and tests)."""
    row = conn.execute("SELECT COUNT(*) FROM tdm_message WHERE queue = ?", (name,)).fetchone()
    return int(row[0]) if row else 0


def visible_count(conn: sqlite3.Connection, name: str, *, now_ms: int) -> int:
    """How many messages of ``name`` a take would get now, leased ones left out (read-only)."""
    row = conn.execute(
        "SELECT COUNT(*) FROM tdm_message WHERE queue = :name AND " + _VISIBLE, {"name": name, "now": now_ms}
    ).fetchone()
    return int(row[0]) if row else 0


def live_holders(conn: sqlite3.Connection, *, now_ms: int) -> list[str]:
    """Who holds a live lease now, sorted (for inspection and tests)."""
    rows = conn.execute(
        "SELECT DISTINCT holder FROM tdm_message WHERE lease_until_ms > ? ORDER BY holder", (now_ms,)
    ).fetchall()
    return [str(row[0]) for row in rows]
