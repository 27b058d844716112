"""Helpers of the fault tests: reading and draining queues, a worker in a thread (waits: tdm_messaging.testing)."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager

from tdm_messaging.destinations import DEAD_LETTER, DELETE_REQUESTS, PACKAGE_REQUESTS, Destination
from tdm_messaging.envelope import Envelope
from tdm_messaging.testing import became_true, running_worker, wait_until
from tdm_messaging.transport.base import Transport
from tdm_messaging.worker import PackagerWorker

__all__ = ["became_true", "drain", "read_all", "run_worker", "wait_until"]


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
    return running_worker(worker, name="fault-worker")
