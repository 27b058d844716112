"""Celery benchmark: request throughput and request-to-complete latency, our PackagerWorker vs a Celery 5 worker.

This module is also the Celery app that the benchmark's worker process loads
(``celery -A bench.celery_peer worker``); its broker and queue come from ``TDM_BENCH_CELERY_BROKER``
and ``TDM_BENCH_CELERY_QUEUE``. The client side builds a fresh app per phase with :func:`make_app`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery  # type: ignore[import-untyped]
from celery.exceptions import TimeoutError as CeleryTimeout  # type: ignore[import-untyped]
from celery.result import ResultSet  # type: ignore[import-untyped]

from bench import machine_description, update_section
from bench.choices import (
    ONE_CALL_NOTE,
    PATTERN_NOTE,
    PREPARE_NOTE,
    REDIS_CONFIRMED_NOTE,
    REDIS_EVERYSEC_NOTE,
    REDIS_NOTE,
    RPC_NOTE,
    design_costs,
    prime_cost_rows,
    send_cost_rows,
)
from bench.cycle import THROUGHPUT, Comparison, Prepares, Side, SideSpec, build_rows, measure, warm
from bench.harness import (
    BENCH_VHOST,
    BenchUrls,
    Row,
    bench_urls,
    broker_versions,
    delete_vhost,
    ensure_vhost,
    env_flag,
    env_int,
    render_rows,
)
from bench.private_redis import PrivateRedis
from tdm_messaging.server import PackagingClient
from tdm_messaging.status import State
from tdm_messaging.transport import open_transport

__all__ = ["FLOORS", "POOLS", "TASK_NAME", "app", "celery_worker_argv", "comparisons", "main", "make_app", "run"]

COMMAND = ".venv/bin/python -m bench celery"
TASK_NAME = "tdm_bench.package"
REDIS_THROUGHPUT_GOAL = 1.0
REDIS_P50_GOAL = 1.0
RPC_THROUGHPUT_GOAL = 0.5
FLOOR_GOAL = 0.9
BATCHED_NOTE = "a window's requests in one `request_packages` call"
SERVER_THREADS = 4
"""Server threads of the threaded sides (``TDM_BENCH_CELERY_THREADS``): a window's requests are sent
from this many threads, one call per request, as a threaded web server answering one docset per call would."""
THREADS_NOTE = "{threads} server threads, one call per request"
THREADS_VS_ONE_NOTE = "{threads} server threads vs one thread"
CELERY_ROUNDS = 7
"""Rounds of the group unless ``TDM_BENCH_ROUNDS`` says otherwise: the job-cycle rows moved by 0.1-0.15x
between runs of 3 rounds on this shared 2-core machine, and their goals sit within that; with 5 the
STOMP floor rows still read 0.89x in one run and 0.98x in the next (about 6 s a round per phase)."""
OUR_PREFETCH = 16
"""Our PackagerWorker's ``prefetch`` in the group (``TDM_BENCH_CELERY_PREFETCH``)."""
OUR_LINGER_MS = 250
"""Our PackagerWorker's ``progress_linger_seconds``, in ms (``TDM_BENCH_CELERY_LINGER_MS``; 0: none)."""
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


def make_app(
    broker: str, queue: str, *, backend: str = "rpc://", keyprefix: str = "", prefetch: int = 1, confirm: bool = False
) -> Celery:
    """A Celery app on ``broker`` with acks_late, ``prefetch`` (one pool slot: the multiplier is the
    prefetch count), and the task, routed to ``queue``.

    ``backend`` is ``rpc://`` (results as transient messages to the client's reply queue: read
    once, by that client) or a ``redis://`` URL: results stored as keys any process can read
    again (``result_persistent``, the common production set-up), under ``keyprefix`` so the
    benchmark can delete exactly its own. ``confirm``: tasks are sent with publisher confirms
    (kombu's ``confirm_publish``), so ``send_task`` returns once RabbitMQ has stored the task, as
    our ``request_package`` does; Celery's default sends unconfirmed. The benchmark builds one
    app per side and phase on the client side and closes it afterwards: an app caches its
    routes, connections and (with ``rpc://``) its reply queue, so one app reused across phases
    is a second variable.
    """
    celery_app = Celery("tdm_bench", broker=broker, backend=backend, set_as_current=False)
    celery_app.conf.update(
        task_acks_late=True,
        task_default_queue=queue,
        worker_prefetch_multiplier=prefetch,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=10,
        worker_hijack_root_logger=False,
    )
    if backend.startswith("redis"):
        celery_app.conf.update(
            result_persistent=True,
            result_backend_transport_options={"global_keyprefix": keyprefix} if keyprefix else {},
        )
    if confirm:
        celery_app.conf.broker_transport_options = {"confirm_publish": True}
    celery_app.task(bind=True, name=TASK_NAME)(_package)
    return celery_app


app = make_app(
    os.environ.get("TDM_BENCH_CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
    os.environ.get("TDM_BENCH_CELERY_QUEUE", "bench-celery"),
    backend=os.environ.get("TDM_BENCH_CELERY_BACKEND", "rpc://"),
    keyprefix=os.environ.get("TDM_BENCH_CELERY_KEYPREFIX", ""),
    prefetch=int(os.environ.get("TDM_BENCH_CELERY_WORKER_PREFETCH", "1")),
    confirm=os.environ.get("TDM_BENCH_CELERY_CONFIRM") == "1",
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
        # A node name of its own: two workers of one name share a pidbox queue, and the second fails.
        f"--hostname={queue}@%h",
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


# ---------------------------------------------------------------- the sides


class _Celery:
    """Submit the Celery task from one client app and wait on its results with ``ResultSet.join``.

    With ``rpc://``, ``join`` waits on the backend's result consumer: one basic.consume on this
    app's reply queue, fed by the worker; it is how Celery means rpc results to be read, and its
    best case. With Redis, each result is a key the worker writes and publishes on; the client's
    result consumer is subscribed to the task's channel when the task is sent (pub/sub), so
    ``join`` is pushed the result too. Every wait is bounded; a stall raises with the queue's
    state and the worker's log.
    """

    def __init__(
        self,
        broker: str,
        queue: str,
        pool: str,
        *,
        backend: str = "rpc://",
        keyprefix: str = "",
        prefetch: int = 1,
        confirm: bool = False,
    ) -> None:
        self.queue = queue
        self.pool = pool
        self.app = make_app(broker, queue, backend=backend, keyprefix=keyprefix, prefetch=prefetch, confirm=confirm)
        self.worker = _Process(
            celery_worker_argv(queue, pool),
            _env(
                TDM_BENCH_CELERY_BROKER=broker,
                TDM_BENCH_CELERY_QUEUE=queue,
                TDM_BENCH_CELERY_BACKEND=backend,
                TDM_BENCH_CELERY_KEYPREFIX=keyprefix,
                TDM_BENCH_CELERY_WORKER_PREFETCH=str(prefetch),
                TDM_BENCH_CELERY_CONFIRM="1" if confirm else "0",
            ),
            f"Celery worker ({pool} pool, {backend.partition(':')[0]} results)",
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


def _from_threads(pool: ThreadPoolExecutor, threads: int, items: list[Any], call: Any) -> list[Any]:
    """``call(item)`` for each of ``items``, from ``threads`` threads of ``pool`` (item i in thread i mod
    ``threads``, each thread's in order); the results in the order of ``items``."""
    parts = [items[i::threads] for i in range(threads)]
    done = list(pool.map(lambda part: [call(item) for item in part], parts))
    results: list[Any] = [None] * len(items)
    for i, part in enumerate(done):
        results[i::threads] = part
    return results


class _CeleryThreads(_Celery):
    """The Celery peer with a throughput window's tasks sent from ``threads`` threads of one client app,
    one ``send_task`` each (the app's producer pool gives each thread a producer), as a threaded server would."""

    def __init__(self, *args: Any, threads: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.threads = threads
        self.pool_of_threads = ThreadPoolExecutor(threads, thread_name_prefix="bench-celery-server")

    def submit_many(self, count: int) -> list[Any]:
        return _from_threads(self.pool_of_threads, self.threads, list(range(count)), lambda _i: self.submit())

    def close(self) -> None:
        try:
            self.pool_of_threads.shutdown()
        finally:
            super().close()


class _Ours:
    """Request a package with PackagingClient and poll its status until COMPLETE; the reply queue is
    created in the request's path (``request_package`` declares it).

    The PackagerWorker process is the phase's, shared by our sides (one worker, as Celery has
    one): the sides' windows never overlap, and two workers on one request queue would each take
    part of a window's jobs.
    """

    def __init__(self, url: str, worker: _Process) -> None:
        self.worker = worker
        self.transport = open_transport(url)
        self.client = PackagingClient(self.transport)
        self.run = uuid.uuid4().hex[:8]
        self.count = 0

    def _next_id(self) -> str:
        self.count += 1
        return f"bench-celery-{self.run}-{self.count}"

    def submit(self) -> str:
        docset_id = self._next_id()
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
        self.transport.close()


class _OursPrepared(_Ours):
    """Ours with each docset's reply queue created ahead (``PackagingClient.prepare``), outside the timed
    region, as a server does when the docset is created; ``request_package`` then finds it there."""

    def __init__(self, url: str, worker: _Process) -> None:
        super().__init__(url, worker)
        self._ready: list[str] = []

    def prepare_ahead(self, count: int) -> None:
        while len(self._ready) < count:
            docset_id = self._next_id()
            self.client.prepare(docset_id)
            self._ready.append(docset_id)

    def submit(self) -> str:
        docset_id = self._ready.pop(0) if self._ready else self._next_id()
        self.client.request_package(docset_id, f"http://server/api/docsets/{docset_id}")
        return docset_id


class _OursBatched(_OursPrepared):
    """Ours prepared, a throughput window's requests sent in one ``PackagingClient.request_packages``
    call (one confirm wait for all), as a server's endpoint taking many docsets at once would send
    them; a latency window's single requests go one at a time, as :class:`_OursPrepared`'s."""

    def submit_many(self, count: int) -> list[str]:
        self.prepare_ahead(count)
        docsets = [self._ready.pop(0) for _ in range(count)]
        self.client.request_packages([(d, f"http://server/api/docsets/{d}") for d in docsets])
        return docsets


class _OursThreads(_OursPrepared):
    """Ours prepared, a throughput window's requests sent from ``threads`` threads sharing one
    PackagingClient and transport, one ``request_package`` call each, as a threaded server answering
    one docset per call would: concurrent confirmed sends share a confirm wait (group commit, AMQP);
    a latency window's single requests go one at a time, as :class:`_OursPrepared`'s."""

    def __init__(self, url: str, worker: _Process, *, threads: int) -> None:
        super().__init__(url, worker)
        self.threads = threads
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="bench-ours-server")

    def submit_many(self, count: int) -> list[str]:
        self.prepare_ahead(count)
        docsets = [self._ready.pop(0) for _ in range(count)]

        def request(docset_id: str) -> str:
            self.client.request_package(docset_id, f"http://server/api/docsets/{docset_id}")
            return docset_id

        return _from_threads(self.pool, self.threads, docsets, request)

    def close(self) -> None:
        try:
            self.pool.shutdown()
        finally:
            super().close()


# ---------------------------------------------------------------- phases

FLOORS = {"amqp": "bench.floor_amqp:FloorAmqp", "stomp": "bench.floor_stomp:FloorStomp"}
"""The raw-client floor of each wing: a class taking the broker URL, with the side interface
(``submit() -> handle``, ``wait_all(handles, timeout=...)``, ``close()``; optionally
``prepare_ahead(count)``, see :class:`bench.cycle.Prepares`, a ``BASELINE_NAME`` string, and
``FOLLOWS_OUR_WORKER = True`` if it takes ``prefetch=`` and ``progress=`` to do what our worker
does as set for the run).
A floor module that is not there yet leaves its rows out."""

PREPARED_FLOORS = {"stomp": "bench.floor_stomp:FloorStompPrepared"}
"""A wing's second floor, with each reply queue created ahead (side ``floor-prep``), held against ours
prepared while the first floor (which creates it in the request) is held against ours without prepare."""

_FLOOR_NAMES = {
    "amqp": "raw py-amqp loop of our message pattern",
    "stomp": "raw stomp.py loop of our message pattern",
}


def _floor_spec(
    wing: str, settings: _Settings | None = None, floors: dict[str, str] = FLOORS, key: str = "floor"
) -> SideSpec | None:
    if wing not in floors:
        return None
    module_name, _sep, class_name = floors[wing].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        print(f"  ({module_name} is not there: no floor rows for {wing})", flush=True)
        return None
    floor_cls = getattr(module, class_name)
    name = str(getattr(floor_cls, "BASELINE_NAME", _FLOOR_NAMES[wing]))
    if settings is not None and getattr(floor_cls, "FOLLOWS_OUR_WORKER", False):
        # A floor that does our worker's batching and progress linger too, as set for the run.
        options = {"prefetch": settings.prefetch, "progress": settings.linger == 0}
        return SideSpec(key, name, lambda url: floor_cls(url, **options))
    return SideSpec(key, name, floor_cls)


@dataclass(frozen=True)
class _PhaseSetup:
    """What the sides of one phase share: the Celery broker, the private Redis servers for results
    (``redis_url``: AOF fsync always; ``everysec_url``: fsync once a second, None when left out), our worker."""

    wing: str
    broker: str
    redis_url: str
    everysec_url: str | None
    keyprefix: str
    worker: _Process


def _side_specs(setup: _PhaseSetup, settings: _Settings) -> list[SideSpec]:
    """The sides of a phase, in their order within each round. One line per side."""
    broker, redis_url, keyprefix, worker = setup.broker, setup.redis_url, setup.keyprefix, setup.worker
    pool, prefetch, threads = settings.pool, settings.prefetch, settings.threads
    specs = [
        SideSpec("ours", "ours, reply queue prepared", lambda url: _OursPrepared(url, worker)),
        SideSpec("ours-noprep", "ours, reply queue created by the request", lambda url: _Ours(url, worker)),
        SideSpec(
            "ours-batched",
            "ours, reply queue prepared, a window's requests in one `request_packages` call",
            lambda url: _OursBatched(url, worker),
        ),
        SideSpec(
            "celery-redis",
            f"Celery 5 over AMQP, {pool} pool x1, prefetch {prefetch}, "
            "Redis results (`result_persistent`, AOF fsync always), acks_late",
            lambda _url: _Celery(broker, _queue(), pool, backend=redis_url, keyprefix=keyprefix, prefetch=prefetch),
        ),
    ]
    if threads > 1:
        specs += [
            SideSpec(
                "ours-threads",
                f"ours, reply queue prepared, a window's requests from {threads} server threads, "
                "one `request_package` call each",
                lambda url: _OursThreads(url, worker, threads=threads),
            ),
            SideSpec(
                "celery-redis-threads",
                f"Celery 5 over AMQP, {pool} pool x1, prefetch {prefetch}, a window's tasks sent from {threads} "
                "threads, Redis results (`result_persistent`, AOF fsync always), acks_late",
                lambda _url: _CeleryThreads(
                    broker, _queue(), pool, backend=redis_url, keyprefix=keyprefix, prefetch=prefetch, threads=threads
                ),
            ),
        ]
    if settings.confirmed:
        specs.append(
            SideSpec(
                "celery-redis-confirmed",
                f"Celery 5 over AMQP, {pool} pool x1, prefetch {prefetch}, tasks sent with publisher confirms, "
                "Redis results (`result_persistent`, AOF fsync always), acks_late",
                lambda _url: _Celery(
                    broker, _queue(), pool, backend=redis_url, keyprefix=keyprefix, prefetch=prefetch, confirm=True
                ),
            )
        )
    everysec_url = setup.everysec_url
    if everysec_url is not None:
        specs.append(
            SideSpec(
                "celery-redis-everysec",
                f"Celery 5 over AMQP, {pool} pool x1, prefetch {prefetch}, "
                "Redis results (`result_persistent`, AOF fsync everysec), acks_late",
                lambda _url: _Celery(
                    broker, _queue(), pool, backend=everysec_url, keyprefix=keyprefix, prefetch=prefetch
                ),
            )
        )
    specs += [
        SideSpec(
            "celery-rpc",
            f"Celery 5 over AMQP, {pool} pool x1, prefetch {prefetch}, `rpc://`, acks_late",
            lambda _url: _Celery(broker, _queue(), pool, prefetch=prefetch),
        ),
    ]
    for floor in (
        _floor_spec(setup.wing, settings),
        _floor_spec(setup.wing, settings, floors=PREPARED_FLOORS, key="floor-prep"),
    ):
        if floor is not None:
            specs.append(floor)
    return specs


def comparisons(
    *, floor_prepares: bool, prepared_floor: bool = False, threads: int = SERVER_THREADS
) -> list[Comparison]:
    """The rows of a phase. The floor is held against our side with the same reply-queue pattern:
    ours prepared if the floor prepares its queues ahead, else ours creating it in the request;
    a prepared second floor (``floor-prep``), when there is one, against ours prepared. The
    threaded sides (``threads`` server threads) are held against each other and against ours from
    one thread, with no goal (the issue's goals stay on the one-thread rows)."""
    threads_note = THREADS_NOTE.format(threads=threads)
    floor_ours = "ours" if floor_prepares else "ours-noprep"
    floor_note = "vs the floor" + ("" if floor_prepares else " (both create the reply queue in the request)")
    prep_note = "vs the floor (both create the reply queue ahead)"
    prepared = (
        [
            Comparison("ours", "floor-prep", THROUGHPUT, FLOOR_GOAL, prep_note),
            Comparison("ours", "floor-prep", "p50", FLOOR_GOAL, prep_note),
        ]
        if prepared_floor
        else []
    )
    # The pattern's own limit: the floor whose reply queues are made ahead (as ours' goal rows
    # are) held against the Celery peer of the goals, with no goal: what any client could reach.
    prepared_floor_key = "floor" if floor_prepares else "floor-prep" if prepared_floor else None
    pattern_limit = (
        []
        if prepared_floor_key is None
        else [
            Comparison(prepared_floor_key, "celery-redis", metric, None, PATTERN_NOTE, subject="the floor")
            for metric in (THROUGHPUT, "p50")
        ]
    )
    return [
        Comparison("ours", "celery-redis", THROUGHPUT, REDIS_THROUGHPUT_GOAL, REDIS_NOTE),
        Comparison("ours", "celery-redis", "p50", REDIS_P50_GOAL, REDIS_NOTE),
        Comparison("ours", "celery-redis", "p99", None, REDIS_NOTE),
        Comparison("ours", "celery-redis-confirmed", THROUGHPUT, None, REDIS_CONFIRMED_NOTE),
        Comparison("ours", "celery-redis-confirmed", "p50", None, REDIS_CONFIRMED_NOTE),
        Comparison("ours", "celery-redis-everysec", THROUGHPUT, None, REDIS_EVERYSEC_NOTE),
        Comparison("ours", "celery-redis-everysec", "p50", None, REDIS_EVERYSEC_NOTE),
        Comparison("ours", "celery-rpc", THROUGHPUT, RPC_THROUGHPUT_GOAL, RPC_NOTE),
        Comparison("ours", "celery-rpc", "p50", None, RPC_NOTE),
        Comparison(floor_ours, "floor", THROUGHPUT, FLOOR_GOAL, floor_note),
        Comparison(floor_ours, "floor", "p50", FLOOR_GOAL, floor_note),
        *prepared,
        *pattern_limit,
        Comparison("ours-batched", "celery-redis", THROUGHPUT, None, BATCHED_NOTE + ", " + REDIS_NOTE),
        Comparison("ours-batched", "celery-rpc", THROUGHPUT, None, BATCHED_NOTE + ", " + RPC_NOTE),
        Comparison("ours-batched", "ours", THROUGHPUT, None, ONE_CALL_NOTE),
        Comparison("ours-noprep", "ours", THROUGHPUT, None, PREPARE_NOTE),
        Comparison("ours-noprep", "ours", "p50", None, PREPARE_NOTE),
        Comparison("ours-noprep", "celery-redis", THROUGHPUT, None, "no prepare, " + REDIS_NOTE),
        Comparison("ours-threads", "celery-redis-threads", THROUGHPUT, None, threads_note + ", " + REDIS_NOTE),
        Comparison("ours-threads", "ours", THROUGHPUT, None, THREADS_VS_ONE_NOTE.format(threads=threads)),
    ]


def _queue() -> str:
    return f"bench-celery-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class _Settings:
    requests: int
    latency_jobs: int
    rounds: int
    pool: str
    phases: tuple[str, ...]
    choice_sends: int
    everysec: bool
    confirmed: bool
    prefetch: int
    linger: float
    threads: int = SERVER_THREADS


def _linger_ms() -> int:
    """``TDM_BENCH_CELERY_LINGER_MS`` (0 allowed: no linger), or :data:`OUR_LINGER_MS`."""
    raw = os.environ.get("TDM_BENCH_CELERY_LINGER_MS", "").strip()
    if not raw:
        return OUR_LINGER_MS
    if not raw.isdigit():
        raise SystemExit(f"bench: TDM_BENCH_CELERY_LINGER_MS={raw!r}: give a whole number of milliseconds (0: none)")
    return int(raw)


def _settings() -> _Settings:
    phases = tuple(p.strip() for p in os.environ.get("TDM_BENCH_CELERY_PHASES", "amqp,stomp").split(",") if p.strip())
    if not phases or not set(phases) <= {"amqp", "stomp"}:
        raise SystemExit("bench: TDM_BENCH_CELERY_PHASES must list amqp and/or stomp, e.g. amqp,stomp")
    return _Settings(
        requests=env_int("TDM_BENCH_CELERY_REQUESTS", 100),
        latency_jobs=env_int("TDM_BENCH_CELERY_LATENCY_JOBS", 20),
        rounds=env_int("TDM_BENCH_ROUNDS", CELERY_ROUNDS),
        pool=os.environ.get("TDM_BENCH_CELERY_POOL", "threads").strip() or "threads",
        phases=phases,
        choice_sends=env_int("TDM_BENCH_CHOICE_SENDS", 200),
        everysec=env_flag("TDM_BENCH_CELERY_EVERYSEC", True),
        confirmed=env_flag("TDM_BENCH_CELERY_CONFIRMED", True),
        prefetch=env_int("TDM_BENCH_CELERY_PREFETCH", OUR_PREFETCH),
        linger=_linger_ms() / 1000,
        threads=env_int("TDM_BENCH_CELERY_THREADS", SERVER_THREADS),
    )


def _clean_redis(redis_url: str, keyprefix: str) -> int:
    """Delete the Redis result keys the phase wrote (only those under its own prefix); how many."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{keyprefix}*", count=1000))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()


def _phase(
    wing: str, label: str, url: str, *, urls: BenchUrls, redis: dict[str, PrivateRedis], settings: _Settings
) -> list[Row]:
    """One phase: our PackagerWorker on ``url``, fresh Celery workers, queues and client apps, the floor.

    ``redis``: the run's private Redis servers by ``appendfsync`` mode (``always``; ``everysec`` if not left out).
    """
    keyprefix = f"tdm-bench-celery-{uuid.uuid4().hex[:8]}-"
    worker = _Process(
        [sys.executable, "-m", "bench.worker_peer", url, str(settings.prefetch), str(settings.linger)],
        _env(),
        "PackagerWorker",
    )
    everysec = redis.get("everysec")
    setup = _PhaseSetup(wing, urls.amqp, redis["always"].url, everysec.url if everysec else None, keyprefix, worker)
    sides: dict[str, Side] = {}
    try:
        specs = _side_specs(setup, settings)
        for spec in specs:
            sides[spec.key] = spec.build(url)
        print(f"  {label}: starting workers ...", flush=True)
        worker.check()
        for side in sides.values():
            warm(side, _START_TIMEOUT)
        measured = measure(
            sides,
            requests=settings.requests,
            latency_jobs=settings.latency_jobs,
            rounds=settings.rounds,
            progress=lambda what: print(f"  {label}: {what} ...", flush=True),
        )
        floor = sides.get("floor")
        rows = build_rows(
            comparisons(
                floor_prepares=floor is not None and isinstance(floor, Prepares),
                prepared_floor="floor-prep" in sides,
                threads=settings.threads,
            ),
            measured,
            label=label,
            names={spec.key: spec.name for spec in specs},
            requests=settings.requests,
            command=COMMAND,
        )
        print(f"  {label}: cost per send of confirms and persistence ...", flush=True)
        sends, rounds = settings.choice_sends, settings.rounds
        return (
            rows
            + send_cost_rows(url, label, sends=sends, rounds=rounds, command=COMMAND)
            + prime_cost_rows(url, label, sends=min(sends, 50), rounds=rounds, command=COMMAND)
        )
    finally:
        for key, side in sides.items():
            try:
                side.close()
            except Exception as exc:  # one side's failed close must not leave the others' workers running
                print(f"  {label}: closing {key} failed: {exc!r}", file=sys.stderr, flush=True)
        worker.stop()
        for server in redis.values():
            _clean_redis(server.url, keyprefix)


NOTES = """\
Notes on the job-cycle figures:

- One worker each, on the same RabbitMQ (in the bench's own vhost). Celery 5: `--pool=threads
  --concurrency=1 -O fair` (one task at a time, run in a thread of the one worker process, as our
  worker runs its handler), `task_acks_late=True`, `worker_prefetch_multiplier` = our worker's
  prefetch, gossip, mingle and heartbeats off, a node name per worker. The task reports progress
  once with `update_state` and returns a URL and a size; our no-op handler calls
  `job.progress(1, 1)` and returns a `PackageResult`, so ours sends Accepted, Progress and
  Complete, or the Complete alone when our worker lingers (the default of the group,
  `TDM_BENCH_CELERY_LINGER_MS`: the Complete supersedes the Accepted and Progress kept back,
  protocol § 1). Celery always runs over AMQP (it
  speaks no STOMP); the STOMP rows run our side over RabbitMQ STOMP against the same Celery peers.
- The two Celery peers. `rpc://`: results are transient messages to the submitting client's own
  reply queue, read once, by that client; a restart of the client loses them. Redis
  (`result_backend=redis://`, `result_persistent=True`): results are keys any process can read,
  again and again; this is the common production set-up and the one whose durability is closest to
  ours (a status that survives being read and a restart of the client).
- The Redis peer's own redis-server (`bench/private_redis.py`): whether a result survives a
  restart of Redis is Redis' configuration, and the machine's shared Redis (the tests') keeps
  nothing on disk, which would flatter the peer. So the bench starts a private redis-server for
  the run (a free port, a temp directory, removed at the end) with `--appendonly yes
  --appendfsync always --save ''`: each result is in the append-only file and fsynced before Redis
  acknowledges the write, the equal of our persistent messages confirmed after the broker's
  fsync. The goals are held against this peer. A second, cheaper peer runs on another private
  redis-server with `--appendfsync everysec` (Redis' common production setting; up to a second of
  results lost on a crash), with no goal; `TDM_BENCH_CELERY_EVERYSEC=0` leaves it out.
  `tests/bench/test_private_redis.py` proves the claim: a result stored by Celery's Redis backend
  is read back after `kill -9` of the server and a restart on the same directory. Celery's task
  messages are persistent but unconfirmed by default (no publisher confirms): `send_task` returns
  before RabbitMQ has stored the task, and a broker crash then can lose it unseen, while our
  `request_package` returns only once both its messages are confirmed. A third Redis peer
  (`celery-redis-confirmed`, `TDM_BENCH_CELERY_CONFIRMED=0` leaves it out) closes that gap too:
  kombu's `confirm_publish`, so each `send_task` waits for RabbitMQ's confirm, with the same
  fsync-always Redis. Its rows have no goal (the goals stay on the peer the issue names, Celery's
  default send), and show what the request's confirm costs Celery.
- Our sides share one PackagerWorker process (their windows never overlap; two workers on one
  request queue would split a window's jobs), run with `prefetch=TDM_BENCH_CELERY_PREFETCH`
  (`OUR_PREFETCH` by default): it takes the requests the broker has already sent it as one batch
  and waits once for the confirms of all their Completes before acknowledging them
  (docs/performance.md, "Batching"). Celery's workers get the same prefetch
  (`worker_prefetch_multiplier`, one pool slot), so neither side waits for a delivery the other
  has in hand; a Celery worker still acknowledges each task by itself. "Prepared": the window's
  reply queues are created by `PackagingClient.prepare` before the window's clock starts, as a
  server does when a docset is created; `request_package` then finds the queue there. "No
  prepare": the request creates it. "Batched": prepared, and a throughput window's 100 requests go
  in one `PackagingClient.request_packages` call (one confirm wait for all), as a server endpoint
  taking many docsets at once would send them; its rows have no goal, since a server answering one
  docset per call cannot batch. Its latency windows are one request at a time, as the others'.
- "Server threads" (`TDM_BENCH_CELERY_THREADS`, 4 by default; 1 leaves these sides out): a
  threaded server answering one docset per HTTP call. Ours prepared, a throughput window's
  requests sent from that many threads sharing one `PackagingClient` and transport, one
  `request_package` call per docset: on AMQP, calls that arrive while another's confirm wait is
  in flight share the next one (group commit, docs/performance.md), on STOMP each call waits for
  its own receipts, the waits overlapping. Its peer is Celery with fsync-always Redis results,
  `send_task` called from as many threads of one client app (each thread takes a producer from
  the app's pool). These rows have no goal (the issue's goals stay on the one-thread rows); the
  "vs one thread" row says what the threads gain ours. Latency windows stay one job at a time.
- The floor (`bench/floor_amqp.py`, `bench/floor_stomp.py`: `FloorAmqp`, `FloorStomp`) is a raw
  py-amqp / stomp.py loop doing our message pattern with no library around it; it is held against
  our side with the same reply-queue pattern (prepared if the floor prepares its queues ahead, see
  `bench.cycle.Prepares`). A floor module that is missing leaves its rows out. On STOMP a second
  floor (`FloorStompPrepared`, side `floor-prep`) creates each reply queue ahead, outside the timed
  region (an empty probe SEND with the declare headers, `expiration: 0`, receipted), and is held
  against ours prepared, while `FloorStomp` is held against ours without prepare. Every floor has
  `FOLLOWS_OUR_WORKER`: it runs with our worker's prefetch and batches as our worker does (the
  requests already received are one batch, one wait for the confirms or receipts of all their
  Completes, then the acks: AMQP and STOMP alike) and, when our worker lingers, sends neither
  Accepted nor Progress for the no-op job either. Both floors send our messages (the protocol's JSON bodies and
  `tdm-*` headers), so the broker stores as many bytes per job for the floor as for ours.
- The floor against Celery ("the floor over ..., reply queue prepared (the pattern's own limit ...)",
  no goal): the raw-client loop of our message pattern, reply queues made ahead (AMQP's `floor`,
  STOMP's `floor-prep`), held against the Celery + Redis (fsync always) peer of the goals. It
  shares no code with the library, so it is the most any client could reach with one
  `request_package` call per docset: where it reads below 1x, the per-docset pattern (a durable
  reply queue per docset, the request's copy in it, Accepted and Complete persisted there, a poll
  that reads and settles it) is what trails Celery's one task and one Redis write, not our code.
- "Complete-visible": for us, `PackagingClient.status()` polled back to back until COMPLETE
  (a throughput window polls every pending docset in turn, pass after pass; waiting on the oldest
  first, as `ResultSet.join` does, was measured slower for ours and the floor alike: see
  docs/performance.md, "Batching"). For
  Celery, `ResultSet.join()` (latency: the same on one result): with `rpc://` its result consumer
  is pushed results on a standing subscription; with Redis the client subscribes to each task's
  channel when it sends the task and is pushed the result as well: each peer's best case.
  Throughput windows submit every request, then wait for all; latency windows submit one job and
  wait for it, one after another.
- Send-cost rows: one `Transport.send` of the Progress body to a reply queue, timed per call, the
  three kinds (persistent confirmed, transient confirmed, persistent unconfirmed) in turn. Each of
  our jobs makes several persistent confirmed sends (the request and its copy, the worker's
  replies, a poll's re-sends); the rows say what each of them pays for the confirm and for
  persistence.
- Why not Celery's solo pool: with `--pool=solo`, `acks_late` and prefetch 1, this Celery (5.7,
  kombu 5.7, py-amqp 5.4) stalls now and then with heartbeats off (the next delivery is not picked
  up after a deferred ack, and nothing wakes the event loop). The `threads` and `prefork` pools
  each ran 1,500 tasks with no stall. `TDM_BENCH_CELERY_POOL=solo` reproduces it; the group then
  fails after 60 s naming the queue's state instead of hanging.
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
    costs: list[str] = []
    try:
        with contextlib.ExitStack() as stack:
            # The Redis peers' own servers, stopped and their directories removed at the end, on error too.
            redis = {"always": stack.enter_context(PrivateRedis("always"))}
            if settings.everysec:
                redis["everysec"] = stack.enter_context(PrivateRedis("everysec"))
            versions = broker_versions(urls)
            for name in settings.phases:
                label, url = phases[name]
                phase_rows = _phase(name, label, url, urls=urls, redis=redis, settings=settings)
                costs.append(design_costs(label, phase_rows))
                rows += phase_rows
    finally:
        delete_vhost()
    table = render_rows(rows)
    print(table)
    missed = [r.what for r in rows if r.met is False]
    section = (
        f"Command: `{COMMAND}` (one phase: `TDM_BENCH_CELERY_PHASES=amqp` or `stomp`)  \n"
        f"Machine: {machine_description()}  \n"
        f"Brokers: {versions}; everything runs in a RabbitMQ vhost of its own, deleted afterwards; Celery's "
        "Redis results on private redis-servers of the run's (AOF, `appendfsync always`; the cheaper peer "
        "`everysec`), removed afterwards.  \n"
        f"Sides, per phase: our worker with `prefetch={settings.prefetch}`; ours with the reply queue prepared ahead "
        "(`PackagingClient.prepare`, outside the timed region), ours without (the request creates it), ours "
        "prepared with a window's requests in one `request_packages` call, ours prepared and Celery (fsync-always "
        f"Redis results) with a window's requests sent from {settings.threads} server threads, one call each "
        "(left out with 1 thread), Celery with Redis results "
        "(fsync always: the goals; fsync everysec: no goal), Celery with publisher confirms and Redis results "
        "(fsync always; no goal), Celery with `rpc://`, "
        "and the floor (a raw-client loop of our message pattern) when its module is there.  \n"
        f"Method: per phase, one warm-up window of every side, then {settings.rounds} rounds, each taking one "
        f"window of every side in turn; medians over the windows. Throughput windows: {settings.requests} "
        f"requests; latency windows: {settings.latency_jobs} jobs one after another, p50/p99 per window, median "
        f"of those. Send-cost rows: {settings.choice_sends} sends of each kind per window, kinds in turn.  \n"
        "Sizes: TDM_BENCH_CELERY_REQUESTS, TDM_BENCH_CELERY_LATENCY_JOBS, TDM_BENCH_ROUNDS, "
        "TDM_BENCH_CHOICE_SENDS; our worker's prefetch: TDM_BENCH_CELERY_PREFETCH; Celery pool: "
        "TDM_BENCH_CELERY_POOL (threads); the everysec Redis peer: "
        "TDM_BENCH_CELERY_EVERYSEC (1; 0 leaves it out); the confirmed Redis peer: TDM_BENCH_CELERY_CONFIRMED "
        "(1; 0 leaves it out); server threads of the threaded sides: TDM_BENCH_CELERY_THREADS (4; 1 leaves "
        "them out).  \n"
        "Goals: " + ("all met." if not missed else "missed: " + "; ".join(missed) + " (see the notes).") + "\n\n"
        f"{table}\n\n"
        "What each design choice costs, in this run (ratios of the rows above):\n\n" + "\n".join(costs) + f"\n\n{NOTES}"
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
