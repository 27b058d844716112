"""The job-cycle comparison's machinery: sides, interleaved windows over all of them, and rows from comparisons.

A *side* is anything that can request a no-op job and wait until its result is visible: ours
(PackagingClient + PackagerWorker), a Celery peer, a raw-client floor. Each phase of the Celery
group builds its sides, warms them, takes throughput and latency windows of every side in turn
(:func:`measure`), and turns the figures into rows by a list of :class:`Comparison` values
(:func:`build_rows`). Adding a side is one :class:`SideSpec` in a list; adding a row is one
:class:`Comparison`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from bench.harness import Row, interleaved_windows, median_of, percentile

__all__ = [
    "THROUGHPUT",
    "Comparison",
    "Measured",
    "Prepares",
    "Side",
    "SideSpec",
    "SubmitsMany",
    "build_rows",
    "latency_window",
    "measure",
    "throughput_window",
    "warm",
]

THROUGHPUT = "throughput"
"""The metric name of a throughput comparison; ``p50``, ``p99`` (any ``pNN``) name latency percentiles."""


class Side(Protocol):
    """What a side of the job-cycle comparison does (ours, a Celery peer, a raw floor)."""

    def submit(self) -> Any:
        """Request one no-op job; return a handle for :meth:`wait_all` (the request is sent when this returns)."""

    def wait_all(self, handles: list[Any], timeout: float = ...) -> None:
        """Return when every job of ``handles`` is complete and its result visible; raise if not within ``timeout``."""

    def close(self) -> None:
        """Release connections and stop the side's own worker, if it has one."""


@runtime_checkable
class Prepares(Protocol):
    """A side with work to do *before* a window, outside its timed region (e.g. create the reply queues).

    ``prepare_ahead(count)`` readies the next ``count`` submits; ours calls
    ``PackagingClient.prepare(docset_id)`` for each, as a server does when the docset is created.
    """

    def prepare_ahead(self, count: int) -> None:
        """Ready the next ``count`` calls of ``submit``."""


@runtime_checkable
class SubmitsMany(Protocol):
    """A side that can request many jobs in one call (ours: ``PackagingClient.request_packages``).

    A throughput window of such a side submits its jobs with one ``submit_many(count)`` instead of
    ``count`` calls of ``submit``; its latency windows still submit one job at a time.
    """

    def submit_many(self, count: int) -> list[Any]:
        """Request ``count`` no-op jobs in one call; their handles, for ``wait_all``."""


def _prepare(side: Side, count: int) -> None:
    if isinstance(side, Prepares):
        side.prepare_ahead(count)


def throughput_window(side: Side, count: int) -> Callable[[], float]:
    """A window: submit ``count`` jobs (in one call if the side :class:`SubmitsMany`), then wait for all;
    jobs per second (preparation not timed)."""

    def window() -> float:
        _prepare(side, count)
        start = time.perf_counter()
        handles = side.submit_many(count) if isinstance(side, SubmitsMany) else [side.submit() for _ in range(count)]
        side.wait_all(handles)
        return count / (time.perf_counter() - start)

    return window


def latency_window(side: Side, count: int) -> Callable[[], list[float]]:
    """A window: ``count`` jobs one after another, each submitted and waited for; each one's milliseconds."""

    def window() -> list[float]:
        _prepare(side, count)
        samples = []
        for _ in range(count):
            start = time.perf_counter()
            side.wait_all([side.submit()])
            samples.append((time.perf_counter() - start) * 1000)
        return samples

    return window


def warm(side: Side, timeout: float) -> None:
    """One job end to end with a long bound (the side's worker may still be starting)."""
    _prepare(side, 1)
    side.wait_all([side.submit()], timeout=timeout)


@dataclass(frozen=True)
class SideSpec:
    """One side of a phase: its key (used by comparisons), what it is in words, and how to build it.

    Attributes:
        key: the name comparisons use, e.g. ``ours`` or ``celery-redis``.
        name: what the side is, for the table's "baseline is" column.
        build: makes the side for a phase, given the phase's broker URL for ours (AMQP or STOMP).
    """

    key: str
    name: str
    build: Callable[[str], Side]


@dataclass(frozen=True)
class Measured:
    """Every side's windows of one phase: throughput (jobs/s per window) and latency (ms samples per window)."""

    rates: Mapping[str, list[float]]
    latencies: Mapping[str, list[list[float]]]

    def figure(self, key: str, metric: str) -> float:
        """The median over the windows of ``key``'s throughput, or of its per-window percentile (``p50``...)."""
        if metric == THROUGHPUT:
            return median_of(self.rates[key])
        q = float(metric.removeprefix("p"))
        return median_of([percentile(window, q) for window in self.latencies[key]])


def measure(
    sides: Mapping[str, Side], *, requests: int, latency_jobs: int, rounds: int, progress: Callable[[str], None]
) -> Measured:
    """Throughput windows of every side in turn, round after round, then latency windows likewise.

    All sides share each round, so whatever else the machine does falls on all of them alike.
    """
    progress("throughput")
    rates = interleaved_windows({k: throughput_window(s, requests) for k, s in sides.items()}, rounds=rounds)
    progress("latency")
    latencies = interleaved_windows({k: latency_window(s, latency_jobs) for k, s in sides.items()}, rounds=rounds)
    return Measured(rates, latencies)


@dataclass(frozen=True)
class Comparison:
    """One row: side ``ours`` against side ``baseline`` on one metric, with an optional goal on the ratio.

    Attributes:
        ours, baseline: side keys.
        metric: :data:`THROUGHPUT`, or a latency percentile such as ``p50``.
        goal: the least ratio (above 1 = ours better, as in the table) that meets the goal; None: no goal.
        note: what the row shows, appended to the measurement's name.
        subject: who side ``ours`` is, as the row's name says it ("ours"; e.g. "the floor" for a
            row that holds the raw-client floor itself against a peer).
    """

    ours: str
    baseline: str
    metric: str
    goal: float | None = None
    note: str = ""
    subject: str = "ours"

    def met(self, ratio: float) -> bool | None:
        """Whether ``ratio`` meets the goal (None without one)."""
        return None if self.goal is None else ratio >= self.goal


def build_rows(
    comparisons: Sequence[Comparison],
    measured: Measured,
    *,
    label: str,
    names: Mapping[str, str],
    requests: int,
    command: str,
) -> list[Row]:
    """The rows of ``comparisons`` whose two sides were measured (a side missing this run is skipped)."""
    rows = []
    for comp in comparisons:
        if comp.ours not in measured.rates or comp.baseline not in measured.rates:
            continue
        ours, base = measured.figure(comp.ours, comp.metric), measured.figure(comp.baseline, comp.metric)
        throughput = comp.metric == THROUGHPUT
        what = (
            f"request throughput, {requests} no-op jobs, one worker"
            if throughput
            else f"request to complete-visible {comp.metric}, no-op job"
        )
        row = Row(
            what=f"{what}, {comp.subject} over {label}{', ' + comp.note if comp.note else ''}",
            ours=ours,
            baseline=base,
            unit="jobs/s" if throughput else "ms",
            higher_is_better=throughput,
            goal="—" if comp.goal is None else f">= {comp.goal:g}x",
            met=None,
            command=command,
            baseline_name=names[comp.baseline],
        )
        rows.append(dataclasses.replace(row, met=comp.met(row.ratio)))
    return rows
