"""Tests for examples.packager.progress: Progress at most once a second and per 1 %, plus the last (fake clock)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from examples.packager.progress import ProgressThrottle
from tdm_messaging.job import Job, ReplyReporter
from tdm_messaging.models import Accepted, Message, PackageRequest, Progress

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
REQUEST = PackageRequest(
    docset_id="5", request_id="0190f0a0-0000-7000-8000-000000000001", sequence=0, timestamp=NOW,
    docset_url="http://s/api/docsets/5", formats=("meta", "txt"), reply_to="package/5", requested_at=NOW,
)  # fmt: skip


class Sink:
    def __init__(self) -> None:
        self.reports: list[tuple[int, int, float | None]] = []

    def accepted(self, estimate_seconds: float | None) -> None:
        pass

    def progress(self, items_done: int, items_total: int, *, eta_seconds: float | None = None) -> None:
        self.reports.append((items_done, items_total, eta_seconds))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(total: int, seconds_per_member: float, **kwargs: float) -> list[tuple[int, int, float | None]]:
    """Feed ``total`` members, one every ``seconds_per_member`` of a fake clock; return what reached the sink."""
    sink, clock = Sink(), Clock()
    throttle = ProgressThrottle(sink, total, clock=clock, **kwargs)
    for done in range(1, total + 1):
        clock.now += seconds_per_member
        throttle.update(done)
    assert throttle.reports == len(sink.reports)
    return sink.reports


@pytest.mark.parametrize(
    ("members_per_second", "expected"),
    [
        # 100,000 members in 1 ms: neither a second nor ... only the last.
        (10**8, 1),
        # in 1 s: the second has just passed at the very end: only the last.
        (100_000, 1),
        # in 10 s: once a second (every 10 %), then the last.
        (10_000, 10),
        # in 100 s: once a second = every 1 %: 99 reports before the end, then the last.
        (1_000, 100),
        # in 1,000 s: a second passes every 1,000 members, but 1 % is 1,000 members: once per 1 %.
        (100, 100),
        # in 10,000 s: 1 % takes 100 s: still once per 1 %, never more.
        (10, 100),
    ],
)
def test_100000_members_report_at_most_once_a_second_and_per_percent(members_per_second: int, expected: int) -> None:
    reports = run(100_000, 1 / members_per_second)
    assert len(reports) == expected
    assert reports[-1][:2] == (100_000, 100_000)
    assert reports[-1][2] == 0.0


@pytest.mark.parametrize("members_per_second", [0.5, 3, 50, 999, 1e4, 1e6])
@pytest.mark.parametrize("total", [1, 7, 100, 1_234])
def test_no_two_reports_closer_than_a_second_or_a_percent(members_per_second: float, total: int) -> None:
    sink, clock = Sink(), Clock()
    throttle = ProgressThrottle(sink, total, clock=clock)
    times: list[float] = []
    for done in range(1, total + 1):
        clock.now += 1 / members_per_second
        before = len(sink.reports)
        throttle.update(done)
        if len(sink.reports) > before:
            times.append(clock.now)
    dones = [r[0] for r in sink.reports]
    assert dones[-1] == total  # the last always goes
    assert dones == sorted(set(dones))
    # Every report but the last keeps both distances from the one before (the start for the first).
    points = [(0, 0.0), *zip(dones, times, strict=True)]
    for (done0, t0), (done1, t1) in itertools.pairwise(points[:-1]):
        assert t1 - t0 >= 1.0
        assert (done1 - done0) * 100 >= total
    assert len(sink.reports) <= 101


def test_the_last_is_sent_even_right_after_another() -> None:
    sink, clock = Sink(), Clock()
    throttle = ProgressThrottle(sink, 200, clock=clock)
    clock.now = 5.0
    throttle.update(199)
    throttle.update(200)  # no time has passed, and a step of 0.5 %: the last goes anyway
    assert [r[0] for r in sink.reports] == [199, 200]


def test_repeated_or_backward_counts_send_nothing() -> None:
    sink, clock = Sink(), Clock()
    throttle = ProgressThrottle(sink, 10, clock=clock)
    clock.now = 2.0
    throttle.update(5)
    clock.now = 9.0
    throttle.update(5)
    throttle.update(3)
    throttle.update(10)
    throttle.update(10)
    assert [r[0] for r in sink.reports] == [5, 10]


def test_the_eta_extrapolates_the_rate_so_far() -> None:
    reports = run(1_000, 0.01)  # 10 s in all, 100 members a second
    assert reports[0][0] == 100
    assert reports[0][2] == pytest.approx(9.0)


def test_the_steps_are_settings() -> None:
    assert [r[0] for r in run(10, 1.0, every_seconds=0.0, every_percent=30)] == [3, 6, 9, 10]
    assert [r[0] for r in run(10, 1.0, every_seconds=2.5, every_percent=0)] == [3, 6, 9, 10]


def test_through_the_worker_job_the_replies_are_numbered_in_order() -> None:
    """100,000 members at 2,000 a second through a real Job: Accepted, at most 51 Progress, sequence monotone."""
    sent: list[Message] = []
    reporter = ReplyReporter(REQUEST, 1, clock=lambda: NOW, reply=lambda message, confirm: sent.append(message))
    job = Job(REQUEST, 1, reporter)
    job.accepted(60.0)
    clock = Clock()
    throttle = ProgressThrottle(job, 100_000, clock=clock)
    for done in range(1, 100_001):
        clock.now += 1 / 2_000
        throttle.update(done)
    assert isinstance(sent[0], Accepted)
    progress = [m for m in sent if isinstance(m, Progress)]
    assert len(progress) == len(sent) - 1 == 50  # once a second for 50 s (every 2 %), the last included
    assert [m.sequence for m in sent] == list(range(1, len(sent) + 1))
    assert [m.items_done for m in progress] == sorted({m.items_done for m in progress})
    assert progress[-1].items_done == 100_000
    assert progress[-1].percent == 100.0
