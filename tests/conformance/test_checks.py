"""The checks as pure functions: a well-behaved job passes, any reordering or mislabelling is caught."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from tdm_messaging.codec import JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE, encode
from tdm_messaging.conformance.packager_checks import evaluate
from tdm_messaging.conformance.packager_seen import Lifecycle, PackagerSeen
from tdm_messaging.conformance.report import Outcome, Result
from tdm_messaging.conformance.server_checks import (
    HEADERS,
    NAMES_DOCSET,
    REQUEST_ID,
    SEQUENCE_ZERO,
    WELL_FORMED,
    fold_problems,
    leftover_problems,
    request_problems,
)
from tdm_messaging.conformance.wire import Received, decode_envelope
from tdm_messaging.envelope import Envelope
from tdm_messaging.ids import new_request_id
from tdm_messaging.models import Accepted, Complete, Message, PackageRequest, Progress
from tdm_messaging.status import State

NOW = datetime.now(UTC)  # the messages' timestamps


def _now() -> datetime:
    """ "now" for a decode: request ids come from the wall clock, and readers refuse ids dated after
    "now", so it is read when the test decodes, not when the module was imported (a long run in between
    made every id look like it came from the future)."""
    return datetime.now(UTC)


def request(docset_id: str = "5") -> PackageRequest:
    return PackageRequest(
        docset_id=docset_id,
        request_id=new_request_id(),
        timestamp=NOW,
        docset_url=f"http://api.invalid/api/docsets/{docset_id}",
        reply_to=f"package/{docset_id}",
        requested_at=NOW,
    )


def job(req: PackageRequest, progresses: int) -> list[Message]:
    fields = {"docset_id": req.docset_id, "request_id": req.request_id, "timestamp": NOW}
    replies: list[Message] = [Accepted(**fields, sequence=1, estimate_seconds=3)]
    replies += [
        Progress(**fields, sequence=2 + i, items_done=i + 1, items_total=progresses, percent=100 * (i + 1) / progresses)
        for i in range(progresses)
    ]
    replies.append(Complete(**fields, sequence=2 + progresses, archive_url="https://a.invalid/5.zip", size_bytes=9))
    return replies


def received(messages: list[Message], content_type: str = JSON_CONTENT_TYPE) -> list[Received]:
    return [decode_envelope(encode(m, content_type), docset_id=m.docset_id, now=_now()) for m in messages]


def lifecycle_results(run: Lifecycle) -> dict[int, Result]:
    empty = {name: Lifecycle(f"other-{name}") for name in ("text", "seed", "polled", "duplicate", "missing")}
    more = {name: Lifecycle(f"other-{name}") for name in ("invalid", "future_major", "after_poison")}
    seen = PackagerSeen(json=run, **empty, **more)
    return {r.case.number: r for r in evaluate(seen) if r.case.number <= 9}


@given(st.integers(min_value=0, max_value=5), st.sampled_from([JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE]))
def test_a_well_behaved_job_passes_every_lifecycle_case(progresses: int, content_type: str) -> None:
    req = request()
    results = lifecycle_results(Lifecycle("5", req, received(job(req, progresses), content_type)))
    assert {n: r.outcome for n, r in results.items()} == {n: Outcome.PASS for n in range(1, 10)} | {8: Outcome.SKIP}


@given(st.integers(min_value=1, max_value=4).flatmap(lambda n: st.tuples(st.just(n), st.permutations(range(n + 2)))))
def test_any_reordering_of_a_job_is_caught(case: tuple[int, list[int]]) -> None:
    progresses, order = case
    req = request()
    replies = job(req, progresses)
    shuffled = [replies[i] for i in order]
    results = lifecycle_results(Lifecycle("5", req, received(shuffled)))
    # The order case holds exactly when accepted is first and complete last; sequences catch the rest.
    in_order = order[0] == 0 and order[-1] == len(order) - 1
    assert (results[3].outcome is Outcome.PASS) is in_order
    assert (results[4].outcome is Outcome.PASS) is (order == sorted(order))


def test_replies_to_another_request_fail_the_id_case_and_the_fold() -> None:
    req = request()
    stranger = request().model_copy(update={"docset_id": "5"})
    results = lifecycle_results(Lifecycle("5", req, received(job(stranger, 1))))
    assert results[2].outcome is Outcome.FAIL and stranger.request_id in results[2].detail
    assert results[7].outcome is Outcome.FAIL


def test_undecodable_replies_fail_well_formedness_and_missing_headers_only_warn() -> None:
    req = request()
    good = [encode(m) for m in job(req, 1)]
    bare = [Envelope(e.body, e.content_type, {}) for e in good]
    junk = Envelope(b"{nope", JSON_CONTENT_TYPE, {})
    results = lifecycle_results(
        Lifecycle("5", req, [decode_envelope(e, docset_id="5", now=_now()) for e in [*bare, junk]])
    )
    assert results[1].outcome is Outcome.FAIL and "undecodable" in results[1].detail
    assert results[9].outcome is Outcome.WARN and "no tdm-request-id header" in results[9].detail


def test_nothing_at_all_fails_the_first_case_and_skips_the_others() -> None:
    results = lifecycle_results(Lifecycle("5", request()))
    assert results[1].outcome is Outcome.FAIL
    assert {results[n].outcome for n in range(2, 10)} == {Outcome.SKIP}


def test_a_well_formed_request_has_no_problems() -> None:
    found = request_problems(received([request("7")])[0], "7")
    assert all(not problems for problems in found.values()), found


def test_request_problems_name_each_broken_rule() -> None:
    bad = request("8").model_copy(update={"sequence": 3})
    found = request_problems(received([bad])[0], "7")
    assert found[NAMES_DOCSET] and found[SEQUENCE_ZERO]
    legacy = decode_envelope(
        Envelope(b"http://api.invalid/api/docsets/7", TEXT_CONTENT_TYPE, {}), docset_id=None, now=_now()
    )
    found = request_problems(legacy, "7")
    assert found[REQUEST_ID] == ["request_id is empty (the seed's form; a server of this protocol must give one)"]
    assert any("no tdm-type header" in p for p in found[HEADERS])
    junk = decode_envelope(Envelope(b"[1]", JSON_CONTENT_TYPE, {}), docset_id=None, now=_now())
    assert request_problems(junk, "7")[WELL_FORMED]


def test_after_a_poll_superseded_replies_and_extras_are_reported() -> None:
    req = request()
    everything = received([req, *job(req, 1)])
    superseded, extra = leftover_problems(everything, req.request_id)
    assert superseded == ["still in the queue: ['accepted#1', 'progress#2']"]
    assert extra
    compacted = received([req, job(req, 1)[-1]])
    assert leftover_problems(compacted, req.request_id) == ([], [])
    assert fold_problems(compacted, "5", state=State.COMPLETE, request_id=req.request_id) == []
    assert fold_problems(compacted, "5", state=State.FAILED, request_id=req.request_id)
    wrong_url = fold_problems(
        compacted, "5", state=State.COMPLETE, request_id=req.request_id, archive_url="https://b.invalid/"
    )
    assert wrong_url == ["the archive URL became 'https://a.invalid/5.zip'"]
