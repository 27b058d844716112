"""DocsetLocks: one re-entrant lock per docset in use, exclusive across threads, forgotten when unused."""

from __future__ import annotations

import threading
from contextlib import ExitStack

from hypothesis import given
from hypothesis import strategies as st

from tdm_messaging.docset_locks import DocsetLocks


def test_a_hold_is_exclusive_across_threads_and_reentrant_within_one() -> None:
    locks = DocsetLocks()
    entered = threading.Event()

    def hold_same() -> None:
        with locks.hold("5"):
            entered.set()

    with locks.hold("5"), locks.hold("5"):  # re-entrant: a poll inside a caller's hold
        assert locks.users("5") == 2
        other = threading.Thread(target=hold_same)
        other.start()
        assert not entered.wait(timeout=0.2), "another thread entered a docset that is held"
        assert locks.users("5") == 3
    assert entered.wait(timeout=5)
    other.join(timeout=5)
    assert len(locks) == 0


def test_different_docsets_do_not_exclude_each_other() -> None:
    locks = DocsetLocks()
    entered = threading.Event()

    def hold_other() -> None:
        with locks.hold("6"):
            entered.set()

    with locks.hold("5"):
        thread = threading.Thread(target=hold_other)
        thread.start()
        assert entered.wait(timeout=5)
        thread.join(timeout=5)
    assert len(locks) == 0


def test_a_hold_left_by_an_exception_is_released_and_forgotten() -> None:
    locks = DocsetLocks()
    try:
        with locks.hold("5"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert (len(locks), locks.users("5")) == (0, 0)


@given(st.lists(st.text(), max_size=30))
def test_nested_holds_of_any_ids_leave_nothing_behind(ids: list[str]) -> None:
    locks = DocsetLocks()
    with ExitStack() as stack:
        for docset_id in ids:
            stack.enter_context(locks.hold(docset_id))
        assert len(locks) == len(set(ids))
        for docset_id in set(ids):
            assert locks.users(docset_id) == ids.count(docset_id)
    assert len(locks) == 0


def test_many_threads_on_one_docset_never_overlap_and_leave_no_lock() -> None:
    locks = DocsetLocks()
    inside = 0
    overlaps = 0
    count = threading.Lock()

    def work() -> None:
        nonlocal inside, overlaps
        for _ in range(200):
            with locks.hold("5"):
                with count:
                    inside += 1
                    overlaps += inside > 1
                with count:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert overlaps == 0
    assert len(locks) == 0
