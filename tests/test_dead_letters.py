"""Tests for tdm_messaging.dead_letters: stable ids, replay that loses nothing half way, purge of what was shown."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tdm_messaging import dead_letters
from tdm_messaging.dead_letter import dead_letter
from tdm_messaging.dead_letters import DeadLetter, letter_id, restored
from tdm_messaging.destinations import DEAD_LETTER, DELETE_REQUESTS, PACKAGE_REQUESTS, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import (
    BrokerUnavailableError,
    InvalidArgumentError,
    InvalidDestinationError,
    SendNotConfirmedError,
)
from tdm_messaging.headers import ATTEMPT, DEAD_LETTER_QUEUE, DEAD_LETTER_REASON, NEXT_SEQUENCE
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport

headers = st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=20), max_size=5)
envelopes = st.builds(Envelope, body=st.binary(max_size=200), content_type=st.text(max_size=30), headers=headers)


@given(envelope=envelopes)
def test_an_id_depends_on_content_only(envelope: Envelope) -> None:
    reordered = Envelope(envelope.body, envelope.content_type, dict(reversed(list(envelope.headers.items()))))
    assert letter_id(envelope) == letter_id(reordered)
    assert len(letter_id(envelope)) == dead_letters.ID_LENGTH
    assert all(c in "0123456789abcdef" for c in letter_id(envelope))


@settings(max_examples=200)
@given(a=envelopes, b=envelopes)
def test_different_contents_get_different_ids(a: Envelope, b: Envelope) -> None:
    same = (a.body, a.content_type, dict(a.headers)) == (b.body, b.content_type, dict(b.headers))
    assert (letter_id(a) == letter_id(b)) is same


def test_fields_cannot_run_into_each_other() -> None:
    # Without length prefixes these two would hash the same bytes.
    assert letter_id(Envelope(b"", "ab", {})) != letter_id(Envelope(b"b", "a", {}))
    assert letter_id(Envelope(b"", "", {"a": "b\0c"})) != letter_id(Envelope(b"", "", {"a\0b": "c"}))
    assert letter_id(Envelope(b"", "", {"a": "b"})) != letter_id(
        Envelope(b"\0" * 7 + b"\1a" + b"\0" * 7 + b"\1b", "", {})
    )


def test_restored_drops_the_dead_letter_headers_and_the_attempt_only() -> None:
    parked = Envelope(
        b"{}",
        "application/json",
        {DEAD_LETTER_REASON: "why", DEAD_LETTER_QUEUE: "docsets/package", ATTEMPT: "3", NEXT_SEQUENCE: "7", "x": "y"},
    )
    again = restored(parked)
    assert dict(again.headers) == {NEXT_SEQUENCE: "7", "x": "y"}  # sequence numbers are never reused
    assert (again.body, again.content_type) == (parked.body, parked.content_type)


@pytest.fixture
def broker() -> InMemoryBroker:
    return InMemoryBroker()


@pytest.fixture
def transport(broker: InMemoryBroker) -> InMemoryTransport:
    return InMemoryTransport(broker)


def _park(transport: InMemoryTransport, body: bytes, source: object = PACKAGE_REQUESTS, reason: str = "bad") -> str:
    envelope = Envelope(body, "application/json", {"tdm-type": "package-request", "tdm-docset-id": "5", ATTEMPT: "2"})
    dead_letter(transport, envelope, source=source, reason=reason)  # type: ignore[arg-type]
    return letter_id(transport.broker.messages(DEAD_LETTER)[-1])


def test_listing_takes_nothing_and_ids_stay_the_same(transport: InMemoryTransport) -> None:
    ids = [_park(transport, b"a"), _park(transport, b"b", DELETE_REQUESTS, "worse")]
    first = dead_letters.list_dead_letters(transport)
    second = dead_letters.list_dead_letters(transport)
    assert [x.id for x in first] == [x.id for x in second] == ids
    assert [(x.source, x.reason, x.type, x.docset_id, x.size) for x in first] == [
        ("docsets/package", "bad", "package-request", "5", 1),
        ("docsets/delete", "worse", "package-request", "5", 1),
    ]
    assert len(transport.broker.messages(DEAD_LETTER)) == 2


def test_replay_moves_one_letter_and_keeps_the_others_in_order(transport: InMemoryTransport) -> None:
    ids = [_park(transport, b"a"), _park(transport, b"b", reply_queue("9")), _park(transport, b"c")]
    letter = dead_letters.replay(transport, ids[1][:8])
    assert letter.id == ids[1]
    back = transport.broker.messages(reply_queue("9"))
    assert [e.body for e in back] == [b"b"] and DEAD_LETTER_REASON not in back[0].headers
    assert ATTEMPT not in back[0].headers
    assert [letter_id(e) for e in transport.broker.messages(DEAD_LETTER)] == [ids[0], ids[2]]
    assert transport.broker.unacked_count(DEAD_LETTER) == 0


def test_a_failed_replay_send_moves_nothing(broker: InMemoryBroker, transport: InMemoryTransport) -> None:
    ids = [_park(transport, b"a"), _park(transport, b"b")]
    broker.fail_next_send()
    with pytest.raises(SendNotConfirmedError):
        dead_letters.replay(transport, ids[0])
    assert broker.messages(PACKAGE_REQUESTS) == []
    assert [letter_id(e) for e in broker.messages(DEAD_LETTER)] == ids


@pytest.mark.parametrize("fault", ["resend", "ack"])
def test_a_replay_failing_half_way_loses_nothing(
    broker: InMemoryBroker, transport: InMemoryTransport, fault: str
) -> None:
    ids = [_park(transport, b"a"), _park(transport, b"b")]
    real_send = transport._send
    calls = []

    def send_then_fail(*args: object, **kwargs: object) -> None:
        calls.append(args)
        if fault == "resend" and len(calls) == 2:  # the replayed one went; re-sending the other fails
            broker.fail_next_send(BrokerUnavailableError("broker went away"))
        real_send(*args, **kwargs)  # type: ignore[arg-type]

    transport._send = send_then_fail  # type: ignore[method-assign]
    if fault == "ack":
        broker.fail_next_ack()
    with pytest.raises(BrokerUnavailableError, match=r"put back on docsets/package .* nothing is lost"):
        dead_letters.replay(transport, ids[0])
    assert [e.body for e in broker.messages(PACKAGE_REQUESTS)] == [b"a"]
    still = [letter_id(e) for e in broker.messages(DEAD_LETTER)]
    assert set(ids) <= set(still)  # every letter is still there; at worst some twice


def test_replay_refuses_what_it_cannot_place(transport: InMemoryTransport) -> None:
    transport.send(DEAD_LETTER, Envelope(b"x", "text/plain", {}))
    nameless = letter_id(Envelope(b"x", "text/plain", {}))
    with pytest.raises(InvalidArgumentError, match="no tdm-dead-letter-queue header"):
        dead_letters.replay(transport, nameless)
    transport.send(DEAD_LETTER, Envelope(b"y", "text/plain", {DEAD_LETTER_QUEUE: "elsewhere"}))
    with pytest.raises(InvalidDestinationError, match="elsewhere"):
        dead_letters.replay(transport, letter_id(Envelope(b"y", "text/plain", {DEAD_LETTER_QUEUE: "elsewhere"})))
    assert len(transport.broker.messages(DEAD_LETTER)) == 2


@pytest.mark.parametrize("wanted", ["", "abc", "zzzzzzzz", "0000000000000000"])
def test_find_names_what_is_wrong(wanted: str) -> None:
    letters = [DeadLetter.of(Envelope(b"a"))]
    with pytest.raises(InvalidArgumentError, match=r"dead[- ]letter"):
        dead_letters.find(letters, wanted)


def test_identical_letters_share_an_id_and_the_oldest_is_taken(transport: InMemoryTransport) -> None:
    first = _park(transport, b"same")
    assert _park(transport, b"same") == first
    dead_letters.replay(transport, first)
    assert [letter_id(e) for e in transport.broker.messages(DEAD_LETTER)] == [first]


def test_purge_removes_what_was_shown_and_keeps_newcomers(transport: InMemoryTransport) -> None:
    _park(transport, b"a")
    _park(transport, b"a")
    shown = dead_letters.list_dead_letters(transport)
    late = _park(transport, b"late")
    assert dead_letters.purge(transport, shown) == 2
    assert [letter_id(e) for e in transport.broker.messages(DEAD_LETTER)] == [late]


def test_a_failed_purge_keeps_everything(broker: InMemoryBroker, transport: InMemoryTransport) -> None:
    ids = [_park(transport, b"a"), _park(transport, b"b")]
    shown = dead_letters.list_dead_letters(transport)
    broker.fail_next_ack()
    with pytest.raises(BrokerUnavailableError):
        dead_letters.purge(transport, shown)
    assert [letter_id(e) for e in broker.messages(DEAD_LETTER)] == ids
