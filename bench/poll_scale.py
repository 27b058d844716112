"""Poll cost with 10,000 idle reply queues vs an empty vhost, interleaved, and the idle queues' expiry.

Two RabbitMQ vhosts of the run: one holds only the polled queue, the other the polled queue and
``TDM_BENCH_SCALE_QUEUES`` idle reply queues (each holding a Complete, as a finished docset's
queue does). Within every window our poll alternates between the two vhosts (the order flipped
every pair), on RabbitMQ STOMP and AMQP, so both see the same load from the rest of the machine.
The idle queues are created with py-amqp, declares and publishes not waited for one by one
(``nowait``, no confirms) and one synchronous call at the end, with our reply queues' arguments
(durable, ``x-expires``); then left to expire.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kombu.connection import Connection

from bench.harness import (
    BENCH_VHOST,
    BenchUrls,
    Row,
    count_queues,
    delete_vhost,
    ensure_vhost,
    interleaved_windows,
    median_of,
    percentile,
)
from bench.polls import OursPoll, alternating, completed_status, in_vhost
from tdm_messaging.codec import encode

__all__ = ["ScaleResult", "create_idle_queues", "scale", "scale_rows"]

SCALE_GOAL = 1.1
EMPTY_VHOST = f"{BENCH_VHOST}-empty"
FULL_VHOST = f"{BENCH_VHOST}-idle"


@dataclass(frozen=True)
class ScaleResult:
    """What the scale benchmark saw."""

    rows: list[Row]
    created: int
    counted: int
    create_seconds: float
    gone_after_seconds: float | None
    remaining: int
    ttl: int


_SYNC_EVERY = 500
"""Queues declared without waiting between two waits for the broker (see :func:`create_idle_queues`)."""


def create_idle_queues(amqp_url: str, prefix: str, count: int, ttl_seconds: int) -> float:
    """Declare ``count`` reply queues ``package/PREFIXn`` in the URL's vhost, each holding a Complete; seconds taken.

    The declares are sent without waiting for each answer (``nowait``) and the publishes
    unconfirmed; a passive declare every :data:`_SYNC_EVERY` queues, and of the last one at the
    end, waits for the channel to have done them all (a channel keeps its commands in order), so
    every queue exists on return and the backlog stays bounded.
    """
    start = time.monotonic()
    connection_cls: Any = Connection
    connection: Any = connection_cls(amqp_url)
    try:
        channel: Any = connection.default_channel
        arguments = {"x-expires": ttl_seconds * 1000}
        for index in range(count):
            docset_id = f"{prefix}{index}"
            name = f"package/{docset_id}"
            channel.queue_declare(
                queue=name, durable=True, exclusive=False, auto_delete=False, arguments=arguments, nowait=True
            )
            envelope = encode(completed_status(docset_id)[-1])
            message = channel.prepare_message(
                envelope.body,
                content_type=envelope.content_type,
                content_encoding="utf-8",
                headers=dict(envelope.headers),
                properties={"delivery_mode": 2},
            )
            channel.basic_publish(message, exchange="", routing_key=name)
            if index % _SYNC_EVERY == _SYNC_EVERY - 1:
                # Wait for the broker to catch up now and then: an unbounded backlog stalled its reads
                # for over a second, and py-amqp's TCP_USER_TIMEOUT (1 s) then killed the connection.
                channel.queue_declare(queue=name, passive=True)
        if count:
            channel.queue_declare(queue=f"package/{prefix}{count - 1}", passive=True)
    finally:
        connection.release()
    return time.monotonic() - start


def _p(windows: list[list[float]], q: float) -> float:
    return median_of([percentile(w, q) for w in windows])


def scale_rows(label: str, windows: list[tuple[list[float], list[float]]], counted: int, command: str) -> list[Row]:
    """p50 (with the goal) and p99 rows from windows of (empty-vhost, idle-queues-vhost) poll times."""
    empty = [w[0] for w in windows]
    full = [w[1] for w in windows]
    rows = []
    for q in (50, 99):
        ours, base = _p(full, q), _p(empty, q)
        rows.append(
            Row(
                what=f"poll latency p{q} with {counted:,} idle reply queues vs an empty vhost ({label}, interleaved)",
                ours=ours,
                baseline=base,
                unit="ms",
                higher_is_better=False,
                goal=f"<= {SCALE_GOAL}x" if q == 50 else "—",
                met=(ours <= SCALE_GOAL * base) if q == 50 else None,
                command=command,
                baseline_name="our poll of the same status in an empty vhost, alternating within each window",
            )
        )
    return rows


def _window(empty: OursPoll, full: OursPoll, polls: int) -> Callable[[], tuple[list[float], list[float]]]:
    return lambda: alternating(empty.poll, full.poll, polls, time.perf_counter)


def scale(urls: BenchUrls, *, queues: int, ttl: int, polls: int, rounds: int, command: str) -> ScaleResult:
    """Create the two vhosts and the idle queues, take the interleaved windows, wait for expiry, delete the vhosts."""
    ensure_vhost(EMPTY_VHOST)
    ensure_vhost(FULL_VHOST)
    pollers: list[OursPoll] = []
    try:
        wings = {"RabbitMQ STOMP": urls.rabbitmq_stomp, "RabbitMQ AMQP": urls.amqp}
        pairs: dict[str, tuple[OursPoll, OursPoll]] = {}
        for label, url in wings.items():
            empty, full = OursPoll(in_vhost(url, EMPTY_VHOST)), OursPoll(in_vhost(url, FULL_VHOST))
            pollers += [empty, full]
            pairs[label] = (empty, full)
        prefix = f"bench-scale-{uuid.uuid4().hex[:8]}-"
        print(f"  scale: creating {queues:,} idle reply queues (reply_ttl={ttl} s) ...", flush=True)
        create_seconds = create_idle_queues(in_vhost(urls.amqp, FULL_VHOST), prefix, queues, ttl)
        created_at = time.monotonic()
        counted = count_queues(FULL_VHOST, f"package/{prefix}")
        print(f"  scale: {counted:,} queues present; polls alternating between the vhosts ...", flush=True)
        windows = interleaved_windows({label: _window(*pair, polls) for label, pair in pairs.items()}, rounds=rounds)
        still = count_queues(FULL_VHOST, f"package/{prefix}")
        rows = [row for label in wings for row in scale_rows(label, windows[label], min(counted, still), command)]
        for poller in pollers:
            poller.close()
        pollers.clear()
        print("  scale: waiting for the idle queues to expire ...", flush=True)
        gone_after, remaining = _await_expiry(prefix, counted, created_at, ttl)
        return ScaleResult(rows, queues, counted, create_seconds, gone_after, remaining, ttl)
    finally:
        for poller in pollers:
            poller.close()
        delete_vhost(EMPTY_VHOST)
        delete_vhost(FULL_VHOST)


def _await_expiry(prefix: str, counted: int, created_at: float, ttl: int) -> tuple[float | None, int]:
    deadline = created_at + ttl + 120
    remaining = counted
    while time.monotonic() < deadline:
        time.sleep(5)
        remaining = count_queues(FULL_VHOST, f"package/{prefix}")
        if remaining == 0:
            return time.monotonic() - created_at, 0
    return None, remaining
