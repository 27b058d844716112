"""Helpers of the fault tests: transports per backend, a worker in a thread, waiting for a condition."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from tdm_messaging.destinations import DEAD_LETTER, DELETE_REQUESTS, PACKAGE_REQUESTS, Destination
from tdm_messaging.envelope import Envelope
from tdm_messaging.transport.base import Transport
from tdm_messaging.worker import PackagerWorker
from tests.worker_thread import worker_thread

__all__ = ["became_true", "drain", "read_all", "run_worker", "wait_until"]


def became_true(predicate: Callable[[], bool], *, within: float, every: float = 0.1) -> bool:
    """Whether ``predicate`` became true within ``within`` seconds (both answers are outcomes, no failure)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


def wait_until(predicate: Callable[[], bool], *, timeout: float, what: str, every: float = 0.1) -> None:
    """Poll ``predicate`` until it is true; fail naming ``what`` after ``timeout`` seconds (a hang guard only)."""
    if not became_true(predicate, within=timeout, every=every):
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def read_all(transport: Transport, destination: Destination, *, ack: bool = True) -> list[Envelope]:
    """Take everything in ``destination`` now (acknowledged unless ``ack`` is false)."""
    with transport.read(destination) as batch:
        envelopes = list(batch.envelopes)
        if ack:
            batch.ack()
    return envelopes


def drain(transport: Transport, *destinations: Destination) -> None:
    """Empty ``destinations`` (default: the three permanent queues), e.g. of a previous failed run."""
    for destination in destinations or (PACKAGE_REQUESTS, DELETE_REQUESTS, DEAD_LETTER):
        while read_all(transport, destination):
            pass


def run_worker(worker: PackagerWorker) -> AbstractContextManager[threading.Thread]:
    """Run ``worker`` in a thread for the ``with`` block; stop it and wait for it afterwards (re-raises its error)."""
    return worker_thread(worker, name="fault-worker")
