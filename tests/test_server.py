"""PackagingClient over the in-memory transport: requests, polls that keep the status, dead-lettering, crashes."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import pathlib
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tdm_messaging import server as server_module
from tdm_messaging.codec import JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE, decode, encode
from tdm_messaging.destinations import DEAD_LETTER, DELETE_REQUESTS, PACKAGE_REQUESTS, Destination, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import BrokerUnavailableError, InvalidDestinationError, SendNotConfirmedError
from tdm_messaging.headers import DEAD_LETTER_QUEUE as DEAD_LETTER_QUEUE_HEADER
from tdm_messaging.headers import DEAD_LETTER_REASON as DEAD_LETTER_REASON_HEADER
from tdm_messaging.models import Accepted, Complete, DeleteRequest, Failed, Message, PackageRequest, Progress
from tdm_messaging.poll_plan import PollPlan
from tdm_messaging.server import PackagingClient
from tdm_messaging.status import State, fold
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport
from tdm_messaging.transport.base import Batch, Capabilities
from tdm_messaging.transport.sqlite.backend import SqliteTransport
from tdm_messaging.transport.sqlite.settings import parse_sqlite_url

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A settable clock, in both forms the library asks for (datetime for helpers, float for the transport)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def seconds(self) -> float:
        return self.now.timestamp()


def new_docset() -> str:
    return "ds-" + uuid.uuid4().hex[:12]


def setup(content_type: str = JSON_CONTENT_TYPE) -> tuple[InMemoryBroker, InMemoryTransport, PackagingClient, Clock]:
    broker = InMemoryBroker()
    clock = Clock()
    transport = InMemoryTransport(broker, clock=clock.seconds)
    return broker, transport, PackagingClient(transport, content_type=content_type, clock=clock), clock


def decoded(envelopes: Sequence[Envelope]) -> list[Message]:
    return [decode(e) for e in envelopes]


def replies_for(request: PackageRequest) -> list[Message]:
    base = {"docset_id": request.docset_id, "request_id": request.request_id}
    return [
        Accepted(**base, sequence=1, timestamp=T0 + timedelta(seconds=1), estimate_seconds=45),
        Progress(**base, sequence=2, timestamp=T0 + timedelta(seconds=2), items_done=1, items_total=4, percent=25),
        Progress(**base, sequence=3, timestamp=T0 + timedelta(seconds=3), items_done=3, items_total=4, percent=75),
        Complete(**base, sequence=4, timestamp=T0 + timedelta(seconds=4), archive_url="https://b/p.zip", size_bytes=9),
    ]


def test_request_package_sends_request_and_a_copy() -> None:
    broker, _t, client, _clock = setup()
    docset = new_docset()
    request = client.request_package(
        docset, f"http://server/api/docsets/{docset}?fmt=meta,txt", formats=["meta"]
    ).request
    assert request.reply_to == f"package/{docset}"
    assert request.formats == ("meta",)
    assert request.timestamp == request.requested_at == T0
    assert decoded(broker.messages(PACKAGE_REQUESTS)) == [request]
    assert decoded(broker.messages(reply_queue(docset))) == [request]
    status = client.status(docset)
    assert status.state is State.REQUESTED
    assert status.request_id == request.request_id
    assert status.requested_at == T0


def test_newer_request_gets_a_larger_id() -> None:
    _b, _t, client, _c = setup()
    first = client.request_package("5", "http://s/api/docsets/5").request
    ids = [first.request_id]
    for _ in range(50):  # many within one millisecond: still strictly increasing
        ids.append(client.request_package("5", "http://s/api/docsets/5").request.request_id)
        ids.append(client.request_delete("5").request_id)
    assert ids == sorted(set(ids))
    second = client.request_package("5", "http://s/api/docsets/5").request
    assert client.status("5").request_id == second.request_id


def test_unknown_docset_is_unknown_and_leaves_no_queue() -> None:
    broker, _t, client, _c = setup()
    assert client.status(new_docset()).state is State.UNKNOWN
    assert broker.queue_names() == []


def test_invalid_docset_id_sends_nothing() -> None:
    broker, _t, client, _c = setup()
    with pytest.raises(InvalidDestinationError):
        client.request_package("a/b", "http://s/api/docsets/a")
    with pytest.raises(InvalidDestinationError):
        client.status("a*")
    with pytest.raises(InvalidDestinationError):
        client.request_delete("")
    assert broker.queue_names() == []


def test_poll_twice_gives_the_same_status_and_compacts_the_queue() -> None:
    broker, transport, client, _c = setup()
    docset = new_docset()
    request = client.request_package(docset, "http://s/api/docsets/x").request
    for reply in replies_for(request)[:3]:
        transport.send(reply_queue(docset), encode(reply))
    first = client.status(docset)
    assert first.state is State.IN_PROGRESS
    assert first.estimate_seconds == 45
    assert first.progress is not None and first.progress.items_done == 3
    # Request copy, Accepted and the furthest Progress are enough to say the same next time.
    assert len(broker.messages(reply_queue(docset))) == 3
    assert client.status(docset) == first
    assert client.status(docset) == first
    assert broker.unacked_count(reply_queue(docset)) == 0


def test_a_poll_that_reads_what_the_last_one_read_reuses_its_plan_and_sees_new_replies(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    # A backend whose broker expires queues: a poll keeps what it read, so the next one reads it alike.
    with SqliteTransport(settings=parse_sqlite_url(f"sqlite:///{tmp_path / 'b.db'}")) as transport:
        client = PackagingClient(transport)
        docset = new_docset()
        request = client.request_package(docset, "http://s/api/docsets/x").request
        replies = replies_for(request)
        transport.send(reply_queue(docset), encode(replies[0]))
        planned: list[str] = []
        real = server_module.plan_poll

        def counting(*args: object, **kwargs: object) -> PollPlan:
            planned.append(str(kwargs["docset_id"]))
            return real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(server_module, "plan_poll", counting)
        first = client.status(docset)
        assert first.state is State.ACCEPTED
        assert client.status(docset) == first
        assert client.status(docset) == first
        assert planned == [docset]  # planned once, then that plan again for the same read
        assert transport.depth(reply_queue(docset)) == 2
        for reply in replies[1:]:
            transport.send(reply_queue(docset), encode(reply))
        assert client.status(docset).state is State.COMPLETE  # a new read is planned anew
        assert planned == [docset, docset]
        assert client.status(docset).state is State.COMPLETE


def test_complete_status_and_delete_request() -> None:
    broker, transport, client, _c = setup()
    docset = new_docset()
    request = client.request_package(docset, "http://s/api/docsets/x").request
    for reply in replies_for(request):
        transport.send(reply_queue(docset), encode(reply))
    status = client.status(docset)
    assert status.state is State.COMPLETE
    assert status.result is not None and status.result.archive_url == "https://b/p.zip"
    delete = client.request_delete(docset, archive_url="https://b/p.zip")
    assert isinstance(delete, DeleteRequest)
    assert delete.request_id > request.request_id
    assert decoded(broker.messages(DELETE_REQUESTS)) == [delete]
    # A delete request is an instruction, not an observation: the status stays COMPLETE until Deleted.
    assert client.status(docset).state is State.COMPLETE


def test_seed_text_replies_are_read_and_kept_as_json() -> None:
    broker, transport, client, clock = setup()
    docset = new_docset()
    transport.send(reply_queue(docset), Envelope(b"Accepted. 45 seconds\r\n", "text/plain", {}))
    clock.now = T0 + timedelta(minutes=5)
    status = client.status(docset)
    assert status.state is State.ACCEPTED
    assert status.estimate_seconds == 45
    assert status.updated_at == clock.now  # a seed line carries no time: the poll's time is used
    kept = broker.messages(reply_queue(docset))
    assert [e.content_type for e in kept] == [JSON_CONTENT_TYPE]
    clock.now += timedelta(minutes=5)
    assert client.status(docset) == status  # the date does not drift on later polls


def test_text_client_round_trips() -> None:
    broker, transport, client, _c = setup(TEXT_CONTENT_TYPE)
    docset = new_docset()
    request = client.request_package(docset, "http://s/api/docsets/x").request
    assert broker.messages(PACKAGE_REQUESTS)[0].content_type == TEXT_CONTENT_TYPE
    transport.send(reply_queue(docset), encode(replies_for(request)[0], TEXT_CONTENT_TYPE))
    first = client.status(docset)
    assert first.state is State.ACCEPTED and first.request_id == request.request_id
    assert client.status(docset) == first


def test_undecodable_reply_is_dead_lettered_not_dropped(caplog: pytest.LogCaptureFixture) -> None:
    broker, transport, client, _c = setup()
    docset = new_docset()
    request = client.request_package(docset, "http://s/api/docsets/x").request
    garbage = Envelope(b"Sorry, what?", "text/plain", {"x-custom": "1"})
    transport.send(reply_queue(docset), garbage)
    transport.send(reply_queue(docset), Envelope(b'{"type": "accepted"', JSON_CONTENT_TYPE, {}))
    with caplog.at_level(logging.WARNING, logger="tdm_messaging.server"):
        status = client.status(docset)
    assert status.state is State.REQUESTED and status.request_id == request.request_id
    parked = broker.messages(DEAD_LETTER)
    assert [e.body for e in parked] == [b"Sorry, what?", b'{"type": "accepted"']
    assert parked[0].headers["x-custom"] == "1"
    assert parked[0].headers[DEAD_LETTER_QUEUE_HEADER] == f"package/{docset}"
    assert "Sorry, what?" in parked[0].headers[DEAD_LETTER_REASON_HEADER]
    assert "\n" not in parked[1].headers[DEAD_LETTER_REASON_HEADER]
    assert sum("dead-lettering" in r.getMessage() for r in caplog.records) == 2
    # They are gone from the reply queue: the next poll does not park them again.
    client.status(docset)
    assert len(broker.messages(DEAD_LETTER)) == 2


def test_reply_of_another_docset_is_dead_lettered() -> None:
    broker, transport, client, _c = setup()
    docset, other = new_docset(), new_docset()
    stray = Accepted(
        docset_id=other, request_id="0190a0b0-0000-7000-8000-000000000001", timestamp=T0, estimate_seconds=1
    )
    transport.send(reply_queue(docset), encode(stray))
    assert client.status(docset).state is State.UNKNOWN
    parked = broker.messages(DEAD_LETTER)
    assert decoded(parked) == [stray]
    assert other in parked[0].headers[DEAD_LETTER_REASON_HEADER]


def test_crash_between_resend_and_ack_duplicates_but_never_loses() -> None:
    broker, transport, client, _c = setup()
    docset = new_docset()
    request = client.request_package(docset, "http://s/api/docsets/x").request
    for reply in replies_for(request)[:3]:
        transport.send(reply_queue(docset), encode(reply))
    broker.fail_next_ack()
    with pytest.raises(BrokerUnavailableError):
        client.status(docset)
    queue = reply_queue(docset)
    # The originals were given back and the compacted copies sit next to them.
    assert len(broker.messages(queue)) == 4 + 3
    status = client.status(docset)
    assert status.state is State.IN_PROGRESS
    assert status.progress is not None and status.progress.items_done == 3
    assert len(broker.messages(queue)) == 3


def test_failed_resend_acks_nothing() -> None:
    broker, _t, client, _c = setup()
    docset = new_docset()
    client.request_package(docset, "http://s/api/docsets/x")
    before = broker.messages(reply_queue(docset))
    broker.fail_next_send()
    with pytest.raises(SendNotConfirmedError):
        client.status(docset)
    assert broker.messages(reply_queue(docset)) == before
    assert client.status(docset).state is State.REQUESTED


def test_failed_request_send_reports_and_poll_stays_unknown() -> None:
    broker, _t, client, _c = setup()
    docset = new_docset()
    broker.fail_next_send()
    with pytest.raises(SendNotConfirmedError):
        client.request_package(docset, "http://s/api/docsets/x")
    assert broker.queue_names() == []
    assert client.status(docset).state is State.UNKNOWN


class PausingTransport(InMemoryTransport):
    """Blocks the first send of a reply until released, to hold a poll between its read and its re-send."""

    def __init__(self, broker: InMemoryBroker) -> None:
        super().__init__(broker)
        self.reached = threading.Event()
        self.go_on = threading.Event()

    def send(
        self, destination: Destination, envelope: Envelope, *, persistent: bool = True, confirm: bool = False
    ) -> None:
        if not self.reached.is_set():
            self.reached.set()
            assert self.go_on.wait(10)
        super().send(destination, envelope, persistent=persistent, confirm=confirm)


def test_two_pollers_at_once_never_lose_the_newest_status() -> None:
    broker = InMemoryBroker()
    packager = InMemoryTransport(broker)
    fast = PackagingClient(InMemoryTransport(broker))
    docset = new_docset()
    request = fast.request_package(docset, "http://s/api/docsets/x").request
    accepted, progress, _p2, complete = replies_for(request)
    packager.send(reply_queue(docset), encode(accepted))
    slow_transport = PausingTransport(broker)
    slow = PackagingClient(slow_transport)
    results = []
    thread = threading.Thread(target=lambda: results.append(slow.status(docset)))
    thread.start()
    assert slow_transport.reached.wait(10)  # the slow poll holds [request, accepted], unacked
    packager.send(reply_queue(docset), encode(progress))
    packager.send(reply_queue(docset), encode(complete))
    assert fast.status(docset).state is State.COMPLETE  # sees only what arrived since
    slow_transport.go_on.set()
    thread.join(10)
    assert results[0].state is State.ACCEPTED
    final = fast.status(docset)
    assert final.state is State.COMPLETE
    assert final == fold([request, accepted, progress, complete], docset)


def test_concurrent_polls_with_a_live_packager() -> None:
    broker = InMemoryBroker()
    docset = new_docset()
    clients = [PackagingClient(InMemoryTransport(broker)) for _ in range(3)]
    request = clients[0].request_package(docset, "http://s/api/docsets/x").request
    packager = InMemoryTransport(broker)
    replies = replies_for(request)
    stop = threading.Event()

    def poll(client: PackagingClient) -> None:
        while not stop.is_set():
            client.status(docset)

    threads = [threading.Thread(target=poll, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for reply in replies:
        packager.send(reply_queue(docset), encode(reply))
    stop.set()
    for thread in threads:
        thread.join(10)
    assert clients[1].status(docset) == fold([request, *replies], docset)


def _message_pool(docset: str) -> list[Message]:
    base = {"docset_id": docset, "request_id": "0190a0b0-0000-7000-8000-000000000001"}
    t = lambda s: T0 + timedelta(seconds=s)  # noqa: E731
    return [
        PackageRequest(
            **base, timestamp=t(0), docset_url="http://s/api/docsets/x", reply_to=f"package/{docset}", requested_at=t(0)
        ),
        Accepted(**base, sequence=1, timestamp=t(1), estimate_seconds=30),
        Progress(**base, sequence=2, timestamp=t(2), items_done=1, items_total=3, percent=33),
        Progress(**base, sequence=3, timestamp=t(3), items_done=2, items_total=3, percent=66),
        Complete(**base, sequence=4, timestamp=t(4), archive_url="https://b/x.zip", size_bytes=1),
        Failed(**base, sequence=4, timestamp=t(4), reason="disk full", retryable=True),
        Accepted(docset_id=docset, request_id="0190a0b0-0000-7000-8000-000000000002", sequence=1, timestamp=t(5)),
    ]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 6), st.sampled_from(["poll", "crash"])), max_size=25))
def test_any_interleaving_of_polls_and_replies_folds_all_replies(ops: list[int | str]) -> None:
    """Law: however polls (even crashed ones) interleave with replies, the end status is the fold of all replies.

    The one order the protocol rules out is a reply before its own request's copy (the client stores the
    copy before it sends the request): pool[0] is the copy of the request that pool[1:6] answer.
    """
    broker = InMemoryBroker()
    transport = InMemoryTransport(broker)
    client = PackagingClient(transport)
    docset = "law"
    pool = _message_pool(docset)
    sent: list[Message] = []
    for op in ops:
        if op == "poll":
            client.status(docset)
        elif op == "crash":
            broker.fail_next_ack()
            with contextlib.suppress(BrokerUnavailableError):
                client.status(docset)
        else:
            assert isinstance(op, int)
            if 1 <= op <= 5 and pool[0] not in sent:
                transport.send(reply_queue(docset), encode(pool[0]))
                sent.append(pool[0])
            transport.send(reply_queue(docset), encode(pool[op]))
            sent.append(pool[op])
    assert client.status(docset) == fold(sent, docset)
    assert client.status(docset) == fold(sent, docset)


def test_a_seed_reply_without_request_id_answers_the_newest_request() -> None:
    from tdm_messaging import Envelope, PackagingClient, State, decode, reply_queue
    from tdm_messaging.codec import DecodeContext
    from tdm_messaging.testing import InMemoryBroker, InMemoryTransport

    broker = InMemoryBroker()
    client = PackagingClient(InMemoryTransport(broker), content_type="text/plain")
    client.request_package("d1", "http://s/api/docsets/d1?fmt=meta,txt")
    newest = client.request_package("d1", "http://s/api/docsets/d1?fmt=meta,txt").request
    seed = InMemoryTransport(broker)
    seed.send(reply_queue("d1"), Envelope(b"Accepted. 45 seconds\r\n", "text/plain"))
    status = client.status("d1")
    assert status.state is State.ACCEPTED
    assert (status.request_id, status.estimate_seconds) == (newest.request_id, 45)
    # re-sent with the id it was given, so the attribution does not depend on what comes later
    stored = [decode(e, context=DecodeContext(docset_id="d1")) for e in broker.messages(reply_queue("d1"))]
    assert {m.request_id for m in stored} == {newest.request_id}


class _RefusesRequests(InMemoryTransport):
    """Stores everything but what goes to docsets/package: a request that cannot be queued."""

    def _send(
        self, destination: Destination, envelope: Envelope, *, persistent: bool = True, confirm: bool = False
    ) -> None:
        if destination == PACKAGE_REQUESTS:
            raise SendNotConfirmedError("no confirm for the request")
        super()._send(destination, envelope, persistent=persistent, confirm=confirm)


def test_request_copy_is_stored_before_the_request_is_sent() -> None:
    broker = InMemoryBroker()
    order: list[str] = []

    class Recording(InMemoryTransport):
        def _send(
            self, destination: Destination, envelope: Envelope, *, persistent: bool = True, confirm: bool = False
        ) -> None:
            order.append(destination.name)
            super()._send(destination, envelope, persistent=persistent, confirm=confirm)

    docset = new_docset()
    PackagingClient(Recording(broker)).request_package(docset, f"http://s/api/docsets/{docset}")
    assert order == [f"package/{docset}", "docsets/package"]


def test_a_request_that_cannot_be_queued_is_withdrawn_not_left_requested() -> None:
    broker = InMemoryBroker()
    client = PackagingClient(_RefusesRequests(broker))
    docset = new_docset()
    with pytest.raises(SendNotConfirmedError):
        client.request_package(docset, f"http://s/api/docsets/{docset}")
    assert broker.messages(PACKAGE_REQUESTS) == []
    status = client.status(docset)
    assert status.state is State.FAILED
    assert status.failure is not None and status.failure.retryable
    assert "could not be queued" in status.failure.reason


@pytest.mark.parametrize(
    ("call", "says"),
    [
        (lambda c, d: c.request_package(d, "file:///etc/passwd"), "docset_url"),
        (lambda c, d: c.request_package(d, "http://s/api/docsets/1\r\nX-Evil: 1"), "docset_url"),
        (lambda c, d: c.request_package(d, "http://s/api/docsets/1", formats=["../x"]), "formats"),
        (lambda c, d: c.request_delete(d, archive_url="javascript:alert(1)"), "archive_url"),
    ],
    ids=["file-url", "crlf-url", "format-path", "script-archive-url"],
)
def test_a_malformed_argument_is_one_readable_library_error_and_nothing_is_sent(call: object, says: str) -> None:
    from tdm_messaging.errors import InvalidArgumentError, MessagingError

    broker, _transport, client, _clock = setup()
    docset = new_docset()
    with pytest.raises(InvalidArgumentError, match=says) as info:
        call(client, docset)  # type: ignore[operator]
    assert isinstance(info.value, MessagingError) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value) and "pydantic" not in str(info.value)
    assert broker.queue_names() == []


@settings(max_examples=150, deadline=None)
@given(url=st.text(max_size=300), formats=st.lists(st.text(max_size=20), max_size=4))
def test_request_package_either_sends_or_raises_a_library_error_for_any_text(url: str, formats: list[str]) -> None:
    from tdm_messaging.errors import MessagingError

    broker = InMemoryBroker()
    client = PackagingClient(InMemoryTransport(broker))
    try:
        requested = client.request_package("ds-any", url, formats=formats)
    except MessagingError:
        assert broker.queue_names() == [], "a refused request left something behind"
        return
    assert requested.request.docset_url == url
    assert [decode(e).request_id for e in broker.messages(PACKAGE_REQUESTS)] == [requested.request.request_id]


def test_prepare_creates_the_reply_queue_before_any_request() -> None:
    broker = InMemoryBroker()
    with InMemoryTransport(broker) as transport:
        client = PackagingClient(transport)
        assert reply_queue("prep-1").name not in broker.queue_names()
        client.prepare("prep-1")
        assert reply_queue("prep-1").name in broker.queue_names()


class _SendManyFails(InMemoryTransport):
    """send_many stores the sends not ``refused``, then raises as a backend that says which would."""

    def __init__(self, broker: InMemoryBroker, *, unconfirmed: tuple[int, ...], refused: tuple[int, ...]) -> None:
        super().__init__(broker)
        self.unconfirmed, self.refused = unconfirmed, refused
        self.singles: list[str] = []

    def _send_many(self, sends: Sequence[tuple[Destination, Envelope]], *, persistent: bool, confirm: bool) -> None:
        for index, (destination, envelope) in enumerate(sends):
            if index not in self.refused:
                super()._send(destination, envelope, persistent=persistent, confirm=confirm)
        raise SendNotConfirmedError("as told", unconfirmed=self.unconfirmed, refused=self.refused)

    def _send(
        self, destination: Destination, envelope: Envelope, *, persistent: bool = True, confirm: bool = False
    ) -> None:
        self.singles.append(decode(envelope).type)
        super()._send(destination, envelope, persistent=persistent, confirm=confirm)


@pytest.mark.parametrize(
    ("unconfirmed", "refused", "singles", "state"),
    [
        # the copy surely not stored, the request queued: the copy again, so its replies count
        ((0,), (0,), ["package_request"], State.REQUESTED),
        # the copy maybe stored, the request surely not: withdrawn
        ((1,), (1,), ["failed"], State.FAILED),
        # neither stored: nothing to repair, nothing left
        ((0, 1), (0, 1), [], State.UNKNOWN),
        # the copy's fate unknown, the request never sent (the first send failed): left as before
        # pipelining; here the copy was stored, so REQUESTED until the next request (the known edge)
        ((0, 1), (1,), [], State.REQUESTED),
        # both unknown (a lost confirm): the copy again, and withdrawn (a queued request still completes)
        ((0, 1), (), ["package_request", "failed"], State.FAILED),
        # the copy surely not, the request unknown: the copy again, then withdrawn
        ((0, 1), (0,), ["package_request", "failed"], State.FAILED),
    ],
    ids=[
        "copy-returned",
        "request-refused",
        "both-refused",
        "first-send-failed",
        "both-unknown",
        "copy-refused-request-unknown",
    ],
)
def test_a_failed_pipelined_request_leaves_no_request_without_a_packager_or_a_copy(
    unconfirmed: tuple[int, ...], refused: tuple[int, ...], singles: list[str], state: State
) -> None:
    broker = InMemoryBroker()
    transport = _SendManyFails(broker, unconfirmed=unconfirmed, refused=refused)
    client = PackagingClient(transport)
    docset = new_docset()
    with pytest.raises(SendNotConfirmedError):
        client.request_package(docset, f"http://s/api/docsets/{docset}")
    assert transport.singles == singles
    queued = bool(broker.messages(PACKAGE_REQUESTS))
    copies = [e for e in broker.messages(reply_queue(docset)) if decode(e).type == "package_request"]
    assert not queued or copies, "a queued request has no copy: its replies may not count"
    assert client.status(docset).state is state


class _CountingSqlite(SqliteTransport):
    """The native SQLite backend (its broker expires whole queues), counting the sends."""

    def __init__(self, path: str) -> None:
        super().__init__(settings=parse_sqlite_url(f"sqlite:///{path}"))
        self.sent: list[str] = []

    def _send(
        self, destination: Destination, envelope: Envelope, *, persistent: bool = True, confirm: bool = False
    ) -> None:
        self.sent.append(envelope.headers.get("tdm-type", envelope.content_type))
        super()._send(destination, envelope, persistent=persistent, confirm=confirm)


def test_where_queues_expire_a_poll_keeps_what_it_would_resend_unchanged(tmp_path: pathlib.Path) -> None:
    with _CountingSqlite(str(tmp_path / "b.db")) as transport:
        assert transport.capabilities.queue_expiry
        client = PackagingClient(transport)
        docset = new_docset()
        request = client.request_package(docset, "http://s/api/docsets/x").request
        for reply in replies_for(request):
            transport.send(reply_queue(docset), encode(reply))
        transport.sent.clear()
        first = client.status(docset)
        assert first.state is State.COMPLETE
        assert transport.sent == []  # the request and the Complete went back as they were: no send
        assert transport.depth(reply_queue(docset)) == 2
        assert client.status(docset) == first
        assert transport.sent == []
        with transport.read(reply_queue(docset)) as batch:
            assert [decode(e).type for e in batch.envelopes] == ["package_request", "complete"]


def test_a_poll_re_sends_only_what_changes_and_keeps_the_rest(tmp_path: pathlib.Path) -> None:
    with _CountingSqlite(str(tmp_path / "b.db")) as transport:
        client = PackagingClient(transport)
        docset = new_docset()
        client.request_package(docset, "http://s/api/docsets/x")
        seed_line = Envelope(b"Accepted. 45 seconds", TEXT_CONTENT_TYPE)
        transport.send(reply_queue(docset), seed_line)
        transport.sent.clear()
        status = client.status(docset)
        assert (status.state, status.estimate_seconds) == (State.ACCEPTED, 45)
        assert transport.sent == ["accepted"]  # the seed line, given its request id; the copy is kept
        assert client.status(docset) == status
        assert transport.sent == ["accepted"]


class _CannotSettle(InMemoryTransport):
    """An in-memory transport that says its broker expires queues, with batches that cannot settle a part."""

    @property
    def capabilities(self) -> Capabilities:
        return dataclasses.replace(super().capabilities, queue_expiry=True)

    def _read(self, destination: Destination, *, limit: int = 1000) -> Batch:
        inner = super()._read(destination, limit=limit)

        class Plain(Batch):
            envelopes = inner.envelopes
            ack = inner.ack
            release = inner.release

        return Plain()


def test_a_backend_that_cannot_settle_a_part_gets_the_kept_ones_re_sent() -> None:
    broker = InMemoryBroker()
    client = PackagingClient(_CannotSettle(broker))
    docset = new_docset()
    request = client.request_package(docset, "http://s/api/docsets/x").request
    for reply in replies_for(request):
        client._transport.send(reply_queue(docset), encode(reply))
    assert client.status(docset).state is State.COMPLETE
    assert [decode(e).type for e in broker.messages(reply_queue(docset))] == ["package_request", "complete"]
    assert broker.unacked_count(reply_queue(docset)) == 0
    assert client.status(docset).state is State.COMPLETE
