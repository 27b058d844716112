"""What a job reports while it runs: the sink it reports to, and the progress throttle."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["ProgressSink", "ProgressThrottle"]


class ProgressSink(Protocol):
    """Who hears about a job's progress; the worker's ``Job`` is one."""

    def accepted(self, estimate_seconds: float | None) -> None:
        """The job was taken; it should take about ``estimate_seconds``."""

    def progress(self, items_done: int, items_total: int, *, eta_seconds: float | None = None) -> None:
        """``items_done`` of ``items_total`` members are packaged."""


class ProgressThrottle:
    """Passes progress on at most once every ``every_seconds`` *and* at most once per ``every_percent`` of the members.

    A report is due only when both a second (by default) has passed since the last one and
    the count has moved by 1 % of the members (by default) since then; the last one (all
    members done) is always passed on. So a job reports at most ``100 / every_percent`` times
    plus the last, and at most once a second however fast it goes. The ETA extrapolates the
    rate measured so far.

    Args:
        sink: where progress goes.
        total: the member count.
        every_seconds: the least time between two reports, in seconds of ``clock``.
        every_percent: the least step between two reports, in percent of ``total``.
        clock: a monotonic clock (tests pass a fake one).
    """

    def __init__(
        self,
        sink: ProgressSink,
        total: int,
        *,
        every_seconds: float = 1.0,
        every_percent: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sink = sink
        self._total = total
        self._every_seconds = every_seconds
        self._every_percent = every_percent
        self._clock = clock
        self._start = clock()
        self._last_time = self._start
        self._last_done = 0
        self.reports = 0

    def update(self, done: int) -> None:
        """Note that ``done`` members are packaged; report if it is time (always on the last one)."""
        if done <= self._last_done:
            return
        now = self._clock()
        if done < self._total and (
            now - self._last_time < self._every_seconds
            or (done - self._last_done) * 100 < self._every_percent * self._total
        ):
            return
        elapsed = now - self._start
        eta = elapsed / done * max(self._total - done, 0) if elapsed > 0 else None
        self._sink.progress(done, self._total, eta_seconds=None if eta is None else round(eta, 1))
        self._last_time, self._last_done = now, done
        self.reports += 1
