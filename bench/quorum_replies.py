"""What quorum reply queues cost on a RabbitMQ cluster: time, memory and processes for N docsets, classic vs quorum.

Run against the private cluster of ``scripts/cluster.sh`` (started by hand)::

    bash scripts/cluster.sh up
    python -m bench.quorum_replies --docsets 1000 [--ports 5700]

For each queue type, N reply queues are declared and each gets one confirmed, persistent
message (what a package request's copy costs), then every queue is read once (a poll) and
deleted. The cluster's memory and process count are read before, with the N queues, and after.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
import uuid
from pathlib import Path

from tdm_messaging.destinations import reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.transport.kombu.backend import KombuTransport

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "cluster.sh"


def _cluster(*args: str) -> str:
    done = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, check=True, env=os.environ)
    return done.stdout.strip()


def _totals() -> tuple[float, int]:
    """MiB of memory and Erlang processes, summed over the three nodes."""
    mib, processes = 0.0, 0
    for node in ("1", "2", "3"):
        mib += int(_cluster("ctl", node, "eval", "erlang:memory(total).")) / 2**20
        processes += int(_cluster("ctl", node, "eval", "erlang:system_info(process_count)."))
    return mib, processes


def measure(url: str, kind: str, docsets: int) -> dict[str, float]:
    """Declare, fill, poll and delete ``docsets`` reply queues of type ``kind``; what each step took and held."""
    stem = f"bench-{kind}-{uuid.uuid4().hex[:6]}"
    queues = [reply_queue(f"{stem}-{i}") for i in range(docsets)]
    before_mib, before_procs = _totals()
    with KombuTransport.from_url(f"{url}?reply_queue_type={kind}&reply_ttl=3600") as t:
        start = time.perf_counter()
        for queue in queues:
            t.send(queue, Envelope(b'{"type": "package_request"}'), confirm=True)
        send_s = time.perf_counter() - start
        held_mib, held_procs = _totals()
        start = time.perf_counter()
        for queue in queues:
            with t.read(queue) as batch:
                assert len(batch.envelopes) == 1, f"{queue.name} lost its message"
        poll_s = time.perf_counter() - start
        start = time.perf_counter()
        for queue in queues:
            t.delete(queue)
        delete_s = time.perf_counter() - start
    return {
        "send_ms": send_s * 1000 / docsets,
        "poll_ms": poll_s * 1000 / docsets,
        "delete_ms": delete_s * 1000 / docsets,
        "mib_per_1000": (held_mib - before_mib) * 1000 / docsets,
        "processes_per_docset": (held_procs - before_procs) / docsets,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docsets", type=int, default=1000)
    parser.add_argument("--ports", type=int, default=int(os.environ.get("TDM_CLUSTER_PORTS", "5700")))
    args = parser.parse_args()
    os.environ.setdefault("TDM_CLUSTER_PORTS", str(args.ports))
    url = ";".join(f"amqp://guest:guest@127.0.0.1:{args.ports + n}//" for n in (1, 2, 3))
    print("| reply queues | docsets | confirmed send (ms/docset) | poll (ms/docset) | delete (ms/docset) "
          "| cluster memory (MiB per 1,000) | Erlang processes per docset |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for kind in ("classic", "quorum"):
        got = measure(url, kind, args.docsets)
        print(
            f"| {kind} | {args.docsets:,} | {got['send_ms']:.2f} | {got['poll_ms']:.2f} | {got['delete_ms']:.2f} "
            f"| {got['mib_per_1000']:.0f} | {got['processes_per_docset']:.1f} |"
        )


if __name__ == "__main__":
    main()
