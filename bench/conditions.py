"""How busy the machine and the broker were when a run started and ended, so a slow run can be told from a slow library.

Every row's ratio is taken against a baseline measured in the same run, so other work on this
shared machine moves both sides; but a few goals are absolute bounds (a codec round trip within
10 µs, a poll within 1 ms), and a run on a busy machine misses them for the machine's sake. One
full run read its baselines too up to half as fast as a quiet run did the next day (the raw kombu
send loop 16,655 against 31,921 msg/s), and a broker once held 13,500 queues a probe had left
behind. So a run notes:

- the load average (1 minute) of the machine, at the start only (at the end it is the run's own);
- how many queues RabbitMQ holds outside the run's own vhost (each costs the broker memory and
  timers; tens of thousands slow it down);
- a CPU probe: the median time of a fixed pure-Python workload (JSON round trips of a small
  dict), which reads the same on a quiet machine from run to run and longer when the cores are
  shared.

:func:`busy_reasons` names what looks busy; ``python -m bench`` prints them as a warning at the
start (the run goes on) and the summary section records both readings.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.harness import _rabbitmqctl

__all__ = ["Conditions", "busy_reasons", "cpu_probe_ms", "describe", "measure"]

BUSY_LOAD = 1.0
"""A 1-minute load average above this (on 2 cores, with the brokers idle) means other work runs."""
BUSY_QUEUES = 1000
"""More queues than this outside the run's vhost: leftovers of other runs, slowing the broker."""

_PROBE_DOC = {"docset_id": "probe", "sequence": 3, "items": list(range(20)), "ok": True, "note": "é" * 16}


def cpu_probe_ms(rounds: int = 5, loops: int = 2000) -> float:
    """The median over ``rounds`` of the milliseconds ``loops`` JSON round trips of a small dict take."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(loops):
            json.loads(json.dumps(_PROBE_DOC))
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


@dataclass(frozen=True)
class Conditions:
    """One reading: load average, queues outside the run's vhost (None: could not be counted), CPU probe."""

    load1: float
    other_queues: int | None
    probe_ms: float


def _queues_outside(vhost: str) -> int | None:
    """Queues RabbitMQ holds in every vhost but ``vhost``; None when rabbitmqctl cannot tell."""
    try:
        vhosts = [v for v in _rabbitmqctl("list_vhosts", "name", "--no-table-headers").split() if v != vhost]
        listings = (_rabbitmqctl("list_queues", "-p", v, "name", "--no-table-headers", timeout=120.0) for v in vhosts)
        return sum(sum(1 for line in listing.splitlines() if line.strip()) for listing in listings)
    except (RuntimeError, OSError):
        return None


def measure(vhost: str, *, count_queues: Callable[[str], int | None] = _queues_outside) -> Conditions:
    """Read the machine's and the broker's conditions now (the run's own ``vhost`` left out)."""
    return Conditions(load1=os.getloadavg()[0], other_queues=count_queues(vhost), probe_ms=cpu_probe_ms())


def busy_reasons(conditions: Conditions, *, load: bool = True) -> list[str]:
    """What in ``conditions`` looks like other work that will slow the run (empty: quiet).

    ``load=False`` leaves the load average out: at the end of a run it is the run's own last
    minute (the scaling group keeps both cores busy), not other work.
    """
    reasons = []
    if load and conditions.load1 > BUSY_LOAD:
        reasons.append(f"load average {conditions.load1:.2f} (above {BUSY_LOAD:g}: other work is running)")
    if conditions.other_queues is not None and conditions.other_queues > BUSY_QUEUES:
        reasons.append(
            f"{conditions.other_queues:,} queues in RabbitMQ outside the run's vhost (above {BUSY_QUEUES:,}: "
            "leftovers of other runs; delete them for a representative run)"
        )
    return reasons


def describe(conditions: Conditions, *, load: bool = True) -> str:
    """One phrase for the summary: load (unless ``load=False``, see :func:`busy_reasons`), queues elsewhere, probe."""
    queues = "not counted" if conditions.other_queues is None else f"{conditions.other_queues:,}"
    return (
        f"load average {conditions.load1:.2f}, " if load else ""
    ) + f"queues in RabbitMQ's other vhosts {queues}, CPU probe {conditions.probe_ms:.1f} ms"
