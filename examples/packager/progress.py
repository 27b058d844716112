"""What a job reports while it runs: the sink it reports to, the time estimate, and the progress throttle."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Estimator", "ProgressSink", "ProgressThrottle"]


class ProgressSink(Protocol):
    """Who hears about a job's progress; the worker's ``Job`` is one."""

    def accepted(self, estimate_seconds: float | None) -> None:
        """The job was taken; it should take about ``estimate_seconds``."""

    def progress(self, items_done: int, items_total: int, *, eta_seconds: float | None = None) -> None:
        """``items_done`` of ``items_total`` members are packaged."""


@dataclass(frozen=True)
class Estimator:
    """A time estimate from the member count: ``base_seconds + seconds_per_member * members``.

    Attributes:
        base_seconds: fixed cost (listing, upload).
        seconds_per_member: cost of one document (fetch, compress, hash).
    """

    base_seconds: float = 2.0
    seconds_per_member: float = 0.05

    def estimate(self, members: int) -> float:
        """Seconds to package ``members`` documents."""
        return round(self.base_seconds + self.seconds_per_member * max(members, 0), 1)


class ProgressThrottle:
    """Passes progress on at most once every ``every_items`` members or ``every_seconds``, plus the last one.

    The ETA extrapolates the rate measured so far.

    Args:
        sink: where progress goes.
        total: the member count.
        every_items: report at least this often, in members.
        every_seconds: report at least this often, in seconds of ``clock``.
        clock: a monotonic clock (tests pass a fake one).
    """

    def __init__(
        self,
        sink: ProgressSink,
        total: int,
        *,
        every_items: int = 50,
        every_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sink = sink
        self._total = total
        self._every_items = max(every_items, 1)
        self._every_seconds = every_seconds
        self._clock = clock
        self._start = clock()
        self._last_time = self._start
        self._last_done = 0
        self.reports = 0

    def update(self, done: int) -> None:
        """Note that ``done`` members are packaged; report if it is time (always on the last one)."""
        now = self._clock()
        due = (
            done >= self._total
            or done - self._last_done >= self._every_items
            or now - self._last_time >= self._every_seconds
        )
        if not due or done == self._last_done:
            return
        elapsed = now - self._start
        eta = elapsed / done * (self._total - done) if done and elapsed > 0 else None
        self._sink.progress(done, self._total, eta_seconds=None if eta is None else round(eta, 1))
        self._last_time, self._last_done = now, done
        self.reports += 1
