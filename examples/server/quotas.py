"""Per-owner limits on dumps: packages being built at once, and archives kept; over a limit is a 429.

The broker holds each dump's state, but counting an owner's dumps there would mean polling
every docset's reply queue. So the server notes, per docset, what it last saw of its dump
(``building`` or ``stored``) in the ``dump_quota`` table, written when it sends a request and
on every poll. The note is an account, never the state of record: a poll corrects it, deleting
the docset drops it, and a build not heard of for ``stale_after`` seconds stops counting.

Rules (:func:`judge_request`, pure): sending a package request for a docset is refused when

1. an explicit re-request (``POST`` or ``?retry=true``) finds the docset's own build in flight
   for the same docset version: the packager would build it twice (``dump_in_progress``);
2. the docset is not in flight and the owner already has ``max_in_flight`` builds in flight
   (``too_many_dumps_in_flight``);
3. the docset has no build or archive yet and the owner's builds plus archives reach
   ``max_archives`` (``too_many_archives``): a new archive would be one too many.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Final

from tdm_messaging import State

__all__ = ["DumpLimits", "Refusal", "Usage", "judge_request", "record_status", "reserve", "restore", "usage_of"]

BUILDING: Final = "building"
STORED: Final = "stored"
_BUILDING_STATES: Final = frozenset({State.REQUESTED, State.ACCEPTED, State.IN_PROGRESS})


@dataclass(frozen=True, slots=True)
class DumpLimits:
    """The per-owner limits (see :class:`~examples.server.settings.Settings`)."""

    max_in_flight: int
    max_archives: int
    stale_after: float


@dataclass(frozen=True, slots=True)
class Usage:
    """An owner's dumps as the server last saw them, and the docset at hand's own note.

    Attributes:
        building: the owner's docsets with a build in flight (not stale).
        stored: the owner's docsets with an archive.
        this: the docset's note (``"building"``, ``"stored"`` or ``None``).
        this_version: the docset version its note was taken at.
        this_requested_at: when its last request was sent (epoch seconds).
    """

    building: int
    stored: int
    this: str | None = None
    this_version: int | None = None
    this_requested_at: float | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is refused: a stable ``code``, a ``message`` saying what to do, and ``retry_after`` seconds."""

    code: str
    message: str
    retry_after: int


def judge_request(usage: Usage, *, docset_version: int, limits: DumpLimits, explicit: bool) -> Refusal | None:
    """Whether a package request may be sent (``None``) or why not (the module's rules 1-3)."""
    if explicit and usage.this == BUILDING and usage.this_version == docset_version:
        return Refusal(
            "dump_in_progress",
            "this docset's package is already being built; poll GET .../dump until it is done "
            "(a new request is taken once the docset changes or the build ends)",
            5,
        )
    if usage.this != BUILDING and usage.building >= limits.max_in_flight:
        return Refusal(
            "too_many_dumps_in_flight",
            f"you have {usage.building} packages being built, the most allowed at once; "
            "wait for one to finish, then ask again",
            10,
        )
    if usage.this is None and usage.building + usage.stored >= limits.max_archives:
        return Refusal(
            "too_many_archives",
            f"you have {usage.stored} archives and {usage.building} builds, the most kept per key "
            f"({limits.max_archives}); delete a dump (DELETE .../dump) or a docset you no longer need",
            60,
        )
    return None


def usage_of(conn: sqlite3.Connection, owner: str, docset_id: int, *, now: float, stale_after: float) -> Usage:
    """``owner``'s usage, with docset ``docset_id``'s note (a stale build counts as none)."""
    fresh = now - stale_after
    building, stored = conn.execute(
        "SELECT COALESCE(SUM(state = ? AND requested_at >= ?), 0), COALESCE(SUM(state = ?), 0) "
        "FROM dump_quota WHERE owner = ?",
        (BUILDING, fresh, STORED, owner),
    ).fetchone()
    row = conn.execute(
        "SELECT state, version, requested_at FROM dump_quota WHERE docset_id = ?", (docset_id,)
    ).fetchone()
    if row is None or (row[0] == BUILDING and row[2] < fresh):
        return Usage(int(building), int(stored))
    return Usage(int(building), int(stored), str(row[0]), int(row[1]), float(row[2]))


def reserve(conn: sqlite3.Connection, owner: str, docset_id: int, version: int, *, now: float) -> None:
    """Note a build of ``docset_id`` (about to be requested) against ``owner``."""
    conn.execute(
        "INSERT INTO dump_quota (docset_id, owner, state, version, requested_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (docset_id) DO UPDATE SET state = excluded.state, version = excluded.version, "
        "requested_at = excluded.requested_at",
        (docset_id, owner, BUILDING, version, now),
    )


def restore(conn: sqlite3.Connection, owner: str, docset_id: int, before: Usage) -> None:
    """Put back the docset's note as it was before a :func:`reserve` whose request was never sent."""
    if before.this is None or before.this_version is None or before.this_requested_at is None:
        conn.execute("DELETE FROM dump_quota WHERE docset_id = ?", (docset_id,))
        return
    conn.execute(
        "UPDATE dump_quota SET state = ?, version = ?, requested_at = ? WHERE docset_id = ?",
        (before.this, before.this_version, before.this_requested_at, docset_id),
    )


def record_status(conn: sqlite3.Connection, docset_id: int, state: State) -> None:
    """Correct the docset's note from the status a poll saw: still building, stored, or nothing to count."""
    if state in _BUILDING_STATES or state is State.UNKNOWN:
        return  # building: the note from the request stands; unknown: not seen yet, keep it
    if state is State.COMPLETE:
        conn.execute("UPDATE dump_quota SET state = ? WHERE docset_id = ?", (STORED, docset_id))
    else:  # failed or deleted: no build, no archive
        conn.execute("DELETE FROM dump_quota WHERE docset_id = ?", (docset_id,))
