"""Per-docset mutual exclusion in a process: one re-entrant lock per docset in use, forgotten once unused."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import TracebackType

__all__ = ["DocsetLocks"]


@dataclass
class _Entry:
    lock: threading.RLock = field(default_factory=threading.RLock)
    users: int = 0  # threads holding or waiting for ``lock`` (a re-entrant hold counts again)


class DocsetLocks:
    """A lock per docset id, created on first use and removed when no thread holds or waits for it.

    A poll holds a reply queue's messages for a moment (read, not yet re-sent and acknowledged):
    an overlapping poll of the same docset would find the queue empty and report UNKNOWN. Every
    :class:`~tdm_messaging.PackagingClient` serialises its work on a docset under one of these;
    clients that share one ``DocsetLocks`` (e.g. one per transport of a pool) serialise with each
    other too. The locks are re-entrant, so a caller may hold a docset across several calls
    (read the status, then request) while each call takes it again. Memory is bounded by the
    docsets in use at the moment, not by every docset ever seen.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    def hold(self, docset_id: str) -> AbstractContextManager[None]:
        """Hold ``docset_id``'s lock until the block ends, waiting while another thread holds it."""
        return _Hold(self, docset_id)

    def _enter(self, docset_id: str) -> _Entry:
        with self._guard:
            entry = self._entries.get(docset_id)
            if entry is None:
                entry = self._entries[docset_id] = _Entry()
            entry.users += 1
        return entry

    def _leave(self, docset_id: str, entry: _Entry) -> None:
        with self._guard:
            entry.users -= 1
            if entry.users == 0:
                del self._entries[docset_id]

    def users(self, docset_id: str) -> int:
        """How many holds of ``docset_id`` are taken or awaited now (0: it has no lock at the moment)."""
        with self._guard:
            entry = self._entries.get(docset_id)
            return 0 if entry is None else entry.users

    def __len__(self) -> int:
        """How many docsets have a lock now (held or awaited)."""
        with self._guard:
            return len(self._entries)


class _Hold:
    """One :meth:`DocsetLocks.hold`: counted as a user while waiting, the docset's lock held inside.

    A class rather than a generator context manager: every request and poll enters one.
    """

    __slots__ = ("_docset_id", "_entry", "_locks")

    def __init__(self, locks: DocsetLocks, docset_id: str) -> None:
        self._locks = locks
        self._docset_id = docset_id
        self._entry: _Entry | None = None

    def __enter__(self) -> None:
        entry = self._locks._enter(self._docset_id)
        try:
            entry.lock.acquire()
        except BaseException:  # interrupted while waiting: no longer a user
            self._locks._leave(self._docset_id, entry)
            raise
        self._entry = entry

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        entry, self._entry = self._entry, None
        assert entry is not None
        try:
            entry.lock.release()
        finally:
            self._locks._leave(self._docset_id, entry)
