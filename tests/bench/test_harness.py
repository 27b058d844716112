"""Tests of bench.harness: percentiles, interleaved windows, result rows and their table."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.harness import Row, env_flag, env_int, interleaved_windows, percentile, render_rows

samples = st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=200)


@given(samples, st.floats(min_value=0, max_value=100))
def test_percentile_is_one_of_the_samples_and_within_range(values: list[float], q: float) -> None:
    result = percentile(values, q)
    assert result in values
    assert min(values) <= result <= max(values)


@given(samples, st.floats(min_value=0, max_value=100), st.floats(min_value=0, max_value=100))
def test_percentile_is_monotonic_in_q(values: list[float], q1: float, q2: float) -> None:
    low, high = sorted((q1, q2))
    assert percentile(values, low) <= percentile(values, high)


@given(samples)
def test_percentile_ignores_order(values: list[float]) -> None:
    assert percentile(values, 50) == percentile(list(reversed(values)), 50)


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0


def test_percentile_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 101)


def test_interleaved_windows_alternates_and_skips_warmup() -> None:
    calls: list[str] = []

    def window(name: str) -> float:
        calls.append(name)
        return float(len(calls))

    results = interleaved_windows({"a": lambda: window("a"), "b": lambda: window("b")}, rounds=3, warmup=1)
    assert calls == ["a", "b"] * 4
    assert results == {"a": [3.0, 5.0, 7.0], "b": [4.0, 6.0, 8.0]}


def test_interleaved_windows_runs_before_ahead_of_every_window_untimed() -> None:
    calls: list[str] = []

    def window(name: str) -> float:
        calls.append(name)
        return float(len(calls))

    results = interleaved_windows(
        {"a": lambda: window("a"), "b": lambda: window("b")},
        rounds=2,
        warmup=1,
        before=lambda: calls.append("reset"),
    )
    assert calls == ["reset", "a", "reset", "b"] * 3
    assert results == {"a": [6.0, 10.0], "b": [8.0, 12.0]}


def _row(ours: float, baseline: float, *, higher: bool) -> Row:
    return Row(
        what="x",
        ours=ours,
        baseline=baseline,
        unit="u",
        higher_is_better=higher,
        goal="g",
        met=None,
        command="cmd",
        baseline_name="raw",
    )


def test_ratio_reads_better_above_one_for_rates_and_latencies() -> None:
    assert _row(200, 100, higher=True).ratio == 2.0
    assert _row(5, 10, higher=False).ratio == 2.0
    assert _row(10, 5, higher=False).ratio == 0.5
    assert math.isinf(_row(1, 0, higher=True).ratio)


def test_render_rows_marks_misses() -> None:
    met = Row("fast", 1.0, 2.0, "ms", False, "<= 1 ms", True, "cmd a", "raw")
    missed = Row("slow", 3.0, 2.0, "ms", False, "<= 1 ms", False, "cmd b", "raw")
    table = render_rows([met, missed]).splitlines()
    assert len(table) == 4
    assert "| yes |" in table[2] and "`cmd a`" in table[2]
    assert "| **no** |" in table[3] and "0.67x" in table[3]


def test_env_int(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TDM_BENCH_X", raising=False)
    assert env_int("TDM_BENCH_X", 5) == 5
    monkeypatch.setenv("TDM_BENCH_X", "12")
    assert env_int("TDM_BENCH_X", 5) == 12
    monkeypatch.setenv("TDM_BENCH_X", "lots")
    with pytest.raises(SystemExit, match="not a whole number"):
        env_int("TDM_BENCH_X", 5)
    monkeypatch.setenv("TDM_BENCH_X", "0")
    with pytest.raises(SystemExit, match="at least 1"):
        env_int("TDM_BENCH_X", 5)


@pytest.mark.parametrize(
    ("raw", "expected"), [("", True), ("1", True), ("yes", True), ("ON", True), ("0", False), ("false", False)]
)
def test_env_flag_reads_yes_and_no(monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool) -> None:
    monkeypatch.setenv("TDM_BENCH_FLAG", raw)
    assert env_flag("TDM_BENCH_FLAG", True) is expected


def test_env_flag_refuses_anything_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TDM_BENCH_FLAG", "2")
    with pytest.raises(SystemExit, match="must be 1 or 0"):
        env_flag("TDM_BENCH_FLAG", True)
