"""A read's inbox holds deliveries until its marker, its limit or anything else comes, then hands all over in order."""

from __future__ import annotations

import queue

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("stomp")

from tdm_messaging.errors import BrokerUnavailableError
from tdm_messaging.transport.stomp.frames import MARKER_HEADER, PROBE_HEADER
from tdm_messaging.transport.stomp.link import Frame, Item, Lost, ReadInbox

MARKER = "own-marker"


def _delivery(index: int) -> Frame:
    return Frame({"message-id": str(index)}, b"body", 1)


_KINDS = st.sampled_from(["delivery", "delivery", "delivery", "own", "foreign", "probe", "lost", "error"])


def _item(kind: str, index: int) -> Item:
    if kind == "own":
        return Frame({MARKER_HEADER: MARKER, "message-id": str(index)}, b"", 1)
    if kind == "foreign":
        return Frame({MARKER_HEADER: "another-reader", "message-id": str(index)}, b"", 1)
    if kind == "probe":
        return Frame({PROBE_HEADER: "1", "message-id": str(index)}, b"", 1)
    if kind == "lost":
        return Lost(1)
    if kind == "error":
        return BrokerUnavailableError(f"error {index}")
    return _delivery(index)


def _take(inbox: ReadInbox) -> list[Item]:
    taken: list[Item] = []
    while True:
        try:
            taken.append(inbox.get(0))
        except queue.Empty:
            return taken


@given(st.lists(_KINDS, max_size=30), st.integers(min_value=1, max_value=12), st.lists(st.booleans(), max_size=30))
def test_items_come_out_in_order_once_something_other_than_a_delivery_or_the_limit_came(
    kinds: list[str], limit: int, looks: list[bool]
) -> None:
    inbox = ReadInbox(MARKER, limit)
    items = [_item(kind, index) for index, kind in enumerate(kinds)]
    out: list[Item] = []
    through = False
    for index, item in enumerate(items):
        inbox.put(item)
        ordinary = isinstance(item, Frame) and MARKER_HEADER not in item.headers and PROBE_HEADER not in item.headers
        through = through or not ordinary or index + 1 >= limit
        if index < len(looks) and looks[index]:
            taken = _take(inbox)
            # Before the first hand-over the reader sees nothing; after it, everything put so far.
            assert taken == (items[len(out) : index + 1] if through else [])
            out += taken
    rest = inbox.drain()
    assert out + rest == items
    assert inbox.drain() == []


def test_a_read_of_two_messages_wakes_its_reader_once_at_the_marker() -> None:
    inbox = ReadInbox(MARKER, 100)
    inbox.put(_delivery(0))
    inbox.put(_delivery(1))
    with pytest.raises(queue.Empty):
        inbox.get(0)
    marker = _item("own", 2)
    inbox.put(marker)
    assert _take(inbox) == [_delivery(0), _delivery(1), marker]
    late = _delivery(3)  # after the marker: straight through, for the settlement to give back
    inbox.put(late)
    assert inbox.drain() == [late]


def test_the_limit_hands_over_without_a_marker() -> None:
    inbox = ReadInbox(MARKER, 2)
    inbox.put(_delivery(0))
    with pytest.raises(queue.Empty):
        inbox.get(0)
    inbox.put(_delivery(1))
    assert _take(inbox) == [_delivery(0), _delivery(1)]


def test_drain_takes_what_is_still_held() -> None:
    inbox = ReadInbox(MARKER, 10)
    inbox.put(_delivery(0))
    assert inbox.drain() == [_delivery(0)]
    inbox.put(_delivery(1))  # after a drain: straight through
    assert inbox.get(0) == _delivery(1)
