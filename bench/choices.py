"""What the job cycle's durability choices cost per message: a persistent confirmed send vs unconfirmed, vs transient.

Each job of ours makes a few sends that are persistent and confirmed (the request and its copy,
the worker's replies); Celery's default publishes are persistent and unconfirmed, and its
``rpc://`` results transient. These rows time one send of each kind through our transport, same
queue and body, the kinds interleaved, so the cost of each choice reads as a ratio.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence

from bench.harness import Row, interleaved_windows, median_of, percentile, time_each
from bench.polls import status_messages
from tdm_messaging.codec import encode
from tdm_messaging.destinations import Destination, reply_queue
from tdm_messaging.transport import open_transport

__all__ = [
    "KINDS",
    "PATTERN_NOTE",
    "PREPARE_NOTE",
    "PRIME_WHAT",
    "REDIS_CONFIRMED_NOTE",
    "REDIS_EVERYSEC_NOTE",
    "REDIS_NOTE",
    "RPC_NOTE",
    "design_costs",
    "prime_cost_rows",
    "send_cost_rows",
]

KINDS: dict[str, tuple[bool, bool]] = {
    "persistent, confirmed": (True, True),
    "transient, confirmed": (False, True),
    "persistent, unconfirmed": (True, False),
}
"""Send kinds by name: (persistent, confirm)."""

_PAIRS = (
    # An unconfirmed send's time is the client's alone (the broker's work is not waited for), so
    # persistence is priced between two confirmed sends: the confirm of a persistent message comes
    # after the broker has written it.
    ("persistent, confirmed", "persistent, unconfirmed", "waiting for the publisher confirm"),
    ("persistent, confirmed", "transient, confirmed", "persistence (both confirmed)"),
)


def send_cost_rows(url: str, label: str, *, sends: int, rounds: int, command: str) -> list[Row]:
    """p50 of one send of each kind (``sends`` per window, interleaved); one row per choice, no goal."""
    docset_id = f"bench-choices-{uuid.uuid4().hex[:8]}"
    queue = reply_queue(docset_id)
    envelope = encode(status_messages(docset_id)[2])
    with open_transport(url) as transport:
        transport.declare(queue)

        def window(persistent: bool, confirm: bool) -> Callable[[], list[float]]:
            def send() -> None:
                transport.send(queue, envelope, persistent=persistent, confirm=confirm)

            return lambda: [s * 1000 for s in time_each(send, sends)]

        results = interleaved_windows({name: window(*kind) for name, kind in KINDS.items()}, rounds=rounds)
        transport.delete(queue)
    p50 = {name: median_of([percentile(w, 50) for w in windows]) for name, windows in results.items()}
    return [
        Row(
            what=f"cost of {choice}: one send {ours} vs {base}, p50, our transport over {label}",
            ours=p50[ours],
            baseline=p50[base],
            unit="ms",
            higher_is_better=False,
            goal="—",
            met=None,
            command=command,
            baseline_name=f"our send, {base}",
        )
        for ours, base, choice in _PAIRS
    ]


PRIME_WHAT = "cost of an unprimed reply queue"
"""The start of the row holding a reply queue's first send unprimed against primed (:func:`prime_cost_rows`)."""


def prime_cost_rows(url: str, label: str, *, sends: int, rounds: int, command: str) -> list[Row]:
    """p50 of the first persistent confirmed send to a fresh reply queue: declared only vs declared and
    primed (``Transport.declare(prime=True)``, as ``PackagingClient.prepare``); ``sends`` queues of each
    kind per window, declared outside the timed sends, the kinds interleaved; one row, no goal."""
    run = uuid.uuid4().hex[:8]
    envelope = encode(status_messages(f"bench-prime-{run}")[0])
    made: list[Destination] = []
    with open_transport(url) as transport:

        def window(prime: bool) -> Callable[[], list[float]]:
            def measure() -> list[float]:
                queues = [reply_queue(f"bench-prime-{run}-{len(made) + i}") for i in range(sends)]
                made.extend(queues)
                for queue in queues:
                    transport.declare(queue, prime=prime)
                samples = []
                for queue in queues:
                    start = time.perf_counter()
                    transport.send(queue, envelope, persistent=True, confirm=True)
                    samples.append((time.perf_counter() - start) * 1000)
                return samples

            return measure

        results = interleaved_windows({"declared": window(False), "primed": window(True)}, rounds=rounds)
        for queue in made:
            transport.delete(queue)
    p50 = {name: median_of([percentile(w, 50) for w in windows]) for name, windows in results.items()}
    return [
        Row(
            what=f"{PRIME_WHAT}: a reply queue's first send, declared only vs declared and primed, p50, "
            f"our transport over {label}",
            ours=p50["declared"],
            baseline=p50["primed"],
            unit="ms",
            higher_is_better=False,
            goal="—",
            met=None,
            command=command,
            baseline_name="our send to a primed queue (`declare(prime=True)`, as `prepare`)",
        )
    ]


PREPARE_NOTE = "no prepare vs prepare (the queue in the request path)"
"""The note of the rows holding ours without ``prepare`` against ours with it (see bench.celery_peer)."""
REDIS_NOTE = "vs Celery + Redis results (AOF, fsync always)"
"""The note of the rows against the Celery peer at equal durability: its private Redis fsyncs every write."""
REDIS_EVERYSEC_NOTE = "vs Celery + Redis results (AOF, fsync everysec)"
"""The note of the rows against the cheaper Redis peer (up to a second of results lost on a crash); no goal."""
REDIS_CONFIRMED_NOTE = "vs Celery with publisher confirms + Redis results (AOF, fsync always)"
"""The note of the rows against the Redis peer whose client also waits for RabbitMQ's confirm of each task
(kombu's ``confirm_publish``), as our ``request_package`` does; no goal (the goals stay on :data:`REDIS_NOTE`)."""
RPC_NOTE = "vs Celery rpc://"
PATTERN_NOTE = "reply queue prepared (the pattern's own limit: no library around it), " + REDIS_NOTE
"""The note of the rows holding the raw-client floor itself against the Celery peer of the goals."""
ONE_CALL_NOTE = "requests in one call vs one call each"
"""The note of the row holding ours with a window's requests in one ``request_packages`` call against ours."""


def _find(rows: Sequence[Row], *parts: str) -> Row | None:
    return next((row for row in rows if all(part in row.what for part in parts)), None)


def design_costs(label: str, rows: Sequence[Row]) -> str:
    """One line saying, from one phase's rows, what each design choice costs, as ratios (rows missing are left out)."""
    said = []
    prep_rate = _find(rows, "throughput", PREPARE_NOTE)
    prep_p50 = _find(rows, "p50", PREPARE_NOTE)
    if prep_rate is not None and prep_p50 is not None:
        said.append(
            f"the reply queue created in the request path instead of ahead (`prepare`): throughput "
            f"{prep_rate.ratio:.2f}x, p50 {1 / prep_p50.ratio:.2f}x the time ({prep_p50.ours:.1f} vs "
            f"{prep_p50.baseline:.1f} ms)"
        )
    prime = _find(rows, PRIME_WHAT)
    if prime is not None:
        said.append(
            f"a reply queue declared but not primed (`declare(prime=True)`, part of `prepare`): its first "
            f"persistent message takes {1 / prime.ratio:.1f}x the time ({prime.ours:.2f} vs {prime.baseline:.2f} ms)"
        )
    one_call = _find(rows, "throughput", ONE_CALL_NOTE)
    if one_call is not None:
        said.append(
            f"a window's requests in one `request_packages` call (one confirm wait) instead of one call each: "
            f"throughput {one_call.ratio:.2f}x"
        )
    confirm = _find(rows, "cost of waiting for the publisher confirm")
    if confirm is not None:
        said.append(
            f"waiting for the publisher confirm: a persistent send takes {1 / confirm.ratio:.0f}x the time "
            f"({confirm.ours:.2f} vs {confirm.baseline:.2f} ms, the unconfirmed time being the client's alone)"
        )
    persistence = _find(rows, "cost of persistence")
    if persistence is not None:
        said.append(
            f"persistence: a confirmed persistent send takes {1 / persistence.ratio:.1f}x the time of a confirmed "
            f"transient one ({persistence.ours:.2f} vs {persistence.baseline:.2f} ms)"
        )
    redis, rpc = _find(rows, "throughput", REDIS_NOTE), _find(rows, "throughput", RPC_NOTE)
    if redis is not None and rpc is not None and rpc.baseline:
        said.append(
            f"for Celery, results any process can read again (Redis, `result_persistent`) instead of `rpc://`: "
            f"throughput {redis.baseline / rpc.baseline:.2f}x"
        )
    everysec = _find(rows, "throughput", REDIS_EVERYSEC_NOTE)
    if redis is not None and everysec is not None and everysec.baseline:
        said.append(
            f"for Celery, Redis fsyncing each result (`appendfsync always`) instead of once a second: "
            f"throughput {redis.baseline / everysec.baseline:.2f}x"
        )
    confirmed = _find(rows, "throughput", REDIS_CONFIRMED_NOTE)
    confirmed_p50 = _find(rows, "p50", REDIS_CONFIRMED_NOTE)
    redis_p50 = _find(rows, "p50", REDIS_NOTE)
    if redis is not None and confirmed is not None and confirmed.baseline:
        line = (
            f"for Celery, each task confirmed by RabbitMQ before `send_task` returns (`confirm_publish`) instead of "
            f"sent unconfirmed: throughput {confirmed.baseline / redis.baseline:.2f}x"
        )
        if confirmed_p50 is not None and redis_p50 is not None and redis_p50.baseline:
            line += f", p50 {confirmed_p50.baseline / redis_p50.baseline:.2f}x the time"
        said.append(line)
    pattern, pattern_p50 = _find(rows, "throughput", PATTERN_NOTE), _find(rows, "p50", PATTERN_NOTE)
    if pattern is not None and pattern_p50 is not None:
        said.append(
            f"the message pattern itself (the raw-client floor, reply queues prepared) against Celery + Redis "
            f"(fsync always): throughput {pattern.ratio:.2f}x, p50 {1 / pattern_p50.ratio:.2f}x the time: "
            "the most any client library could reach with one `request_package` call per docset"
        )
    return f"- {label}: " + ("; ".join(said) if said else "no rows") + "."
