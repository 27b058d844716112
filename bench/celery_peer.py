"""Celery benchmark: request throughput and request-to-complete latency, our PackagerWorker vs a Celery 5 worker.

This module is also the Celery app that the benchmark's worker process loads
(``celery -A bench.celery_peer worker``); its broker and queue come from ``TDM_BENCH_CELERY_BROKER``
and ``TDM_BENCH_CELERY_QUEUE``. The client side builds a fresh app per phase with :func:`make_app`.
"""

from __future__ import annotations

import os
import shutil
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
from celery.exceptions import TimeoutError as CeleryTimeout  # type: ignore[import-untyped]
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

__all__ = ["POOLS", "TASK_NAME", "app", "celery_worker_argv", "main", "make_app", "run"]

COMMAND = ".venv/bin/python -m bench celery"
TASK_NAME = "tdm_bench.package"
THROUGHPUT_GOAL = 10.0
ARCHIVE_SIZE = 345345
ROOT = Path(__file__).resolve().parent.parent
POOLS = ("threads", "prefork", "solo")
"""Celery pools the benchmark can run (``TDM_BENCH_CELERY_POOL``); ``threads`` by default. ``solo``
stalls on this Celery (see the notes): choose it only to reproduce that."""
_START_TIMEOUT = 60.0
_JOB_TIMEOUT = 60.0


def _package(self: Any, docset_url: str) -> dict[str, object]:
    """The Celery task of the same shape as our no-op job: one progress report, then a URL and a size."""
    self.update_state(state="PROGRESS", meta={"items_done": 1, "items_total": 1, "docset_url": docset_url})
    return {"archive_url": f"https://tdm-packages.example.org/package/{uuid.uuid4().hex}.zip", "size": ARCHIVE_SIZE}


def make_app(broker: str, queue: str) -> Celery:
    """A Celery app on ``broker`` with the ``rpc://`` backend, acks_late, prefetch 1, and the task, routed to ``queue``.

    The benchmark builds one per phase on the client side and closes it afterwards: an app
    caches its routes, connections and (with ``rpc://``) the reply queue its results come back
    on, so one app reused across phases is a second variable in the comparison.
    """
    celery_app = Celery("tdm_bench", broker=broker, backend="rpc://", set_as_current=False)
    celery_app.conf.update(
        task_acks_late=True,
        task_default_queue=queue,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=10,
        worker_hijack_root_logger=False,
    )
    celery_app.task(bind=True, name=TASK_NAME)(_package)
    return celery_app


app = make_app(
    os.environ.get("TDM_BENCH_CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
    os.environ.get("TDM_BENCH_CELERY_QUEUE", "bench-celery"),
)
"""The app ``celery -A bench.celery_peer worker`` runs (configured by environment variables)."""


def celery_worker_argv(queue: str, pool: str) -> list[str]:
    """The command line of the benchmark's one Celery worker: one pool slot, consuming ``queue`` only.

    Raises:
        SystemExit: ``pool`` is not one of :data:`POOLS` (a user mistake: no traceback).
    """
    if pool not in POOLS:
        raise SystemExit(f"bench: TDM_BENCH_CELERY_POOL={pool!r}: choose one of {', '.join(POOLS)}")
    celery_bin = str(Path(sys.executable).with_name("celery"))
    return [
        celery_bin,
        "-A",
        "bench.celery_peer",
        "worker",
        f"--pool={pool}",
        "--concurrency=1",
        "-O",
        "fair",
        f"--queues={queue}",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel=WARNING",
    ]


# ---------------------------------------------------------------- processes


class _Process:
    """A worker subprocess, started and stopped by its own pid, with bounded waits.

    Its output goes to a log file, never to a pipe nobody reads: a worker that logs a warning
    per task would fill the pipe and block.
    """

    def __init__(self, argv: list[str], env: dict[str, str], label: str) -> None:
        self.label = label
        self._log = tempfile.NamedTemporaryFile(prefix="tdm-bench-worker-", suffix=".log")  # noqa: SIM115
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, text=True)

    def log_tail(self, chars: int = 1500) -> str:
        """The last ``chars`` characters the process wrote."""
        return Path(self._log.name).read_text(errors="replace")[-chars:].strip()

    def check(self) -> None:
        """Raise RuntimeError, with the end of its output, if the process has exited."""
        if self.process.poll() is not None:
            raise RuntimeError(f"the {self.label} exited early ({self.process.returncode}): {self.log_tail()}")

    def stop(self) -> None:
        """Terminate the process (kill it after 20 s) and drop its log."""
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


def _queue_state(queue: str) -> str:
    """What RabbitMQ says about ``queue`` (ready, unacknowledged, consumers), for a stall message."""
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl unavailable"
    try:
        done = subprocess.run(
            [
                "rabbitmqctl",
                "-q",
                "list_queues",
                "-p",
                BENCH_VHOST,
                "name",
                "messages_ready",
                "messages_unacknowledged",
                "consumers",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "rabbitmqctl timed out"
    for line in done.stdout.splitlines():
        fields = line.split()
        if fields and fields[0] == queue and len(fields) == 4:
            return f"{fields[1]} ready, {fields[2]} unacknowledged, {fields[3]} consumer(s)"
    return f"queue {queue} not found"


# ---------------------------------------------------------------- the two sides


class _Celery:
    """Submit the Celery task from one client app and wait on its results with ``ResultSet.join``.

    ``join`` waits on the rpc backend's result consumer: one basic.consume on this app's reply
    queue, fed by the worker; it is how Celery means rpc results to be read, and its best case.
    Every wait is bounded; a stall raises with the queue's state and the worker's log.
    """

    def __init__(self, broker: str, queue: str, pool: str) -> None:
        self.queue = queue
        self.pool = pool
        self.app = make_app(broker, queue)
        self.worker = _Process(
            celery_worker_argv(queue, pool),
            _env(TDM_BENCH_CELERY_BROKER=broker, TDM_BENCH_CELERY_QUEUE=queue),
            f"Celery worker ({pool} pool)",
        )

    def submit(self) -> Any:
        return self.app.send_task(TASK_NAME, args=(f"http://server/api/docsets/{uuid.uuid4().hex}",), queue=self.queue)

    def wait_all(self, handles: list[Any], timeout: float = _JOB_TIMEOUT) -> None:
        try:
            results = ResultSet(handles, app=self.app).join(timeout=timeout, propagate=True)
        except CeleryTimeout:
            self.worker.check()
            done = sum(1 for h in handles if h.ready())
            raise RuntimeError(
                f"Celery stalled: {len(handles) - done} of {len(handles)} tasks not complete after {timeout:g} s "
                f"({self.pool} pool; queue {self.queue}: {_queue_state(self.queue)}). "
                f"Worker log: {self.worker.log_tail() or '(empty)'}"
            ) from None
        for result in results:
            if not isinstance(result, dict) or result.get("size") != ARCHIVE_SIZE:
                raise RuntimeError(f"unexpected Celery result {result!r}")

    def close(self) -> None:
        try:
            self.app.close()
        finally:
            self.worker.stop()


class _Ours:
    """Request a package with PackagingClient and poll its status until COMPLETE."""

    def __init__(self, url: str) -> None:
        self.worker = _Process([sys.executable, "-m", "bench.worker_peer", url], _env(), "PackagerWorker")
        self.transport = open_transport(url)
        self.client = PackagingClient(self.transport)
        self.run = uuid.uuid4().hex[:8]
        self.count = 0

    def submit(self) -> str:
        self.count += 1
        docset_id = f"bench-celery-{self.run}-{self.count}"
        self.client.request_package(docset_id, f"http://server/api/docsets/{docset_id}")
        return docset_id

    def _done(self, docset_id: str) -> bool:
        status = self.client.status(docset_id)
        if status.state is State.FAILED:
            raise RuntimeError(f"docset {docset_id} failed: {status.failure}")
        return status.state is State.COMPLETE

    def wait_all(self, handles: list[str], timeout: float = _JOB_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        pending = list(handles)
        while pending:
            if time.monotonic() > deadline:
                self.worker.check()
                raise RuntimeError(
                    f"our worker stalled: {len(pending)} of {len(handles)} jobs not complete after {timeout:g} s. "
                    f"Worker log: {self.worker.log_tail() or '(empty)'}"
                )
            pending = [h for h in pending if not self._done(h)]

    def close(self) -> None:
        try:
            self.transport.close()
        finally:
            self.worker.stop()


_Side = _Celery | _Ours


def _throughput(side: _Side, count: int) -> Callable[[], float]:
    def window() -> float:
        start = time.perf_counter()
        handles = [side.submit() for _ in range(count)]
        side.wait_all(handles)
        return count / (time.perf_counter() - start)

    return window


def _latency(side: _Side, count: int) -> Callable[[], list[float]]:
    def window() -> list[float]:
        samples = []
        for _ in range(count):
            start = time.perf_counter()
            side.wait_all([side.submit()])
            samples.append((time.perf_counter() - start) * 1000)
        return samples

    return window


def _warm(side: _Side) -> None:
    """One job end to end, with a longer bound: the worker process is still starting."""
    side.worker.check()
    side.wait_all([side.submit()], timeout=_START_TIMEOUT)


@dataclass(frozen=True)
class _Settings:
    requests: int
    latency_jobs: int
    rounds: int
    pool: str
    phases: tuple[str, ...]


def _settings() -> _Settings:
    phases = tuple(p.strip() for p in os.environ.get("TDM_BENCH_CELERY_PHASES", "amqp,stomp").split(",") if p.strip())
    if not phases or not set(phases) <= {"amqp", "stomp"}:
        raise SystemExit("bench: TDM_BENCH_CELERY_PHASES must list amqp and/or stomp, e.g. amqp,stomp")
    return _Settings(
        requests=env_int("TDM_BENCH_CELERY_REQUESTS", 100),
        latency_jobs=env_int("TDM_BENCH_CELERY_LATENCY_JOBS", 20),
        rounds=env_int("TDM_BENCH_ROUNDS", 3),
        pool=os.environ.get("TDM_BENCH_CELERY_POOL", "threads").strip() or "threads",
        phases=phases,
    )


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
    baseline = f"Celery 5 over AMQP, {settings.pool} pool x1, `rpc://`, acks_late"
    rows = [
        Row(
            what=f"request throughput, {settings.requests} no-op jobs, one worker, ours over {label}",
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
                what=f"request to complete-visible p{q}, no-op job, ours over {label}",
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


def _phase(label: str, url: str, broker: str, settings: _Settings) -> list[Row]:
    """One phase: a fresh Celery worker, queue and client app, and a fresh PackagerWorker on ``url``."""
    queue = f"bench-celery-{uuid.uuid4().hex[:8]}"
    celery: _Celery | None = None
    ours: _Ours | None = None
    try:
        celery = _Celery(broker, queue, settings.pool)
        ours = _Ours(url)
        print(f"  {label}: starting workers ...", flush=True)
        _warm(celery)
        _warm(ours)
        return _rows_for(label, ours, celery, settings)
    finally:
        if ours is not None:
            ours.close()
        if celery is not None:
            celery.close()


NOTES = """\
Notes on the Celery figures:

- One worker each, on the same RabbitMQ (in the bench's own vhost). Celery 5: `--pool=threads
  --concurrency=1 -O fair` (one task at a time, run in a thread of the one worker process, as our
  worker runs its handler), `rpc://` results, `task_acks_late=True`, `worker_prefetch_multiplier=1`,
  gossip, mingle and heartbeats off. The task reports progress once with `update_state` and returns
  a URL and a size; our no-op handler calls `job.progress(1, 1)` and returns a `PackageResult`, so
  ours sends Accepted, Progress and Complete. Celery always runs over AMQP (it speaks no STOMP); the
  STOMP rows run our side over RabbitMQ STOMP against the same Celery.
- Each phase has a fresh Celery worker, task queue and client app (results come back on the
  client app's own rpc reply queue), and a fresh PackagerWorker; every wait is bounded (60 s), and
  a stall fails the group with the queue's state and the worker's log instead of hanging.
- "Complete-visible": for us, `PackagingClient.status()` polled back to back until COMPLETE (a
  full read-fold-resend-ack of the docset's reply queue per poll). For Celery, `ResultSet.join()`
  (latency: the same on one result): its result consumer is pushed results on a standing
  subscription, Celery's best case; `AsyncResult.ready()` polling `basic_get`s the client's reply
  queue and buffers other tasks' states in that one client, which is slower and which earlier
  versions of this benchmark saw leave results unseen. Throughput windows submit every request, then
  wait for all; latency windows submit one job and wait for it, one after another.
- Why not the solo pool (the earlier setting): with `--pool=solo`, `acks_late` and prefetch 1, this
  Celery (5.7, kombu 5.7, py-amqp 5.4) stalls. The solo worker runs the task inside its event
  loop's read callback and defers the ack to the loop; now and then the next delivery is not
  picked up after that ack, and with heartbeats and gossip off no other frame arrives to wake the
  loop: the worker sits idle at 0 % CPU with one message unacknowledged on its channel, `celery
  inspect active` and `reserved` empty, the other tasks ready in its queue. With heartbeats on, a
  run went through but one window ran at a tenth of the speed (woken late, most likely by a
  heartbeat). Seen in every run with heartbeats off: two standalone runs of 100-task windows (one
  with no `update_state` in the task) stalled in their 1st and 3rd window, and the benchmark in
  its first phase. The `threads` and `prefork` pools (concurrency 1, same settings) each ran 1,500
  tasks with no stall, and the benchmark's two phases now run back to back: the solo pool, not
  the app shared across phases, was behind the earlier "second phase stalls" reports (the app is
  per phase now anyway). `TDM_BENCH_CELERY_POOL=solo` reproduces it; the group then fails after
  60 s naming the queue's state instead of hanging.
- What Celery does not do, and ours does per job: a persistent, confirmed copy of the request on the
  docset's reply queue (so a poll says REQUESTED), a status that survives being read and a restart
  of the client, typed and versioned messages, and reply queues that expire instead of leaking. That
  is the price of the throughput and latency gap below the goals.
"""


def run() -> list[Row]:
    """Run the Celery comparison (phases in ``TDM_BENCH_CELERY_PHASES``); print and record the table.

    Returns:
        The rows, for the combined table of ``python -m bench``.

    Raises:
        RuntimeError: a worker stalled or exited (the message says which, with the queue's state).
    """
    settings = _settings()
    urls = bench_urls()
    phases = {"amqp": ("RabbitMQ AMQP", urls.amqp), "stomp": ("RabbitMQ STOMP", urls.rabbitmq_stomp)}
    ensure_vhost()
    rows: list[Row] = []
    try:
        versions = broker_versions(urls)
        for name in settings.phases:
            label, url = phases[name]
            rows += _phase(label, url, urls.amqp, settings)
    finally:
        delete_vhost()
    table = render_rows(rows)
    print(table)
    missed = [r.what for r in rows if r.met is False]
    section = (
        f"Command: `{COMMAND}` (one phase: `TDM_BENCH_CELERY_PHASES=amqp` or `stomp`)  \n"
        f"Machine: {machine_description()}  \n"
        f"Brokers: {versions}; everything runs in a RabbitMQ vhost of its own, deleted afterwards.  \n"
        f"Method: per phase, one warm-up window each, then {settings.rounds} windows of ours and of Celery in "
        f"turn; medians over the windows. Throughput windows: {settings.requests} requests; latency windows: "
        f"{settings.latency_jobs} jobs one after another, p50/p99 per window, median of those.  \n"
        "Sizes: TDM_BENCH_CELERY_REQUESTS, TDM_BENCH_CELERY_LATENCY_JOBS, TDM_BENCH_ROUNDS; "
        "Celery pool: TDM_BENCH_CELERY_POOL (threads).  \n"
        "Goals: " + ("all met." if not missed else "missed: " + "; ".join(missed) + " (see the notes).") + "\n\n"
        f"{table}\n\n{NOTES}"
    )
    if set(settings.phases) == set(phases):
        update_section("celery", section)
    else:
        print("(one phase only: docs/performance.md left unchanged)")
    return rows


def main() -> int:
    """``python -m bench celery``'s runner: :func:`run`; returns 0."""
    run()
    return 0
