"""Tests of bench.choices: the send-cost rows (on the in-memory transport) and the design-cost line."""

from __future__ import annotations

from bench.choices import (
    PATTERN_NOTE,
    PREPARE_NOTE,
    PRIME_WHAT,
    REDIS_CONFIRMED_NOTE,
    REDIS_EVERYSEC_NOTE,
    REDIS_NOTE,
    RPC_NOTE,
    design_costs,
    prime_cost_rows,
    send_cost_rows,
)
from bench.harness import Row


def test_send_cost_rows_price_each_choice_against_the_kind_without_it() -> None:
    rows = send_cost_rows("inmemory://", "in-memory", sends=3, rounds=1, command="cmd")
    assert [(row.baseline_name, row.goal, row.met) for row in rows] == [
        ("our send, persistent, unconfirmed", "—", None),
        ("our send, transient, confirmed", "—", None),
    ]
    assert all(row.unit == "ms" and not row.higher_is_better for row in rows)
    assert rows[0].ours == rows[1].ours  # both rows hold the same persistent, confirmed send against another kind


def test_prime_cost_row_holds_a_queue_declared_only_against_a_primed_one() -> None:
    (row,) = prime_cost_rows("inmemory://", "in-memory", sends=3, rounds=1, command="cmd")
    assert row.what.startswith(PRIME_WHAT) and "in-memory" in row.what
    assert (row.unit, row.higher_is_better, row.goal, row.met, row.command) == ("ms", False, "—", None, "cmd")
    assert row.ours > 0 and row.baseline > 0


def test_design_costs_prices_an_unprimed_queue() -> None:
    rows = [_row(f"{PRIME_WHAT}: a reply queue's first send ...", 2.0, 0.8, rate=False)]
    assert "its first persistent message takes 2.5x the time (2.00 vs 0.80 ms)" in design_costs("X", rows)


def _row(what: str, ours: float, baseline: float, *, rate: bool) -> Row:
    return Row(what, ours, baseline, "jobs/s" if rate else "ms", rate, "—", None, "c", "b")


def test_design_costs_reads_each_choice_from_the_rows() -> None:
    rows = [
        _row(f"request throughput, ours over X, {REDIS_NOTE}", 100.0, 400.0, rate=True),
        _row(f"request throughput, ours over X, {RPC_NOTE}", 100.0, 500.0, rate=True),
        _row(f"request throughput, ours over X, {PREPARE_NOTE}", 90.0, 100.0, rate=True),
        _row(f"request to complete-visible p50, ours over X, {PREPARE_NOTE}", 12.0, 10.0, rate=False),
        _row("cost of waiting for the publisher confirm: one send ...", 1.0, 0.05, rate=False),
        _row("cost of persistence (both confirmed): one send ...", 0.6, 0.2, rate=False),
    ]
    line = design_costs("X", rows)
    assert line.startswith("- X: ")
    assert "throughput 0.90x, p50 1.20x the time (12.0 vs 10.0 ms)" in line
    assert "takes 20x the time" in line
    assert "takes 3.0x the time" in line
    assert "throughput 0.80x" in line  # Celery: 400 with Redis results vs 500 with rpc://
    assert design_costs("Y", []) == "- Y: no rows."


def test_design_costs_prices_fsync_always_against_everysec_for_celery() -> None:
    rows = [
        _row(f"request throughput, ours over X, {REDIS_NOTE}", 100.0, 300.0, rate=True),
        _row(f"request throughput, ours over X, {REDIS_EVERYSEC_NOTE}", 100.0, 400.0, rate=True),
    ]
    line = design_costs("X", rows)
    assert "(`appendfsync always`) instead of once a second: throughput 0.75x" in line
    assert REDIS_NOTE not in REDIS_EVERYSEC_NOTE  # the rows against each peer are told apart


def test_design_costs_prices_the_task_confirm_for_celery() -> None:
    rows = [
        _row(f"request throughput, ours over X, {REDIS_NOTE}", 100.0, 400.0, rate=True),
        _row(f"request to complete-visible p50, ours over X, {REDIS_NOTE}", 4.0, 3.0, rate=False),
        _row(f"request throughput, ours over X, {REDIS_CONFIRMED_NOTE}", 100.0, 100.0, rate=True),
        _row(f"request to complete-visible p50, ours over X, {REDIS_CONFIRMED_NOTE}", 4.0, 4.5, rate=False),
    ]
    line = design_costs("X", rows)
    assert "(`confirm_publish`) instead of sent unconfirmed: throughput 0.25x, p50 1.50x the time" in line
    # The rows against the default peer (the goals) and the confirmed one are told apart.
    assert REDIS_NOTE not in REDIS_CONFIRMED_NOTE
    assert "throughput 0.25x" not in design_costs("X", rows[:2])


def test_design_costs_says_what_the_pattern_itself_reaches_against_celery() -> None:
    rows = [
        _row(f"request throughput, ours over X, {REDIS_NOTE}", 200.0, 400.0, rate=True),
        _row(f"request throughput, the floor over X, {PATTERN_NOTE}", 300.0, 400.0, rate=True),
        _row(f"request to complete-visible p50, the floor over X, {PATTERN_NOTE}", 4.0, 2.0, rate=False),
    ]
    line = design_costs("X", rows)
    assert "the message pattern itself" in line
    assert "throughput 0.75x, p50 2.00x the time" in line
    assert "the message pattern itself" not in design_costs("X", rows[:2])  # both rows or none
