"""plan_delivery and plan_failure, table-tested with no broker: run, retry, give up, dead-letter, drop a refusal."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tdm_messaging.codec import JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE, encode
from tdm_messaging.delivery_plan import (
    MAX_RETRY_DELAY_SECONDS,
    AcknowledgeRefused,
    DeadLetterIt,
    GiveUp,
    Refusals,
    Retry,
    Run,
    plan_delivery,
    plan_failure,
    positive_int_header,
    retry_delay,
)
from tdm_messaging.destinations import DELETE_REQUESTS, PACKAGE_REQUESTS, Destination
from tdm_messaging.envelope import Envelope
from tdm_messaging.headers import ATTEMPT, NEXT_SEQUENCE
from tdm_messaging.models import MAX_COUNT, DeleteRequest, PackageRequest

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
RID = "0190f0a0-0000-7000-8000-000000000001"
REQUEST = PackageRequest(
    docset_id="5", request_id=RID, sequence=0, timestamp=NOW, docset_url="http://s/api/docsets/5",
    formats=("meta",), reply_to="package/5", requested_at=NOW,
)  # fmt: skip
DELETE = DeleteRequest(docset_id="5", request_id=RID, sequence=0, timestamp=NOW)


def env(message: PackageRequest | DeleteRequest = REQUEST, **headers: str) -> Envelope:
    plain = encode(message, JSON_CONTENT_TYPE)
    return Envelope(plain.body, plain.content_type, {**plain.headers, **headers})


def plan(envelope: Envelope, source: Destination = PACKAGE_REQUESTS, refused: Refusals | None = None) -> object:
    return plan_delivery(envelope, source=source, now=NOW, max_body_bytes=10_000, refused=refused or Refusals())


class DeliveryCase(NamedTuple):
    envelope: Envelope
    source: Destination
    kind: type
    attempt: int | None  # Run only
    next_sequence: int | None  # Run only
    reason: str | None  # DeadLetterIt only: how the reason starts


DELIVERIES = {
    "a first delivery runs": DeliveryCase(env(), PACKAGE_REQUESTS, Run, 1, 1, None),
    "a retry runs as its attempt": DeliveryCase(
        env(**{ATTEMPT: "3", NEXT_SEQUENCE: "7"}), PACKAGE_REQUESTS, Run, 3, 7, None
    ),
    "a bad attempt header counts as 1": DeliveryCase(
        env(**{ATTEMPT: "-2", NEXT_SEQUENCE: "x"}), PACKAGE_REQUESTS, Run, 1, 1, None
    ),
    "a delete runs from its queue": DeliveryCase(env(DELETE), DELETE_REQUESTS, Run, 1, 1, None),
    "garbage is dead-lettered": DeliveryCase(
        Envelope(b"Sorry?", TEXT_CONTENT_TYPE), PACKAGE_REQUESTS, DeadLetterIt, None, None, "undecodable request: "
    ),
    "too large is dead-lettered": DeliveryCase(
        Envelope(b"x" * 10_001, TEXT_CONTENT_TYPE), PACKAGE_REQUESTS, DeadLetterIt, None, None, "undecodable request: "
    ),
    "a delete on the package queue": DeliveryCase(
        env(DELETE), PACKAGE_REQUESTS, DeadLetterIt, None, None,
        "expected a PackageRequest on docsets/package, got delete_request",
    ),
    "a package request on the delete queue": DeliveryCase(
        env(), DELETE_REQUESTS, DeadLetterIt, None, None,
        "expected a DeleteRequest on docsets/delete, got package_request",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", DELIVERIES.values(), ids=DELIVERIES.keys())
def test_delivery_table(case: DeliveryCase) -> None:
    decided = plan(case.envelope, case.source)
    assert type(decided) is case.kind
    if isinstance(decided, Run):
        assert (decided.attempt, decided.next_sequence) == (case.attempt, case.next_sequence)
        assert decided.refusal_key[0] == case.source.name
    if isinstance(decided, DeadLetterIt):
        assert case.reason is not None and decided.reason.startswith(case.reason)


def test_a_remembered_refusal_is_acknowledged_and_only_that_delivery() -> None:
    first = plan(env())
    assert isinstance(first, Run)
    refused = Refusals()
    refused.remember(first.refusal_key)
    assert plan(env(), refused=refused) == AcknowledgeRefused(REQUEST)
    assert isinstance(plan(env(**{ATTEMPT: "2"}), refused=refused), Run)  # another attempt is another delivery
    seed_like = Envelope(env().body + b" ", JSON_CONTENT_TYPE, env().headers)  # same ids, other body
    assert isinstance(plan(seed_like, refused=refused), Run)


def test_refusals_forget_the_oldest_beyond_their_capacity() -> None:
    refused = Refusals(2)
    for key in (("a",), ("b",), ("c",)):
        refused.remember(key)
    assert (("a",) in refused, ("b",) in refused, ("c",) in refused, len(refused)) == (False, True, True, 2)


class FailureCase(NamedTuple):
    attempt: int
    max_attempts: int
    backoff: float
    next_sequence: int | None
    delay: float | None  # None: give up


FAILURES = {
    "first failure of three": FailureCase(1, 3, 1.0, 4, 1.0),
    "second failure doubles": FailureCase(2, 3, 1.0, 4, 2.0),
    "last attempt gives up": FailureCase(3, 3, 1.0, 4, None),
    "one attempt only": FailureCase(1, 1, 1.0, None, None),
    "no backoff": FailureCase(1, 3, 0.0, 2, 0.0),
    "capped at 30 s": FailureCase(9, 10, 1.0, 2, 30.0),
    "a delete numbers nothing": FailureCase(1, 2, 0.5, None, 0.5),
}


@pytest.mark.parametrize("case", FAILURES.values(), ids=FAILURES.keys())
def test_failure_table(case: FailureCase) -> None:
    original = env(**{"app-note": "kept"})
    decided = plan_failure(
        original,
        attempt=case.attempt,
        max_attempts=case.max_attempts,
        backoff_seconds=case.backoff,
        next_sequence=case.next_sequence,
        error="OSError: upload refused",
    )
    if case.delay is None:
        assert decided == GiveUp(f"gave up after {case.attempt} attempts; last error: OSError: upload refused")
        return
    assert isinstance(decided, Retry)
    assert decided.delay_seconds == case.delay
    assert (decided.envelope.body, decided.envelope.content_type) == (original.body, original.content_type)
    expected = {**original.headers, ATTEMPT: str(case.attempt + 1)}
    if case.next_sequence is not None:
        expected[NEXT_SEQUENCE] = str(case.next_sequence)
    assert dict(decided.envelope.headers) == expected


@given(st.integers(1, 5000), st.floats(0, 1e6, allow_nan=False))
def test_retry_delay_is_monotone_capped_and_never_negative(attempt: int, backoff: float) -> None:
    delay = retry_delay(attempt, backoff)
    assert 0 <= delay <= MAX_RETRY_DELAY_SECONDS
    assert retry_delay(attempt + 1, backoff) >= delay
    assert retry_delay(attempt, backoff * 2) >= delay


@given(st.one_of(st.text(), st.from_regex(r"\A[0-9]{1,22}\Z"), st.from_regex(r"\A\s*[0-9]{1,3}\s*\Z")))
@example("0\x1f")
@example("\u00b2")
def test_an_attempt_header_of_any_text_parses_to_a_positive_int(raw: str) -> None:
    value = positive_int_header(Envelope(b"", headers={ATTEMPT: raw}), ATTEMPT)
    assert value >= 1
    # Only a bare run of ASCII digits counts (no padding: ``int()`` would accept some, and refuse
    # others such as "0\x1f", which ``str.strip`` removes), and only within the range replies allow.
    if raw.isascii() and raw.isdigit() and len(raw) <= 19 and 1 <= int(raw) <= MAX_COUNT // 2:
        assert value == int(raw)
    else:
        assert value == 1
