"""Tests of bench.cycle: sides taken in turn, preparation before each window, rows and goals from comparisons."""

from __future__ import annotations

from typing import Any

import pytest

from bench.cycle import (
    THROUGHPUT,
    Comparison,
    Measured,
    Prepares,
    build_rows,
    latency_window,
    measure,
    throughput_window,
    warm,
)


class _Side:
    """A throwaway side: jobs complete at once; every call is logged as (side, call, argument)."""

    def __init__(self, name: str, log: list[tuple[str, str, object]]) -> None:
        self.name = name
        self.log = log
        self.submitted = 0

    def submit(self) -> int:
        self.submitted += 1
        self.log.append((self.name, "submit", self.submitted))
        return self.submitted

    def wait_all(self, handles: list[Any], timeout: float = 60.0) -> None:
        self.log.append((self.name, "wait", tuple(handles)))

    def close(self) -> None:
        self.log.append((self.name, "close", None))


class _PreparingSide(_Side):
    def prepare_ahead(self, count: int) -> None:
        self.log.append((self.name, "prepare", count))


def test_a_side_with_prepare_ahead_is_seen_as_preparing() -> None:
    assert isinstance(_PreparingSide("p", []), Prepares)
    assert not isinstance(_Side("s", []), Prepares)


def test_throughput_window_prepares_then_submits_all_then_waits_once() -> None:
    log: list[tuple[str, str, object]] = []
    rate = throughput_window(_PreparingSide("p", log), 3)()
    assert rate > 0
    assert log == [
        ("p", "prepare", 3),
        ("p", "submit", 1),
        ("p", "submit", 2),
        ("p", "submit", 3),
        ("p", "wait", (1, 2, 3)),
    ]


def test_latency_window_prepares_then_waits_for_each_job_in_turn() -> None:
    log: list[tuple[str, str, object]] = []
    samples = latency_window(_PreparingSide("p", log), 2)()
    assert len(samples) == 2
    assert log == [
        ("p", "prepare", 2),
        ("p", "submit", 1),
        ("p", "wait", (1,)),
        ("p", "submit", 2),
        ("p", "wait", (2,)),
    ]


def test_a_side_without_prepare_is_not_prepared() -> None:
    log: list[tuple[str, str, object]] = []
    throughput_window(_Side("s", log), 1)()
    warm(_Side("s", log), timeout=1.0)
    assert [call for _side, call, _arg in log] == ["submit", "wait", "submit", "wait"]


def test_warm_prepares_one_job() -> None:
    log: list[tuple[str, str, object]] = []
    warm(_PreparingSide("p", log), timeout=1.0)
    assert log == [("p", "prepare", 1), ("p", "submit", 1), ("p", "wait", (1,))]


def test_measure_takes_every_side_in_turn_within_each_round() -> None:
    log: list[tuple[str, str, object]] = []
    sides = {"a": _Side("a", log), "b": _PreparingSide("b", log), "c": _Side("c", log)}
    stages: list[str] = []
    measured = measure(sides, requests=2, latency_jobs=1, rounds=2, progress=stages.append)
    assert stages == ["throughput", "latency"]
    waits = [side for side, call, _arg in log if call == "wait"]
    # Throughput: warm-up round + 2 rounds, one wait per window; latency: likewise, one job per window.
    assert waits == ["a", "b", "c"] * 3 + ["a", "b", "c"] * 3
    assert {k: len(v) for k, v in measured.rates.items()} == {"a": 2, "b": 2, "c": 2}
    assert {k: len(v) for k, v in measured.latencies.items()} == {"a": 2, "b": 2, "c": 2}


def _measured() -> Measured:
    return Measured(
        rates={"ours": [100.0, 110.0, 90.0], "peer": [200.0, 190.0, 210.0], "floor": [105.0, 105.0, 105.0]},
        latencies={
            "ours": [[10.0, 12.0, 30.0], [11.0, 11.0, 40.0], [9.0, 10.0, 20.0]],
            "peer": [[5.0, 5.0, 6.0], [5.0, 5.0, 6.0], [5.0, 5.0, 6.0]],
            "floor": [[10.0, 10.0, 10.0]] * 3,
        },
    )


def test_figure_is_the_median_over_windows() -> None:
    measured = _measured()
    assert measured.figure("ours", THROUGHPUT) == 100.0
    assert measured.figure("ours", "p50") == 11.0  # per-window p50s 12, 11, 10
    assert measured.figure("ours", "p99") == 30.0  # per-window p99s 30, 40, 20


def test_build_rows_ratios_goals_and_names() -> None:
    rows = build_rows(
        [
            Comparison("ours", "peer", THROUGHPUT, 0.5, "vs the peer"),
            Comparison("ours", "peer", "p50", 1.0, "vs the peer"),
            Comparison("ours", "floor", THROUGHPUT, 0.9, "vs the floor"),
            Comparison("ours", "peer", "p99"),
        ],
        _measured(),
        label="RabbitMQ AMQP",
        names={"peer": "a peer", "floor": "the floor", "ours": "ours"},
        requests=100,
        command="cmd",
    )
    assert [row.what for row in rows] == [
        "request throughput, 100 no-op jobs, one worker, ours over RabbitMQ AMQP, vs the peer",
        "request to complete-visible p50, no-op job, ours over RabbitMQ AMQP, vs the peer",
        "request throughput, 100 no-op jobs, one worker, ours over RabbitMQ AMQP, vs the floor",
        "request to complete-visible p99, no-op job, ours over RabbitMQ AMQP",
    ]
    throughput, p50, floor, p99 = rows
    assert (throughput.ours, throughput.baseline, throughput.unit) == (100.0, 200.0, "jobs/s")
    assert throughput.ratio == pytest.approx(0.5)
    assert throughput.met is True and throughput.goal == ">= 0.5x"
    assert (p50.ours, p50.baseline, p50.unit, p50.higher_is_better) == (11.0, 5.0, "ms", False)
    assert p50.met is False
    assert floor.ratio == pytest.approx(100 / 105) and floor.met is True
    assert p99.met is None and p99.goal == "—"
    assert {row.baseline_name for row in rows} == {"a peer", "the floor"}
    assert {row.command for row in rows} == {"cmd"}


def test_a_goal_just_missed_is_not_met() -> None:
    comp = Comparison("ours", "floor", THROUGHPUT, 0.9)
    assert comp.met(0.9) is True
    assert comp.met(0.8999) is False
    assert Comparison("ours", "floor", THROUGHPUT).met(0.1) is None


def test_rows_of_a_side_not_measured_are_left_out() -> None:
    measured = Measured(rates={"ours": [1.0]}, latencies={"ours": [[1.0]]})
    rows = build_rows(
        [Comparison("ours", "floor", THROUGHPUT, 0.9)], measured, label="x", names={}, requests=1, command="c"
    )
    assert rows == []
