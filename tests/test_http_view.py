"""The HTTP view of a status: one answer per state, Retry-After from the estimate, laws that hold for any status."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tdm_messaging.errors import LocalProtocolError, MessagingError
from tdm_messaging.http_view import (
    DEFAULT_RETRY_AFTER_SECONDS,
    MAX_RETRY_AFTER_SECONDS,
    MIN_RETRY_AFTER_SECONDS,
    HttpView,
    http_view,
)
from tdm_messaging.models import Accepted, Complete, Deleted, Failed, Message, PackageRequest, Progress
from tdm_messaging.status import DocsetStatus, State, fold
from tests.strategies import message_lists, timestamps

DOCSET = "5"
RID = "0190a000-0000-7000-8000-000000000001"
T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
URL = "https://bucket.s3.amazonaws.com/package/5.zip"
SHA = "ab" * 32


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def request() -> PackageRequest:
    return PackageRequest(
        docset_id=DOCSET,
        request_id=RID,
        timestamp=T0,
        docset_url="http://server/api/docsets/5?fmt=meta,txt",
        reply_to="package/5",
        requested_at=T0,
    )


def accepted(estimate: float | None = 45, *, t: float = 0) -> Accepted:
    return Accepted(docset_id=DOCSET, request_id=RID, sequence=1, timestamp=at(t), estimate_seconds=estimate)


def progress(done: int, *, eta: float | None = None, t: float = 10) -> Progress:
    return Progress(
        docset_id=DOCSET,
        request_id=RID,
        sequence=2,
        timestamp=at(t),
        items_done=done,
        items_total=10,
        percent=10.0 * done,
        eta_seconds=eta,
    )


def complete(expires: datetime | None = None) -> Complete:
    return Complete(
        docset_id=DOCSET,
        request_id=RID,
        sequence=3,
        timestamp=at(30),
        archive_url=URL,
        size_bytes=345345,
        sha256=SHA,
        url_expires_at=expires,
    )


def view(*messages: Message, now: datetime = T0) -> HttpView:
    return http_view(fold(messages, DOCSET), now=now)


def test_unknown_is_404_and_says_no_dump_was_requested() -> None:
    answer = view()
    assert answer.status_code == 404
    assert answer.body["state"] == "unknown"
    assert "no dump was requested" in str(answer.body["detail"])
    assert answer.header("Retry-After") is None


def test_requested_is_202_pending_never_404() -> None:
    answer = view(request())
    assert answer.status_code == 202
    assert answer.body["state"] == "requested"
    assert answer.body["request_id"] == RID
    assert answer.body["requested_at"] == T0.isoformat().replace("+00:00", "Z")
    assert answer.body["percent"] == 0.0
    assert answer.header("retry-after") == str(DEFAULT_RETRY_AFTER_SECONDS)  # no estimate yet


def test_accepted_counts_down_the_estimate() -> None:
    assert view(request(), accepted(45)).header("Retry-After") == "45"
    answer = view(request(), accepted(45), now=at(40))
    assert answer.status_code == 202
    assert answer.header("Retry-After") == "5"
    assert answer.body["eta_seconds"] == 5.0
    assert answer.body["estimate_seconds"] == 45


def test_retry_after_is_clamped_and_rounded_up() -> None:
    assert view(accepted(3600)).header("Retry-After") == str(MAX_RETRY_AFTER_SECONDS)
    assert view(accepted(0.2)).header("Retry-After") == str(MIN_RETRY_AFTER_SECONDS)
    assert view(accepted(2.1)).header("Retry-After") == "3"


def test_an_overdue_estimate_falls_back_to_the_default() -> None:
    answer = view(accepted(45), now=at(600))
    assert answer.header("Retry-After") == str(DEFAULT_RETRY_AFTER_SECONDS)
    assert answer.body["eta_seconds"] == 0.0


def test_progress_eta_wins_over_the_estimate() -> None:
    answer = view(request(), accepted(45), progress(4, eta=20, t=10), now=at(12))
    assert answer.status_code == 202
    assert answer.body["state"] == "in_progress"
    assert answer.body["percent"] == 40.0
    assert (answer.body["items_done"], answer.body["items_total"]) == (4, 10)
    assert answer.header("Retry-After") == "18"


def test_progress_without_eta_scales_the_estimate() -> None:
    # 60% left of a 100 s estimate, reported 10 s ago: 50 s to go.
    answer = view(accepted(100), progress(4, t=10), now=at(20))
    assert answer.header("Retry-After") == "50"


def test_a_sender_clock_ahead_of_ours_does_not_stretch_the_wait() -> None:
    assert view(accepted(45, t=100), now=T0).header("Retry-After") == "45"


def test_complete_is_303_to_the_archive() -> None:
    answer = view(request(), complete(expires=at(3600)), now=at(60))
    assert answer.status_code == 303
    assert answer.header("Location") == URL
    assert answer.body["size_bytes"] == 345345
    assert answer.body["sha256"] == SHA
    assert answer.body["content_type"] == "application/zip"
    assert answer.body["url_expires_at"] == at(3600).isoformat().replace("+00:00", "Z")
    assert answer.header("Retry-After") is None


def test_an_expired_archive_url_is_410_asking_for_a_new_dump() -> None:
    answer = view(request(), complete(expires=at(3600)), now=at(3600))
    assert answer.status_code == 410
    assert answer.header("Location") is None
    assert answer.body["gone_because"] == "url_expired"
    assert "request a new dump" in str(answer.body["detail"])


@pytest.mark.parametrize("retryable", [True, False])
def test_failed_is_502_with_reason_and_how_to_retry(retryable: bool) -> None:
    failure = Failed(
        docset_id=DOCSET, request_id=RID, sequence=3, timestamp=at(9), reason="disk full", retryable=retryable
    )
    answer = view(request(), failure)
    assert answer.status_code == 502
    assert answer.body["reason"] == "disk full"
    assert answer.body["retryable"] is retryable
    assert answer.header("Retry-After") is None  # polling again does not help; a new request might
    detail = str(answer.body["detail"])
    assert "disk full" in detail
    assert ("request a new dump" in detail) is retryable


def test_deleted_is_410() -> None:
    gone = Deleted(docset_id=DOCSET, request_id=RID, sequence=4, timestamp=at(90), archive_url=URL)
    answer = view(request(), complete(), gone)
    assert answer.status_code == 410
    assert answer.body["state"] == "deleted"
    assert answer.body["gone_because"] == "deleted"
    assert answer.header("Location") is None


def test_naive_now_is_a_clear_local_error() -> None:
    with pytest.raises(LocalProtocolError, match="timezone-aware") as info:
        http_view(DocsetStatus.unknown(DOCSET), now=datetime(2026, 1, 1))
    assert isinstance(info.value, MessagingError)


def test_a_hand_built_complete_without_result_is_refused() -> None:
    broken = DocsetStatus(DOCSET, State.COMPLETE, RID, None, None, None, None, None, None)
    with pytest.raises(LocalProtocolError, match="must carry its result"):
        http_view(broken, now=T0)


EXPECTED_CODES = {
    State.UNKNOWN: {404},
    State.REQUESTED: {202},
    State.ACCEPTED: {202},
    State.IN_PROGRESS: {202},
    State.COMPLETE: {303, 410},
    State.FAILED: {502},
    State.DELETED: {410},
}


@given(message_lists(docset_id=DOCSET), timestamps())
def test_law_every_status_has_a_sound_answer(messages: list[Message], now: datetime) -> None:
    status = fold(messages, DOCSET)
    answer = http_view(status, now=now)
    assert answer.status_code in EXPECTED_CODES[status.state]
    assert json.loads(json.dumps(answer.body)) == answer.body  # JSON-serialisable as it is
    assert answer.body["state"] == status.state.value
    assert answer.body["docset_id"] == DOCSET
    assert answer.body["detail"]
    retry_after = answer.header("Retry-After")
    assert (retry_after is not None) == (answer.status_code == 202)
    if retry_after is not None:
        assert MIN_RETRY_AFTER_SECONDS <= int(retry_after) <= MAX_RETRY_AFTER_SECONDS
    assert (answer.header("Location") is not None) == (answer.status_code == 303)
    assert answer.header("Cache-Control") == "no-store"


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False), st.floats(min_value=0, max_value=1e6, allow_nan=False))
def test_law_retry_after_never_overshoots_the_time_left(estimate: float, waited: float) -> None:
    now = at(waited)
    answer = view(accepted(estimate), now=now)
    left = estimate - (now - T0).total_seconds()  # timedelta keeps microseconds only
    retry_after = int(answer.header("Retry-After") or "0")
    if left > 0:
        assert retry_after <= max(MIN_RETRY_AFTER_SECONDS, left + 1)
    else:
        assert retry_after == DEFAULT_RETRY_AFTER_SECONDS
