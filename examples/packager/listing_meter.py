"""What the listing tells the estimate: the API's latency (timed pages, a one-member probe), sizes, pages left."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, Final

from examples.packager.api import DocsetPage
from examples.packager.errors import FetchError, UnsafeUrlError

__all__ = ["LISTING_SECONDS_PER_MEMBER", "PROBES", "PROBE_FROM_MEMBERS", "ListingMeter"]

LISTING_SECONDS_PER_MEMBER: Final = 30e-6
"""What one listed member adds to a page's time (the server's JSON and ours), measured on the
bench's stub and the reference server: a page's time less this is its round trip."""
PROBE_FROM_MEMBERS: Final = 50
"""A first page this large is not a clean round trip: a one-member page is timed instead."""
PROBES: Final = 3
"""One-member pages timed per job (their median time counts), after one untimed: right after a large
page both sides are slow to answer a small one (measured: 1.7-2.8 ms for the first, 0.75 ms steady)."""


def _size(metadata: Any) -> int | None:
    value = metadata.get("text_bytes") if isinstance(metadata, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


class ListingMeter:
    """Times one job's listing pages and reads the texts' sizes when the listing gives them (``text_bytes``).

    Args:
        clock: a monotonic clock.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._reset()
        self.last_latency = 0.0
        """The latency the last estimate used (the estimator learns with it)."""

    def _reset(self) -> None:
        self._pages = 0
        self._first_members = 0
        self._page_seconds: list[float] = []
        self._round_trip = math.inf
        self._sized = 0
        self._unsized = 0
        self._size_sum = 0
        self._probed: float | None = None

    def timed(self, pages: Iterator[DocsetPage]) -> Iterator[DocsetPage]:
        """``pages``, each timed from its request to its parsed answer (a new listing starts afresh)."""
        self._reset()
        while True:
            start = self._clock()
            page = next(pages, None)
            if page is None:
                return
            self._note(page, self._clock() - start)
            yield page

    def _note(self, page: DocsetPage, seconds: float) -> None:
        if self._pages == 0:
            self._first_members = len(page.members)
        self._pages += 1
        self._page_seconds.append(seconds)
        self._round_trip = min(self._round_trip, max(seconds - len(page.members) * LISTING_SECONDS_PER_MEMBER, 0.0))
        for member in page.members:
            size = _size(member.metadata)
            if size is None:
                self._unsized += 1
            else:
                self._sized += 1
                self._size_sum += size

    def latency_seconds(self, probe: Callable[[], DocsetPage]) -> float:
        """The API's round trip, as one text's request will see it.

        A first page of :data:`PROBE_FROM_MEMBERS` or more is mostly the server's and our JSON
        work, so a one-member page is timed instead (the median of :data:`PROBES` tries after an
        untimed one: one spike of a busy machine does not count, nor one lucky try); with smaller
        pages, or a server that refuses the probe, the quickest page's time less its members' share.
        """
        if self._first_members >= PROBE_FROM_MEMBERS and self._probed is None:
            self._probed = math.inf
            times: list[float] = []
            for _ in range(PROBES + 1):
                start = self._clock()
                try:
                    page = probe()
                except (FetchError, UnsafeUrlError):
                    break  # a server that refuses it: the pages' figure stands
                seconds = self._clock() - start
                times.append(max(seconds - len(page.members) * LISTING_SECONDS_PER_MEMBER, 0.0))
            times = times[1:]  # the first, right after a large page, is slow on both sides: a warm-up
            if times:
                self._probed = sorted(times)[(len(times) - 1) // 2]
        latency = self._probed if self._probed is not None and math.isfinite(self._probed) else self._round_trip
        self.last_latency = latency if math.isfinite(latency) else 0.0
        return self.last_latency

    def text_bytes(self, members: int) -> int | None:
        """The texts' total, extrapolated from the sizes listed so far; ``None`` unless every member had one."""
        if self._sized == 0 or self._unsized:
            return None
        return self._size_sum * max(members, 0) // self._sized

    def seconds_left(self, members: int) -> float:
        """The time the rest of the listing will take, at the pages' pace so far."""
        if not self._page_seconds or self._first_members <= 0:
            return 0.0
        pages = -(-max(members, 0) // self._first_members)
        left = min(max(pages - self._pages, 0), 10**9)
        return left * min(self._page_seconds)
