"""Celery benchmark: request throughput and request-to-complete latency, our PackagerWorker vs a Celery 5 worker.

This module is also the Celery app that the benchmark's worker process loads
(``celery -A bench.celery_peer worker``); its broker comes from ``TDM_BENCH_CELERY_BROKER``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery  # type: ignore[import-untyped]
from celery.result import ResultSet  # type: ignore[import-untyped]

from bench import machine_description, update_section
from bench.harness import (
    BENCH_VHOST,
    Row,
    bench_urls,
    broker_versions,
    delete_vhost,
    ensure_vhost,
    env_int,
    interleaved_windows,
    median_of,
    percentile,
    render_rows,
)
from tdm_messaging.server import PackagingClient
from tdm_messaging.status import State
from tdm_messaging.transport import open_transport

__all__ = ["app", "main", "package"]

COMMAND = ".venv/bin/python -m bench celery"
THROUGHPUT_GOAL = 10.0
ARCHIVE_SIZE = 345345
ROOT = Path(__file__).resolve().parent.parent
_START_TIMEOUT = 60.0
_JOB_TIMEOUT = 120.0

app = Celery(
    "tdm_bench",
    broker=os.environ.get("TDM_BENCH_CELERY_BROKER", bench_urls().amqp),
    backend="rpc://",
)
app.conf.update(
    task_acks_late=True,
    task_default_queue=os.environ.get("TDM_BENCH_CELERY_QUEUE", "bench-celery"),
    worker_prefetch_multiplier=1,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(bind=True, name="tdm_bench.package")  # type: ignore[untyped-decorator]
def package(self: Any, docset_url: str) -> dict[str, object]:
    """The Celery task of the same shape as our no-op job: one progress report, then a URL and a size."""
    self.update_state(state="PROGRESS", meta={"items_done": 1, "items_total": 1, "docset_url": docset_url})
    return {"archive_url": f"https://tdm-packages.example.org/package/{uuid.uuid4().hex}.zip", "size": ARCHIVE_SIZE}


# ---------------------------------------------------------------- processes


class _Process:
    """A worker subprocess, started and stopped by its own pid, with bounded waits.

    Its output goes to a log file, never to a pipe nobody reads: a worker that logs a warning
    per task would fill the pipe and block (it did: the Celery worker stalled mid-run).
    """

    def __init__(self, argv: list[str], env: dict[str, str], label: str) -> None:
        self.label = label
        self._log = tempfile.NamedTemporaryFile(prefix="tdm-bench-worker-", suffix=".log")  # noqa: SIM115
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, text=True)

    def check(self) -> None:
        if self.process.poll() is not None:
            tail = Path(self._log.name).read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the {self.label} exited early ({self.process.returncode}): {tail}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _start_celery(broker: str, queue: str) -> _Process:
    celery_bin = str(Path(sys.executable).with_name("celery"))
    argv = [
        celery_bin,
        "-A",
        "bench.celery_peer",
        "worker",
        "--pool=solo",
        "--concurrency=1",
        f"--queues={queue}",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel=WARNING",
    ]
    return _Process(argv, _env(TDM_BENCH_CELERY_BROKER=broker, TDM_BENCH_CELERY_QUEUE=queue), "Celery worker")


def _start_ours(url: str) -> _Process:
    return _Process([sys.executable, "-m", "bench.worker_peer", url], _env(), "PackagerWorker")


# ---------------------------------------------------------------- the two sides


class _Celery:
    """Submit the Celery task and wait for its results the way Celery recommends (``ResultSet.join``).

    Not by polling ``AsyncResult.ready()``: with the rpc backend each such poll ``basic_get``s the
    client's whole reply queue and re-queues the PROGRESS messages it finds, which stalled this
    benchmark (41 of 100 results unseen after 120 s in a long-lived client). Waiting on the result
    consumer is Celery's best case; ours is measured by polling, the stricter path.
    """

    def __init__(self, worker: _Process) -> None:
        self.worker = worker

    def submit(self) -> Any:
        return package.apply_async(args=(f"http://server/api/docsets/{uuid.uuid4().hex}",))

    def done(self, handle: Any) -> bool:
        if handle.ready():
            result = handle.get(timeout=1)
            if result.get("size") != ARCHIVE_SIZE:
                raise RuntimeError(f"unexpected Celery result {result!r}")
            return True
        return False


class _Ours:
    """Request a package with PackagingClient and poll its status until COMPLETE."""

    def __init__(self, url: str, worker: _Process) -> None:
        self.worker = worker
        self.transport = open_transport(url)
        self.client = PackagingClient(self.transport)
        self.run = uuid.uuid4().hex[:8]
        self.count = 0

    def submit(self) -> str:
        self.count += 1
        docset_id = f"bench-celery-{self.run}-{self.count}"
        self.client.request_package(docset_id, f"http://server/api/docsets/{docset_id}")
        return docset_id

    def done(self, docset_id: str) -> bool:
        status = self.client.status(docset_id)
        if status.state is State.FAILED:
            raise RuntimeError(f"docset {docset_id} failed: {status.failure}")
        return status.state is State.COMPLETE

    def close(self) -> None:
        self.transport.close()


_Side = _Celery | _Ours


def _wait_all(side: _Side, handles: list[Any]) -> None:
    if isinstance(side, _Celery):
        for result in ResultSet(handles).join(timeout=_JOB_TIMEOUT, propagate=True):
            if result.get("size") != ARCHIVE_SIZE:
                raise RuntimeError(f"unexpected Celery result {result!r}")
        return
    deadline = time.monotonic() + _JOB_TIMEOUT
    pending = list(handles)
    while pending:
        if time.monotonic() > deadline:
            side.worker.check()
            raise RuntimeError(f"{len(pending)} of {len(handles)} jobs not complete after {_JOB_TIMEOUT:g} s")
        pending = [h for h in pending if not side.done(h)]


def _throughput(side: _Side, count: int) -> Callable[[], float]:
    def window() -> float:
        start = time.perf_counter()
        handles = [side.submit() for _ in range(count)]
        _wait_all(side, handles)
        return count / (time.perf_counter() - start)

    return window


def _latency(side: _Side, count: int) -> Callable[[], list[float]]:
    def window() -> list[float]:
        samples = []
        for _ in range(count):
            start = time.perf_counter()
            _wait_all(side, [side.submit()])
            samples.append((time.perf_counter() - start) * 1000)
        return samples

    return window


@dataclass(frozen=True)
class _Settings:
    requests: int
    latency_jobs: int
    rounds: int


def _rows_for(label: str, ours: _Ours, celery: _Celery, settings: _Settings) -> list[Row]:
    print(f"  {label}: throughput ...", flush=True)
    rates = interleaved_windows(
        {"ours": _throughput(ours, settings.requests), "celery": _throughput(celery, settings.requests)},
        rounds=settings.rounds,
    )
    print(f"  {label}: latency ...", flush=True)
    lat = interleaved_windows(
        {"ours": _latency(ours, settings.latency_jobs), "celery": _latency(celery, settings.latency_jobs)},
        rounds=settings.rounds,
    )
    ours_rate, celery_rate = median_of(rates["ours"]), median_of(rates["celery"])
    baseline = "Celery 5, solo pool, `rpc://`, acks_late"
    rows = [
        Row(
            what=f"request throughput, {settings.requests} no-op jobs, one worker, {label}",
            ours=ours_rate,
            baseline=celery_rate,
            unit="jobs/s",
            higher_is_better=True,
            goal=f">= {THROUGHPUT_GOAL:g}x",
            met=ours_rate >= THROUGHPUT_GOAL * celery_rate,
            command=COMMAND,
            baseline_name=baseline,
        )
    ]
    for q in (50, 99):
        ours_ms = median_of([percentile(w, q) for w in lat["ours"]])
        celery_ms = median_of([percentile(w, q) for w in lat["celery"]])
        rows.append(
            Row(
                what=f"request to complete-visible-on-poll p{q}, no-op job, {label}",
                ours=ours_ms,
                baseline=celery_ms,
                unit="ms",
                higher_is_better=False,
                goal="<= Celery's",
                met=ours_ms <= celery_ms,
                command=COMMAND,
                baseline_name=baseline,
            )
        )
    return rows


def _warm(side: _Side) -> None:
    if isinstance(side, _Celery):
        _wait_all(side, [side.submit()])
        return
    deadline = time.monotonic() + _START_TIMEOUT
    handle = side.submit()
    while not side.done(handle):
        side.worker.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {side.worker.label} did not finish a first job within {_START_TIMEOUT:g} s")
        time.sleep(0.05)


NOTES = """\
Notes on the Celery figures:

- Both sides run one worker process on the same RabbitMQ (in the bench vhost): Celery 5 with the
  solo pool (`--pool=solo --concurrency=1`: the task runs in the worker process, like ours; prefork
  would add a pipe hop), `rpc://` results, `task_acks_late=True`, prefetch multiplier 1. The task
  reports progress once with `update_state` and returns a URL and a size; our no-op handler calls
  `job.progress(1, 1)` and returns a `PackageResult` — so ours sends Accepted, Progress and Complete.
- "Complete-visible": for us, `PackagingClient.status()` polled until COMPLETE (a full
  read-fold-resend-ack of the docset's reply queue per poll); throughput windows submit every
  request, then poll the pending ones round-robin. For Celery, `ResultSet.join()` (latency:
  the same on one result), i.e. its result consumer pushing results to a waiting client — Celery's
  best case. Polling `AsyncResult.ready()` instead stalled: with `rpc://` every such call
  `basic_get`s the client's reply queue and re-queues PROGRESS messages, and in a long-lived
  client 41 of 100 results were still unseen after 120 s (the "reads a result once / leaks"
  trap of the rpc backend).
- Only the AMQP phase runs by default (`TDM_BENCH_CELERY_PHASES=amqp`; `stomp` measures our worker
  over RabbitMQ STOMP against the same Celery). Whichever phase runs second in one process stalls
  on the Celery side, even with a fresh Celery worker and queue per phase: tasks wait in the queue
  with one unacknowledged, the worker idle, no broker alarm (seen in 3 runs, STOMP first or AMQP
  first). The likely cause is client-side state of the Celery app kept across phases; it is not
  diagnosed yet, so the STOMP row is left out rather than reported from a broken run.
"""


def main() -> int:
    """Run the Celery comparison over AMQP and RabbitMQ STOMP; print and record the table."""
    settings = _Settings(
        requests=env_int("TDM_BENCH_CELERY_REQUESTS", 100),
        latency_jobs=env_int("TDM_BENCH_CELERY_LATENCY_JOBS", 20),
        rounds=env_int("TDM_BENCH_ROUNDS", 3),
    )
    urls = bench_urls()
    ensure_vhost()
    rows: list[Row] = []
    versions = broker_versions(urls)
    app.conf.broker_url = urls.amqp
    try:
        phases = {"amqp": ("RabbitMQ AMQP", urls.amqp), "stomp": ("RabbitMQ STOMP", urls.rabbitmq_stomp)}
        wanted = [p.strip() for p in os.environ.get("TDM_BENCH_CELERY_PHASES", "amqp").split(",") if p.strip()]
        if not wanted or not set(wanted) <= set(phases):
            raise SystemExit("bench: TDM_BENCH_CELERY_PHASES must list amqp and/or stomp, e.g. amqp,stomp")
        for label, url in (phases[p] for p in wanted):
            # A fresh Celery worker (and queue) per phase: one worker kept across both phases
            # stopped taking tasks in the second, with one task unacknowledged (see the notes).
            queue = f"bench-celery-{uuid.uuid4().hex[:8]}"
            app.conf.task_default_queue = queue
            celery_worker = _start_celery(urls.amqp, queue)
            worker = _start_ours(url)
            ours: _Ours | None = None
            try:
                celery = _Celery(celery_worker)
                _warm(celery)
                ours = _Ours(url, worker)
                _warm(ours)
                rows += _rows_for(label, ours, celery, settings)
            finally:
                if ours is not None:
                    ours.close()
                worker.stop()
                celery_worker.stop()
    finally:
        delete_vhost()
    table = render_rows(rows)
    print(table)
    missed = [r.what for r in rows if r.met is False]
    section = (
        f"Command: `{COMMAND}`  \n"
        f"Machine: {machine_description()}  \n"
        f"Brokers: {versions}; everything runs in RabbitMQ vhost `{BENCH_VHOST}`, deleted afterwards.  \n"
        f"Method: one warm-up window each, then {settings.rounds} windows of ours and of Celery in turn; "
        f"medians over the windows. Throughput windows: {settings.requests} requests; latency windows: "
        f"{settings.latency_jobs} jobs one after another, p50/p99 per window, median of those.  \n"
        "Sizes: TDM_BENCH_CELERY_REQUESTS, TDM_BENCH_CELERY_LATENCY_JOBS, TDM_BENCH_ROUNDS.  \n"
        "Goals: " + ("all met." if not missed else "missed: " + "; ".join(missed) + " (see the notes).") + "\n\n"
        f"{table}\n\n{NOTES}"
    )
    update_section("celery", section)
    return 0
