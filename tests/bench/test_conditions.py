"""bench.conditions: a run says how busy the machine and the broker were, and warns when busy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.__main__ import summary_section
from bench.conditions import BUSY_LOAD, BUSY_QUEUES, Conditions, busy_reasons, cpu_probe_ms, describe, measure
from bench.harness import Row

QUIET = Conditions(load1=0.3, other_queues=4, probe_ms=12.0)


def test_a_quiet_machine_gives_no_reason() -> None:
    assert busy_reasons(QUIET) == []


@given(
    load=st.floats(0, 64, allow_nan=False),
    queues=st.one_of(st.none(), st.integers(0, 10**6)),
    probe=st.floats(0.1, 1e4, allow_nan=False),
)
def test_each_busy_sign_is_named_exactly_when_past_its_threshold(load: float, queues: int | None, probe: float) -> None:
    reasons = busy_reasons(Conditions(load, queues, probe))
    assert any("load average" in r for r in reasons) == (load > BUSY_LOAD)
    assert any("queues in RabbitMQ" in r for r in reasons) == (queues is not None and queues > BUSY_QUEUES)
    assert len(reasons) == (load > BUSY_LOAD) + (queues is not None and queues > BUSY_QUEUES)


def test_the_probe_times_real_work() -> None:
    small, large = cpu_probe_ms(rounds=3, loops=200), cpu_probe_ms(rounds=3, loops=4000)
    assert 0 < small < large


def test_measure_reads_the_load_and_counts_queues_outside_the_run() -> None:
    asked: list[str] = []

    def count(vhost: str) -> int:
        asked.append(vhost)
        return 7

    conditions = measure("tdm-bench-x", count_queues=count)
    assert asked == ["tdm-bench-x"] and conditions.other_queues == 7
    assert conditions.load1 >= 0 and conditions.probe_ms > 0


@pytest.mark.parametrize("busy", [False, True])
def test_the_summary_records_both_readings_and_flags_a_busy_run(busy: bool) -> None:
    row = Row("thing", 2.0, 1.0, "x/s", True, ">= 1.5x", True, "cmd", "base")
    start = Conditions(load1=3.5 if busy else 0.2, other_queues=4, probe_ms=12.0)
    end = Conditions(load1=4.9, other_queues=None, probe_ms=30.0)  # the run's own load: not a sign
    text = summary_section([row], minutes=1.0, failed=[], conditions=(start, end))
    assert describe(start) in text and describe(end, load=False) in text
    assert "queues in RabbitMQ's other vhosts not counted" in text and "4.90" not in text
    assert ("**A busy run**" in text) is busy
    assert ("load average 3.50 (above 1" in text) is busy


def test_at_the_end_leftover_queues_still_flag_the_run_but_the_load_does_not() -> None:
    end = Conditions(load1=4.9, other_queues=BUSY_QUEUES + 1, probe_ms=12.0)
    text = summary_section([], minutes=1.0, failed=[], conditions=(QUIET, end))
    assert "at the end: 1,001 queues in RabbitMQ" in text and "load average 4.90" not in text
    assert busy_reasons(end, load=False) == busy_reasons(end)[1:]
