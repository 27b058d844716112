"""plan_poll, table-tested with no broker: what a poll re-sends, dead-letters and keeps; ACK, RELEASE or SETTLE."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tdm_messaging.codec import JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE, DecodeContext, decode, encode
from tdm_messaging.envelope import Envelope
from tdm_messaging.models import LEGACY_REQUEST_ID, Accepted, Complete, Message, PackageRequest, Progress
from tdm_messaging.poll_plan import BatchAction, attribute_legacy_replies, plan_poll
from tdm_messaging.status import State, compact, fold
from tdm_messaging.tracing import TraceContext, with_trace
from tests.strategies import docset_ids, message_lists

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
RID = "0190f0a0-0000-7000-8000-000000000001"
OLD_RID = "0190f0a0-0000-7000-8000-000000000000"


def request(request_id: str = RID, docset: str = "5") -> PackageRequest:
    return PackageRequest(
        docset_id=docset,
        request_id=request_id,
        sequence=0,
        timestamp=NOW,
        docset_url=f"http://s/api/docsets/{docset}",
        formats=("meta",),
        reply_to=f"package/{docset}",
        requested_at=NOW,
    )


def accepted(request_id: str = RID, sequence: int = 1, docset: str = "5") -> Accepted:
    return Accepted(
        docset_id=docset, request_id=request_id, sequence=sequence, timestamp=NOW + timedelta(seconds=sequence),
        estimate_seconds=45,
    )  # fmt: skip


def complete(request_id: str = RID) -> Complete:
    return Complete(
        docset_id="5", request_id=request_id, sequence=3, timestamp=NOW + timedelta(seconds=3),
        archive_url="https://b/5.zip", size_bytes=9,
    )  # fmt: skip


def progress(done: int) -> Progress:
    return Progress(
        docset_id="5", request_id=RID, sequence=1 + done, timestamp=NOW + timedelta(seconds=1 + done),
        items_done=done, items_total=4, percent=25.0 * done,
    )  # fmt: skip


def js(*messages: Message) -> list[Envelope]:
    return [encode(m, JSON_CONTENT_TYPE) for m in messages]


GARBAGE = Envelope(b"Sorry, what?", TEXT_CONTENT_TYPE)
SEED_ACCEPTED = Envelope(b"Accepted. 45 seconds", TEXT_CONTENT_TYPE)


class Case(NamedTuple):
    """One row: what a poll read and how it writes, then the plan expected."""

    envelopes: list[Envelope]
    content_type: str
    queue_expiry: bool
    state: State
    resent: list[Message]
    dead: int
    action: BatchAction
    keep: tuple[int, ...] = ()


J, T = JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE
ACK, RELEASE, SETTLE = BatchAction.ACK, BatchAction.RELEASE, BatchAction.SETTLE
CASES = {
    "empty, queues expire": Case([], J, True, State.UNKNOWN, [], 0, RELEASE),
    "empty, per-message expiry": Case([], J, False, State.UNKNOWN, [], 0, ACK),
    "just the request, kept as is": Case(js(request()), J, True, State.REQUESTED, [], 0, RELEASE, (0,)),
    "just the request, renewed": Case(js(request()), J, False, State.REQUESTED, [request()], 0, ACK),
    "written in another format": Case(js(request()), T, True, State.REQUESTED, [request()], 0, ACK),
    "a duplicate to drop": Case(js(request(), request()), J, True, State.REQUESTED, [], 0, SETTLE, (0,)),
    "compacted to the result": Case(
        js(request(), accepted(), progress(2), complete()), J, True, State.COMPLETE, [], 0, SETTLE, (0, 3)
    ),
    "compacted, per-message expiry": Case(
        js(request(), accepted(), progress(2), complete()), J, False, State.COMPLETE, [request(), complete()], 0, ACK
    ),
    "already compact": Case(js(request(), complete()), J, True, State.COMPLETE, [], 0, RELEASE, (0, 1)),
    "a newer request supersedes": Case(
        js(request(OLD_RID), complete(OLD_RID), request()), J, True, State.REQUESTED, [], 0, SETTLE, (2,)
    ),
    "garbage is dead-lettered": Case([*js(request()), GARBAGE], J, True, State.REQUESTED, [], 1, SETTLE, (0,)),
    "another docset's reply": Case(js(request(), accepted(docset="9")), J, True, State.REQUESTED, [], 1, SETTLE, (0,)),
    "one in another format": Case(
        [encode(request(), T), *js(complete())], J, True, State.COMPLETE, [request()], 0, SETTLE, (1,)
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_plan_table(case: Case) -> None:
    plan = plan_poll(
        case.envelopes, docset_id="5", content_type=case.content_type, queue_expiry=case.queue_expiry, now=NOW
    )
    assert plan.status.state is case.state
    assert plan.resend == tuple(encode(m, case.content_type) for m in case.resent)
    assert len(plan.dead_letters) == case.dead
    assert plan.action is case.action
    assert plan.keep == case.keep


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [
        (GARBAGE, "undecodable reply: "),
        (encode(accepted(docset="9"), JSON_CONTENT_TYPE), "reply for docset '9' found in queue package/5"),
    ],
)
def test_dead_letter_reasons(envelope: Envelope, reason: str) -> None:
    plan = plan_poll([envelope], docset_id="5", content_type=JSON_CONTENT_TYPE, queue_expiry=True, now=NOW)
    assert [d.envelope for d in plan.dead_letters] == [envelope]
    assert plan.dead_letters[0].reason.startswith(reason)


def test_a_seed_reply_answers_the_newest_request_and_is_resent_with_its_id() -> None:
    plan = plan_poll(
        [*js(request(OLD_RID), request()), SEED_ACCEPTED],
        docset_id="5",
        content_type=JSON_CONTENT_TYPE,
        queue_expiry=True,
        now=NOW,
    )
    assert (plan.status.state, plan.status.request_id, plan.status.estimate_seconds) == (State.ACCEPTED, RID, 45)
    kinds = [(type(m), m.request_id) for m in (decode(e) for e in plan.resend)]
    assert kinds == [(Accepted, RID)]  # only what changed is re-sent: the request is kept as read
    assert (plan.action, plan.keep) == (BatchAction.SETTLE, (1,))


def test_a_seed_reply_with_no_request_keeps_the_legacy_id() -> None:
    plan = plan_poll([SEED_ACCEPTED], docset_id="5", content_type=TEXT_CONTENT_TYPE, queue_expiry=False, now=NOW)
    assert (plan.status.state, plan.status.request_id) == (State.ACCEPTED, LEGACY_REQUEST_ID)
    assert plan.status.updated_at == NOW  # the text line had no time: "now" dated it


def test_legacy_attribution_never_touches_requests_nor_replies_with_an_id() -> None:
    legacy_request = request(LEGACY_REQUEST_ID)
    legacy_reply = accepted(LEGACY_REQUEST_ID)
    out = attribute_legacy_replies([legacy_request, legacy_reply, accepted(OLD_RID), request()])
    assert [m.request_id for m in out] == [LEGACY_REQUEST_ID, RID, OLD_RID, RID]


@given(docset_ids().flatmap(lambda d: st.tuples(st.just(d), message_lists(d))), st.booleans())
def test_a_second_poll_of_what_the_first_left_sees_the_same_and_leaves_it(
    drawn: tuple[str, list[Message]], queue_expiry: bool
) -> None:
    docset, messages = drawn
    first = plan_poll(
        js(*messages), docset_id=docset, content_type=JSON_CONTENT_TYPE, queue_expiry=queue_expiry, now=NOW
    )
    read = js(*messages)
    left = [read[i] for i in first.keep] + list(first.resend)
    second = plan_poll(left, docset_id=docset, content_type=JSON_CONTENT_TYPE, queue_expiry=queue_expiry, now=NOW)
    assert second.status == first.status
    assert second.dead_letters == ()
    assert second.action is (BatchAction.RELEASE if queue_expiry else BatchAction.ACK)
    own = attribute_legacy_replies([m for m in messages if m.docset_id == docset])
    assert first.status == fold(own, docset)
    assert len(first.dead_letters) == len(messages) - len(own)


@given(st.lists(st.builds(Envelope, st.binary(max_size=60), st.sampled_from([JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE]))))
def test_any_bytes_are_planned_never_raised_and_every_envelope_is_accounted_for(envelopes: list[Envelope]) -> None:
    plan = plan_poll(envelopes, docset_id="5", content_type=JSON_CONTENT_TYPE, queue_expiry=False, now=NOW)
    decoded = len(envelopes) - len(plan.dead_letters)
    assert len(plan.resend) <= decoded
    assert all(d.envelope in envelopes and d.reason for d in plan.dead_letters)
    assert len(compact([decode(e) for e in plan.resend], "5")) == len(plan.resend)


def _text(body: str) -> Envelope:
    return Envelope(body.encode(), TEXT_CONTENT_TYPE)


@pytest.mark.parametrize(
    ("envelopes", "state", "request_id"),
    [
        # the examples of docs/status.md rule 0, as written there
        ([*js(request(OLD_RID)), _text("Accepted. 45 seconds")], State.ACCEPTED, OLD_RID),
        ([*js(request(OLD_RID), request(RID)), _text("Complete: https://b/5.zip\nSize: 9")], State.COMPLETE, RID),
        ([*js(accepted(RID)), _text("Complete: https://b/5.zip\nSize: 9")], State.ACCEPTED, RID),
        # an Accepted never lends its id, even the greatest one
        ([*js(request(OLD_RID), accepted(RID)), _text("Complete: https://b/5.zip\nSize: 9")], State.COMPLETE, OLD_RID),
    ],
)
def test_the_documented_legacy_rule(envelopes: list[Envelope], state: State, request_id: str) -> None:
    plan = plan_poll(envelopes, docset_id="5", content_type=JSON_CONTENT_TYPE, queue_expiry=False, now=NOW)
    assert (plan.status.state, plan.status.request_id) == (state, request_id)


def _with_traces(messages: list[Message], traced: list[bool]) -> list[Envelope]:
    """The messages as JSON, some carrying a trace of their own (a re-send must keep it)."""
    out = []
    for index, (message, on) in enumerate(zip(messages, traced, strict=False)):
        envelope = encode(message, JSON_CONTENT_TYPE)
        if on:
            parent = TraceContext(f"00-{index + 1:032x}-{index + 1:016x}-01")
            envelope = with_trace(envelope, parent)
        out.append(envelope)
    return out + [encode(m, JSON_CONTENT_TYPE) for m in messages[len(traced) :]]


@given(
    docset_ids().flatmap(lambda d: st.tuples(st.just(d), message_lists(d))),
    st.lists(st.booleans(), max_size=12),
    st.lists(st.sampled_from([SEED_ACCEPTED, GARBAGE, _text("Complete: https://b/5.zip\nSize: 9")]), max_size=2),
    st.sampled_from([JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE]),
    st.booleans(),
    st.randoms(use_true_random=False),
)
def test_what_the_queue_keeps_folds_to_what_was_read(  # noqa: PLR0917 - one property, many drawn inputs
    drawn: tuple[str, list[Message]],
    traced: list[bool],
    text_lines: list[Envelope],
    content_type: str,
    queue_expiry: bool,
    rnd: random.Random,
) -> None:
    """The law of the plan: kept + re-sent, in any order (a requeue puts the kept back at the head,
    re-sends go to the tail), fold to the status folded from what was read; each kept index is an
    envelope read exactly as it would be re-sent, and the next poll keeps everything as it is."""
    docset, messages = drawn
    read = _with_traces(messages, traced) + text_lines
    plan = plan_poll(read, docset_id=docset, content_type=content_type, queue_expiry=queue_expiry, now=NOW)
    context = DecodeContext(docset_id=docset, received_at=NOW)
    assert list(plan.keep) == sorted(set(plan.keep))
    assert queue_expiry or not plan.keep
    left = [read[i] for i in plan.keep] + list(plan.resend)
    rnd.shuffle(left)
    assert fold([decode(e, context=context) for e in left], docset) == plan.status
    assert len(plan.dead_letters) + len(plan.keep) <= len(read)
    dead = [d.envelope for d in plan.dead_letters]
    assert not any(read[i] in dead for i in plan.keep)  # never both kept and dead-lettered
    if plan.action is BatchAction.RELEASE:
        assert plan.keep == tuple(range(len(read))) and not plan.resend
    second = plan_poll(left, docset_id=docset, content_type=content_type, queue_expiry=queue_expiry, now=NOW)
    assert second.status == plan.status
    if queue_expiry:
        # what one poll left, the next gives back untouched, whatever order the broker put it in
        assert second.action is BatchAction.RELEASE
        assert not second.resend
