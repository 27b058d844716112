"""The AMQP confirm channel's bookkeeping (no broker): acks and nacks settle the publishes they name, once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("kombu")

from tdm_messaging.destinations import reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.transport.kombu.send import ConfirmChannel, _Publish


class _Connection:
    """Just what the frame writer uses of a py-amqp connection: its transport, state and frame size."""

    def __init__(self) -> None:
        self.transport = self
        self.connected = True
        self.frame_max = 131072
        self.bytes_sent = 0
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))


class _Channel:
    """Just what ConfirmChannel uses of a py-amqp channel: confirm_select, events, its id and connection."""

    def __init__(self) -> None:
        self.events: dict[str, set[Callable[..., Any]]] = defaultdict(set)
        self.channel_id = 2
        self.connection = _Connection()

    @property
    def published(self) -> int:
        return len(self.connection.writes)

    def confirm_select(self) -> None:
        pass

    def fire(self, event: str, *args: object) -> None:
        for callback in self.events[event]:
            callback(*args)


def _published(count: int) -> tuple[_Channel, ConfirmChannel]:
    channel = _Channel()
    confirms = ConfirmChannel(channel)
    for index in range(count):
        confirms.publish(_Publish(reply_queue("5"), Envelope(b"{}", "application/json"), True, index))
    return channel, confirms


def test_a_nack_is_not_undone_by_a_later_multiple_ack() -> None:
    channel, confirms = _published(3)
    channel.fire("basic_nack", 1, False)
    channel.fire("basic_ack", 3, True)
    assert confirms.unsettled_count == 0
    assert [(e.index, e.nacked) for e in confirms.take_settled()] == [(0, True), (1, False), (2, False)]


@pytest.mark.parametrize("acks", [[(1, False), (2, False), (3, False)], [(2, True), (3, False)], [(3, True)]])
def test_single_and_multiple_acks_settle_each_publish_once(acks: list[tuple[int, bool]]) -> None:
    channel, confirms = _published(3)
    for tag, multiple in acks:
        assert confirms.unsettled_count > 0
        channel.fire("basic_ack", tag, multiple)
    channel.fire("basic_ack", 2, False)  # a repeated ack changes nothing
    assert confirms.unsettled_count == 0 and confirms.unsettled() == []
    assert [(e.index, e.nacked) for e in confirms.take_settled()] == [(0, False), (1, False), (2, False)]
