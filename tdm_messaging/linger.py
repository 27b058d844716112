"""The worker's progress linger: one thread that sends a job's kept-back Progress once it has waited long enough."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Protocol

__all__ = ["Flushable", "ProgressLinger"]


class Flushable(Protocol):
    """What the linger flushes: a :class:`~tdm_messaging.job.ReplyReporter` holding a Progress."""

    def flush_held(self) -> None:
        """Send what is kept back, if it still should be."""


class ProgressLinger:
    """Calls ``flush_held()`` of each reporter handed to :meth:`hold`, ``seconds`` after it was handed.

    Every hold waits the same time, so the due times come in the order of the holds: a queue,
    not a heap. One daemon thread, started on the first hold and ended by :meth:`close`.

    Args:
        seconds: how long a Progress may wait for a newer reply to supersede it (> 0).
    """

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._cond = threading.Condition()
        self._due: deque[tuple[float, Flushable]] = deque()
        self._thread: threading.Thread | None = None
        self._closed = False

    def hold(self, reporter: Flushable) -> None:
        """Flush ``reporter`` in ``seconds`` (at once once closed: nothing kept back is left behind)."""
        with self._cond:
            if self._closed:
                closed = True
            else:
                closed = False
                self._due.append((time.monotonic() + self._seconds, reporter))
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="tdm-progress-linger", daemon=True)
                    self._thread.start()
                elif len(self._due) == 1:
                    # Only a thread waiting for an empty queue needs waking: one waiting for the
                    # head's due time wakes before this one's (due times come in hold order).
                    self._cond.notify()
        if closed:
            reporter.flush_held()

    def close(self) -> None:
        """Flush everything still waiting now and end the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due and not self._closed:
                    self._cond.wait()
                if not self._due:
                    return  # closed, nothing left
                due, reporter = self._due[0]
                delay = due - time.monotonic()
                if delay > 0 and not self._closed:
                    self._cond.wait(delay)
                    continue
                self._due.popleft()
            reporter.flush_held()
