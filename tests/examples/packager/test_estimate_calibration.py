"""Tests for the estimate's calibration: the prior scaled to this machine's measured speed."""

from __future__ import annotations

import logging
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from examples.packager.estimate import (
    BYTE_RATIO,
    CALIBRATION_BYTES,
    CALIBRATION_CLAMP,
    CALIBRATION_MEMBERS,
    CALIBRATION_REPEATS,
    FIXED_SECONDS,
    MEMBER_RATIO,
    PRIOR_COSTS,
    Build,
    Costs,
    Estimator,
    Speed,
    Workload,
    calibrate,
    calibrated_costs,
    estimate_seconds,
    measure_speed,
)

READS = 3 * CALIBRATION_REPEATS
"""The timer is read before the per-byte work, between it and the per-member work, and after, each repeat."""
LOW = Costs(PRIOR_COSTS.seconds_per_member / CALIBRATION_CLAMP, PRIOR_COSTS.seconds_per_byte / CALIBRATION_CLAMP)
HIGH = Costs(PRIOR_COSTS.seconds_per_member * CALIBRATION_CLAMP, PRIOR_COSTS.seconds_per_byte * CALIBRATION_CLAMP)


class Scripted:
    """A timer whose readings are given: each repeat's per-byte and per-member durations."""

    def __init__(self, byte_seconds: list[float], member_seconds: list[float]) -> None:
        self.readings: list[float] = []
        now = 0.0
        for byte, member in zip(byte_seconds, member_seconds, strict=True):
            self.readings += [now, now + byte, now + byte + member]
            now += byte + member
        self.reads = 0

    def __call__(self) -> float:
        value = self.readings[self.reads % len(self.readings)]
        self.reads += 1
        return value


def machine(member_factor: float, byte_factor: float, *, repeats: int = CALIBRATION_REPEATS) -> Scripted:
    """A timer of a machine whose calibrated costs are the fixed prior's times these factors.

    Its first repeat meets other work (everything 5x slower): the fastest repeat counts.
    """
    member = PRIOR_COSTS.seconds_per_member * member_factor / MEMBER_RATIO * CALIBRATION_MEMBERS
    byte = PRIOR_COSTS.seconds_per_byte * byte_factor / BYTE_RATIO * CALIBRATION_BYTES
    return Scripted([5 * byte] + [byte] * (repeats - 1), [5 * member] + [member] * (repeats - 1))


def scaled(member_factor: float, byte_factor: float) -> Costs:
    return Costs(PRIOR_COSTS.seconds_per_member * member_factor, PRIOR_COSTS.seconds_per_byte * byte_factor)


def fails(*_args: object) -> float:
    pytest.fail("the calibration ran")


# --- measuring and scaling --------------------------------------------------------------------


def test_the_fastest_repeat_of_each_workload_counts() -> None:
    timer = Scripted([0.004, 0.002, 0.003], [0.010, 0.012, 0.008])
    speed = measure_speed(timer=timer, repeats=3)
    assert timer.reads == 9
    assert speed.byte_seconds == pytest.approx(0.002 / CALIBRATION_BYTES)
    assert speed.member_seconds == pytest.approx(0.008 / CALIBRATION_MEMBERS)


@pytest.mark.parametrize(("member", "byte"), [(1, 1), (3, 0.5), (0.2, 2.5), (9, 9)])
def test_a_calibration_gives_the_measured_times_the_ratios(member: float, byte: float) -> None:
    costs, speed = calibrate(timer=machine(member, byte))
    assert speed is not None
    assert costs.seconds_per_member == pytest.approx(scaled(member, byte).seconds_per_member)
    assert costs.seconds_per_byte == pytest.approx(scaled(member, byte).seconds_per_byte)
    assert costs.seconds_per_member == pytest.approx(MEMBER_RATIO * speed.member_seconds)
    assert costs.seconds_per_byte == pytest.approx(BYTE_RATIO * speed.byte_seconds)


@pytest.mark.parametrize(
    ("member", "byte", "expected"),
    [
        (1e6, 1e6, HIGH),  # a stalled process: ten times the fixed prior, no more
        (1e-6, 1e-6, LOW),
        (0, 0, LOW),  # the timer did not move
        (100, 0.001, Costs(HIGH.seconds_per_member, LOW.seconds_per_byte)),
    ],
)
def test_the_calibrated_prior_is_clamped_around_the_fixed_one(member: float, byte: float, expected: Costs) -> None:
    costs, _speed = calibrate(timer=machine(member, byte))
    assert costs.seconds_per_member == pytest.approx(expected.seconds_per_member)
    assert costs.seconds_per_byte == pytest.approx(expected.seconds_per_byte)


def test_a_timing_that_is_not_a_number_leaves_the_fixed_cost() -> None:
    assert calibrated_costs(Speed(member_seconds=math.nan, byte_seconds=-1.0)) == PRIOR_COSTS
    assert calibrated_costs(Speed(member_seconds=math.inf, byte_seconds=math.nan)) == Costs(
        HIGH.seconds_per_member, PRIOR_COSTS.seconds_per_byte
    )


def test_a_failing_calibration_falls_back_to_the_fixed_prior(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> float:
        raise OSError("no clock")

    with caplog.at_level(logging.WARNING, logger="examples.packager.estimate"):
        assert calibrate(timer=broken) == (PRIOR_COSTS, None)
    assert "calibration failed" in caplog.text
    estimator = Estimator(timer=broken)
    assert estimator.estimate(Workload(members=100, text_bytes=10**6)) > 0
    assert estimator.costs == PRIOR_COSTS
    assert estimator.speed is None


# --- the estimator ----------------------------------------------------------------------------


def test_without_calibration_the_fixed_prior_stands() -> None:
    work = Workload(members=1000, text_bytes=20 * 1024 * 1000, latency_seconds=0.002, concurrency=8, cores=2)
    for estimator in (Estimator(calibrate=False, timer=fails), Estimator(prior=PRIOR_COSTS, timer=fails)):
        assert estimator.estimate(work) == estimate_seconds(work, PRIOR_COSTS)
        assert estimator.prior == estimator.costs == PRIOR_COSTS
        assert estimator.speed is None
    given_prior = scaled(2, 3)
    assert Estimator(prior=given_prior, timer=fails).costs == given_prior


def test_the_calibration_runs_once_at_the_first_estimate_not_at_construction() -> None:
    timer = machine(2, 0.5)
    estimator = Estimator(timer=timer)
    assert timer.reads == 0
    work = Workload(members=500, text_bytes=500 * 20 * 1024, concurrency=8, cores=2)
    first = estimator.estimate(work)
    assert timer.reads == READS
    assert estimator.estimate(work) == first == estimate_seconds(work, scaled(2, 0.5))
    assert estimator.prior == estimator.costs
    assert estimator.costs.seconds_per_member == pytest.approx(scaled(2, 0.5).seconds_per_member)
    assert timer.reads == READS


def test_the_fit_holds_towards_the_calibrated_prior() -> None:
    """A build of exactly the calibrated costs leaves them where they are (the fixed prior would have moved)."""
    truth = scaled(3, 0.4)
    estimator = Estimator(timer=machine(3, 0.4))
    n, text = 256, 256 * 256 * 1024
    width = core = 2
    cpu = n * truth.seconds_per_member + text * truth.seconds_per_byte / core
    estimator.learn(Build(members=n, text_bytes=text, seconds=FIXED_SECONDS + cpu, concurrency=width, cores=core))
    assert estimator.costs.seconds_per_member == pytest.approx(truth.seconds_per_member, rel=1e-6)
    assert estimator.costs.seconds_per_byte == pytest.approx(truth.seconds_per_byte, rel=1e-6)


def test_a_build_learned_before_any_estimate_is_fitted_against_the_calibrated_prior() -> None:
    estimator = Estimator(timer=machine(4, 4))
    estimator.learn(Build(members=10, text_bytes=10, seconds=0.0))  # too short to teach anything
    assert estimator.costs.seconds_per_member == pytest.approx(scaled(4, 4).seconds_per_member)


calibration_timings = st.floats(allow_nan=True, allow_infinity=True)
nonneg = st.integers(min_value=0, max_value=10**12)


@given(
    st.lists(calibration_timings, min_size=READS, max_size=READS),
    st.tuples(nonneg, nonneg),
    st.tuples(nonneg, nonneg),
    st.tuples(st.floats(min_value=0, max_value=600), st.floats(min_value=0, max_value=600)),
    st.integers(min_value=1, max_value=64),
)
def test_any_calibration_gives_a_finite_estimate_non_decreasing_in_the_work(
    readings: list[float],
    members: tuple[int, int],
    sizes: tuple[int, int],
    latencies: tuple[float, float],
    width: int,
) -> None:
    timer = Scripted([], [])
    timer.readings = readings
    estimator = Estimator(timer=timer)
    costs = estimator.costs
    for cost, low, high in (
        (costs.seconds_per_member, LOW.seconds_per_member, HIGH.seconds_per_member),
        (costs.seconds_per_byte, LOW.seconds_per_byte, HIGH.seconds_per_byte),
    ):
        assert low * (1 - 1e-9) <= cost <= high * (1 + 1e-9)
    (m1, m2), (b1, b2), (l1, l2) = sorted(members), sorted(sizes), sorted(latencies)
    low_estimate = estimator.estimate(
        Workload(members=m1, text_bytes=b1, latency_seconds=l1, concurrency=width, cores=2)
    )
    steps = [
        Workload(members=m2, text_bytes=b1, latency_seconds=l1, concurrency=width, cores=2),
        Workload(members=m2, text_bytes=b2, latency_seconds=l1, concurrency=width, cores=2),
        Workload(members=m2, text_bytes=b2, latency_seconds=l2, concurrency=width, cores=2),
    ]
    previous = low_estimate
    for work in steps:
        value = estimator.estimate(work)
        assert math.isfinite(value) and value >= previous
        previous = value


# --- a real calibration (nothing timed is asserted) -------------------------------------------


def test_a_real_calibration_gives_positive_finite_costs_within_the_clamp() -> None:
    speed = measure_speed()
    assert 0 < speed.member_seconds < math.inf and 0 < speed.byte_seconds < math.inf and speed.seconds > 0
    estimator = Estimator()
    assert estimator.estimate(Workload(members=100, text_bytes=100 * 20 * 1024)) > 0
    assert estimator.speed is not None
    for cost, low, high in (
        (estimator.prior.seconds_per_member, LOW.seconds_per_member, HIGH.seconds_per_member),
        (estimator.prior.seconds_per_byte, LOW.seconds_per_byte, HIGH.seconds_per_byte),
    ):
        assert math.isfinite(cost) and low * (1 - 1e-9) <= cost <= high * (1 + 1e-9)
