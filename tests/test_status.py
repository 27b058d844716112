"""The status fold and compaction: worked examples, then the laws proven with hypothesis."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tdm_messaging.errors import InvalidDestinationError, MessagingError
from tdm_messaging.ids import request_id_from
from tdm_messaging.models import (
    LEGACY_REQUEST_ID,
    Accepted,
    Complete,
    Deleted,
    DeleteRequest,
    Failed,
    Message,
    PackageRequest,
    Progress,
)
from tdm_messaging.status import DocsetStatus, State, compact, fold
from tests.strategies import (
    accepteds,
    completes,
    docset_ids,
    faileds,
    interleave,
    job_histories,
    message_lists,
    messages,
    ordered_request_ids,
    package_requests,
    progresses,
    request_ids,
)

DOCSET = "5"
T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
OLD = request_id_from(1_700_000_000_000, bytes(10))
NEW = request_id_from(1_700_000_060_000, bytes(10))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def request(request_id: str = OLD, *, t: float = 0) -> PackageRequest:
    return PackageRequest(
        docset_id=DOCSET,
        request_id=request_id,
        timestamp=at(t),
        docset_url=f"http://server/api/docsets/{DOCSET}?fmt=meta,txt",
        reply_to=f"package/{DOCSET}",
        requested_at=at(t),
    )


def accepted(request_id: str = OLD, *, seq: int = 1, t: float = 1, estimate: float | None = 45) -> Accepted:
    return Accepted(docset_id=DOCSET, request_id=request_id, sequence=seq, timestamp=at(t), estimate_seconds=estimate)


def progress(done: int, request_id: str = OLD, *, seq: int = 2, t: float = 2, total: int = 10) -> Progress:
    return Progress(
        docset_id=DOCSET,
        request_id=request_id,
        sequence=seq,
        timestamp=at(t),
        items_done=done,
        items_total=total,
        percent=100 * done / total,
    )


def complete(request_id: str = OLD, *, seq: int = 9, t: float = 9, url: str = "https://b/package/5") -> Complete:
    return Complete(
        docset_id=DOCSET, request_id=request_id, sequence=seq, timestamp=at(t), archive_url=url, size_bytes=345345
    )


def failed(request_id: str = OLD, *, seq: int = 9, t: float = 9, retryable: bool = False) -> Failed:
    return Failed(
        docset_id=DOCSET, request_id=request_id, sequence=seq, timestamp=at(t), reason="disk full", retryable=retryable
    )


def deleted(request_id: str = OLD, *, seq: int = 10, t: float = 20) -> Deleted:
    return Deleted(docset_id=DOCSET, request_id=request_id, sequence=seq, timestamp=at(t))


# --- worked examples -------------------------------------------------------------------------


def test_nothing_is_unknown_not_pending() -> None:
    status = fold([], DOCSET)
    assert status == DocsetStatus.unknown(DOCSET)
    assert status.state is State.UNKNOWN
    assert not status.state.is_pending
    assert compact([], DOCSET) == []


def test_a_request_copy_alone_is_requested() -> None:
    status = fold([request()], DOCSET)
    assert status.state is State.REQUESTED
    assert status.state.is_pending
    assert status.request_id == OLD
    assert status.requested_at == at(0)
    assert status.updated_at == at(0)


def test_lifecycle_in_order() -> None:
    history: list[Message] = [request(), accepted(), progress(3), progress(7, seq=3, t=3), complete()]
    expected = [State.REQUESTED, State.ACCEPTED, State.IN_PROGRESS, State.IN_PROGRESS, State.COMPLETE]
    assert [fold(history[: n + 1], DOCSET).state for n in range(len(history))] == expected
    status = fold(history, DOCSET)
    assert status.result == complete()
    assert status.progress is None and status.estimate_seconds is None  # not meaningful once complete
    assert status.requested_at == at(0)
    assert status.updated_at == at(9)


def test_in_progress_keeps_the_estimate_and_the_furthest_progress() -> None:
    status = fold([progress(7, seq=3, t=3), accepted(estimate=45), progress(3)], DOCSET)
    assert status.state is State.IN_PROGRESS
    assert status.estimate_seconds == 45
    assert status.progress == progress(7, seq=3, t=3)
    assert status.requested_at is None  # the request's copy was not seen: nothing is invented


def test_progress_prefers_items_done_over_sequence() -> None:
    # A re-run of the job restarts its sequence: the furthest work still wins.
    furthest = progress(8, seq=2, t=2)
    assert fold([furthest, progress(1, seq=7, t=7)], DOCSET).progress == furthest


def test_a_reply_before_its_request_copy() -> None:
    status = fold([accepted()], DOCSET)
    assert status.state is State.ACCEPTED
    assert status.estimate_seconds == 45
    assert status.requested_at is None


def test_late_accepted_never_hides_complete() -> None:
    late = accepted(seq=20, t=100)
    status = fold([request(), complete(), late], DOCSET)
    assert status.state is State.COMPLETE
    assert status.result == complete()


def test_complete_outranks_failed_of_the_same_request() -> None:
    # A redelivered duplicate job may fail after the first run delivered: the archive still exists.
    status = fold([complete(seq=3, t=3), failed(seq=8, t=30)], DOCSET)
    assert status.state is State.COMPLETE
    assert status.failure is None


def test_newer_request_supersedes_older_result() -> None:
    status = fold([request(OLD), complete(OLD), request(NEW, t=60)], DOCSET)
    assert status.state is State.REQUESTED
    assert status.request_id == NEW
    assert status.result is None
    assert status.requested_at == at(60)


def test_a_reply_to_a_request_never_issued_is_ignored() -> None:
    # Issue 10: an Accepted forged for an id the server never issued pinned GET /dump at 202 for ever.
    history: list[Message] = [request(OLD), complete(OLD)]
    forged = accepted(NEW, t=61)
    assert fold([*history, forged], DOCSET) == fold(history, DOCSET)
    assert compact([*history, forged], DOCSET) == history  # and the next poll drops it
    # A real newer request wins at once, and then its replies count.
    later = request_id_from(1_700_000_120_000, bytes(10))
    status = fold([*history, forged, request(later, t=120), accepted(later, t=121)], DOCSET)
    assert (status.state, status.request_id) == (State.ACCEPTED, later)


def test_without_any_request_copy_every_reply_counts() -> None:
    # A seed queue (or one whose copy was lost) holds replies only: the newest reply's request decides.
    status = fold([complete(OLD), accepted(NEW, t=61)], DOCSET)
    assert (status.state, status.request_id) == (State.ACCEPTED, NEW)


def test_seed_messages_are_superseded_by_any_real_request() -> None:
    seed: list[Message] = [accepted(LEGACY_REQUEST_ID, seq=0, t=0), complete(LEGACY_REQUEST_ID, seq=0, t=5)]
    assert fold(seed, DOCSET).state is State.COMPLETE
    status = fold([*seed, request(OLD, t=10)], DOCSET)
    assert (status.state, status.request_id) == (State.REQUESTED, OLD)


def test_deleted_marks_the_request_it_names() -> None:
    status = fold([request(), complete(), deleted()], DOCSET)
    assert status.state is State.DELETED
    assert status.result is None
    assert status.updated_at == at(20)
    # ... but not a newer request's status.
    newer = fold([request(), complete(), request(NEW, t=60), deleted(OLD, t=70)], DOCSET)
    assert (newer.state, newer.request_id) == (State.REQUESTED, NEW)


def test_deleted_with_the_delete_requests_own_newer_id() -> None:
    # PackagingClient.request_delete gives the delete a fresh id; the packager's Deleted repeats it.
    status = fold([request(OLD), complete(OLD), deleted(NEW, seq=1, t=70)], DOCSET)
    assert (status.state, status.request_id, status.requested_at) == (State.DELETED, NEW, None)
    later = request_id_from(1_700_000_120_000, bytes(10))
    again = fold([request(OLD), complete(OLD), deleted(NEW, seq=1, t=70), request(later, t=120)], DOCSET)
    assert (again.state, again.request_id) == (State.REQUESTED, later)


def test_delete_request_changes_nothing() -> None:
    order = DeleteRequest(docset_id=DOCSET, request_id=NEW, timestamp=at(50), archive_url="https://b/package/5")
    before: list[Message] = [request(), complete()]
    assert fold([*before, order], DOCSET) == fold(before, DOCSET)
    assert fold([order], DOCSET).state is State.UNKNOWN
    assert order not in compact([*before, order], DOCSET)


def test_other_docsets_are_ignored() -> None:
    other = Accepted(docset_id="6", request_id=NEW, timestamp=at(5))
    assert fold([request(), other], DOCSET) == fold([request()], DOCSET)
    assert fold([other], DOCSET).state is State.UNKNOWN


def test_bad_docset_id_is_a_clear_error() -> None:
    with pytest.raises(InvalidDestinationError, match="'/'") as info:
        fold([], "a/b")
    assert isinstance(info.value, MessagingError)
    with pytest.raises(InvalidDestinationError):
        compact([], "")


def test_fold_reads_any_iterable_once() -> None:
    history: list[Message] = [request(), accepted()]
    assert fold(iter(history), DOCSET) == fold(history, DOCSET)
    assert compact(iter(history), DOCSET) == history


def test_compact_keeps_one_witness_per_needed_kind_in_input_order() -> None:
    history: list[Message] = [
        accepted(estimate=None),
        request(),
        accepted(seq=2, t=2, estimate=30),
        progress(2, seq=3, t=3),
        accepted(seq=2, t=2, estimate=30),  # a duplicate: the first copy is the one kept
        progress(6, seq=4, t=4),
    ]
    kept = compact(history, DOCSET)
    assert kept == [history[1], history[2], history[5]]
    assert kept[1] is history[2]
    assert fold(kept, DOCSET) == fold(history, DOCSET)


def test_compact_drops_an_accepted_without_estimate_once_in_progress() -> None:
    history: list[Message] = [request(), accepted(estimate=None, t=50), progress(4)]
    assert compact(history, DOCSET) == [history[0], history[2]]
    assert fold(compact(history, DOCSET), DOCSET) == fold(history, DOCSET)


def test_compact_of_a_finished_job_is_request_and_result() -> None:
    history: list[Message] = [request(), accepted(), progress(3), progress(9, seq=3, t=3), complete()]
    assert compact(history, DOCSET) == [history[0], history[4]]


def test_state_ranks_are_ordered() -> None:
    order = [
        State.UNKNOWN,
        State.REQUESTED,
        State.ACCEPTED,
        State.IN_PROGRESS,
        State.FAILED,
        State.COMPLETE,
        State.DELETED,
    ]
    assert [s.rank for s in order] == sorted(s.rank for s in State)
    assert len({s.rank for s in State}) == len(State)


# --- laws ------------------------------------------------------------------------------------

# Half the lists share one request id, one timestamp and one sequence number: every tie-break is exercised.
LISTS = st.one_of(message_lists(docset_id=DOCSET), message_lists(docset_id=DOCSET, pool_size=1))


@given(LISTS, st.randoms(use_true_random=False))
def test_law_order_insensitive(messages_: list[Message], rng: random.Random) -> None:
    shuffled = list(messages_)
    rng.shuffle(shuffled)
    assert fold(shuffled, DOCSET) == fold(messages_, DOCSET)


@given(LISTS, st.data())
def test_law_duplicate_insensitive(messages_: list[Message], data: st.DataObject) -> None:
    extra = data.draw(st.lists(st.sampled_from(messages_))) if messages_ else []
    mixed = data.draw(st.permutations(messages_ + extra))
    assert fold(mixed, DOCSET) == fold(messages_, DOCSET)


def _has_copy(messages_: list[Message]) -> bool:
    return any(isinstance(m, PackageRequest) and m.docset_id == DOCSET for m in messages_)


@given(LISTS, message_lists(docset_id=DOCSET, min_size=1))
def test_law_monotonic_within_a_request(before: list[Message], more: list[Message]) -> None:
    # The one exception: the first request copy to arrive makes every reply to other ids stop counting.
    assume(_has_copy(before) or not _has_copy(more))
    old, new = fold(before, DOCSET), fold(before + more, DOCSET)
    assert (new.request_id or "") >= (old.request_id or "")  # never back to an older request
    if new.request_id == old.request_id:
        assert new.state.rank >= old.state.rank
        if old.state is new.state is State.IN_PROGRESS:
            assert old.progress is not None and new.progress is not None
            assert new.progress.items_done >= old.progress.items_done


@given(LISTS, st.data())
def test_law_newer_request_supersedes(before: list[Message], data: st.DataObject) -> None:
    newest = max((m.request_id for m in before), default=LEGACY_REQUEST_ID)
    unix_ms = int(newest.replace("-", "")[:12], 16) + 1 if newest else 0
    assume(unix_ms < 1 << 48)
    newer_id = request_id_from(unix_ms, data.draw(st.binary(min_size=10, max_size=10)))
    newer = data.draw(messages(docset_id=DOCSET, request_id=newer_id))
    assume(not isinstance(newer, DeleteRequest))
    status = fold([*before, newer], DOCSET)
    if isinstance(newer, PackageRequest | Deleted) or not _has_copy(before):
        assert status == fold([newer], DOCSET)  # nothing of an older request survives
        assert status.request_id == newer.request_id
    else:  # a reply to a request whose copy is not there: the server never issued it
        assert status == fold(before, DOCSET)


@given(LISTS, st.data())
def test_law_replies_to_unissued_requests_never_count(before: list[Message], data: st.DataObject) -> None:
    before = [*before, data.draw(package_requests(DOCSET))]  # at least one issued request
    used = {m.request_id for m in before}
    forged_id = data.draw(request_ids(legacy=True).filter(lambda rid: rid not in used))
    reply = st.one_of([build(DOCSET, forged_id) for build in (accepteds, progresses, completes, faileds)])
    forged = data.draw(st.lists(reply, min_size=1, max_size=4))
    mixed = data.draw(st.permutations(before + forged))
    assert fold(mixed, DOCSET) == fold(before, DOCSET)
    assert all(kept.request_id != forged_id for kept in compact(mixed, DOCSET))  # the next poll drops them


@given(LISTS)
def test_law_compact_preserves_the_fold(messages_: list[Message]) -> None:
    kept = compact(messages_, DOCSET)
    status = fold(messages_, DOCSET)
    assert fold(kept, DOCSET) == status
    assert fold(messages_ + kept, DOCSET) == status
    assert compact(kept, DOCSET) == kept  # idempotent
    assert len(kept) <= 3


@given(LISTS)
def test_law_compact_is_a_stable_subsequence(messages_: list[Message]) -> None:
    kept = compact(messages_, DOCSET)
    positions = [next(i for i, m in enumerate(messages_) if m is k) for k in kept]
    assert positions == sorted(set(positions))
    assert all(m.docset_id == DOCSET and not isinstance(m, DeleteRequest) for m in kept)


@given(LISTS)
def test_law_compact_is_minimal(messages_: list[Message]) -> None:
    kept = compact(messages_, DOCSET)
    status = fold(messages_, DOCSET)
    for i in range(len(kept)):
        assert fold(kept[:i] + kept[i + 1 :], DOCSET) != status


@given(message_lists(docset_id=DOCSET, foreign=False), message_lists(foreign=True))
def test_law_other_docsets_never_matter(own: list[Message], others: list[Message]) -> None:
    foreign = [m for m in others if m.docset_id != DOCSET]
    assert fold(own + foreign, DOCSET) == fold(own, DOCSET)


@given(docset_ids(), message_lists(foreign=True))
def test_law_unknown_iff_no_reply_or_request(docset: str, messages_: list[Message]) -> None:
    status = fold(messages_, docset)
    counted = [m for m in messages_ if m.docset_id == docset and not isinstance(m, DeleteRequest)]
    assert (status.state is State.UNKNOWN) == (not counted)
    assert status.docset_id == docset


@given(ordered_request_ids(min_size=2, max_size=2, legacy=False), st.data())
def test_law_interleaved_jobs_report_the_newer(ids: list[str], data: st.DataObject) -> None:
    first = data.draw(job_histories(docset_id=DOCSET, request_id=ids[0]))
    second = data.draw(job_histories(docset_id=DOCSET, request_id=ids[1]))
    merged = data.draw(interleave([first, second]))
    assert fold(merged, DOCSET) == fold(second, DOCSET)


@given(job_histories(docset_id=DOCSET))
def test_law_a_job_reports_its_outcome(history: list[Message]) -> None:
    status = fold(history, DOCSET)
    last = history[-1]
    expected = {
        Complete: State.COMPLETE,
        Failed: State.FAILED,
        Deleted: State.DELETED,
        Progress: State.IN_PROGRESS,
        Accepted: State.ACCEPTED,
    }[type(last)]
    assert status.state is expected
    assert status.request_id == last.request_id
    assert isinstance(history[0], PackageRequest)
    assert status.requested_at == history[0].requested_at
    # Every prefix is a status the miner may have seen: the ranks never go back.
    ranks = [fold(history[: n + 1], DOCSET).state.rank for n in range(len(history))]
    assert ranks == sorted(ranks)
