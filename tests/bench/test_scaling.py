"""Tests of bench.scaling's pure parts: the knee rule, the rows of a series, the table, sizes from the environment."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.scaling import (
    KNEE_STEP,
    SERIES,
    find_knee,
    knee_of,
    main,
    render_scaling,
    scaling_rows,
    settings,
    sizes_from_env,
    summary_row,
)

costs = st.lists(st.floats(min_value=1e-6, max_value=1e6, allow_nan=False), min_size=1, max_size=12)


def _rows(values: list[float], sizes: list[int] | None = None) -> list:  # type: ignore[type-arg]
    sizes = sizes or [10**i for i in range(len(values))]
    return scaling_rows(
        "poll p50, RabbitMQ AMQP",
        size_unit="docsets",
        sizes=sizes,
        costs=values,
        cost_unit="ms/poll",
        figures=[f"{v} ms" for v in values],
    )


# ---------------------------------------------------------------- knee rule


def test_knee_is_the_first_step_above_the_rule() -> None:
    assert find_knee([1.0, 1.2, 2.0, 5.0]) == 2  # 1.2/1.0 = 1.2, 2.0/1.2 = 1.67 > 1.5
    assert find_knee([1.0, 1.6, 1.7]) == 1


def test_no_knee_when_no_step_exceeds_the_rule() -> None:
    assert find_knee([1.0]) is None
    assert find_knee([1.0, 1.4, 1.9, 2.6]) is None  # each step under 1.5x, though 2.6x in all
    assert find_knee([5.0, 1.0, 1.0]) is None  # cheaper per unit is never a knee


def test_a_step_of_exactly_the_rule_is_not_a_knee() -> None:
    assert find_knee([2.0, 2.0 * KNEE_STEP]) is None
    assert find_knee([2.0, 2.0 * KNEE_STEP * 1.001]) == 1


def test_the_step_is_a_parameter() -> None:
    assert find_knee([1.0, 1.2], step=1.1) == 1
    assert find_knee([1.0, 1.2], step=1.3) is None


@given(costs)
def test_knee_agrees_with_its_definition(values: list[float]) -> None:
    knee = find_knee(values)
    steps = [b / a for a, b in itertools.pairwise(values)]
    if knee is None:
        assert all(step <= KNEE_STEP for step in steps)
    else:
        assert steps[knee - 1] > KNEE_STEP
        assert all(step <= KNEE_STEP for step in steps[: knee - 1])


# ---------------------------------------------------------------- rows and table


def test_rows_compare_each_size_with_the_smallest_and_the_previous() -> None:
    rows = _rows([2.0, 2.0, 4.0, 5.0])
    assert [r.size for r in rows] == [1, 10, 100, 1000]
    assert [r.baseline for r in rows] == [2.0] * 4
    assert [r.ratio for r in rows] == [1.0, 1.0, 2.0, 2.5]
    assert [r.step for r in rows] == [None, 1.0, 2.0, 1.25]
    assert [r.knee for r in rows] == [False, False, True, False]
    assert knee_of(rows) == "100 docsets"


def test_a_series_without_knee_says_none() -> None:
    rows = _rows([2.0, 2.1, 2.2])
    assert not any(r.knee for r in rows)
    assert knee_of(rows) == "none"


@given(costs)
def test_at_most_one_knee_and_ratios_are_relative_to_the_first(values: list[float]) -> None:
    rows = _rows(values)
    assert sum(r.knee for r in rows) <= 1
    assert rows[0].ratio == 1.0
    for row in rows:
        assert row.ratio == pytest.approx(row.cost / values[0])


def test_rows_refuse_mismatched_or_empty_or_non_positive_input() -> None:
    with pytest.raises(ValueError, match="2 sizes, 1 costs"):
        scaling_rows("s", size_unit="u", sizes=[1, 2], costs=[1.0], cost_unit="c", figures=["a"])
    with pytest.raises(ValueError):
        scaling_rows("s", size_unit="u", sizes=[], costs=[], cost_unit="c", figures=[])
    with pytest.raises(ValueError, match="positive"):
        scaling_rows("s", size_unit="u", sizes=[1, 2], costs=[1.0, 0.0], cost_unit="c", figures=["a", "b"])


def test_table_has_one_line_per_size_and_marks_the_knee() -> None:
    table = render_scaling(_rows([1.0, 1.1, 3.0], sizes=[1, 100, 10_000]))
    lines = table.splitlines()
    assert len(lines) == 2 + 3
    assert "| 10,000 docsets |" in lines[-1]
    assert "**knee**" in lines[-1]
    assert "**knee**" not in "\n".join(lines[:-1])
    assert "3.00x" in lines[-1]  # ratio to the smallest size
    assert "2.73x" in lines[-1]  # step from the previous


def test_summary_row_names_the_knee_and_applies_a_latency_goal() -> None:
    rows = _rows([1.0, 1.05], sizes=[1, 10_000])
    met = summary_row(rows, ours=1.05, baseline=1.0, unit="ms", higher_is_better=False, goal=1.1)
    assert met.met is True
    assert "10,000 docsets vs 1" in met.what
    assert "knee: none" in met.what
    missed = summary_row(rows, ours=1.2, baseline=1.0, unit="ms", higher_is_better=False, goal=1.1)
    assert missed.met is False
    rate = summary_row(rows, ours=50.0, baseline=100.0, unit="jobs/s", higher_is_better=True)
    assert rate.met is None
    assert rate.goal == "—"
    assert rate.ratio == 0.5


# ---------------------------------------------------------------- sizes from the environment


def test_sizes_default_when_unset_or_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TDM_BENCH_SCALING_X", raising=False)
    assert sizes_from_env("TDM_BENCH_SCALING_X", (1, 10)) == (1, 10)
    monkeypatch.setenv("TDM_BENCH_SCALING_X", "  ")
    assert sizes_from_env("TDM_BENCH_SCALING_X", (1, 10)) == (1, 10)


def test_sizes_parse_commas_spaces_and_underscores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TDM_BENCH_SCALING_X", "1, 100,10_000,")
    assert sizes_from_env("TDM_BENCH_SCALING_X", ()) == (1, 100, 10_000)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("1,ten", "whole numbers"),
        ("0,10", "at least 1"),
        ("10,10", "must increase"),
        ("100,10", "must increase"),
        (",", "at least 1"),
    ],
)
def test_bad_sizes_end_with_a_message(monkeypatch: pytest.MonkeyPatch, raw: str, message: str) -> None:
    monkeypatch.setenv("TDM_BENCH_SCALING_X", raw)
    with pytest.raises(SystemExit, match=message):
        sizes_from_env("TDM_BENCH_SCALING_X", (1,))


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "SERIES",
        "DOCSETS",
        "JOBS",
        "MEMBERS",
        "PACKAGERS",
        "POLLS",
        "ROUNDS",
        "TEXT_BYTES",
        "PACKAGER_JOBS",
        "PACKAGER_MEMBERS",
        "PACKAGER_TEXT_KIB",
        "SERIES_ROUNDS",
    ):
        monkeypatch.delenv(f"TDM_BENCH_SCALING_{name}", raising=False)
    s = settings()
    assert s.series == SERIES
    assert s.poll_docsets == (1, 100, 1_000, 10_000)
    assert s.jobs == (1, 10, 100, 1_000)
    assert s.build_members == (10, 100, 1_000, 10_000)
    assert s.packagers == (1, 2, 3, 4)
    assert (s.packager_jobs, s.packager_job_members, s.packager_text_kib, s.text_bytes) == (8, 128, 64, 1024)
    assert (s.polls, s.rounds, s.series_rounds) == (100, 3, 2)


def test_settings_read_the_variables_and_keep_the_series_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TDM_BENCH_SCALING_SERIES", "build, poll")
    monkeypatch.setenv("TDM_BENCH_SCALING_JOBS", "1,10000")
    monkeypatch.setenv("TDM_BENCH_SCALING_POLLS", "7")
    s = settings()
    assert s.series == ("poll", "build")
    assert s.jobs == (1, 10_000)
    assert s.polls == 7


def test_settings_refuse_an_unknown_series(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TDM_BENCH_SCALING_SERIES", "poll,latency")
    with pytest.raises(SystemExit, match="unknown latency"):
        settings()


# ---------------------------------------------------------------- the command line


def test_main_refuses_unknown_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "a", "b", "c"]) == 2  # the build child is bench.packaging_child's now
    assert main(["nonsense"]) == 2
    assert "takes no arguments" in capsys.readouterr().err
