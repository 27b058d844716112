"""The worker's progress linger: one thread that sends a job's kept-back Progress once it has waited long enough."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Protocol

__all__ = ["Flushable", "ProgressLinger"]


class Flushable(Protocol):
    """What the linger flushes: a :class:`~tdm_messaging.job.ReplyReporter` holding a Progress.

    One that also has a ``holding`` attribute (a bool) may say it holds nothing any more (its
    Progress was superseded or its job ended): the linger then forgets it without waking for it.
    """

    def flush_held(self) -> None:
        """Send what is kept back, if it still should be."""


def _holding(reporter: Flushable) -> bool:
    """Whether ``reporter`` may still hold something to flush (those that do not say: yes)."""
    return getattr(reporter, "holding", True) is not False


class ProgressLinger:
    """Calls ``flush_held()`` of each reporter handed to :meth:`hold`, ``seconds`` after it was handed.

    Every hold waits the same time, so the due times come in the order of the holds: a queue,
    not a heap. One daemon thread, started on the first hold and ended by :meth:`close`.

    The thread wakes as seldom as it can: a reporter that says it holds nothing any more
    (``holding`` false: superseded, or its job ended, as a short job's is) is dropped without a
    flush; and while holds keep coming, the thread with nothing left to wait for sleeps one
    ``seconds`` at a time, which ends before any hold made meanwhile is due, so a hold need not
    wake it. Only a thread asleep without a deadline (no hold during its last sleep) is woken
    by a hold. Each hold is still flushed ``seconds`` after it was made, never earlier.

    Args:
        seconds: how long a Progress may wait for a newer reply to supersede it (> 0).
    """

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._cond = threading.Condition()
        self._due: deque[tuple[float, Flushable]] = deque()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._asleep = False
        """The thread waits without a deadline: the next hold must wake it."""
        self._held_lately = False
        """A hold came since the thread last looked: it sleeps by the clock, not without a deadline."""

    def hold(self, reporter: Flushable) -> None:
        """Flush ``reporter`` in ``seconds`` (at once once closed: nothing kept back is left behind)."""
        with self._cond:
            if self._closed:
                closed = True
            else:
                closed = False
                self._due.append((time.monotonic() + self._seconds, reporter))
                self._held_lately = True
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="tdm-progress-linger", daemon=True)
                    self._thread.start()
                elif self._asleep:
                    # Only a thread asleep without a deadline needs waking: one asleep by the clock
                    # wakes before this hold is due (see the class's docstring).
                    self._asleep = False
                    self._cond.notify()
        if closed:
            reporter.flush_held()

    def close(self) -> None:
        """Flush everything still waiting now and end the thread."""
        with self._cond:
            self._closed = True
            self._asleep = False
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            with self._cond:
                reporter = self._next_due()
                if reporter is None:
                    return  # closed, nothing left
            reporter.flush_held()

    def _next_due(self) -> Flushable | None:
        """Wait (holding the condition) for the next reporter to flush; ``None`` once closed with none left."""
        due = self._due
        while True:
            if self._closed:
                return due.popleft()[1] if due else None
            now = time.monotonic()
            while due and not _holding(due[0][1]):
                due.popleft()  # superseded, or its job ended: nothing to flush, no reason to wake
            if due:
                at, reporter = due[0]
                if at <= now:
                    due.popleft()
                    return reporter
                self._cond.wait(at - now)
            elif self._held_lately:
                # Holds are coming: sleep by the clock, so the next one need not wake this thread.
                self._held_lately = False
                self._cond.wait(self._seconds)
            else:
                self._asleep = True
                self._cond.wait()
                self._asleep = False
