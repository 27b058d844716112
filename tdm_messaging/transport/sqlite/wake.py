"""The same-process waker of the native SQLite backend: a send wakes the idle consumers of its file at once."""

from __future__ import annotations

import threading
import weakref
from pathlib import Path

__all__ = ["Waker", "waker_for"]


class Waker:
    """Wakes idle consumers of one database file in this process when a message is sent."""

    def __init__(self) -> None:
        # A plain Lock under the condition: notify() runs on every send, and entering a Lock is
        # C code where entering a Condition (over its default RLock) is a Python call.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._generation = 0
        self._sleepers = 0

    @property
    def generation(self) -> int:
        """Counts sends; a consumer notes it before looking, and sleeps only if it did not move."""
        return self._generation

    def notify(self) -> None:
        """Count one send and wake every consumer sleeping in :meth:`wait`."""
        with self._lock:
            self._generation += 1
            # Most sends have no consumer of this file asleep in this process: skip notify_all's
            # Python-level work then. A sleeper counts itself under the lock before it sleeps,
            # so none is missed.
            if self._sleepers:
                self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, unless a send came since the consumer saw ``seen``."""
        with self._lock:
            if self._generation == seen:
                self._sleepers += 1
                try:
                    self._cond.wait(timeout)
                finally:
                    self._sleepers -= 1


# One waker per database file: a wake-up is only a hint (consumers poll anyway), so sharing it
# between the transports of a process shares no queue state.
_WAKERS: weakref.WeakValueDictionary[str, Waker] = weakref.WeakValueDictionary()
_WAKERS_LOCK = threading.Lock()


def waker_for(path: Path) -> Waker:
    """The waker of the database file ``path`` in this process (created on first use, dropped when unused)."""
    with _WAKERS_LOCK:
        waker = _WAKERS.get(str(path))
        if waker is None:
            waker = Waker()
            _WAKERS[str(path)] = waker
        return waker
