"""dead_lettered / dead_letter: the parked envelope keeps body, type and headers, and says why and whence."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tdm_messaging.dead_letter import MAX_REASON_CHARS, dead_letter, dead_lettered
from tdm_messaging.destinations import DEAD_LETTER, PACKAGE_REQUESTS, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.headers import DEAD_LETTER_QUEUE, DEAD_LETTER_REASON
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport

ORIGINAL = Envelope(b"Sorry, what?", "text/plain", {"tdm-type": "accepted", "app-note": "kept"})


def test_the_envelope_is_unchanged_but_for_two_headers() -> None:
    parked = dead_lettered(ORIGINAL, source=reply_queue("5"), reason="undecodable reply: no")
    assert (parked.body, parked.content_type) == (ORIGINAL.body, ORIGINAL.content_type)
    assert dict(parked.headers) == {
        **ORIGINAL.headers,
        DEAD_LETTER_REASON: "undecodable reply: no",
        DEAD_LETTER_QUEUE: "package/5",
    }


@given(st.text())
def test_any_reason_becomes_one_short_nonempty_line(reason: str) -> None:
    header = dead_lettered(ORIGINAL, source=PACKAGE_REQUESTS, reason=reason).headers[DEAD_LETTER_REASON]
    assert header and len(header) <= MAX_REASON_CHARS
    assert header == header.strip() and not any(c.isspace() and c != " " for c in header)
    if not reason.split():
        assert header == "no reason given"


def test_dead_letter_sends_it_to_the_dead_letter_queue() -> None:
    broker = InMemoryBroker()
    dead_letter(InMemoryTransport(broker), ORIGINAL, source=PACKAGE_REQUESTS, reason="why")
    assert broker.messages(DEAD_LETTER) == [dead_lettered(ORIGINAL, source=PACKAGE_REQUESTS, reason="why")]
