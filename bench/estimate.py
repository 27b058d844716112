"""Estimate benchmark: the packager's Accepted estimate against the real build time, on several docset shapes."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import machine_description, update_section
from bench.harness import Row, env_int, render_rows
from bench.stub_process import StubProcess
from examples.packager.api import ApiClient
from examples.packager.estimate import Estimator, Workload
from examples.packager.packaging import Packager
from examples.packager.storage import LocalStorage

__all__ = ["run"]

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

    def estimate(self, work: Workload | int) -> float:
        if isinstance(work, Workload):
            self.last = work
        return super().estimate(work)


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
    latency_ms: float

    @property
    def error(self) -> float:
        return (self.estimate - self.real) / self.real

    @property
    def old(self) -> float:
        return 2.0 + 0.05 * self.shape.members  # the formula before issue 14


def _case(stub: StubProcess, work: Path, shape: Shape, warmup: Shape, index: int) -> _Result:
    archives = work / f"archives-{index}"
    estimator = _RecordingEstimator()
    packager = Packager(
        api=ApiClient(api_base=stub.base, api_key="bench"),
        storage=LocalStorage(archives, "http://127.0.0.1:9/archives"),
        work_dir=work,
        estimator=estimator,
        secret=b"bench-estimate-secret-0123456789",
    )
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
        cold=Estimator().estimate(estimator.last),
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
  the figure is neither the prior's nor a replay of the same job. "prior only" is what a fresh
  packager would have said for the same job; "old" is the formula before issue 14
  (`2 s + 0.05 s x members`).
- On a shared 2-core machine the same build's time varies 2-3x with the other work on it, between
  the warm-up and the measured job too; the median round is the row's figure, every round's error
  is shown.
- The packager fetches and deflates 8 members at once (`Packager.fetch_concurrency`) over the
  machine's cores (2 here); the model spreads the per-byte work over `min(W, cores)` of them and
  counts the per-member work in full (Python under the GIL), and the prior was measured that way,
  on docsets other than these rows (1 ms per member from 2,000 x 1 KiB, 35 ns per byte on one
  core from 16 x 1 MiB; a build's fixed part 0.01 s: a 1 x 1 KiB build takes 3-6 ms). Until the
  session after issue 14 the fixed part was a guessed 0.2 s: the learning took it off the warm-up
  of 64 x 256 KiB (0.35 s), saw it 40 % faster than predicted, and lowered the cost per member
  too, so the small-text rows at 0 ms came out 30 % short. A build of small texts at 20 ms mostly waits on
  the API, so it teaches the costs nothing (`MIN_CPU_SHARE`); at 0 ms every build teaches them.
- Load from other work slows large texts (deflate needs the cores) more than small ones: a warm-up
  of small texts moves the cost per byte only by a quarter of its own surprise, so a large-text
  row taken while the load changes between the warm-up and the measured job misses most."""


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
            "| job | estimate (s) | real (s) | error | every round's error | prior only (s) | old (s) | latency (ms) |",
            "|---|---:|---:|---:|---|---:|---:|---:|",
        ]
        + [
            f"| {r.shape.label()} | {r.estimate:.1f} | {r.real:.1f} | {r.error:+.0%} | "
            f"{', '.join(f'{x.error:+.0%}' for x in case)} | {r.cold:.1f} ({(r.cold - r.real) / r.real:+.0%}) | "
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
