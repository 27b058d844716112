"""PackagingClient.request_packages: many requests, one confirm wait, and the same repairs as one request's."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tdm_messaging.codec import decode
from tdm_messaging.destinations import PACKAGE_REQUESTS, Destination, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import InvalidArgumentError, InvalidDestinationError, SendNotConfirmedError
from tdm_messaging.server import PackagingClient
from tdm_messaging.status import State
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport


class _Counting(InMemoryTransport):
    """Counts send_many calls; with ``lose`` set, the next send_many stores all but the ``refused``
    sends and raises as a broker would: ``unconfirmed`` (maybe stored), ``refused`` (surely not)."""

    def __init__(self, broker: InMemoryBroker) -> None:
        super().__init__(broker)
        self.many: list[int] = []
        self.lose: tuple[frozenset[int], frozenset[int]] | None = None

    def _send_many(self, sends: Sequence[tuple[Destination, Envelope]], *, persistent: bool, confirm: bool) -> None:
        self.many.append(len(sends))
        if self.lose is None:
            super()._send_many(sends, persistent=persistent, confirm=confirm)
            return
        unconfirmed, refused = self.lose
        self.lose = None
        for index, (destination, envelope) in enumerate(sends):
            if index not in refused:  # "maybe stored" is stored here: the harder case for the repair
                self._send(destination, envelope, persistent=persistent, confirm=confirm)
        raise SendNotConfirmedError("lost", unconfirmed=sorted(unconfirmed), refused=sorted(refused))


def _docsets(count: int) -> list[str]:
    return [f"ds-{uuid.uuid4().hex[:10]}" for _ in range(count)]


def _queued(broker: InMemoryBroker) -> set[str]:
    return {decode(e).docset_id for e in broker.messages(PACKAGE_REQUESTS)}


def test_every_request_and_its_copy_go_in_one_send_many() -> None:
    broker = InMemoryBroker()
    transport = _Counting(broker)
    client = PackagingClient(transport)
    docsets = _docsets(4)
    done = client.request_packages([(d, f"http://s/api/docsets/{d}") for d in docsets], formats=("meta",))
    assert transport.many == [8]
    assert [r.request.docset_id for r in done] == docsets
    assert all(r.status.state is State.REQUESTED and r.request.formats == ("meta",) for r in done)
    assert [decode(e).request_id for e in broker.messages(PACKAGE_REQUESTS)] == [r.request.request_id for r in done]
    for requested in done:
        copies = broker.messages(reply_queue(requested.request.docset_id))
        assert [decode(e).request_id for e in copies] == [requested.request.request_id]
        assert client.status(requested.request.docset_id).state is State.REQUESTED


def test_nothing_is_sent_for_an_empty_list() -> None:
    transport = _Counting(InMemoryBroker())
    assert PackagingClient(transport).request_packages([]) == []
    assert transport.many == []


@pytest.mark.parametrize(
    ("docsets", "error"),
    [
        ([("a", "http://s/a"), ("a", "http://s/b")], InvalidArgumentError),
        ([("a", "http://s/a"), ("b",)], InvalidArgumentError),
        ("a,http://s/a", InvalidArgumentError),
        ([("a", "http://s/a"), ("b", "not a url")], InvalidArgumentError),
        ([("a", "http://s/a"), ("../x", "http://s/x")], InvalidDestinationError),
    ],
    ids=["twice", "not-a-pair", "a-string", "bad-url", "bad-docset-id"],
)
def test_a_bad_batch_is_refused_before_anything_is_sent(docsets: object, error: type[Exception]) -> None:
    broker = InMemoryBroker()
    transport = _Counting(broker)
    with pytest.raises(error):
        PackagingClient(transport).request_packages(docsets)  # type: ignore[arg-type]
    assert transport.many == [] and broker.messages(PACKAGE_REQUESTS) == []


@settings(max_examples=60, deadline=None)
@given(data=st.data(), count=st.integers(min_value=1, max_value=4))
def test_after_a_failed_batch_no_request_is_queued_without_its_copy_nor_requested_without_its_request(
    data: st.DataObject, count: int
) -> None:
    sends = range(2 * count)  # 2 i: docset i's copy, 2 i + 1: its request
    unconfirmed = frozenset(data.draw(st.sets(st.sampled_from(sends), min_size=1)))
    refused = frozenset(data.draw(st.sets(st.sampled_from(sorted(unconfirmed)))))
    broker = InMemoryBroker()
    transport = _Counting(broker)
    client = PackagingClient(transport)
    docsets = _docsets(count)
    transport.lose = (unconfirmed, refused)
    with pytest.raises(SendNotConfirmedError) as caught:
        client.request_packages([(d, f"http://s/api/docsets/{d}") for d in docsets])
    # The error speaks of docsets (indices into the call's list), not of sends.
    assert caught.value.unconfirmed == tuple(i for i in range(count) if {2 * i, 2 * i + 1} & unconfirmed)
    assert caught.value.refused == tuple(i for i in range(count) if 2 * i + 1 in refused)
    queued = _queued(broker)
    for index, docset in enumerate(docsets):
        in_queue = [decode(e).type for e in broker.messages(reply_queue(docset))]
        if docset in queued:
            assert "package_request" in in_queue, f"docset {index}: request queued without its copy"
        elif 2 * index not in unconfirmed or 2 * index in refused:
            # As for one request: a copy of unknown fate beside a request surely not sent is left
            # (no Failed that could outlive a later request); only a copy known stored is withdrawn.
            assert client.status(docset).state is not State.REQUESTED, f"docset {index}: REQUESTED, never queued"
