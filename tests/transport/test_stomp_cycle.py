"""The STOMP wing of a job's cycle on real brokers: send_many with one wait, settle, declares on one connection."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from tdm_messaging.destinations import DEAD_LETTER, Destination, DestinationKind, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import BrokerRefusedError
from tdm_messaging.server import PackagingClient
from tdm_messaging.status import State
from tdm_messaging.testing import running_worker, wait_until
from tdm_messaging.transport import open_transport
from tdm_messaging.transport.base import Delivery
from tdm_messaging.worker import Job, PackageResult, PackagerWorker
from tests.conftest import broker_url

pytest.importorskip("stomp")

from tdm_messaging.transport.stomp.backend import StompTransport
from tdm_messaging.transport.stomp.frames import late_subscription
from tdm_messaging.transport.stomp.link import EARLY_READS, StompLink
from tdm_messaging.transport.stomp.settings import parse_stomp_url

BROKERS = ("rabbitmq-stomp", "activemq-stomp")


def _url(name: str, **params: str) -> str:
    url = broker_url(name)
    extra = "&".join(f"{k}={v}" for k, v in params.items())
    return url + ("&" if "?" in url else "?") + extra if extra else url


@pytest.fixture(params=BROKERS)
def broker(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def transport(broker: str) -> Iterator[StompTransport]:
    with StompTransport.from_url(_url(broker, read_timeout="10")) as t:
        yield t


def _fresh() -> Destination:
    return reply_queue("cycle-" + uuid.uuid4().hex)


def _permanent() -> Destination:
    return Destination(f"test-cycle-{uuid.uuid4().hex}", DestinationKind.PERMANENT)


def _bodies(t: StompTransport, d: Destination, *, ack: bool = False) -> list[bytes]:
    with t.read(d) as batch:
        bodies = [e.body for e in batch.envelopes]
        if ack:
            batch.ack()
    return bodies


def _record(t: StompTransport, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the transport's link does, in order: 'write' per frame written, 'wait' per receipt awaited."""
    events: list[str] = []
    link = t._link
    transmit, await_receipt = link.transmit, link.await_receipt

    def recorded_transmit(*args: Any, **kwargs: Any) -> Any:
        events.append("write")
        return transmit(*args, **kwargs)

    def recorded_await(*args: Any, **kwargs: Any) -> None:
        events.append("wait")
        await_receipt(*args, **kwargs)

    monkeypatch.setattr(link, "transmit", recorded_transmit)
    monkeypatch.setattr(link, "await_receipt", recorded_await)
    return events


# ---------------------------------------------------------------- send_many


@pytest.mark.broker
def test_send_many_writes_every_frame_before_it_waits_and_keeps_the_order(
    transport: StompTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    d, p = _fresh(), _permanent()
    events = _record(transport, monkeypatch)
    transport.send_many(
        [(d, Envelope(b"copy")), (p, Envelope(b"request")), (d, Envelope(b"second"))], persistent=True, confirm=True
    )
    assert events == ["write", "write", "write", "wait", "wait", "wait"]
    monkeypatch.undo()
    assert _bodies(transport, d, ack=True) == [b"copy", b"second"]
    assert _bodies(transport, p, ack=True) == [b"request"]


@pytest.mark.broker
def test_send_many_without_confirm_waits_for_nothing(
    transport: StompTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = _fresh()
    events = _record(transport, monkeypatch)
    transport.send_many([(d, Envelope(b"a")), (d, Envelope(b"b"))], confirm=False)
    assert events == ["write", "write"]
    monkeypatch.undo()
    assert _bodies(transport, d, ack=True) == [b"a", b"b"]


@pytest.mark.broker
def test_send_many_names_the_refused_item_and_keeps_what_came_before() -> None:
    d, p = _fresh(), _permanent()
    with StompTransport.from_url(_url("rabbitmq-stomp", reply_ttl="60")) as first:
        first.declare(d)
    with StompTransport.from_url(_url("rabbitmq-stomp", reply_ttl="120")) as second:
        with pytest.raises(BrokerRefusedError, match=r"item 2 of 2, send to .*inequivalent arg 'x-expires'"):
            second.send_many([(p, Envelope(b"first")), (d, Envelope(b"refused"))], confirm=True)
        assert _bodies(second, p, ack=True) == [b"first"]


# ---------------------------------------------------------------- settle


@pytest.mark.broker
def test_settle_drops_the_others_and_gives_back_the_kept_to_another_connection(
    transport: StompTransport, broker: str
) -> None:
    d = _fresh()
    transport.send_many([(d, Envelope(body)) for body in (b"a", b"b", b"c", b"d")], confirm=True)
    before = transport.connection_count
    with transport.read(d) as batch:
        assert [e.body for e in batch.envelopes] == [b"a", b"b", b"c", b"d"]
        batch.settle([1, 3])
    with StompTransport.from_url(broker_url(broker)) as other:  # at once, from another connection
        assert _bodies(other, d) == [b"b", b"d"]
    assert _bodies(transport, d) == [b"b", b"d"]
    assert transport.connection_count == before, "settling must not re-open the connection"


@pytest.mark.broker
def test_ack_and_release_settle_without_a_reconnect(transport: StompTransport) -> None:
    d = _fresh()
    transport.send(d, Envelope(b"kept"), confirm=True)
    before = transport.connection_count
    for _ in range(3):
        assert _bodies(transport, d) == [b"kept"]
    transport.send(d, Envelope(b"gone"), confirm=True)
    with transport.read(d) as batch:
        batch.settle([0])
    assert _bodies(transport, d, ack=True) == [b"kept"]
    assert _bodies(transport, d) == []
    assert transport.connection_count == before


@pytest.mark.broker
def test_a_send_to_the_queue_between_read_and_settle_is_not_lost(transport: StompTransport) -> None:
    """The subscription lives until the batch is settled: what reaches it meanwhile goes back to the queue."""
    d = _fresh()
    transport.send(d, Envelope(b"old"), confirm=True)
    with transport.read(d) as batch:
        transport.send(d, Envelope(b"new"), confirm=True)
        batch.ack()
    assert _bodies(transport, d, ack=True) == [b"new"]


# ---------------------------------------------------------------- declares


@pytest.mark.broker
def test_rabbitmq_declares_share_one_side_connection() -> None:
    with StompTransport.from_url(_url("rabbitmq-stomp")) as t:
        queues = [_fresh() for _ in range(5)]
        for d in queues:
            t.declare(d)
            t.send(d, Envelope(b"x"), confirm=True)
        assert t.declare_connection_count == 1
        assert t.connection_count == 1
        for d in queues:
            assert _bodies(t, d, ack=True) == [b"x"]


@pytest.mark.broker
def test_rabbitmq_a_refused_declare_costs_only_the_side_connection() -> None:
    d = _fresh()
    with StompTransport.from_url(_url("rabbitmq-stomp", reply_ttl="60")) as first:
        first.declare(d)
    with StompTransport.from_url(_url("rabbitmq-stomp", reply_ttl="120")) as second:
        second.declare(_fresh())
        with pytest.raises(BrokerRefusedError, match="inequivalent arg 'x-expires'"):
            second.declare(d)
        second.declare(_fresh())  # a new side connection: the broker closed the refused one
        assert second.declare_connection_count == 2
        assert second.connection_count == 1
        second.send(d, Envelope(b"around"), confirm=True)  # reached as it is, /amq/queue
        assert _bodies(second, d, ack=True) == [b"around"]


def _noop(job: Job) -> PackageResult:
    return PackageResult(archive_url=f"https://example.org/{job.request.docset_id}.zip", size_bytes=1)


# ---------------------------------------------------------------- consume_batches


def _inbox_holds(t: StompTransport, count: int) -> bool:
    """Whether the receiver thread has put at least ``count`` items in the consume inbox (not yet taken)."""
    inboxes = list(t._link.inboxes.values())
    return bool(inboxes) and sum(inbox.qsize() for inbox in inboxes) >= count  # type: ignore[attr-defined]


@pytest.mark.broker
def test_consume_batches_hands_over_what_has_arrived_and_acks_each_batch_in_one_write(
    transport: StompTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = _permanent()
    sent = [f"job {i}".encode() for i in range(12)]
    transport.send_many([(queue, Envelope(b, "text/plain")) for b in sent], confirm=True)
    events = _record(transport, monkeypatch)
    batches: list[list[bytes]] = []
    stop = threading.Event()

    def handle(deliveries: Sequence[Delivery]) -> None:
        if not batches:
            # The broker pushes up to the prefetch (5) at once: let the rest of it arrive, so the
            # next batch is everything the receiver thread then holds, not one delivery.
            wait_until(lambda: _inbox_holds(transport, 5 - len(deliveries)), what="the prefetched deliveries")
        batches.append([d.envelope.body for d in deliveries])
        events.append("handled")
        if sum(map(len, batches)) == len(sent):
            stop.set()

    thread = threading.Thread(target=lambda: transport.consume_batches([queue], handle, prefetch=5, stop=stop))
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), f"only {sum(map(len, batches))} of {len(sent)} delivered"
    assert [body for batch in batches for body in batch] == sent, "not each once, in order"
    assert all(1 <= len(batch) <= 5 for batch in batches), batches
    if len(batches[0]) < 5:
        assert len(batches[0]) + len(batches[1]) == 5, batches  # the second held all that had arrived
    assert max(map(len, batches)) >= 3, batches
    # Between two batches: one write, the previous batch's ACKs (no receipt, nothing awaited).
    handled = [i for i, e in enumerate(events) if e == "handled"]
    assert all(events[a + 1 : b] == ["write"] for a, b in itertools.pairwise(handled)), events
    assert _bodies(transport, queue) == [], "a handled batch was not acknowledged"


@pytest.mark.broker
def test_the_worker_waits_once_per_batch_of_requests(broker: str, monkeypatch: pytest.MonkeyPatch) -> None:
    namespace = "t" + uuid.uuid4().hex[:12]
    url = _url(broker, namespace=namespace)
    with open_transport(url) as worker_side, open_transport(url) as client_side:
        stomp = worker_side._inner if hasattr(worker_side, "_inner") else worker_side
        assert isinstance(stomp, StompTransport)
        client = PackagingClient(client_side)
        docsets = [f"cycle-{uuid.uuid4().hex[:8]}-{n}" for n in range(12)]
        client.request_packages([(d, f"http://server/api/docsets/{d}") for d in docsets])
        events = _record(stomp, monkeypatch)

        def job(job: Job) -> PackageResult:
            events.append("job")
            return _noop(job)

        worker = PackagerWorker(worker_side, on_package=job, retry_backoff_seconds=0, prefetch=8)
        sizes: list[int] = []
        handle_batch = worker._handle_batch

        def sized(deliveries: Sequence[Delivery]) -> None:
            if not sizes and len(deliveries) == 1:  # taken before the rest of the prefetch came: let it come
                wait_until(lambda: _inbox_holds(stomp, 1), what="more prefetched requests")
            sizes.append(len(deliveries))
            handle_batch(deliveries)

        monkeypatch.setattr(worker, "_handle_batch", sized)
        with running_worker(worker):
            for docset in docsets:
                for _ in range(2000):
                    if client.status(docset).state is State.COMPLETE:
                        break
                else:
                    pytest.fail(f"docset {docset} did not complete")
        assert events.count("job") == sum(sizes) == len(docsets)
        assert max(sizes) >= 2, sizes
        # A batch's jobs all run before the first wait for their Completes' receipts (one wait for
        # the batch), not a wait after each job: some stretch between waits holds several jobs.
        stretches = " ".join(events).split("wait")
        assert max(stretch.split().count("job") for stretch in stretches) >= 2, events
        assert stomp.connection_count == 1


@pytest.mark.broker
def test_the_worker_opens_no_connection_per_job(broker: str) -> None:
    namespace = "t" + uuid.uuid4().hex[:12]
    url = _url(broker, namespace=namespace)
    with open_transport(url) as worker_side, open_transport(url) as client_side:
        stomp = worker_side._inner if hasattr(worker_side, "_inner") else worker_side
        assert isinstance(stomp, StompTransport)
        client = PackagingClient(client_side)
        worker = PackagerWorker(worker_side, on_package=_noop, retry_backoff_seconds=0)
        with running_worker(worker):
            for n in range(4):
                docset = f"cycle-{uuid.uuid4().hex[:8]}-{n}"
                client.request_package(docset, f"http://server/api/docsets/{docset}")
                for _ in range(2000):
                    if client.status(docset).state is State.COMPLETE:
                        break
                else:
                    pytest.fail(f"docset {docset} did not complete")
        assert stomp.connection_count == 1
        if broker == "rabbitmq-stomp":
            # Its SENDs create a missing reply queue (reply_queue_on_send): no declare per job.
            assert stomp.capabilities.reply_queue_on_send
            assert stomp.declare_connection_count == 0


@pytest.mark.broker
def test_rabbitmq_a_confirmed_reply_to_a_queue_with_other_arguments_goes_around() -> None:
    """The first confirmed SEND to a reply queue that exists with other arguments is refused (and its
    connection closed); it is sent again as it is (/amq/queue), so nothing is lost and no error raised."""
    d = _fresh()
    with StompTransport.from_url(_url("rabbitmq-stomp", reply_ttl="60")) as first:
        first.declare(d)
    with StompTransport.from_url(_url("rabbitmq-stomp", reply_ttl="120")) as second:
        second.send(d, Envelope(b"refused, then around"), confirm=True)
        second.send(d, Envelope(b"around"), confirm=True)
        assert second.connection_count == 2  # the refusal closed the first connection
        assert _bodies(second, d, ack=True) == [b"refused, then around", b"around"]


@pytest.mark.broker
def test_rabbitmq_a_refused_send_goes_around_even_before_its_connection_is_marked_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ERROR answering a SEND's receipt wakes the sender before the listener marks the connection
    lost (slowed down here): the send still goes again around, once, and is stored once."""
    original = StompLink.on_lost

    def late_on_lost(self: StompLink, generation: int, refusal: Any, *, quiet: bool = False) -> None:
        if refusal is not None:
            time.sleep(0.3)
        original(self, generation, refusal, quiet=quiet)

    monkeypatch.setattr(StompLink, "on_lost", late_on_lost)
    d = _fresh()
    with StompTransport.from_url(_url("rabbitmq-stomp", reply_ttl="60")) as first:
        first.declare(d)
    with StompTransport.from_url(_url("rabbitmq-stomp", reply_ttl="120")) as second:
        second.send(d, Envelope(b"around"), confirm=True)
        assert _bodies(second, d, ack=True) == [b"around"]


@pytest.mark.broker
def test_rabbitmq_a_confirmed_send_after_a_refused_unconfirmed_one_goes_around() -> None:
    """A job's unconfirmed Accepted, then its confirmed last reply, to a queue with other arguments:
    RabbitMQ refuses the first and may answer the second's receipt first with a bare "Processing
    error" that names no queue. The confirmed one still goes around (/amq/queue) and is stored."""
    with StompTransport.from_url(_url("rabbitmq-stomp", reply_ttl="60")) as first:
        queues = [_fresh() for _ in range(8)]
        for d in queues:
            first.declare(d)
        for d in queues:
            with StompTransport.from_url(_url("rabbitmq-stomp", reply_ttl="120")) as second:
                second.send(d, Envelope(b"accepted, unconfirmed"))
                second.send(d, Envelope(b"complete"), confirm=True)
            assert _bodies(first, d, ack=True)[-1:] == [b"complete"]


@pytest.mark.broker
def test_rabbitmq_the_worker_replies_to_a_queue_with_other_arguments() -> None:
    """No declare per job: a worker configured with another reply_ttl than the server's has its first
    reply refused (and its connection closed); the reply goes again as it is (/amq/queue), the
    request comes again, and the job's replies reach the queue. Nothing is dead-lettered."""
    namespace = "t" + uuid.uuid4().hex[:12]
    docset = f"foreign-{uuid.uuid4().hex[:8]}"
    server_url = _url("rabbitmq-stomp", namespace=namespace, reply_ttl="60")
    worker_url = _url("rabbitmq-stomp", namespace=namespace, reply_ttl="120")
    with open_transport(worker_url) as worker_side, open_transport(server_url) as client_side:
        client = PackagingClient(client_side)
        worker = PackagerWorker(worker_side, on_package=_noop, retry_backoff_seconds=0)
        with running_worker(worker):
            client.request_package(docset, f"http://server/api/docsets/{docset}")
            for _ in range(2000):
                status = client.status(docset)
                if status.state is State.COMPLETE:
                    break
            else:
                pytest.fail(f"docset {docset} did not complete: {client.status(docset)}")
        stomp = worker_side._inner if hasattr(worker_side, "_inner") else worker_side
        assert isinstance(stomp, StompTransport)
        assert stomp.connection_count >= 2, "the refusal closed the worker's first connection"
        # No declare per job: at most the one that tells why a refusal naming no queue came
        # (RabbitMQ's bare "Processing error" may answer the confirmed reply before the refusal).
        assert stomp.declare_connection_count <= 1
        with client_side.read(DEAD_LETTER) as batch:
            assert list(batch.envelopes) == []


def _settle_then_ack_with_a_send_in_between(t: StompTransport, d: Destination, early: bool | None = None) -> None:
    """Three messages, a read that keeps the third, then a read acknowledged after a send made while
    it was held: the third is there for another reader, and only the message sent meanwhile is left
    (``early``: whether the first read must have ended its subscription at once; None: not checked)."""
    t.send_many([(d, Envelope(body)) for body in (b"a", b"b", b"c")], confirm=True)
    with t.read(d) as batch:
        if early is not None:
            assert (batch._unsubscribed is not None) is early  # type: ignore[attr-defined]
        batch.settle([2])
    with StompTransport.from_url(broker_url("rabbitmq-stomp")) as other:
        assert _bodies(other, d) == [b"c"]
    with t.read(d) as batch:
        t.send(d, Envelope(b"meanwhile"), confirm=True)
        batch.ack()


@pytest.mark.broker
def test_rabbitmq_reads_settle_without_anchors_when_the_user_may_not_have_them() -> None:
    """A user without rights on server-named queues cannot have the anchor subscriptions: reads then keep
    their subscription until settled (as on ActiveMQ), and settle, ack and release still hold."""
    d = _fresh()
    with StompTransport.from_url(_url("rabbitmq-stomp")) as t:
        t._link.anchors = False
        _settle_then_ack_with_a_send_in_between(t, d)
        assert _bodies(t, d, ack=True) == [b"meanwhile"]


def test_a_refused_anchor_turns_anchors_off() -> None:
    link = StompLink(parse_stomp_url("stomp://h/?dialect=rabbitmq"))
    link.on_error(0, "", BrokerRefusedError("x"), "access_refused ACCESS_REFUSED - access to queue 'package/5' refused")
    assert link.anchors
    link.on_error(
        0, "", BrokerRefusedError("x"), "access_refused ACCESS_REFUSED - access to queue 'amq.gen-abc' refused"
    )
    assert not link.anchors


def test_reads_end_their_subscription_early_only_after_a_late_delivery_from_their_queue() -> None:
    link = StompLink(parse_stomp_url("stomp://h/?dialect=rabbitmq"))
    link.generation, link.connected = 1, True
    link._return_stuck_soon = lambda: None  # type: ignore[method-assign]  # no broker: nothing to give back
    with link.lock:
        link.reading("tdm-read-a", "/queue/a")
        link.reading("tdm-read-b", "/queue/b")
    assert [link.unsubscribe_early("/queue/a") for _ in range(3)] == [False, False, False]
    # A delivery reached a's finished read (a MESSAGE, or RabbitMQ's ERROR naming the subscription):
    # messages are arriving at a; b's reads are not concerned.
    link.on_message(1, {"subscription": "tdm-read-a"}, b"late")
    assert not link.unsubscribe_early("/queue/b")
    assert all(link.unsubscribe_early("/queue/a") for _ in range(EARLY_READS))
    assert not link.unsubscribe_early("/queue/a")
    link.on_late_delivery(1, "There is no current subscription with tag 'T_tdm-read-b'.")
    assert link.unsubscribe_early("/queue/b")
    assert not link.unsubscribe_early("/queue/a")
    # One whose queue is unknown: every queue's next reads end early.
    link.on_late_delivery(1, "")
    assert all(link.unsubscribe_early(wire) for wire in ["/queue/a", "/queue/c"] * (EARLY_READS // 2))
    assert not link.unsubscribe_early("/queue/c")
    assert link.late == 3


@pytest.mark.parametrize(
    ("details", "expected"),
    [
        ("There is no current subscription with tag 'T_tdm-read-1f'.", "tdm-read-1f"),
        ("There is no current subscription with tag 'T_'.", None),
        ("There is no current subscription with tag 'T_open", None),
        ("Subscription not found", None),
        ("", None),
    ],
)
def test_a_late_deliverys_error_names_its_subscription(details: str, expected: str | None) -> None:
    assert late_subscription(details) == expected


def test_reads_remembered_for_late_deliveries_are_bounded() -> None:
    link = StompLink(parse_stomp_url("stomp://h/?dialect=rabbitmq"))
    link.generation, link.connected = 1, True
    link._return_stuck_soon = lambda: None  # type: ignore[method-assign]
    with link.lock:
        for i in range(1000):
            link.reading(f"s{i}", f"/queue/{i}")
    assert len(link.read_wires) <= 256
    assert link.read_wires["s999"] == "/queue/999"
    for i in range(744, 1000):
        link.on_message(1, {"subscription": f"s{i}"}, b"late")
    assert len(link.early) <= 256
    assert link.unsubscribe_early("/queue/999")


@pytest.mark.broker
@pytest.mark.parametrize("early", [False, True], ids=["settle-unsubscribes", "early-unsubscribe"])
def test_rabbitmq_reads_settle_the_same_either_way(early: bool) -> None:
    """Whether a read ends its subscription at once or in its settlement, settle, ack and release keep
    every message that is not acknowledged, including one sent while the read is held."""
    d = _fresh()
    with StompTransport.from_url(_url("rabbitmq-stomp")) as t:
        if early:
            t._link.early_any = 1_000_000
        _settle_then_ack_with_a_send_in_between(t, d, early)
        with t.read(d) as batch:
            batch.release()
        assert _bodies(t, d, ack=True) == [b"meanwhile"]
        assert t.connection_count == 1
