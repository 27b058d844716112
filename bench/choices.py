"""What the job cycle's durability choices cost per message: a persistent confirmed send vs unconfirmed, vs transient.

Each job of ours makes a few sends that are persistent and confirmed (the request and its copy,
the worker's replies); Celery's default publishes are persistent and unconfirmed, and its
``rpc://`` results transient. These rows time one send of each kind through our transport, same
queue and body, the kinds interleaved, so the cost of each choice reads as a ratio.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from bench.harness import Row, interleaved_windows, median_of, percentile, time_each
from bench.polls import status_messages
from tdm_messaging.codec import encode
from tdm_messaging.destinations import reply_queue
from tdm_messaging.transport import open_transport

__all__ = ["KINDS", "send_cost_rows"]

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
