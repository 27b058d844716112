"""Tests for examples.packager.ordered: order kept, a bounded window, the first failure cancels, no thread left."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest

from examples.packager.limits import Cancel, JobInterrupted
from examples.packager.ordered import OrderedPool


def _pool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("test-pool")]


def test_results_come_in_the_items_order_whatever_order_the_calls_end_in() -> None:
    rng = random.Random(7)
    pauses = [rng.random() / 200 for _ in range(60)]

    def call(i: int) -> int:
        time.sleep(pauses[i])
        return i * i

    with OrderedPool(call, range(60), workers=5, cancel=Cancel(), discard=lambda _: None, name="test-pool") as pool:
        assert list(pool) == [i * i for i in range(60)]
    assert _pool_threads() == []


def test_at_most_the_window_is_taken_ahead_and_at_most_workers_run_at_once() -> None:
    taken: list[int] = []
    release = threading.Event()
    running = 0
    most = 0
    lock = threading.Lock()

    def items() -> Iterator[int]:
        for i in range(100):
            taken.append(i)
            yield i

    def call(i: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        release.wait(10)
        with lock:
            running -= 1
        return i

    with OrderedPool(call, items(), workers=3, cancel=Cancel(), discard=lambda _: None, name="test-pool") as pool:
        results = iter(pool)
        waiter = threading.Thread(target=lambda: next(results))
        waiter.start()
        deadline = time.monotonic() + 10
        while (running < 3 or len(taken) < 6) and time.monotonic() < deadline:
            time.sleep(0.005)  # the pool takes the queued three after the first three start: wait for both
        time.sleep(0.05)  # and a moment more, for a seventh read that should not come
        assert len(taken) == 6  # 2 x workers: 3 running, 3 queued, none more read
        assert running == 3
        release.set()
        waiter.join(10)
        assert list(results) == list(range(1, 100))
    assert most == 3
    assert _pool_threads() == []


def test_the_first_failure_cancels_the_job_and_is_raised() -> None:
    cancel = Cancel()
    started = threading.Event()

    def call(i: int) -> int:
        if i == 3:
            started.wait(10)
            raise ValueError("member 3 is broken")
        if i == 0:
            started.set()
            cancel.wait(10)  # a long read: ended by the cancel the failure sets
        return i

    with (
        OrderedPool(call, range(50), workers=4, cancel=cancel, discard=lambda _: None, name="test-pool") as pool,
        pytest.raises(ValueError, match="member 3"),
    ):
        list(pool)
    assert cancel.cancelled
    with pytest.raises(ValueError, match="member 3"):
        cancel.check()
    assert _pool_threads() == []


def test_leaving_early_discards_the_results_not_handed_out_and_stops_every_thread() -> None:
    discarded: list[int] = []
    calls: list[int] = []
    lock = threading.Lock()

    def call(i: int) -> int:
        with lock:
            calls.append(i)
        return i

    with OrderedPool(call, range(1000), workers=4, cancel=Cancel(), discard=discarded.append, name="test-pool") as pool:
        for result in pool:
            if result == 10:
                break
    assert _pool_threads() == []
    handed = set(range(11))
    assert set(calls) - handed == set(discarded)  # every result made and not handed out was discarded
    assert len(calls) <= 11 + 8  # nothing past the window was called


def test_an_error_of_the_caller_cuts_the_calls_under_way() -> None:
    cancel = Cancel()
    outcomes: list[str] = []
    lock = threading.Lock()

    def call(i: int) -> int:
        if i == 0:
            return i
        try:
            cancel.wait(60)  # a long read: only a cut ends it early
        except RuntimeError:
            with lock:
                outcomes.append("cut")
            raise
        with lock:
            outcomes.append("read to the end")
        return i

    with (
        pytest.raises(RuntimeError, match="the bag failed"),
        OrderedPool(call, range(20), workers=4, cancel=cancel, discard=lambda _: None, name="test-pool") as pool,
    ):
        for _result in pool:
            raise RuntimeError("the bag failed")
    assert _pool_threads() == []
    assert outcomes and set(outcomes) == {"cut"}
    with pytest.raises(RuntimeError, match="the bag failed"):
        cancel.check()


def test_a_cancelled_job_stops_at_once() -> None:
    cancel = Cancel()
    cancel.cancel(JobInterrupted("stopping"))
    with (
        OrderedPool(lambda i: i, range(10), workers=2, cancel=cancel, discard=lambda _: None, name="test-pool") as pool,
        pytest.raises(JobInterrupted),
    ):
        list(pool)
    assert _pool_threads() == []


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        OrderedPool(lambda i: i, [], workers=0, cancel=Cancel(), discard=lambda _: None)
