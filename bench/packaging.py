"""Packaging benchmark: our packager vs a zipfile loop (CPU-bound, by API latency), peak RSS, 1 vs 2 packagers."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bench import machine_description, update_section
from bench.harness import (
    BENCH_VHOST,
    Row,
    bench_urls,
    delete_vhost,
    ensure_vhost,
    env_int,
    interleaved_windows,
    median_of,
    percentile,
    render_rows,
)
from bench.packaging_child import run_child
from bench.stub_process import StubProcess
from tdm_messaging.server import PackagingClient
from tdm_messaging.status import State
from tdm_messaging.transport import open_transport

__all__ = ["main"]

COMMAND = ".venv/bin/python -m bench packaging"
ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20
THROUGHPUT_GOAL = 1.8
LATENCY_GOAL_SECONDS = 5.0
LATENCY_GOAL_MS = 20
RSS_GOAL_MIB = 150
SCALING_GOAL = 1.7
SCALING_CONCURRENCY = 1
"""Each packager of the two-vs-one row fetches and deflates one member at a time (``TDM_FETCH_CONCURRENCY``):
one packager then keeps about one core busy, as when the goal was set, so two on these 2 cores
measure how the work queue spreads jobs, not how one packager already fills both cores."""
_JOB_TIMEOUT = 900.0
ALL_PARTS = ("throughput", "latency", "rss", "scale")
"""The packaging group's parts (``TDM_BENCH_PACKAGING_PARTS`` runs some; a partial run leaves the doc alone)."""
_T = TypeVar("_T")


@dataclass(frozen=True)
class _Settings:
    tput_members: int
    tput_text_kib: int
    rss_sizes_mib: tuple[int, ...]
    jobs: int
    job_members: int
    rounds: int
    latency_jobs: int
    latency_ms: tuple[int, ...]
    latency_members: int
    latency_text_kib: int
    latency_rounds: int


def _settings() -> _Settings:
    import os

    def numbers(name: str, default: str, what: str) -> tuple[int, ...]:
        raw = os.environ.get(name, "").strip() or default
        try:
            values = tuple(int(v) for v in raw.split(",") if v.strip())
        except ValueError:
            raise SystemExit(f"bench: {name}={raw!r} must be {what} separated by commas") from None
        if not values or min(values) < 0:
            raise SystemExit(f"bench: {name}={raw!r} must be {what} separated by commas")
        return values

    sizes = numbers("TDM_BENCH_RSS_SIZES_MIB", "128,512,2048", "MiB sizes")
    return _Settings(
        tput_members=env_int("TDM_BENCH_PACKAGE_MEMBERS", 256),
        tput_text_kib=env_int("TDM_BENCH_PACKAGE_TEXT_KIB", 256),
        rss_sizes_mib=sizes,
        jobs=env_int("TDM_BENCH_PACKAGE_JOBS", 6),
        job_members=env_int("TDM_BENCH_PACKAGE_JOB_MEMBERS", 128),
        rounds=env_int("TDM_BENCH_ROUNDS", 3),
        latency_jobs=env_int("TDM_BENCH_PACKAGE_LATENCY_JOBS", 20),
        latency_ms=numbers("TDM_BENCH_API_LATENCY_MS", "0,5,20,50", "milliseconds"),
        latency_members=env_int("TDM_BENCH_API_LATENCY_MEMBERS", 1000),
        latency_text_kib=env_int("TDM_BENCH_API_LATENCY_TEXT_KIB", 20),
        latency_rounds=env_int("TDM_BENCH_API_LATENCY_ROUNDS", 1),
    )


def _run_child(mode: str, api_base: str, docset_id: str, work_dir: Path) -> dict[str, float]:
    return run_child(mode, api_base, docset_id, work_dir, timeout=_JOB_TIMEOUT)


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds the machine spent busy and in all since boot (/proc/stat; zeros where there is none)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - fields[3] - fields[4]) / tick, sum(fields) / tick  # less idle and iowait


def _process_cpu(pid: int) -> float:
    """CPU seconds process ``pid`` has used (0 where /proc does not say)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _others_share(run: Callable[[], _T], stub: StubProcess) -> tuple[_T, float]:
    """``run()`` and the share of the machine's CPU that processes other than the run's child and the stub took.

    A 2-core run loses to anything else running (a one-core loop hardly does: the other core
    was idle), so the throughput row says how busy the machine was around its windows.
    """
    busy0, all0 = _cpu_seconds()
    stub0, child0 = _process_cpu(stub.process.pid), resource.getrusage(resource.RUSAGE_CHILDREN)
    result = run()
    busy1, all1 = _cpu_seconds()
    stub1, child1 = _process_cpu(stub.process.pid), resource.getrusage(resource.RUSAGE_CHILDREN)
    child = (child1.ru_utime - child0.ru_utime) + (child1.ru_stime - child0.ru_stime)
    others = (busy1 - busy0) - child - (stub1 - stub0)
    # Clamped: over a window of a few clock ticks the counters round apart (a share past 1 was seen).
    return result, min(max(others, 0.0) / max(all1 - all0, 1e-9), 1.0)


def _throughput_rows(stub: StubProcess, work: Path, s: _Settings) -> tuple[list[Row], str]:
    text_mib = s.tput_members * s.tput_text_kib / 1024
    counter = iter(range(1_000_000))
    shares: dict[str, list[float]] = {"ours": [], "zipfile": []}

    def window(mode: str) -> float:
        docset_id = f"t{next(counter)}-{s.tput_members}x{s.tput_text_kib * 1024}"
        result, share = _others_share(lambda: _run_child(mode, stub.base, docset_id, work), stub)
        shares[mode].append(share)
        return text_mib / result["seconds"]

    print(f"  throughput: {text_mib:.0f} MiB docsets ...", flush=True)
    rates = interleaved_windows({"ours": lambda: window("ours"), "zipfile": lambda: window("zipfile")}, rounds=s.rounds)
    ours, base = median_of(rates["ours"]), median_of(rates["zipfile"])
    load = (
        "Other processes' share of the machine's CPU during the throughput windows (median, max): "
        + "; ".join(f"{mode} windows {median_of(v):.0%}, {max(v):.0%}" for mode, v in shares.items())
        + "."
    )
    print(f"  {load}", flush=True)
    return [
        Row(
            what=f"packaging throughput, {s.tput_members} texts of {s.tput_text_kib} KiB (text MiB/s)",
            ours=ours,
            baseline=base,
            unit="MiB/s",
            higher_is_better=True,
            goal=f">= {THROUGHPUT_GOAL}x",
            met=ours >= THROUGHPUT_GOAL * base,
            command=COMMAND,
            baseline_name="plain `zipfile` loop, same members, same deflate level (6)",
        )
    ], load


def _latency_rows(stub: StubProcess, work: Path, s: _Settings) -> list[Row]:
    """Seconds to package one docset when every API answer comes ``ms`` late: ours vs the sequential zipfile loop."""
    members, kib = s.latency_members, s.latency_text_kib
    counter = iter(range(1_000_000))
    rows = []
    for delay in s.latency_ms:

        def window(mode: str, delay: int = delay) -> float:
            docset_id = f"l{next(counter)}-{members}x{kib * 1024}d{delay}"
            return _run_child(mode, stub.base, docset_id, work)["seconds"]

        print(f"  API latency {delay} ms: {members:,} texts of {kib} KiB ...", flush=True)
        times = interleaved_windows(
            {"ours": lambda: window("ours"), "zipfile": lambda: window("zipfile")}, rounds=s.latency_rounds, warmup=0
        )
        ours, base = median_of(times["ours"]), median_of(times["zipfile"])
        goal_row = delay == LATENCY_GOAL_MS and members == 1000 and kib == 20
        rows.append(
            Row(
                what=f"packaging {members:,} texts of {kib} KiB, API answering {delay} ms late (s)",
                ours=ours,
                baseline=base,
                unit="s",
                higher_is_better=False,
                goal=f"<= {LATENCY_GOAL_SECONDS:g} s" if goal_row else "—",
                met=ours <= LATENCY_GOAL_SECONDS if goal_row else None,
                command=(
                    f"TDM_BENCH_API_LATENCY_MS={delay} TDM_BENCH_API_LATENCY_MEMBERS={members} "
                    f"TDM_BENCH_API_LATENCY_TEXT_KIB={kib} {COMMAND}"
                ),
                baseline_name="plain `zipfile` loop (one fetch at a time, one core), same docset",
            )
        )
    return rows


def _rss(stub: StubProcess, work: Path, s: _Settings) -> tuple[list[Row], list[tuple[int, float, float]]]:
    """Peak RSS of our packager process at each size (1 MiB texts); the row compares the largest with the smallest."""
    points = []
    for size in s.rss_sizes_mib:
        print(f"  peak RSS: {size} MiB docset ...", flush=True)
        result = _run_child("ours", stub.base, f"rss{uuid.uuid4().hex[:6]}-{size}x{MIB}", work)
        points.append((size, result["peak_rss_kib"] / 1024, size / result["seconds"]))
    (small, small_rss, _), (large, large_rss, _) = points[0], points[-1]
    return [
        Row(
            what=f"peak RSS packaging {large:,} MiB of text vs {small:,} MiB",
            ours=large_rss,
            baseline=small_rss,
            unit="MiB",
            higher_is_better=False,
            goal=f"flat, <= {RSS_GOAL_MIB} MiB",
            met=large_rss <= RSS_GOAL_MIB and large_rss <= 1.25 * small_rss,
            command=f"TDM_BENCH_RSS_SIZES_MIB={','.join(map(str, s.rss_sizes_mib))} {COMMAND}",
            baseline_name=f"our packager on the {small:,} MiB docset",
        )
    ], points


class _Workers:
    """``count`` reference-packager worker processes on the bench vhost's docsets/package."""

    def __init__(self, count: int, api_base: str, broker_url: str, work: Path, *, concurrency: int) -> None:
        env = {**os.environ, "TDM_FETCH_CONCURRENCY": str(concurrency)}
        self.processes = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.packaging_child", "worker", api_base, broker_url, str(work)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            for _ in range(count)
        ]
        for process in self.processes:
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                self.stop()
                raise RuntimeError("a packager worker did not start")

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _empty(directory: Path) -> None:
    """Delete the archives in ``directory`` but keep it (the workers' storage expects it to exist)."""
    for path in directory.glob("*"):
        if path.is_file():
            path.unlink(missing_ok=True)


def _run_jobs(client: PackagingClient, api_base: str, docset_ids: list[str]) -> float:
    """Request every docset, poll until all are COMPLETE; return the seconds it took."""
    start = time.perf_counter()
    for docset_id in docset_ids:
        client.request_package(docset_id, f"{api_base}/api/docsets/{docset_id}")
    pending = list(docset_ids)
    deadline = time.monotonic() + _JOB_TIMEOUT
    while pending:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} packaging jobs not complete after {_JOB_TIMEOUT:g} s")
        still = []
        for docset_id in pending:
            status = client.status(docset_id)
            if status.state is State.FAILED:
                raise RuntimeError(f"packaging {docset_id} failed: {status.failure}")
            if status.state is not State.COMPLETE:
                still.append(docset_id)
        pending = still
        if pending:
            time.sleep(0.05)
    return time.perf_counter() - start


def _scaling(stub: StubProcess, work: Path, s: _Settings) -> tuple[list[Row], list[float]]:
    """Jobs per second with one packager and with two on one queue; then a tiny job's latency with one."""
    url = bench_urls().amqp
    text_kib = s.tput_text_kib
    rates: dict[int, list[float]] = {}
    latencies: list[float] = []
    with open_transport(url) as transport:
        client = PackagingClient(transport)
        for count in (1, 2):
            print(f"  {count} packager(s): {s.jobs} jobs of {s.job_members} texts ...", flush=True)
            workers = _Workers(count, stub.base, url, work, concurrency=SCALING_CONCURRENCY)
            try:
                rates[count] = []
                for round_ in range(s.rounds + 1):
                    run = uuid.uuid4().hex[:6]
                    ids = [f"j{run}{i}-{s.job_members}x{text_kib * 1024}" for i in range(s.jobs)]
                    rate = s.jobs / _run_jobs(client, stub.base, ids)
                    if round_ > 0:  # the first is the warm-up
                        rates[count].append(rate)
                    _empty(work / "archives")
                if count == 1:
                    print(f"  1 packager: latency of {s.latency_jobs} tiny jobs ...", flush=True)
                    for _ in range(s.latency_jobs):
                        latencies.append(1000 * _run_jobs(client, stub.base, [f"n{uuid.uuid4().hex[:8]}-1x100"]))
            finally:
                workers.stop()
    one, two = median_of(rates[1]), median_of(rates[2])
    row = Row(
        what=(
            f"two packagers vs one on one queue, each fetching and deflating {SCALING_CONCURRENCY} member at a time, "
            f"{s.jobs} jobs of {s.job_members} x {text_kib} KiB (RabbitMQ AMQP)"
        ),
        ours=two,
        baseline=one,
        unit="jobs/s",
        higher_is_better=True,
        goal=f">= {SCALING_GOAL}x",
        met=two >= SCALING_GOAL * one,
        command=COMMAND,
        baseline_name="one packager, same jobs",
    )
    return [row], latencies


NOTES = """\
Notes on the packaging figures:

- Texts come from `bench/docset_stub.py`, a stand-in for the TDM API in its own process that
  generates English-looking text on the fly (so a 2 GiB docset costs no disk), over real HTTP,
  with TCP_NODELAY (without it a body under ~64 KiB waited ~40 ms for the client's delayed ACK).
  A docset id `<tag>-<members>x<bytes>d<ms>` makes the stub answer each of its requests `ms` late,
  as a remote API does: the latency axis. It pages a listing by `limit` and `after` as the server
  does (ours asks 1,000 a page, and one-member pages to time the API), else gives it in one page
  (the zipfile loop's one request).
- Each run is a fresh process (`bench/packaging_child.py`), the packager imported before the
  clock starts; its peak RSS is `VmHWM` from /proc/self/status, read at the end of the run.
- Ours fetches and deflates `TDM_FETCH_CONCURRENCY` (8; the child reads the variable) members at
  once on as many threads over pooled keep-alive connections (urllib3 directly), reading 256 KiB at
  a time (zlib and hashlib let go of the GIL), at most 16 in flight or waiting, and writes them in
  listing order (the archive is the same bytes as a one-thread build). The baseline is what a
  packager written without it does (with `requests`, as most would): one fetch at a time, deflated
  on the one thread that writes the zip; on a 2-core machine it leaves a core idle and waits out
  every answer's latency in turn.
- Ours does more than the zipfile loop: a BagIt layout with a SHA-256 manifest of every file, a
  content fingerprint of the listing (spooled to disk), the archive's own SHA-256 (hashed as it is
  written, no second read), the URL guard on every link, and a move into storage with fsyncs of the
  archive (its writeback started during the build) and of its directory (the loop's temporary zip
  is never synced). On 256 x 256 KiB that is ~0.15 s of CPU and ~15 ms of
  fsync the loop does not spend, against ~1.45 s of deflate both spend (level 6, 46 MiB/s a core
  on the stub's text on this machine, 2.0x on two threads): deflate is ~85 % of our CPU, so 1.8x
  needs nearly all of two free cores. At 0 ms the build is CPU-bound: with `requests` its
  per-request layers held the GIL beside the deflating threads, and 256 x 256 KiB took 1.12-1.17 s
  in process against 1.01-1.07 s with urllib3 (the same code, interleaved).
- The docset stub, a Python process, shares the 2 cores (0.06-0.10 s of CPU per 64 MiB docset,
  ~0.3 ms per 256 KiB answer): the loop pays it in turn (it waits for each answer), ours beside
  its own threads. Both read the same members from the same stub over HTTP.
- Other processes on the machine (other sessions' test runs) cost a 2-core run far more than a
  one-core loop, which had a core to spare: the section above gives their share of the CPU during
  the throughput windows; read the ratio against it.
- Two packagers share the machine's 2 cores with the docset stub, the broker and the polling
  client, so 2x is out of reach by construction; the row shows how close the work queue gets.
  Each of them fetches and deflates one member at a time (`TDM_FETCH_CONCURRENCY=1`): since
  issue 14 one packager at its default (8) already keeps both cores busy, so against it a second
  packager on the same 2 cores could only measure the cores, not the queue (1.02x in the run
  that showed it). The 1.7x goal was set when a packager used one core; the row keeps it by
  giving each packager one core's worth of work again. The scaling table's packagers series runs
  the default concurrency.
"""


def run() -> list[Row]:
    """Run the packaging benchmark; print the table and record it in docs/performance.md."""
    s = _settings()
    raw = os.environ.get("TDM_BENCH_PACKAGING_PARTS", "")
    parts = {p.strip() for p in raw.split(",") if p.strip()} or set(ALL_PARTS)
    if not parts <= set(ALL_PARTS):
        raise SystemExit(f"bench: TDM_BENCH_PACKAGING_PARTS={raw}: known parts are {', '.join(ALL_PARTS)}")
    if parts != set(ALL_PARTS):
        return _run_parts(parts, s)
    ensure_vhost()
    stub = StubProcess("bench.docset_stub")
    work = Path(tempfile.mkdtemp(prefix="tdm-bench-packaging-"))
    try:
        rows, load_line = _throughput_rows(stub, work, s)
        latency_rows = _latency_rows(stub, work, s)
        rss_rows, points = _rss(stub, work, s)
        rows += rss_rows
        scale_rows, latencies = _scaling(stub, work, s)
        rows += scale_rows
    finally:
        stub.stop()
        shutil.rmtree(work, ignore_errors=True)
        delete_vhost()
    table = render_rows(rows)
    latency_table = render_rows(latency_rows)
    print(table)
    print(latency_table)
    rss_line = ", ".join(f"{size:,} MiB: {rss:.0f} MiB peak RSS ({rate:.0f} MiB/s)" for size, rss, rate in points)
    latency_line = (
        f"A no-op job (a docset of one 100-byte text) with one packager, request to complete-visible-on-poll, "
        f"{len(latencies)} jobs: p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms."
    )
    print(rss_line)
    print(latency_line)
    missed = [r.what for r in rows + latency_rows if r.met is False]
    section = (
        f"Command: `{COMMAND}`  \n"
        f"Machine: {machine_description()}  \n"
        f"Broker: RabbitMQ over AMQP in vhost `{BENCH_VHOST}` (deleted afterwards), for the packager rows.  \n"
        f"Method: one warm-up window each, then {s.rounds} windows of ours and of the baseline in turn; medians.  \n"
        "Parts: TDM_BENCH_PACKAGING_PARTS (throughput, latency, rss, scale; a partial run leaves the doc alone).  \n"
        "Sizes: TDM_BENCH_PACKAGE_MEMBERS, TDM_BENCH_PACKAGE_TEXT_KIB, TDM_BENCH_RSS_SIZES_MIB, "
        "TDM_BENCH_PACKAGE_JOBS, TDM_BENCH_PACKAGE_JOB_MEMBERS, TDM_BENCH_PACKAGE_LATENCY_JOBS, TDM_BENCH_ROUNDS; "
        "the latency axis: TDM_BENCH_API_LATENCY_MS (0,5,20,50), TDM_BENCH_API_LATENCY_MEMBERS (1000), "
        "TDM_BENCH_API_LATENCY_TEXT_KIB (20), TDM_BENCH_API_LATENCY_ROUNDS (1).  \n"
        "Goals: " + ("all met." if not missed else "missed: " + "; ".join(missed) + " (see the notes).") + "\n\n"
        f"{table}\n\n{load_line}\n\nBy the API's latency (the stub answers every request that many ms late; "
        f"one fresh process per run, {s.latency_rounds} run(s) each, interleaved):\n\n{latency_table}\n\n"
        f"Peak RSS by docset size (1 MiB texts): {rss_line}.\n\n{latency_line}\n\n{NOTES}"
    )
    update_section("packaging", section)
    return rows + latency_rows


def _run_parts(parts: set[str], s: _Settings) -> list[Row]:
    """Some of the parts only: print their rows; docs/performance.md is left alone."""
    if "scale" in parts:
        ensure_vhost()
    stub = StubProcess("bench.docset_stub")
    work = Path(tempfile.mkdtemp(prefix="tdm-bench-packaging-"))
    rows: list[Row] = []
    try:
        if "throughput" in parts:
            rows += _throughput_rows(stub, work, s)[0]  # (it prints the machine's load line)
        if "latency" in parts:
            rows += _latency_rows(stub, work, s)
        if "rss" in parts:
            rows += _rss(stub, work, s)[0]
        if "scale" in parts:
            rows += _scaling(stub, work, s)[0]
    finally:
        stub.stop()
        shutil.rmtree(work, ignore_errors=True)
        if "scale" in parts:
            delete_vhost()
    print(render_rows(rows))
    print("(a partial run: docs/performance.md is left as it was)")
    return rows


def main() -> int:
    """``python -m bench packaging``'s runner: :func:`run`; returns 0."""
    run()
    return 0
