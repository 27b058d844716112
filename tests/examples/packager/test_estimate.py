"""Tests for examples.packager.estimate and listing_meter: the model, its learning, and what the listing measures."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from examples.packager.api import ApiClient, DocsetPage, Member
from examples.packager.errors import FetchError
from examples.packager.estimate import (
    FIXED_SECONDS,
    PRIOR_BYTES_PER_MEMBER,
    PRIOR_COSTS,
    Build,
    Costs,
    Estimator,
    Workload,
    cpu_seconds_of,
    estimate_seconds,
    fit_costs,
    usable_cores,
)
from examples.packager.listing_meter import LISTING_SECONDS_PER_MEMBER, ListingMeter
from examples.packager.packaging import Packager
from examples.packager.storage import LocalStorage
from tests.examples.packager.stub_api import StubApi, sample_docs

COSTS = Costs(seconds_per_member=0.001, seconds_per_byte=20e-9)
MIB = 1 << 20
FIXED = FIXED_SECONDS

members = st.integers(min_value=0, max_value=10**9)
sizes = st.one_of(st.none(), st.integers(min_value=0, max_value=1 << 50))
latencies = st.floats(min_value=0, max_value=5)
widths = st.integers(min_value=1, max_value=64)
cores = st.integers(min_value=1, max_value=64)
setups = st.tuples(widths, cores)
"""(W, cores): texts fetched at once, cores to run on."""
hostile_ints = st.one_of(st.integers(), st.just(10**400), st.just(-(10**400)))
hostile_floats = st.floats(allow_nan=True, allow_infinity=True)


def est(**kwargs: object) -> float:
    return estimate_seconds(Workload(**kwargs), COSTS)  # type: ignore[arg-type]


# --- the model --------------------------------------------------------------------------------


@given(members, members, sizes, latencies, setups)
def test_monotone_in_members(a: int, b: int, text: int | None, latency: float, setup: tuple[int, int]) -> None:
    width, core = setup
    low, high = sorted((a, b))
    assert est(members=low, text_bytes=text, latency_seconds=latency, concurrency=width, cores=core) <= est(
        members=high, text_bytes=text, latency_seconds=latency, concurrency=width, cores=core
    )


@given(
    members,
    st.integers(min_value=0, max_value=1 << 55),
    st.integers(min_value=0, max_value=1 << 55),
    latencies,
    setups,
)
def test_monotone_in_bytes(n: int, a: int, b: int, latency: float, setup: tuple[int, int]) -> None:
    width, core = setup
    low, high = sorted((a, b))
    assert est(members=n, text_bytes=low, latency_seconds=latency, concurrency=width, cores=core) <= est(
        members=n, text_bytes=high, latency_seconds=latency, concurrency=width, cores=core
    )


@given(members, sizes, latencies, latencies, setups)
def test_monotone_in_latency(n: int, text: int | None, a: float, b: float, setup: tuple[int, int]) -> None:
    width, core = setup
    low, high = sorted((a, b))
    assert est(members=n, text_bytes=text, latency_seconds=low, concurrency=width, cores=core) <= est(
        members=n, text_bytes=text, latency_seconds=high, concurrency=width, cores=core
    )


@given(members, st.integers(min_value=0, max_value=1 << 50), latencies, widths, st.tuples(cores, cores))
def test_more_cores_never_slower(n: int, text: int, latency: float, width: int, two: tuple[int, int]) -> None:
    few, many = sorted(two)
    assert est(members=n, text_bytes=text, latency_seconds=latency, concurrency=width, cores=many) <= est(
        members=n, text_bytes=text, latency_seconds=latency, concurrency=width, cores=few
    )


per_member_costs = st.floats(min_value=0, max_value=0.1)
per_byte_costs = st.floats(min_value=0, max_value=1e-6)


workloads = st.builds(
    Workload,
    members=members,
    text_bytes=sizes,
    latency_seconds=latencies,
    concurrency=widths,
    cores=cores,
)


@given(workloads, st.tuples(per_member_costs, per_member_costs), per_byte_costs)
def test_more_per_member_cost_never_lowers_the_estimate(work: Workload, two: tuple[float, float], byte: float) -> None:
    low, high = sorted(two)
    assert estimate_seconds(work, Costs(low, byte)) <= estimate_seconds(work, Costs(high, byte))


@given(workloads, per_member_costs, st.tuples(per_byte_costs, per_byte_costs))
def test_more_per_byte_cost_never_lowers_the_estimate(work: Workload, member: float, two: tuple[float, float]) -> None:
    low, high = sorted(two)
    assert estimate_seconds(work, Costs(member, low)) <= estimate_seconds(work, Costs(member, high))


@given(
    st.integers(min_value=1, max_value=10**6),
    st.integers(min_value=0, max_value=1 << 40),
    st.integers(min_value=0, max_value=10**6),
    latencies,
    setups,
)
def test_at_equal_bytes_more_members_never_lower_the_estimate(
    n: int, text: int, more: int, latency: float, setup: tuple[int, int]
) -> None:
    """The same bytes cut into more texts: more requests, entries and ``meta.json`` files, never less time."""
    width, core = setup
    assert est(members=n, text_bytes=text, latency_seconds=latency, concurrency=width, cores=core) <= est(
        members=n + more, text_bytes=text, latency_seconds=latency, concurrency=width, cores=core
    )


@given(hostile_ints, hostile_ints, hostile_floats, st.tuples(hostile_ints, hostile_ints), hostile_floats)
def test_positive_and_finite_whatever_the_input(
    n: int, text: int, latency: float, setup: tuple[int, int], left: float
) -> None:
    width, core = setup
    value = estimate_seconds(
        Workload(
            members=n,
            text_bytes=text,
            latency_seconds=latency,
            concurrency=width,
            listing_seconds_left=left,
            cores=core,
        ),
        COSTS,
    )
    assert math.isfinite(value)
    assert value >= 0.1


def test_the_parts_of_the_model() -> None:
    # CPU only: fixed + members * per member + bytes * per byte.
    assert est(members=1000, text_bytes=1000 * 20_000) == pytest.approx(FIXED + 1.0 + 0.4, abs=0.05)
    # One fetch at a time: waiting and CPU add up.
    assert est(members=1000, text_bytes=0, latency_seconds=0.02) == pytest.approx(FIXED + 20 + 1.0, abs=0.05)
    # 16 at once: the waiting is shared, and the CPU runs under it.
    assert est(members=1000, text_bytes=0, latency_seconds=0.02, concurrency=16) == pytest.approx(
        FIXED + 1.25 + 1.0 / 16, abs=0.05
    )
    # Unknown sizes: the prior's per-member size.
    assert est(members=100) == pytest.approx(FIXED + 100 * 0.001 + 100 * PRIOR_BYTES_PER_MEMBER * 20e-9, abs=0.05)
    assert est(members=0) == pytest.approx(0.1)  # the least estimate
    assert est(members=10, text_bytes=0, listing_seconds_left=3.0) == pytest.approx(FIXED + 3.0, abs=0.05)


def test_the_bytes_spread_over_the_cores_the_members_do_not() -> None:
    # 8 threads on 2 cores: the per-byte part (deflate, hashing) halves, the per-member part (Python) does not.
    one = est(members=1000, text_bytes=1000 * 20_000, concurrency=8, cores=1)
    two = est(members=1000, text_bytes=1000 * 20_000, concurrency=8, cores=2)
    assert one == pytest.approx(FIXED + 1.0 + 0.4, abs=0.05)
    assert two == pytest.approx(FIXED + 1.0 + 0.2, abs=0.05)
    # Never over more cores than threads: one fetch at a time uses one core however many there are.
    assert est(members=1000, text_bytes=1000 * 20_000, concurrency=1, cores=16) == pytest.approx(one)
    assert est(members=4, text_bytes=64 * MIB, concurrency=8, cores=4) == pytest.approx(
        FIXED + 0.004 + 64 * MIB * 20e-9 / 4, abs=0.05
    )


def test_usable_cores_is_at_least_one() -> None:
    assert usable_cores() >= 1


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=1 << 40), latencies, setups)
def test_cpu_seconds_of_inverts_the_model(n: int, text: int, latency: float, setup: tuple[int, int]) -> None:
    width, core = setup
    work = Workload(members=n, text_bytes=text, latency_seconds=latency, concurrency=width, cores=core)
    seconds = estimate_seconds(work, COSTS)
    build = Build(members=n, text_bytes=text, seconds=seconds, latency_seconds=latency, concurrency=width, cores=core)
    cpu = cpu_seconds_of(build)
    # In wall seconds: the bytes' part over min(W, cores) cores.
    assert cpu == pytest.approx(n * 0.001 + text * 20e-9 / min(width, core), rel=0.02, abs=0.1 * width)


# --- learning ---------------------------------------------------------------------------------


def builds_at(costs: Costs, shapes: list[tuple[int, int]], latency: float = 0.0) -> list[Build]:
    return [
        Build(
            members=n,
            text_bytes=b,
            seconds=FIXED + n * latency + n * costs.seconds_per_member + b * costs.seconds_per_byte,
            latency_seconds=latency,
        )
        for n, b in shapes
    ]


def scaled(member: float, byte: float) -> Costs:
    return Costs(PRIOR_COSTS.seconds_per_member * member, PRIOR_COSTS.seconds_per_byte * byte)


SHAPES = [(1000, 20 * 1024 * 1000), (256, 256 * 1024 * 256), (4, 64 * MIB)]


def test_a_uniformly_slower_machine_is_learned() -> None:
    fitted = fit_costs(builds_at(scaled(3, 3), SHAPES * 3), prior_weight=0.0)
    assert fitted.seconds_per_member == pytest.approx(3 * PRIOR_COSTS.seconds_per_member, rel=0.01)
    assert fitted.seconds_per_byte == pytest.approx(3 * PRIOR_COSTS.seconds_per_byte, rel=0.01)
    held = fit_costs(builds_at(scaled(3, 3), SHAPES))  # one build of each, the prior counted as half a build
    assert 2 * PRIOR_COSTS.seconds_per_member < held.seconds_per_member < 3 * PRIOR_COSTS.seconds_per_member


def test_a_build_moves_mostly_the_cost_it_consisted_of() -> None:
    """Large texts twice as slow as the prior says: the cost per byte goes most of the way, the other less."""
    fitted = fit_costs(builds_at(scaled(1, 2), [(4, 64 * MIB)] * 4))
    byte_factor = fitted.seconds_per_byte / PRIOR_COSTS.seconds_per_byte
    member_factor = fitted.seconds_per_member / PRIOR_COSTS.seconds_per_member
    assert 1.8 < byte_factor <= 2.0
    assert 1.0 < member_factor < byte_factor - 0.2


def test_the_fit_learns_through_latency() -> None:
    """A build that waited 20 ms per text still teaches its CPU part (one fetch at a time: waiting + CPU)."""
    fitted = fit_costs(builds_at(scaled(2, 2), SHAPES, latency=0.02), prior_weight=0.0)
    assert fitted.seconds_per_member == pytest.approx(2 * PRIOR_COSTS.seconds_per_member, rel=0.02)
    assert fitted.seconds_per_byte == pytest.approx(2 * PRIOR_COSTS.seconds_per_byte, rel=0.02)


def test_concurrent_builds_on_two_cores_are_learned() -> None:
    """8 fetches at once on 2 cores: the bytes' part took half its one-core time, and the fit knows it."""
    slower = scaled(3, 3)
    builds = [
        Build(
            members=n,
            text_bytes=b,
            seconds=FIXED + n * slower.seconds_per_member + b * slower.seconds_per_byte / 2,
            concurrency=8,
            cores=2,
        )
        for n, b in SHAPES * 3
    ]
    fitted = fit_costs(builds, prior_weight=0.0)
    assert fitted.seconds_per_member == pytest.approx(slower.seconds_per_member, rel=0.01)
    assert fitted.seconds_per_byte == pytest.approx(slower.seconds_per_byte, rel=0.01)
    # Read as if on one core, the same builds would say the bytes cost half as much: the cores matter.
    as_one_core = fit_costs([Build(b.members, b.text_bytes, b.seconds, concurrency=8) for b in builds], prior_weight=0)
    assert as_one_core.seconds_per_byte < 0.7 * slower.seconds_per_byte


def exact_build(costs: Costs, n: int, text: int, *, latency: float, width: int, core: int) -> Build:
    """The build the model says ``costs`` give (unrounded): what a machine of exactly these costs measures."""
    wait = n * latency / width
    cpu = n * costs.seconds_per_member + text * costs.seconds_per_byte / min(width, core)
    seconds = FIXED_SECONDS + max(wait, cpu) + min(wait, cpu) / width
    return Build(members=n, text_bytes=text, seconds=seconds, latency_seconds=latency, concurrency=width, cores=core)


@given(
    st.integers(min_value=1, max_value=10**6),
    st.integers(min_value=0, max_value=1 << 36),
    st.floats(min_value=0, max_value=0.05),
    setups,
)
def test_a_build_that_ran_as_predicted_teaches_nothing(
    n: int, text: int, latency: float, setup: tuple[int, int]
) -> None:
    """The learning takes off a build's time the same fixed part and waiting that the estimate adds:
    whatever the shape (few large texts or many small ones), a build that took what the costs
    predicted leaves them as they were."""
    width, core = setup
    fitted = fit_costs([exact_build(PRIOR_COSTS, n, text, latency=latency, width=width, core=core)])
    assert fitted.seconds_per_member == pytest.approx(PRIOR_COSTS.seconds_per_member, rel=1e-6)
    assert fitted.seconds_per_byte == pytest.approx(PRIOR_COSTS.seconds_per_byte, rel=1e-6)


def test_a_build_of_few_large_texts_keeps_the_small_texts_estimate() -> None:
    """The bench's case: 64 texts of 256 KiB at 0 ms, then 1,000 of 20 KiB, on 8 fetches over 2 cores.

    The first build, taking what the prior says, must leave the second's estimate at the prior's.
    """
    estimator = Estimator(calibrate=False)
    small = Workload(members=1000, text_bytes=1000 * 20 * 1024, latency_seconds=0.001, concurrency=8, cores=2)
    before = estimator.estimate(small)
    estimator.learn(exact_build(PRIOR_COSTS, 64, 64 * 256 * 1024, latency=0.001, width=8, core=2))
    assert estimator.estimate(small) == pytest.approx(before, abs=0.1)


def test_builds_that_mostly_waited_teach_nothing() -> None:
    waited = Build(members=100, text_bytes=100, seconds=FIXED + 100 * 0.05, latency_seconds=0.05)
    assert fit_costs([waited]) == PRIOR_COSTS
    # 1,000 texts that waited 2 ms each (as timed), and took 2.3 s: a CPU part of 0.1 s of 2.1 is noise.
    mostly = Build(members=1000, text_bytes=1000 * 20 * 1024, seconds=2.3, latency_seconds=0.002)
    assert fit_costs([mostly]) == PRIOR_COSTS


def test_with_no_builds_the_prior_stands() -> None:
    assert fit_costs([], PRIOR_COSTS) == PRIOR_COSTS
    assert Estimator(calibrate=False).costs == PRIOR_COSTS
    assert Estimator(calibrate=False).bytes_per_member == PRIOR_BYTES_PER_MEMBER


@given(
    st.lists(
        st.builds(
            Build,
            members=st.integers(min_value=0, max_value=10**9),
            text_bytes=st.integers(min_value=0, max_value=1 << 50),
            seconds=st.floats(min_value=0, max_value=1e7),
            latency_seconds=st.floats(min_value=0, max_value=10),
            concurrency=st.integers(min_value=1, max_value=64),
        ),
        max_size=10,
    )
)
def test_the_fit_is_positive_and_finite_whatever_the_builds(builds: list[Build]) -> None:
    fitted = fit_costs(builds)
    assert 0 < fitted.seconds_per_member < math.inf
    assert 0 < fitted.seconds_per_byte < math.inf


def test_an_estimator_learns_a_slower_machine() -> None:
    slow = scaled(3, 3)
    estimator = Estimator(calibrate=False)
    work = Workload(members=500, text_bytes=500 * 50_000)
    truth = estimate_seconds(work, slow)
    first = estimator.estimate(work)
    for build in builds_at(slow, [(1000, 1000 * 20 * 1024), (256, 256 * 256 * 1024)] * 2):
        estimator.learn(build)
    assert abs(estimator.estimate(work) - truth) < abs(first - truth) / 3
    assert estimator.bytes_per_member == pytest.approx((1000 * 20 * 1024 + 256 * 256 * 1024) / 1256)


def test_the_estimator_forgets_old_builds() -> None:
    estimator = Estimator(keep=2, calibrate=False)
    for build in builds_at(Costs(1.0, 1e-6), [(10, 10)] * 5):
        estimator.learn(build)
    for build in builds_at(PRIOR_COSTS, [(1000, 1000 * 20 * 1024), (256, 256 * 256 * 1024)]):
        estimator.learn(build)
    assert estimator.costs.seconds_per_member == pytest.approx(PRIOR_COSTS.seconds_per_member, rel=0.05)


def test_a_bare_member_count_still_works() -> None:
    estimator = Estimator()
    assert estimator.estimate(5) == estimator.estimate(Workload(members=5))
    assert Estimator(calibrate=False).estimate(5) == Estimator(calibrate=False).estimate(Workload(members=5))


# --- the listing meter ------------------------------------------------------------------------


class StepClock:
    """Advances by the next of ``steps`` each time it is read."""

    def __init__(self, steps: list[float]) -> None:
        self.now = 0.0
        self.steps = steps

    def __call__(self) -> float:
        self.now += self.steps.pop(0) if self.steps else 0.0
        return self.now


def page(n: int, *, size: int | None = None, start: int = 0) -> DocsetPage:
    meta = {} if size is None else {"text_bytes": size}
    return DocsetPage(members=tuple(Member(str(start + i), meta, f"http://a/t/{i}") for i in range(n)))


def test_the_meter_takes_a_small_pages_time_as_the_latency_and_extrapolates_sizes() -> None:
    meter = ListingMeter(StepClock([0.0, 0.02]))  # start, then 20 ms later the page is in
    pages = list(meter.timed(iter([page(10, size=1000)])))
    assert len(pages) == 1
    assert meter.latency_seconds(lambda: pytest.fail("a small page needs no probe")) == pytest.approx(
        0.02 - 10 * LISTING_SECONDS_PER_MEMBER
    )
    assert meter.text_bytes(10) == 10_000
    assert meter.text_bytes(1_000) == 1_000_000
    assert meter.seconds_left(10) == 0.0
    assert meter.seconds_left(35) == pytest.approx(3 * 0.02)


def test_a_large_first_page_is_not_the_latency_a_probe_is() -> None:
    # The 1,000-member page takes 300 ms (server work); the one-member probes 90 (untimed: a warm-up), 25, 21
    # and 30 ms: the median counts.
    meter = ListingMeter(StepClock([0.0, 0.3, 0.0, 0.0, 0.09, 0.0, 0.025, 0.0, 0.021, 0.0, 0.03]))
    list(meter.timed(iter([page(1000)])))
    assert meter.latency_seconds(lambda: page(1)) == pytest.approx(0.025 - LISTING_SECONDS_PER_MEMBER)
    assert meter.last_latency == pytest.approx(0.025 - LISTING_SECONDS_PER_MEMBER)


def test_a_refused_probe_leaves_the_pages_figure() -> None:
    meter = ListingMeter(StepClock([0.0, 0.1]))
    list(meter.timed(iter([page(1000)])))

    def refused() -> DocsetPage:
        raise FetchError("GET ... answered HTTP 400")

    assert meter.latency_seconds(refused) == pytest.approx(0.1 - 1000 * LISTING_SECONDS_PER_MEMBER)


@pytest.mark.parametrize(
    "metadata",
    [{}, {"text_bytes": -1}, {"text_bytes": True}, {"text_bytes": "5"}, {"text_bytes": 1.5}],
)
def test_sizes_count_only_when_every_member_has_a_plain_one(metadata: dict[str, object]) -> None:
    meter = ListingMeter(StepClock([]))
    sized = page(3, size=100)
    odd = DocsetPage(members=(Member("x", metadata, "http://a/t/x"),))
    list(meter.timed(iter([sized, odd])))
    assert meter.text_bytes(4) is None


def test_a_hostile_size_stays_an_int_and_the_estimate_finite() -> None:
    meter = ListingMeter(StepClock([]))
    list(meter.timed(iter([page(2, size=10**400)])))
    text = meter.text_bytes(10**400)
    assert text is not None
    value = Estimator(calibrate=False).estimate(
        Workload(members=10**400, text_bytes=text, listing_seconds_left=meter.seconds_left(10**400))
    )
    assert math.isfinite(value)


# --- the packager's hooks ---------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.estimates: list[float | None] = []

    def accepted(self, estimate_seconds: float | None) -> None:
        self.estimates.append(estimate_seconds)

    def progress(self, items_done: int, items_total: int, *, eta_seconds: float | None = None) -> None:
        pass


def test_the_packager_learns_from_its_builds(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path
) -> None:
    """Every build is remembered, with its members, its payload and the latency measured on its listing."""
    stub.add_docset("7", sample_docs(4, size=5_000))
    stub.add_docset("8", sample_docs(6, size=5_000))
    estimator = Estimator()
    packager = Packager(api=client, storage=archives, work_dir=work, estimator=estimator)
    sink = Sink()
    packager.package(docset_id="7", docset_url=f"{stub.base}/api/docsets/7", sink=sink)
    packager.package(docset_id="8", docset_url=f"{stub.base}/api/docsets/8", sink=sink)
    packager.package(docset_id="8", docset_url=f"{stub.base}/api/docsets/8", sink=sink)  # reused: no build
    builds = list(estimator._builds)
    assert [b.members for b in builds] == [4, 6]
    assert all(b.text_bytes > n * 5_000 for b, n in zip(builds, (4, 6), strict=True))  # texts + meta.json
    assert all(b.seconds > 0 and b.latency_seconds >= 0 for b in builds)
    assert len(sink.estimates) == 3
    assert all(e is not None and e > 0 for e in sink.estimates)
    assert estimator.speed is not None  # the first estimate calibrated the prior to this machine
