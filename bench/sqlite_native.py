"""Transport benchmark, embedded rows: the native SQLite transport's send rate and poll latency vs raw sqlite3."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.harness import Row, interleaved_windows, median_of, percentile, time_each
from bench.raw_clients import RawKombuSender, RawSqliteQueue
from tdm_messaging.codec import encode
from tdm_messaging.destinations import Destination, DestinationKind, reply_queue
from tdm_messaging.models import Message
from tdm_messaging.server import PackagingClient
from tdm_messaging.status import State, compact
from tdm_messaging.transport import open_transport

__all__ = ["bench_directory", "remove_directory", "sqlite_poll_rows", "sqlite_send_rows"]

COMMAND = ".venv/bin/python -m bench transport"
SEND_GOAL = 0.9
LABEL = "SQLite native `sqlite://`"


def bench_directory() -> Path:
    """A fresh directory for the run's database files: under ``TDM_BENCH_SQLITE_DIR`` if set, else the temp dir.

    It must be on a real disk (not tmpfs): a commit's fsync is most of what is measured.
    """
    parent = os.environ.get("TDM_BENCH_SQLITE_DIR") or None
    return Path(tempfile.mkdtemp(prefix="tdm-bench-sqlite-", dir=parent))


def _rate(send: Callable[[], None], count: int) -> Callable[[], float]:
    def window() -> float:
        start = time.perf_counter()
        for _ in range(count):
            send()
        return count / (time.perf_counter() - start)

    return window


def sqlite_send_rows(
    directory: Path, envelope_of: Callable[[], Message], sends: int, rounds: int, *, kombu_sends: int | None = None
) -> list[Row]:
    """Our ``send`` over ``sqlite://`` vs a raw sqlite3 INSERT loop, and vs kombu's ``sqla+sqlite`` publish.

    Each side writes its own file in ``directory``; all three take their windows in turn. kombu's
    windows take ``kombu_sends`` sends (``sends`` if None): at ~60 msg/s, the full ``sends`` cost
    minutes for one row, and a rate needs far fewer.
    """
    kombu_count = sends if kombu_sends is None else kombu_sends
    queue = Destination(f"bench/send-{uuid.uuid4().hex[:12]}", DestinationKind.PERMANENT)
    envelope = encode(envelope_of())
    ours = open_transport(f"sqlite:///{directory / 'ours-send.db'}")
    raw = RawSqliteQueue(directory / "raw-send.db", queue.name)
    kombu = RawKombuSender(f"sqla+sqlite:///{directory / 'kombu-send.db'}", queue.name)
    try:
        ours.declare(queue)
        results = interleaved_windows(
            {
                "ours": _rate(lambda: ours.send(queue, envelope, persistent=True), sends),
                "raw": _rate(lambda: raw.send(envelope), sends),
                "kombu": _rate(lambda: kombu.send(envelope), kombu_count),
            },
            rounds=rounds,
        )
    finally:
        ours.close()
        raw.close()
        kombu.close()
    ours_rate = median_of(results["ours"])
    what = f"send rate, {LABEL} (persistent: WAL, synchronous=FULL; {len(envelope.body)} B body)"
    return [
        Row(
            what=what,
            ours=ours_rate,
            baseline=median_of(results["raw"]),
            unit="msg/s",
            higher_is_better=True,
            goal=f">= {SEND_GOAL}x",
            met=ours_rate >= SEND_GOAL * median_of(results["raw"]),
            command=f"TDM_BENCH_PARTS=send {COMMAND}",
            baseline_name="`sqlite3`: one autocommitted INSERT per message, same table shape, WAL, synchronous=FULL",
        ),
        Row(
            what=f"send rate, {LABEL} vs kombu `sqla+sqlite://` (persistent, {len(envelope.body)} B body; "
            f"kombu's windows {kombu_count} sends)",
            ours=ours_rate,
            baseline=median_of(results["kombu"]),
            unit="msg/s",
            higher_is_better=True,
            goal="—",
            met=None,
            command=f"TDM_BENCH_PARTS=send {COMMAND}",
            baseline_name="kombu `Producer.publish` to `sqla+sqlite://` (SQLAlchemy, SQLite's default journal)",
        ),
    ]


def _latency_window(poll: Callable[[], object], polls: int) -> Callable[[], list[float]]:
    return lambda: [s * 1000 for s in time_each(poll, polls)]


def _p(windows: list[list[float]], q: float) -> float:
    return median_of([percentile(w, q) for w in windows])


def sqlite_poll_rows(
    directory: Path, messages_of: Callable[[str], list[Message]], polls: int, rounds: int
) -> list[Row]:
    """p50 and p99 of ``PackagingClient.status()`` over ``sqlite://`` vs raw sqlite3 polls of the same queue contents.

    Baselines: a lease-and-release poll (the two commits ours makes when there is nothing to
    re-send), and, for p50, a read-only SELECT (what a poller that takes no lease could do).
    """
    docset = f"bench-poll-{uuid.uuid4().hex[:10]}"
    kept = compact(messages_of(docset), docset)
    envelopes = [encode(message) for message in kept]
    transport = open_transport(f"sqlite:///{directory / 'ours-poll.db'}")
    client = PackagingClient(transport)
    raw = RawSqliteQueue(directory / "raw-poll.db", reply_queue(docset).name)
    try:
        for envelope in envelopes:
            transport.send(reply_queue(docset), envelope, confirm=True)
            raw.send(envelope)

        def ours_poll() -> None:
            status = client.status(docset)
            if status.state is not State.IN_PROGRESS:
                raise RuntimeError(f"poll of {docset} said {status.state}, expected IN_PROGRESS")

        def checked(poll: Callable[[], Sequence[object]]) -> Callable[[], None]:
            def run() -> None:
                got = len(poll())
                if got != len(envelopes):
                    raise RuntimeError(f"raw poll of {docset} read {got} messages, expected {len(envelopes)}")

            return run

        results = interleaved_windows(
            {
                "ours": _latency_window(ours_poll, polls),
                "lease": _latency_window(checked(raw.lease_and_release), polls),
                "peek": _latency_window(checked(raw.peek), polls),
            },
            rounds=rounds,
        )
    finally:
        transport.close()
        raw.close()
    rows = []
    for q, baseline, name in (
        (50, "lease", "`sqlite3`: lease the rows, commit, release them, commit (WAL, synchronous=FULL)"),
        (99, "lease", "`sqlite3`: lease the rows, commit, release them, commit (WAL, synchronous=FULL)"),
        (50, "peek", "`sqlite3`: one read-only SELECT of the rows (no lease, no write)"),
    ):
        rows.append(
            Row(
                what=f"poll latency p{q}, {LABEL} ({len(envelopes)} messages in the queue)",
                ours=_p(results["ours"], q),
                baseline=_p(results[baseline], q),
                unit="ms",
                higher_is_better=False,
                goal="—",
                met=None,
                command=f"TDM_BENCH_PARTS=poll {COMMAND}",
                baseline_name=name,
            )
        )
    return rows


def remove_directory(directory: Path) -> None:
    """Delete the run's database files."""
    shutil.rmtree(directory, ignore_errors=True)
