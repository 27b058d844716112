"""Shared benchmark machinery: sampling, percentiles, result rows, broker URLs and an isolated RabbitMQ vhost."""

from __future__ import annotations

import logging
import math
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

__all__ = [
    "BENCH_VHOST",
    "BenchUrls",
    "Row",
    "bench_urls",
    "broker_versions",
    "count_queues",
    "delete_vhost",
    "ensure_vhost",
    "env_flag",
    "env_int",
    "host_port",
    "interleaved_windows",
    "median_of",
    "percentile",
    "render_rows",
    "time_each",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

BENCH_VHOST = os.environ.setdefault("TDM_BENCH_VHOST", f"tdm-bench-{os.getpid()}")
"""RabbitMQ virtual host the benchmarks run in, so that their queues (docsets/package above all)
never meet those of tests, or of another benchmark run, on the shared broker: one per run
(``tdm-bench-PID``, set in the environment so the run's worker processes inherit it), since a
group deletes its vhost when it ends. ``TDM_BENCH_VHOST`` names another."""


def env_flag(name: str, default: bool) -> bool:
    """The yes/no in environment variable ``name`` (1/0, true/false, yes/no, on/off), or ``default``.

    Raises:
        SystemExit: the variable is set to something else (a user mistake: no traceback).
    """
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SystemExit(f"bench: {name}={raw!r} must be 1 or 0 (true/false, yes/no, on/off)")


def env_int(name: str, default: int) -> int:
    """The whole number in environment variable ``name``, or ``default`` when unset or empty.

    Raises:
        SystemExit: the variable is set but is not a positive whole number (a user mistake: no traceback).
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"bench: {name}={raw!r} is not a whole number") from None
    if value < 1:
        raise SystemExit(f"bench: {name}={raw!r} must be at least 1")
    return value


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0 to 100) of ``samples`` by the nearest-rank method.

    Nearest rank always returns one of the samples, so p50 of a single sample is that
    sample and p100 is the maximum.

    Raises:
        ValueError: ``samples`` is empty or ``q`` is outside 0..100.
    """
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q!r} is outside 0..100")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def time_each(func: Callable[[], object], count: int) -> list[float]:
    """Call ``func`` ``count`` times; return each call's duration in seconds."""
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        func()
        samples.append(time.perf_counter() - start)
    return samples


def interleaved_windows(
    windows: Mapping[str, Callable[[], _T]],
    *,
    rounds: int,
    warmup: int = 1,
    before: Callable[[], object] | None = None,
) -> dict[str, list[_T]]:
    """Run each window function ``warmup`` times unrecorded, then ``rounds`` times in turn; return the results.

    A window function does a fixed amount of work and returns what it measured (a rate, a
    list of latencies). Taking ours and the baseline in turn, round after round, gives both
    the same share of whatever else the shared machine is doing. ``before``, if given, runs
    ahead of every window, outside it (e.g. empty the queue the windows fill, so no window
    starts with the broker still storing or throttling what the one before it sent).
    """
    results: dict[str, list[_T]] = {name: [] for name in windows}
    for turn in range(warmup + rounds):
        for name, window in windows.items():
            if before is not None:
                before()
            result = window()
            if turn >= warmup:
                results[name].append(result)
    return results


def median_of(values: Sequence[float]) -> float:
    """The median of ``values`` (the figure reported for repeated windows)."""
    return statistics.median(values)


@dataclass(frozen=True)
class Row:
    """One line of a benchmark table: our figure beside the baseline's, measured in the same run.

    Attributes:
        what: what was measured, e.g. ``send rate, RabbitMQ STOMP``.
        ours: our figure.
        baseline: the baseline's figure.
        unit: the figures' unit, e.g. ``msg/s`` or ``ms``.
        higher_is_better: rates (True) or latencies (False); decides how the ratio reads.
        goal: the goal in words, e.g. ``>= 0.9x``.
        met: whether the goal was met (``None`` when the row has no goal).
        command: the command that reproduces the row.
        baseline_name: what the baseline is, e.g. ``stomp.py Connection12.send``.
    """

    what: str
    ours: float
    baseline: float
    unit: str
    higher_is_better: bool
    goal: str
    met: bool | None
    command: str
    baseline_name: str

    @property
    def ratio(self) -> float:
        """Ours over the baseline for rates, baseline over ours for latencies: above 1 means we are better."""
        if self.higher_is_better:
            return self.ours / self.baseline if self.baseline else math.inf
        return self.baseline / self.ours if self.ours else math.inf


def _figure(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render_rows(rows: Sequence[Row]) -> str:
    """The Markdown table of ``rows`` (the ratio column reads "above 1x: we are better")."""
    lines = [
        "| measurement | ours | baseline | baseline is | unit | ratio (>1 = better) | goal | met | command |",
        "|---|---:|---:|---|---|---:|---|---|---|",
    ]
    for row in rows:
        met = "—" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(
            f"| {row.what} | {_figure(row.ours)} | {_figure(row.baseline)} | {row.baseline_name} | {row.unit} "
            f"| {row.ratio:.2f}x | {row.goal} | {met} | `{row.command}` |"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class BenchUrls:
    """Where the benchmarks find their brokers (RabbitMQ ones point at the bench vhost).

    Attributes:
        rabbitmq_stomp, activemq_stomp, amqp, redis: broker URLs for ``open_transport``.
    """

    rabbitmq_stomp: str
    activemq_stomp: str
    amqp: str
    redis: str


def bench_urls() -> BenchUrls:
    """The broker URLs: ``TDM_BENCH_*_URL`` if set, else this machine's brokers (RabbitMQ in :data:`BENCH_VHOST`)."""
    env = os.environ.get
    return BenchUrls(
        rabbitmq_stomp=env(
            "TDM_BENCH_RABBITMQ_STOMP_URL", f"stomp://guest:guest@127.0.0.1:61613/?dialect=rabbitmq&vhost={BENCH_VHOST}"
        ),
        activemq_stomp=env("TDM_BENCH_ACTIVEMQ_STOMP_URL", "stomp://127.0.0.1:61623/?dialect=activemq"),
        amqp=env("TDM_BENCH_AMQP_URL", f"amqp://guest:guest@127.0.0.1:5672/{BENCH_VHOST}"),
        redis=env("TDM_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
    )


def host_port(url: str, default_port: int) -> tuple[str, int]:
    """The host and port of a broker URL."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def _rabbitmqctl(*args: str, timeout: float = 60.0) -> str:
    if shutil.which("rabbitmqctl") is None:
        raise RuntimeError("rabbitmqctl is not on PATH; the benchmarks need it to manage their RabbitMQ vhost")
    done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def ensure_vhost(vhost: str = BENCH_VHOST) -> None:
    """Create RabbitMQ vhost ``vhost`` (if missing) and give ``guest`` every permission on it.

    Raises:
        RuntimeError: rabbitmqctl is missing or failed (it needs root or the rabbitmq user).
    """
    if vhost not in _rabbitmqctl("list_vhosts", "name").split():
        _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")


def delete_vhost(vhost: str = BENCH_VHOST) -> None:
    """Delete RabbitMQ vhost ``vhost`` and every queue in it (a missing vhost is not an error)."""
    try:
        if vhost in _rabbitmqctl("list_vhosts", "name").split():
            _rabbitmqctl("delete_vhost", vhost)
    except RuntimeError as exc:
        log.warning("could not delete vhost %s: %s", vhost, exc)


def count_queues(vhost: str = BENCH_VHOST, prefix: str = "") -> int:
    """How many queues of ``vhost`` have a name starting with ``prefix`` (via ``rabbitmqctl list_queues``)."""
    names = _rabbitmqctl("list_queues", "-p", vhost, "name", timeout=120.0).split("\n")
    return sum(1 for name in names if name.strip() and name.strip().startswith(prefix))


def broker_versions(urls: BenchUrls) -> str:
    """One line naming each broker's version, as the broker itself reports it."""
    parts = []
    for label, url in (("RabbitMQ", urls.rabbitmq_stomp), ("ActiveMQ", urls.activemq_stomp)):
        parts.append(f"{label}: {_stomp_server(url)}")
    try:
        import redis

        client = redis.Redis.from_url(urls.redis)
        parts.append(f"Redis: {client.info()['redis_version']}")
        client.close()
    except Exception as exc:  # a version line must not fail a benchmark run
        parts.append(f"Redis: unknown ({type(exc).__name__})")
    return ", ".join(parts)


def _stomp_server(url: str) -> str:
    from tdm_messaging.transport import open_transport

    try:
        with open_transport(url) as transport:
            return str(getattr(transport, "server", "unknown"))
    except Exception as exc:  # reported in the table's header, not raised
        return f"unreachable ({type(exc).__name__})"
