"""The contract's own checks for ``Batch.settle`` and ``Transport.send_many``, before any backend runs."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tdm_messaging.destinations import PACKAGE_REQUESTS, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import InvalidArgumentError
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport
from tdm_messaging.transport.base import Batch


class _RecordingBatch(Batch):
    """A batch of ``count`` envelopes that records what the contract asked of it."""

    def __init__(self, count: int) -> None:
        self._envelopes = [Envelope(body=str(i).encode(), content_type="text/plain") for i in range(count)]
        self.calls: list[object] = []

    @property
    def envelopes(self) -> Sequence[Envelope]:
        return self._envelopes

    def ack(self) -> None:
        self.calls.append("ack")

    def release(self) -> None:
        self.calls.append("release")

    def _settle(self, keep: frozenset[int]) -> None:
        self.calls.append(keep)


def test_settle_keeping_nothing_is_ack_and_keeping_everything_is_release() -> None:
    batch = _RecordingBatch(3)
    batch.settle(())
    batch.settle([2, 0, 1])
    assert batch.calls == ["ack", "release"]


def test_settle_keeping_a_part_reaches_the_backend_as_a_set() -> None:
    batch = _RecordingBatch(3)
    batch.settle([2, 0])
    assert batch.calls == [frozenset({0, 2})]


@pytest.mark.parametrize("keep", [[3], [-1], [0, 0], [True], ["1"], [1.0]])
def test_settle_refuses_indices_that_are_not_distinct_and_in_range(keep: list[object]) -> None:
    batch = _RecordingBatch(3)
    with pytest.raises(InvalidArgumentError, match="distinct indices"):
        batch.settle(keep)  # type: ignore[arg-type]
    assert batch.calls == []


def test_a_backend_that_cannot_settle_a_part_says_so() -> None:
    class Plain(_RecordingBatch):
        _settle = Batch._settle

    with pytest.raises(NotImplementedError, match="cannot give back part of a read"):
        Plain(2).settle([1])


@pytest.mark.parametrize(
    "sends",
    [
        "package/1",
        [(reply_queue("1"),)],
        [("package/1", Envelope(body=b"x", content_type="text/plain"))],
        [(reply_queue("1"), b"x")],
    ],
)
def test_send_many_refuses_what_is_not_destination_envelope_pairs(sends: object) -> None:
    with (
        InMemoryTransport(InMemoryBroker()) as transport,
        pytest.raises(InvalidArgumentError, match=r"send_many|expected a Destination"),
    ):
        transport.send_many(sends)  # type: ignore[arg-type]


def test_send_many_sends_in_order_on_a_backend_without_its_own() -> None:
    first = Envelope(body=b"first", content_type="text/plain")
    second = Envelope(body=b"second", content_type="text/plain")
    with InMemoryTransport(InMemoryBroker()) as transport:
        transport.send_many([(reply_queue("1"), first), (PACKAGE_REQUESTS, second), (reply_queue("1"), second)])
        with transport.read(reply_queue("1")) as batch:
            assert [e.body for e in batch.envelopes] == [b"first", b"second"]
        with transport.read(PACKAGE_REQUESTS) as batch:
            assert [e.body for e in batch.envelopes] == [b"second"]
