"""Estimate benchmark: the packager's Accepted estimate against the real build time, on several docset shapes."""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import machine_description, update_section
from bench.harness import Row, env_int, render_rows
from bench.stub_process import StubProcess
from examples.packager.api import ApiClient
from examples.packager.estimate import (
    BYTE_RATIO,
    MEMBER_RATIO,
    Build,
    Costs,
    Estimator,
    Speed,
    Workload,
    cpu_seconds_of,
    measure_speed,
)
from examples.packager.packaging import Packager
from examples.packager.storage import LocalStorage

__all__ = ["measure_ratios", "run"]

COMMAND = ".venv/bin/python -m bench estimate"
ROOT = Path(__file__).resolve().parent.parent
KIB, MIB = 1 << 10, 1 << 20
GOAL = 0.30
"""Within ±30 % of the real time."""


@dataclass(frozen=True)
class Shape:
    """A docset: ``members`` texts of ``text_bytes`` each, every API response ``delay_ms`` late."""

    members: int
    text_bytes: int
    delay_ms: int = 0

    def label(self) -> str:
        size = f"{self.text_bytes // MIB} MiB" if self.text_bytes >= MIB else f"{self.text_bytes // KIB} KiB"
        return f"{self.members:,} x {size} at {self.delay_ms} ms"

    def docset_id(self, tag: str) -> str:
        return f"{tag}-{self.members}x{self.text_bytes}d{self.delay_ms}"


SMALL_WARMUP = Shape(500, 20 * KIB)
LARGE_WARMUP = Shape(64, 256 * KIB)
CASES: tuple[tuple[Shape, Shape], ...] = (
    # (measured, the warm-up job before it: another shape, so the estimate is not a replay)
    (Shape(1000, 20 * KIB, 0), LARGE_WARMUP),
    (Shape(1000, 20 * KIB, 20), LARGE_WARMUP),
    (Shape(2000, 8 * KIB, 0), LARGE_WARMUP),
    (Shape(256, 256 * KIB, 0), SMALL_WARMUP),
    (Shape(4, 16 * MIB, 0), SMALL_WARMUP),
)


class _RecordingEstimator(Estimator):
    """The packager's estimator, remembering what it was asked (to show what the prior alone would say)."""

    last: Workload | None = None
    built: Build | None = None

    def estimate(self, work: Workload | int) -> float:
        if isinstance(work, Workload):
            self.last = work
        return super().estimate(work)

    def learn(self, build: Build) -> None:
        self.built = build
        super().learn(build)


class _Sink:
    def __init__(self) -> None:
        self.estimate: float | None = None
        self.accepted_at = 0.0

    def accepted(self, estimate_seconds: float | None) -> None:
        self.estimate, self.accepted_at = estimate_seconds, time.perf_counter()

    def progress(self, items_done: int, items_total: int, *, eta_seconds: float | None = None) -> None:
        pass


@dataclass(frozen=True)
class _Result:
    shape: Shape
    warmup: Shape
    estimate: float
    real: float
    cold: float
    fixed: float
    prior: Costs
    latency_ms: float

    @property
    def error(self) -> float:
        return (self.estimate - self.real) / self.real

    @property
    def old(self) -> float:
        return 2.0 + 0.05 * self.shape.members  # the formula before issue 14


def _packager(stub: StubProcess, work: Path, archives: Path, estimator: Estimator) -> Packager:
    """The reference packager against the stub, storing in ``archives``, estimating with ``estimator``."""
    return Packager(
        api=ApiClient(api_base=stub.base, api_key="bench"),
        storage=LocalStorage(archives, "http://127.0.0.1:9/archives"),
        work_dir=work,
        estimator=estimator,
        secret=b"bench-estimate-secret-0123456789",
    )


def _case(stub: StubProcess, work: Path, shape: Shape, warmup: Shape, index: int) -> _Result:
    archives = work / f"archives-{index}"
    estimator = _RecordingEstimator()
    packager = _packager(stub, work, archives, estimator)
    try:
        warm_id = warmup.docset_id(f"w{index}")
        packager.package(docset_id=warm_id, docset_url=f"{stub.base}/api/docsets/{warm_id}?fmt=meta,txt", sink=_Sink())
        sink = _Sink()
        docset_id = shape.docset_id(f"m{index}")
        packager.package(docset_id=docset_id, docset_url=f"{stub.base}/api/docsets/{docset_id}?fmt=meta,txt", sink=sink)
        real = time.perf_counter() - sink.accepted_at
    finally:
        packager.api.close()
        shutil.rmtree(archives, ignore_errors=True)
    assert sink.estimate is not None and estimator.last is not None
    return _Result(
        shape=shape,
        warmup=warmup,
        estimate=sink.estimate,
        real=real,
        cold=Estimator(prior=estimator.prior).estimate(estimator.last),
        fixed=Estimator(calibrate=False).estimate(estimator.last),
        prior=estimator.prior,
        latency_ms=estimator.last.latency_seconds * 1000,
    )


def _median(results: list[_Result]) -> _Result:
    """The round whose error is the median one (the row's figure)."""
    return sorted(results, key=lambda r: r.error)[(len(results) - 1) // 2]


def _row(result: _Result) -> Row:
    return Row(
        what=(
            f"Accepted estimate vs real build, {result.shape.label()} "
            f"(after a {result.warmup.label()} job; error {result.error:+.0%})"
        ),
        ours=result.estimate,
        baseline=result.real,
        unit="s",
        higher_is_better=False,
        goal=f"within ±{GOAL:.0%}",
        met=abs(result.error) <= GOAL,
        command=COMMAND,
        baseline_name="the real time, Accepted to stored archive, same job",
    )


NOTES = """Notes on the estimate figures:

- Each row is one job of the reference packager's real code path (`Packager.package`: listing,
  fingerprint, fetch, bag, zip, store in a local directory) in this process, against
  `bench/docset_stub.py` in its own process: the reference server's listing (pages of up to
  1,000 by `after`, `text_bytes` per member) with every response of the docset delayed by its
  latency, TCP_NODELAY set. The estimate is what the packager sent in Accepted; the real time runs
  from that moment to the stored archive (what `estimate_seconds` promises).
- The estimator learns this machine's costs from the builds it has seen in the process. Each row's
  packager is fresh and first builds one job of *another* shape (the warm-up named in the row), so
  the figure is neither the prior's nor a replay of the same job. "calibrated prior only" is what
  a fresh packager would have said for the same job (its prior calibrated to the machine before
  the warm-up: `measure_speed` times the packager's per-byte and per-member work, about 20 ms, and
  `BYTE_RATIO` and `MEMBER_RATIO` scale it; the costs it gave are the "calibrated prior" column);
  "fixed prior only" is what the fixed `PRIOR_COSTS` would have said (the figure before the
  calibration); "old" is the formula before issue 14 (`2 s + 0.05 s x members`).
- On a shared 2-core machine the same build's time varies 2-3x with the other work on it, between
  the warm-up and the measured job too; the median round is the row's figure, every round's error
  is shown.
- The packager fetches and deflates 8 members at once (`Packager.fetch_concurrency`) over the
  machine's cores (2 here); the model spreads the per-byte work over `min(W, cores)` of them and
  counts the per-member work in full (Python under the GIL), and the prior was measured that way,
  on docsets other than these rows (the fixed prior: 1 ms per member from 2,000 x 1 KiB, 35 ns per
  byte on one core from 16 x 1 MiB; the calibration's ratios from the same two shapes, each round
  against a calibration in the same process, `python -m bench.estimate ratios`; a build's fixed
  part 0.01 s: a 1 x 1 KiB build takes 3-6 ms). Until the
  session after issue 14 the fixed part was a guessed 0.2 s: the learning took it off the warm-up
  of 64 x 256 KiB (0.35 s), saw it 40 % faster than predicted, and lowered the cost per member
  too, so the small-text rows at 0 ms came out 30 % short. A build of small texts at 20 ms mostly waits on
  the API, so it teaches the costs nothing (`MIN_CPU_SHARE`); at 0 ms every build teaches them.
- Load from other work slows large texts (deflate needs the cores) more than small ones: a warm-up
  of small texts moves the cost per byte only by a quarter of its own surprise, so a large-text
  row taken while the load changes between the warm-up and the measured job misses most.
- The calibration times one core for a few milliseconds: on this shared machine, whose speed
  flips between two states (the CPU probe reads 17 or 35 ms from one minute to the next), it
  catches one of them: in the session that added it (three runs) the calibrated prior alone read
  -24 % to +42 % of the real time, and the fixed prior, measured on this machine, -49 % to +11 %
  (six runs), mostly low. Its gain is on a machine of another sustained speed: on a quiet faster
  one the fixed prior was 40-55 % high on every row."""


def run() -> list[Row]:
    """Run the estimate benchmark; print the table and record it in docs/performance.md."""
    stub = StubProcess("bench.docset_stub")
    work = Path(tempfile.mkdtemp(prefix="tdm-bench-estimate-"))
    rounds = env_int("TDM_BENCH_ESTIMATE_ROUNDS", 3)
    every: list[list[_Result]] = []
    try:
        for index, (shape, warmup) in enumerate(CASES):
            print(f"  estimate: {shape.label()} after {warmup.label()}, {rounds} round(s) ...", flush=True)
            every.append([_case(stub, work, shape, warmup, index * 100 + n) for n in range(rounds)])
    finally:
        stub.stop()
        shutil.rmtree(work, ignore_errors=True)
    results = [_median(case) for case in every]
    rows = [_row(r) for r in results]
    table = render_rows(rows)
    detail = "\n".join(
        [
            "| job | estimate (s) | real (s) | error | every round's error | calibrated prior only (s) "
            "| fixed prior only (s) | calibrated prior (µs/member, ns/byte) | old (s) | latency (ms) |",
            "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
        ]
        + [
            f"| {r.shape.label()} | {r.estimate:.1f} | {r.real:.1f} | {r.error:+.0%} | "
            f"{', '.join(f'{x.error:+.0%}' for x in case)} | {r.cold:.1f} ({(r.cold - r.real) / r.real:+.0%}) | "
            f"{r.fixed:.1f} ({(r.fixed - r.real) / r.real:+.0%}) | "
            f"{r.prior.seconds_per_member * 1e6:.0f}, {r.prior.seconds_per_byte * 1e9:.1f} | "
            f"{r.old:.1f} ({(r.old - r.real) / r.real:+.0%}) | {r.latency_ms:.1f} |"
            for r, case in zip(results, every, strict=True)
        ]
    )
    print(table)
    print(detail)
    missed = [r.what for r in rows if r.met is False]
    section = (
        f"Command: `{COMMAND}`  \n"
        f"Machine: {machine_description()}  \n"
        f"Method: per round, a fresh packager builds a warm-up docset of another shape, then the measured one; "
        f"{rounds} rounds, the row is the round of median error.  \n"
        "Sizes: fixed shapes (below); rounds TDM_BENCH_ESTIMATE_ROUNDS.  \n"
        "Goals: " + ("all met." if not missed else "missed: " + "; ".join(missed) + ".") + "\n\n"
        f"{table}\n\n{detail}\n\n{NOTES}"
    )
    update_section("estimate", section)
    return rows


# --- the calibration's ratios (examples.packager.estimate.MEMBER_RATIO, BYTE_RATIO) -------------

RATIO_SMALL = Shape(2000, 1 * KIB)
"""Many small texts: the build's CPU part is mostly the cost per member."""
RATIO_LARGE = Shape(16, 1 * MIB)
"""Few large texts: mostly the cost per byte."""
RATIO_COMMAND = ".venv/bin/python -m bench.estimate ratios"


@dataclass(frozen=True)
class RatioRound:
    """One round: the calibration, then a build of each ratio shape, and the two costs they solve for."""

    speed: Speed
    costs: Costs
    small: Build
    large: Build

    @property
    def solved(self) -> bool:
        """Both costs came out positive (otherwise other work slowed one build too much to tell)."""
        return self.costs.seconds_per_member > 0 and self.costs.seconds_per_byte > 0

    @property
    def member_ratio(self) -> float:
        return self.costs.seconds_per_member / self.speed.member_seconds

    @property
    def byte_ratio(self) -> float:
        return self.costs.seconds_per_byte / self.speed.byte_seconds


def _build(stub: StubProcess, work: Path, shape: Shape, tag: str) -> Build:
    """Build ``shape`` once with a fresh packager (fixed prior: nothing to calibrate); the build as it learned it."""
    archives = work / f"archives-{tag}"
    estimator = _RecordingEstimator(calibrate=False)
    packager = _packager(stub, work, archives, estimator)
    try:
        docset_id = shape.docset_id(tag)
        packager.package(
            docset_id=docset_id, docset_url=f"{stub.base}/api/docsets/{docset_id}?fmt=meta,txt", sink=_Sink()
        )
    finally:
        packager.api.close()
        shutil.rmtree(archives, ignore_errors=True)
    assert estimator.built is not None
    return estimator.built


def _parallel(build: Build) -> int:
    return max(1, min(build.concurrency, build.cores))


def solve_costs(small: Build, large: Build) -> Costs:
    """The two costs that give both builds' CPU parts exactly (``cpu = m * a + b * s / P``, two equations).

    Either may come out 0 or negative when one build was slowed by other work: such a round is left out.
    """
    c1, c2 = cpu_seconds_of(small), cpu_seconds_of(large)
    m1, m2 = float(small.members), float(large.members)
    b1, b2 = small.text_bytes / _parallel(small), large.text_bytes / _parallel(large)
    det = m1 * b2 - m2 * b1
    per_member = (c1 * b2 - c2 * b1) / det
    per_byte = (m1 * c2 - m2 * c1) / det
    return Costs(seconds_per_member=per_member, seconds_per_byte=per_byte)


def measure_ratios(rounds: int = 5) -> list[RatioRound]:
    """Per round, in this process: a calibration, then a build of 2,000 x 1 KiB and one of 16 x 1 MiB.

    Each round's costs are the two that explain both builds (:func:`solve_costs`).
    """
    stub = StubProcess("bench.docset_stub")
    work = Path(tempfile.mkdtemp(prefix="tdm-bench-ratios-"))
    out: list[RatioRound] = []
    try:
        _build(stub, work, Shape(50, 4 * KIB), "warm")  # imports, connections, the stub's first answers
        for n in range(rounds):
            speed = measure_speed()
            small = _build(stub, work, RATIO_SMALL, f"r{n}")
            large = _build(stub, work, RATIO_LARGE, f"r{n}")
            out.append(RatioRound(speed=speed, costs=solve_costs(small, large), small=small, large=large))
    finally:
        stub.stop()
        shutil.rmtree(work, ignore_errors=True)
    return out


def _print_ratios(rounds: list[RatioRound]) -> None:
    print(
        "| round | calibration (ms) | workload µs/member | workload ns/byte | 2,000 x 1 KiB (s) | 16 x 1 MiB (s) "
        "| build µs/member | build ns/byte (1 core) | member ratio | byte ratio |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, r in enumerate(rounds):
        print(
            f"| {n} | {r.speed.seconds * 1000:.0f} | {r.speed.member_seconds * 1e6:.1f} "
            f"| {r.speed.byte_seconds * 1e9:.2f} "
            f"| {r.small.seconds:.2f} | {r.large.seconds:.2f} | {r.costs.seconds_per_member * 1e6:.0f} "
            f"| {r.costs.seconds_per_byte * 1e9:.1f} | {r.member_ratio:.1f} | {r.byte_ratio:.2f} |"
        )
    solved = [r for r in rounds if r.solved]
    if not solved:
        print("no round solved for two positive costs")
        return
    member = statistics.median(r.member_ratio for r in solved)
    byte = statistics.median(r.byte_ratio for r in solved)
    print(
        f"median of {len(solved)} solved round(s) of {len(rounds)}: MEMBER_RATIO = {member:.1f}, "
        f"BYTE_RATIO = {byte:.2f} (in the code: {MEMBER_RATIO}, {BYTE_RATIO})"
    )
    calibration_ms = statistics.median(r.speed.seconds * 1000 for r in rounds)
    print(f"a calibration took {calibration_ms:.0f} ms (median)")


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.estimate ratios [--rounds N]``: measure the calibration's ratios on this machine."""
    parser = argparse.ArgumentParser(prog="python -m bench.estimate")
    parser.add_argument("what", choices=["ratios"])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"Machine: {machine_description()}; command: {RATIO_COMMAND}", flush=True)
    _print_ratios(measure_ratios(args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
