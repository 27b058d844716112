"""A bounded pool of threads mapping a function over items and handing the results back in the items' order."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Generic, TypeVar

from examples.packager.limits import Cancel

__all__ = ["OrderedPool"]

_T = TypeVar("_T")
_R = TypeVar("_R")


class OrderedPool(Generic[_T, _R]):
    """``function`` over ``items`` on ``workers`` threads; results in order, at most ``2 * workers`` at a time.

    At most ``workers`` calls run at once, and at most ``window`` (default ``2 * workers``)
    items are taken from ``items`` ahead of the one the caller is waiting for, so memory is
    bounded by the window whatever the number of items. The first call to fail cancels the
    job (``cancel``) with its error, which aborts the other calls' reads; the caller gets that
    error when it reaches that item, or the cancelling error first.

    Use it as a context manager: leaving the block (normally, on an error or on a cut) stops
    taking items, drops the queued calls, waits for the running ones to end and gives every
    result not handed out to ``discard``; leaving it on an error first cancels the job with that
    error, so the running calls' reads end at once (see :class:`Cancel`). No thread outlives the block.

    Args:
        function: what to do with one item (runs on a pool thread).
        items: the items, read lazily on the caller's thread.
        workers: threads, at least 1.
        cancel: the job's cancellation; checked before each call and set by the first failure.
        discard: frees a result that will not be handed out (e.g. closes its spooled bytes).
        window: items in flight or waiting to be handed out (at least ``workers``).
        name: the threads' name prefix.
    """

    def __init__(
        self,
        function: Callable[[_T], _R],
        items: Iterable[_T],
        *,
        workers: int,
        cancel: Cancel,
        discard: Callable[[_R], None],
        window: int | None = None,
        name: str = "packager-fetch",
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self._function = function
        self._items = iter(items)
        self._cancel = cancel
        self._discard = discard
        self._window = max(window if window is not None else 2 * workers, workers)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._pending: deque[Future[_R]] = deque()

    def __enter__(self) -> OrderedPool[_T, _R]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if exc is not None:
            self._cancel.cancel(exc)  # the caller failed: cut the reads under way rather than wait them out
        self.close()

    def __iter__(self) -> Iterator[_R]:
        exhausted = False
        while True:
            while not exhausted and len(self._pending) < self._window:
                try:
                    item = next(self._items)
                except StopIteration:
                    exhausted = True
                    break
                self._pending.append(self._pool.submit(self._call, item))
            if not self._pending:
                return
            future = self._pending[0]
            result = future.result()  # raises the call's error
            self._pending.popleft()
            yield result

    def close(self) -> None:
        """Drop the queued calls, wait for the running ones, discard the results not handed out. Idempotent."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        while self._pending:
            future = self._pending.popleft()
            if future.done() and not future.cancelled() and future.exception() is None:
                self._discard(future.result())

    def _call(self, item: _T) -> _R:
        self._cancel.check()
        try:
            return self._function(item)
        except Exception as exc:
            self._cancel.cancel(exc)  # the others' reads are cut: the job fails now, not after the window
            raise
