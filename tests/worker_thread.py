"""Run a PackagerWorker in a thread for a ``with`` block: the one harness the transport and fault suites share."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tdm_messaging.worker import PackagerWorker

__all__ = ["worker_thread"]


@contextmanager
def worker_thread(worker: PackagerWorker, *, name: str = "packager-worker") -> Iterator[threading.Thread]:
    """Run ``worker`` in a thread for the ``with`` block; stop it, wait for it, and re-raise what it raised.

    Raises:
        AssertionError: the worker did not return within 30 s of ``stop`` being set.
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
        thread.join(timeout=30)
    assert not thread.is_alive(), "PackagerWorker.run did not return within 30 s of stop being set"
    if failure:
        raise failure[0]
