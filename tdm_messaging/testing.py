"""What users' tests need: the in-memory broker and transport, a worker in a thread, waiting on a condition.

The broker and transport live in :mod:`tdm_messaging.transport.memory` (URL ``inmemory://``);
they are re-exported here, the module users' tests import.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from tdm_messaging.transport.memory.backend import DEFAULT_REPLY_TTL_SECONDS, InMemoryTransport
from tdm_messaging.transport.memory.broker import InMemoryBroker

if TYPE_CHECKING:
    from tdm_messaging.worker import PackagerWorker

__all__ = [
    "DEFAULT_REPLY_TTL_SECONDS",
    "InMemoryBroker",
    "InMemoryTransport",
    "became_true",
    "running_worker",
    "wait_until",
]


def became_true(condition: Callable[[], bool], *, within: float, every: float = 0.02) -> bool:
    """Whether ``condition()`` became true within ``within`` seconds, checking every ``every`` seconds.

    Both answers are outcomes (use it where "it never happened" is what a test checks).
    """
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


def wait_until(
    condition: Callable[[], bool], *, timeout: float = 10.0, what: str = "the condition", every: float = 0.02
) -> None:
    """Wait until ``condition()`` is true; the deadline is only a guard against a hang.

    Raises:
        AssertionError: ``condition()`` was still false after ``timeout`` seconds (the message names ``what``).
    """
    if not became_true(condition, within=timeout, every=every):
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@contextmanager
def running_worker(
    worker: PackagerWorker, *, name: str = "packager-worker", stop_timeout: float = 30.0
) -> Iterator[threading.Thread]:
    """Run ``worker.run(stop)`` in a thread for the ``with`` block; then stop it and wait for it.

    Args:
        worker: the worker to run.
        name: the thread's name (it shows in logs).
        stop_timeout: how long to wait for the worker to return once stopped.

    Yields:
        The worker's thread.

    Raises:
        AssertionError: the worker did not return within ``stop_timeout`` of being stopped.
        BaseException: whatever ``worker.run`` raised, re-raised when the block ends.
    """
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(stop)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(timeout=stop_timeout)
    if thread.is_alive():
        raise AssertionError(f"PackagerWorker.run did not return within {stop_timeout:g} s of being stopped")
    if failure:
        raise failure[0]
