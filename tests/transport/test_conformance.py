"""The transport contract, and the protocol through the helpers, proven the same way on every backend."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import pytest

from tdm_messaging.destinations import DEAD_LETTER, PACKAGE_REQUESTS, Destination, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import InvalidArgumentError, TransportClosedError
from tdm_messaging.testing import became_true
from tdm_messaging.transport import Capabilities, Delivery, Transport
from tests.transport.conftest import (
    ARCHIVE_SIZE,
    Backend,
    ScriptedPackager,
    archive_url,
    docset_url,
    poll_until,
    running_worker,
    unique_docset,
    unique_namespace,
)

pytestmark = pytest.mark.timeout(120)

BROKER_ONLY_HEADERS = ("message-id", "subscription", "destination", "ack", "content-length", "receipt")


def run_together(work: Callable[[int], None], *, timeout: float) -> None:
    """Run ``work(0)`` and ``work(1)`` in two threads released at the same moment; re-raise what failed."""
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            barrier.wait(timeout=30)
            work(k)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not errors, errors


def envelope(i: int, content_type: str = "application/json", **headers: str) -> Envelope:
    """The ``i``-th test envelope: a small JSON (or text) body that says its index."""
    body = f'{{"n": {i}}}'.encode() if content_type == "application/json" else f"line {i}".encode()
    return Envelope(body, content_type, {"tdm-test-index": str(i), **headers})


def bodies(envelopes: Sequence[Envelope]) -> list[bytes]:
    return [e.body for e in envelopes]


def take_all(transport: Transport, destination: Destination) -> list[Envelope]:
    """Read and acknowledge everything in ``destination``."""
    with transport.read(destination) as batch:
        taken = list(batch.envelopes)
        batch.ack()
    return taken


def peek(transport: Transport, destination: Destination) -> list[Envelope]:
    """Read ``destination`` without acknowledging: the messages stay."""
    with transport.read(destination) as batch:
        return list(batch.envelopes)


@contextmanager
def consuming(
    transport: Transport, destinations: Sequence[Destination], handler: Callable[[Delivery], None], *, prefetch: int = 1
) -> Iterator[threading.Event]:
    """Run ``consume`` in a thread for the ``with`` block; re-raise what it raised, if anything."""
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            transport.consume(destinations, handler, prefetch=prefetch, stop=stop)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive(), "consume did not return after stop was set"
    if failure:
        raise failure[0]


# -- send and read --------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_round_trip_keeps_body_content_type_and_headers(backend: Backend, content_type: str) -> None:
    sender, reader = backend.open(), backend.open()
    queue = backend.reply_queue()
    sent = envelope(1, content_type, **{"tdm-type": "accepted", "app-note": "a:b é", "tdm-sequence": "3"})
    sender.send(queue, sent, confirm=True)  # confirmed: the reader is another connection
    [got] = take_all(reader, queue)
    assert got.body == sent.body
    assert got.content_type == content_type
    for name, value in sent.headers.items():
        assert got.header(name) == value, f"header {name!r} changed on {backend.name}"
    for name in BROKER_ONLY_HEADERS:
        assert name not in got.headers, f"broker header {name!r} leaked into the envelope on {backend.name}"


def test_no_content_type_arrives_as_none(backend: Backend) -> None:
    """A body sent with no content type is read with ``""`` (so the codec guesses), never a made-up type."""
    sender, reader = backend.open(), backend.open()
    queue = backend.reply_queue()
    sender.send(queue, Envelope(b"Accepted. 45 seconds", ""), confirm=True)
    [got] = take_all(reader, queue)
    assert (got.body, got.content_type) == (b"Accepted. 45 seconds", "")


def test_round_trip_keeps_arbitrary_bytes(backend: Backend) -> None:
    transport = backend.open()
    queue = backend.reply_queue()
    body = b"caf\xc3\xa9 \x00 nul, \n\r newlines, \\ backslash, and } { ; : bytes"
    transport.send(queue, Envelope(body, "application/octet-stream"))
    [got] = take_all(transport, queue)
    assert got.body == body


def test_fifo_order(backend: Backend) -> None:
    transport = backend.open()
    queue = backend.reply_queue()
    sent = [envelope(i) for i in range(10)]
    for e in sent:
        transport.send(queue, e)
    assert bodies(take_all(transport, queue)) == bodies(sent)


def test_read_of_an_empty_queue_returns_empty(backend: Backend) -> None:
    transport = backend.open()
    never_used = backend.reply_queue()
    assert take_all(transport, never_used) == []
    declared = backend.reply_queue()
    transport.declare(declared)
    assert peek(transport, declared) == []


def test_read_takes_at_most_limit(backend: Backend) -> None:
    transport = backend.open()
    queue = backend.reply_queue()
    sent = [envelope(i) for i in range(5)]
    for e in sent:
        transport.send(queue, e)
    with transport.read(queue, limit=2) as batch:
        assert bodies(batch.envelopes) == bodies(sent[:2])
        batch.ack()
    assert bodies(take_all(transport, queue)) == bodies(sent[2:])


def test_a_batch_left_without_ack_gives_its_messages_back(backend: Backend) -> None:
    transport = backend.open()
    queue = backend.reply_queue()
    sent = [envelope(i) for i in range(3)]
    for e in sent:
        transport.send(queue, e)
    assert sorted(bodies(peek(transport, queue))) == sorted(bodies(sent))
    batch = transport.read(queue)
    assert len(batch.envelopes) == 3
    batch.release()
    batch.release()  # idempotent
    # The next read - by this transport or by another "server process" - sees them all.
    assert sorted(bodies(peek(backend.open(), queue))) == sorted(bodies(sent))
    assert sorted(bodies(take_all(transport, queue))) == sorted(bodies(sent))


def test_a_reader_that_fails_loses_nothing(backend: Backend) -> None:
    transport = backend.open()
    queue = backend.reply_queue()
    transport.send(queue, envelope(7))

    class CrashError(Exception):
        pass

    with pytest.raises(CrashError), transport.read(queue) as batch:
        assert len(batch.envelopes) == 1
        raise CrashError
    assert bodies(take_all(transport, queue)) == [envelope(7).body]


def test_ack_removes(backend: Backend) -> None:
    transport = backend.open()
    queue = backend.reply_queue()
    for i in range(3):
        transport.send(queue, envelope(i))
    assert len(take_all(transport, queue)) == 3
    assert take_all(transport, queue) == []
    assert take_all(backend.open(), queue) == []


def test_two_concurrent_readers_never_lose_a_message(backend: Backend) -> None:
    queue = backend.reply_queue()
    sender = backend.open()
    sent = [envelope(i) for i in range(20)]
    for e in sent:
        sender.send(queue, e)
    readers = [backend.open(), backend.open()]
    seen: list[list[bytes]] = [[], []]

    def read(k: int) -> None:
        with readers[k].read(queue, limit=8) as batch:
            seen[k] = bodies(batch.envelopes)
            batch.ack()

    run_together(read, timeout=60)
    # A read that stops at its limit can hold one more delivery on its connection (RabbitMQ
    # STOMP pushes up to limit + 1), given back when that connection is re-opened, which the
    # transport does right after the read, in the background: "never lost" means it comes back.
    left: list[bytes] = []

    def all_accounted_for() -> bool:
        left.extend(bodies(take_all(sender, queue)))
        return set(seen[0]) | set(seen[1]) | set(left) == set(bodies(sent))

    assert became_true(all_accounted_for, within=30, every=0.2), (seen, left)
    assert len(seen[0]) + len(seen[1]) + len(left) >= len(sent)


def test_two_concurrent_pollers_resending_before_ack_never_lose_the_status(backend: Backend) -> None:
    """The server's poll pattern at transport level: read, re-send what was read, then ack."""
    queue = backend.reply_queue()
    sent = [envelope(i) for i in range(4)]
    seed = backend.open()
    for e in sent:
        seed.send(queue, e)
    pollers = [backend.open(), backend.open()]

    def poll(k: int) -> None:
        for _ in range(3):
            with pollers[k].read(queue) as batch:
                for e in batch.envelopes:
                    pollers[k].send(queue, e, confirm=True)
                batch.ack()

    run_together(poll, timeout=60)
    assert set(bodies(take_all(seed, queue))) == set(bodies(sent))


# -- consume --------------------------------------------------------------------------------------


def test_competing_consumers_with_prefetch_1_get_each_message_once(backend: Backend) -> None:
    queue = backend.reply_queue()
    sender = backend.open()
    sent = [envelope(i) for i in range(10)]
    sender.declare(queue)
    lock = threading.Lock()
    got: list[tuple[int, bytes]] = []
    all_in = threading.Event()

    def handler_for(k: int) -> Callable[[Delivery], None]:
        def handle(delivery: Delivery) -> None:
            assert delivery.destination == queue
            with lock:
                got.append((k, delivery.envelope.body))
                if len(got) >= len(sent):
                    all_in.set()

        return handle

    consumers = [backend.open(), backend.open()]
    with consuming(consumers[0], [queue], handler_for(0)) as stop0, consuming(consumers[1], [queue], handler_for(1)):
        for e in sent:
            sender.send(queue, e)
        assert all_in.wait(timeout=60), f"only {len(got)} of {len(sent)} delivered"
        stop0.set()
    counts = Counter(body for _, body in got)
    assert set(counts) == set(bodies(sent))
    assert all(n == 1 for n in counts.values()), f"delivered more than once: {counts}"
    assert take_all(sender, queue) == [], "a handled message was not acknowledged"


def test_consume_reads_several_destinations(backend: Backend) -> None:
    first, second = backend.reply_queue(), backend.reply_queue()
    transport = backend.open()
    transport.send(first, envelope(1))
    transport.send(second, envelope(2))
    seen: dict[str, bytes] = {}
    both = threading.Event()

    def handle(delivery: Delivery) -> None:
        seen[delivery.destination.name] = delivery.envelope.body
        if len(seen) == 2:
            both.set()

    with consuming(transport, [first, second], handle):
        assert both.wait(timeout=60)
    assert seen == {first.name: envelope(1).body, second.name: envelope(2).body}


def test_a_handler_that_raises_leaves_the_message_in_the_queue(backend: Backend) -> None:
    transport = backend.open()
    queue = backend.reply_queue()
    transport.send(queue, envelope(1))

    class HandlerBrokeError(Exception):
        pass

    def handle(delivery: Delivery) -> None:
        raise HandlerBrokeError(delivery.envelope.body.decode())

    with pytest.raises(HandlerBrokeError):
        transport.consume([queue], handle, prefetch=1, stop=threading.Event())
    assert bodies(take_all(transport, queue)) == [envelope(1).body]


def test_a_handler_interrupted_by_a_base_exception_leaves_the_message_in_the_queue(backend: Backend) -> None:
    # The reference packager gives a job back this way when it is stopped (JobInterrupted, like
    # KeyboardInterrupt, is no Exception): the request must stay for another consumer.
    transport = backend.open()
    queue = backend.reply_queue()
    transport.send(queue, envelope(1))

    class Interrupted(BaseException):
        pass

    def handle(delivery: Delivery) -> None:
        raise Interrupted(delivery.envelope.body.decode())

    with pytest.raises(Interrupted):
        transport.consume([queue], handle, prefetch=1, stop=threading.Event())
    transport.close()
    assert bodies(take_all(backend.open(), queue)) == [envelope(1).body]


def test_consume_batches_hands_over_each_message_once_and_acknowledges_them(backend: Backend) -> None:
    transport = backend.open()
    queue = backend.reply_queue()
    sent = [envelope(i) for i in range(12)]
    for e in sent:
        transport.send(queue, e, confirm=True)
    batches: list[list[bytes]] = []
    all_in = threading.Event()
    stop = threading.Event()
    failure: list[BaseException] = []

    def handle(deliveries: Sequence[Delivery]) -> None:
        assert all(d.destination == queue for d in deliveries)
        batches.append([d.envelope.body for d in deliveries])
        if sum(map(len, batches)) >= len(sent):
            all_in.set()

    def run() -> None:
        try:
            transport.consume_batches([queue], handle, prefetch=5, stop=stop)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert all_in.wait(timeout=60), f"only {sum(map(len, batches))} of {len(sent)} delivered"
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not failure, failure
    assert [body for batch in batches for body in batch] == bodies(sent), "not each once, in order"
    assert all(1 <= len(batch) <= 5 for batch in batches), f"a batch beyond the prefetch: {batches}"
    assert take_all(transport, queue) == [], "a handled batch was not acknowledged"


def test_a_batch_handler_that_raises_leaves_the_whole_batch_in_the_queue(backend: Backend) -> None:
    transport = backend.open()
    queue = backend.reply_queue()
    sent = [envelope(i) for i in range(3)]
    for e in sent:
        transport.send(queue, e, confirm=True)

    class HandlerBrokeError(Exception):
        pass

    seen: list[bytes] = []

    def handle(deliveries: Sequence[Delivery]) -> None:
        seen.extend(d.envelope.body for d in deliveries)
        raise HandlerBrokeError(f"{len(deliveries)} deliveries")

    with pytest.raises(HandlerBrokeError):
        transport.consume_batches([queue], handle, prefetch=3, stop=threading.Event())
    assert seen, "the handler saw nothing"
    assert sorted(bodies(take_all(transport, queue))) == sorted(bodies(sent)), "a message of the failed batch was lost"


def test_a_handler_may_send_on_the_same_transport(backend: Backend) -> None:
    transport = backend.open()
    inbox, outbox = backend.reply_queue(), backend.reply_queue()
    transport.send(inbox, envelope(1))
    forwarded = threading.Event()

    def handle(delivery: Delivery) -> None:
        transport.send(outbox, Envelope(b"re: " + delivery.envelope.body, "text/plain"), confirm=True)
        forwarded.set()

    with consuming(transport, [inbox], handle):
        assert forwarded.wait(timeout=60)
    assert bodies(take_all(transport, outbox)) == [b"re: " + envelope(1).body]
    assert take_all(transport, inbox) == []


def test_stop_ends_consume(backend: Backend) -> None:
    transport = backend.open()
    queue = backend.reply_queue()
    stop = threading.Event()
    stop.set()
    transport.consume([queue], lambda d: None, prefetch=1, stop=stop)  # returns at once
    with consuming(transport, [queue], lambda d: None):
        pass  # consuming() asserts the thread ends once stop is set
    transport.send(queue, envelope(3))
    assert bodies(take_all(transport, queue)) == [envelope(3).body], "the transport still works after consume"


# -- send options, declare, delete, capabilities, close -------------------------------------------


@pytest.mark.parametrize(("persistent", "confirm"), [(True, True), (True, False), (False, True), (False, False)])
def test_send_options(backend: Backend, persistent: bool, confirm: bool) -> None:
    transport = backend.open()
    queue = backend.reply_queue()
    transport.send(queue, envelope(1), persistent=persistent, confirm=confirm)
    # Unconfirmed sends are ordered only on their own connection, so read there.
    assert bodies(take_all(transport, queue)) == [envelope(1).body]


def test_declare_is_idempotent(backend: Backend) -> None:
    first, second = backend.open(), backend.open()
    queue = backend.reply_queue()
    for transport in (first, first, second):
        transport.declare(queue)
        transport.declare(PACKAGE_REQUESTS)
        transport.declare(DEAD_LETTER)
    first.send(queue, envelope(1), confirm=True)
    second.declare(queue)
    assert bodies(take_all(second, queue)) == [envelope(1).body]


def test_capabilities_are_a_typed_value(backend: Backend) -> None:
    capabilities = backend.open().capabilities
    assert isinstance(capabilities, Capabilities)
    assert capabilities.cross_process is (backend.name not in {"memory", "inmemory"})
    # RabbitMQ deletes an idle queue by itself (tests/transport/test_reply_expiry.py watches it happen), and so
    # does the native SQLite transport (tests/transport/test_sqlite_backend.py watches its sweeper).
    assert capabilities.queue_expiry is (backend.is_rabbitmq or backend.name == "sqlite-native")


def test_delete_matches_the_capability(backend: Backend) -> None:
    transport = backend.open()
    queue = backend.reply_queue()
    transport.send(queue, envelope(1))
    transport.delete(queue)
    left = take_all(transport, queue)
    if transport.capabilities.delete_queue:
        assert left == []
    else:
        assert bodies(left) == [envelope(1).body], "delete must be a no-op where delete_queue is false"


_CHILD_READER = """
import sys
from tdm_messaging.destinations import reply_queue
from tdm_messaging.transport import open_transport
with open_transport(sys.argv[1]) as transport:
    with transport.read(reply_queue(sys.argv[2])) as batch:
        sys.stdout.write("\\n".join(e.body.decode() for e in batch.envelopes))
        batch.ack()
"""


def test_cross_process_matches_the_capability(cross_process_backend: Backend) -> None:
    backend = cross_process_backend
    transport = backend.open()
    assert transport.capabilities.cross_process
    docset = unique_docset()
    backend.track(reply_queue(docset))
    transport.send(reply_queue(docset), Envelope(b"from the parent", "text/plain"), confirm=True)
    child = subprocess.run(
        [sys.executable, "-c", _CHILD_READER, backend.url_with(), docset],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout == "from the parent"
    assert take_all(transport, reply_queue(docset)) == [], "the child's ack did not remove the message"


def test_close_then_use_raises_transport_closed(backend: Backend) -> None:
    transport = backend.open()
    queue = backend.reply_queue()
    transport.close()
    with pytest.raises(TransportClosedError):
        transport.send(queue, envelope(1))
    with pytest.raises(TransportClosedError):
        transport.read(queue)
    with pytest.raises(TransportClosedError):
        transport.declare(queue)
    with pytest.raises(TransportClosedError):
        transport.consume([queue], lambda d: None, prefetch=1, stop=threading.Event())


@pytest.mark.parametrize(
    ("call", "names"),
    [
        (lambda t, q: t.read(q, limit=0), "read limit"),
        (lambda t, q: t.read(q, limit=True), "read limit"),
        (lambda t, q: t.read(q.name), "Destination"),
        (lambda t, q: t.send(q, b"raw bytes"), "Envelope"),
        (lambda t, q: t.send("package/5", envelope(1)), "Destination"),
        (lambda t, q: t.declare(None), "Destination"),
        (lambda t, q: t.delete(q.name), "Destination"),
        (lambda t, q: t.consume([q], lambda d: None, prefetch=0, stop=threading.Event()), "prefetch"),
        (lambda t, q: t.consume([], lambda d: None, stop=threading.Event()), "destinations"),
        (lambda t, q: t.consume(q, lambda d: None, stop=threading.Event()), "destinations"),
        (lambda t, q: t.consume([q], None, stop=threading.Event()), "handler"),
        (lambda t, q: t.consume([q], lambda d: None, stop=True), "stop"),
        (lambda t, q: t.consume_batches([q], lambda d: None, prefetch=0, stop=threading.Event()), "prefetch"),
        (lambda t, q: t.consume_batches([], lambda d: None, stop=threading.Event()), "destinations"),
        (lambda t, q: t.consume_batches([q], None, stop=threading.Event()), "handler"),
    ],
    ids=[
        "limit-0",
        "limit-bool",
        "read-name",
        "send-bytes",
        "send-name",
        "declare-none",
        "delete-name",
        "prefetch-0",
        "no-destinations",
        "one-destination-not-a-list",
        "no-handler",
        "stop-not-an-event",
        "batches-prefetch-0",
        "batches-no-destinations",
        "batches-no-handler",
    ],
)
def test_a_broken_contract_rule_is_the_same_error_on_every_backend(
    backend: Backend, call: Callable[[Transport, Destination], object], names: str
) -> None:
    transport = backend.open()
    queue = backend.reply_queue()
    transport.send(queue, envelope(1))
    with pytest.raises(InvalidArgumentError, match=names):
        call(transport, queue)
    assert bodies(take_all(transport, queue)) == [b'{"n": 1}'], "a refused call must leave the queue as it was"


# -- settle and send_many -------------------------------------------------------------------------


def test_settle_acknowledges_the_dropped_and_gives_back_the_kept(backend: Backend) -> None:
    transport = backend.open()
    queue = backend.reply_queue()
    sent = [envelope(i) for i in range(5)]
    for e in sent:
        transport.send(queue, e, confirm=True)
    with transport.read(queue) as batch:
        assert bodies(batch.envelopes) == bodies(sent)
        batch.settle([3, 1])
    # Once settle returns, another "process" finds exactly the kept ones, as they were.
    got = take_all(backend.open(), queue)
    assert sorted(bodies(got)) == sorted(bodies([sent[1], sent[3]]))
    assert sorted(g.header("tdm-test-index") or "" for g in got) == ["1", "3"]
    assert take_all(transport, queue) == []


def test_settle_keeping_nothing_acks_and_keeping_everything_releases(backend: Backend) -> None:
    transport = backend.open()
    queue = backend.reply_queue()
    for i in range(2):
        transport.send(queue, envelope(i), confirm=True)
    with transport.read(queue) as batch:
        batch.settle([0, 1])
    with transport.read(queue) as batch:
        assert sorted(bodies(batch.envelopes)) == sorted(bodies([envelope(0), envelope(1)]))
        batch.settle([])
    assert take_all(backend.open(), queue) == []


def test_what_a_settle_kept_is_read_again_with_what_came_since(backend: Backend) -> None:
    """A poll's settle, then a packager's reply, then the next poll: it reads both, in any order."""
    transport, packager = backend.open(), backend.open()
    queue = backend.reply_queue()
    for i in range(3):
        transport.send(queue, envelope(i), confirm=True)
    with transport.read(queue) as batch:
        batch.settle([0])
    packager.send(queue, envelope(9), confirm=True)
    assert sorted(bodies(take_all(transport, queue))) == sorted(bodies([envelope(0), envelope(9)]))


def test_send_many_stores_each_message_where_it_was_sent(backend: Backend) -> None:
    backend.namespace = unique_namespace()  # docsets/package of this test's own
    transport = backend.open()
    queue = backend.reply_queue()
    backend.track(PACKAGE_REQUESTS)
    transport.send_many([(queue, envelope(0)), (PACKAGE_REQUESTS, envelope(1)), (queue, envelope(2))], confirm=True)
    transport.send_many([])
    other = backend.open()
    assert bodies(take_all(other, queue)) == bodies([envelope(0), envelope(2)])
    assert bodies(take_all(other, PACKAGE_REQUESTS)) == [envelope(1).body]


def test_confirmed_sends_to_a_reply_queue_nobody_declared_are_stored(backend: Backend) -> None:
    """No sender needs to declare a reply queue first: a confirmed send never loses a reply to a missing queue."""
    transport = backend.open()
    first, second, third = backend.reply_queue(), backend.reply_queue(), backend.reply_queue()
    transport.send(first, envelope(1), confirm=True)
    transport.send_many([(second, envelope(2)), (first, envelope(3))], confirm=True)
    transport.send(third, envelope(4))  # unconfirmed: stored by the time the next confirmed send returns
    transport.send(third, envelope(5), confirm=True)
    other = backend.open()
    assert bodies(take_all(other, first)) == bodies([envelope(1), envelope(3)])
    assert bodies(take_all(other, second)) == [envelope(2).body]
    assert sorted(bodies(take_all(other, third))) == sorted(bodies([envelope(4), envelope(5)]))


def test_a_reply_queue_deleted_since_the_last_send_is_created_again_by_the_next(backend: Backend) -> None:
    """As when RabbitMQ expires a reply queue between two replies: the next reply is not lost."""
    transport, other = backend.open(), backend.open()
    queue = backend.reply_queue()
    transport.send(queue, envelope(1), confirm=True)
    assert bodies(take_all(transport, queue)) == [envelope(1).body]
    other.delete(queue)
    transport.send_many([(queue, envelope(3))], confirm=True)
    transport.send(queue, envelope(4), confirm=True)
    assert bodies(take_all(other, queue)) == bodies([envelope(3), envelope(4)])


# -- the protocol over every backend, through the helpers -----------------------------------------


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_package_lifecycle_through_the_helpers(backend: Backend, content_type: str) -> None:
    backend.namespace = unique_namespace()
    from tdm_messaging.server import PackagingClient
    from tdm_messaging.status import State

    docset = unique_docset()
    backend.track(reply_queue(docset))
    client = PackagingClient(backend.open(), content_type=content_type)
    packager = ScriptedPackager(docset)
    assert client.status(docset).state is State.UNKNOWN

    with running_worker(backend.open(), packager, content_type=content_type):
        request = client.request_package(docset, docset_url(docset)).request
        assert request.docset_id == docset
        assert client.status(docset).state in {State.REQUESTED, State.ACCEPTED, State.IN_PROGRESS}

        working = poll_until(client, docset, State.IN_PROGRESS)
        assert working.request_id == request.request_id
        assert working.estimate_seconds == 45
        assert working.progress is not None
        assert (working.progress.items_done, working.progress.items_total) == (1, 2)
        assert client.status(docset) == working, "a second poll must see the same status"

        packager.gate.set()
        done = poll_until(client, docset, State.COMPLETE)
    assert done.request_id == request.request_id
    assert done.result is not None
    assert (done.result.archive_url, done.result.size_bytes) == (archive_url(docset), ARCHIVE_SIZE)
    assert client.status(docset) == done, "reading a status must not lose or change it"
    assert client.status(docset) == done
    assert len(packager.jobs) == 1
    assert packager.jobs[0].attempt == 1

    # A server restart: a new transport and client see the same status (the queue is the state).
    restarted = PackagingClient(backend.open(), content_type=content_type)
    assert restarted.status(docset) == done


def test_a_requested_docset_is_requested_not_unknown(backend: Backend) -> None:
    from tdm_messaging.server import PackagingClient
    from tdm_messaging.status import State

    docset = unique_docset()
    backend.track(reply_queue(docset))
    client = PackagingClient(backend.open())
    request = client.request_package(docset, docset_url(docset)).request
    for _ in range(3):
        status = PackagingClient(backend.open()).status(docset)
        assert status.state is State.REQUESTED
        assert status.request_id == request.request_id
    # The request itself went to the permanent queue; take it back out so no worker meets it later.
    _take_request(backend, docset)


def _take_request(backend: Backend, docset: str) -> None:
    """Remove this test's request from ``docsets/package`` (others' messages go back untouched)."""
    transport = backend.open()
    for _ in range(50):
        with transport.read(PACKAGE_REQUESTS) as batch:
            if any(docset.encode() in e.body or e.header("tdm-docset-id") == docset for e in batch.envelopes):
                mine = [e for e in batch.envelopes if docset.encode() in e.body or e.header("tdm-docset-id") == docset]
                others = [e for e in batch.envelopes if e not in mine]
                for e in others:
                    transport.send(PACKAGE_REQUESTS, e, confirm=True)
                batch.ack()
                return
            if not batch.envelopes:
                return


def test_two_pollers_at_once_never_lose_the_newest_status(backend: Backend) -> None:
    backend.namespace = unique_namespace()
    from tdm_messaging.server import PackagingClient
    from tdm_messaging.status import DocsetStatus, State

    docset = unique_docset()
    backend.track(reply_queue(docset))
    client = PackagingClient(backend.open())
    packager = ScriptedPackager(docset, gated=False)
    with running_worker(backend.open(), packager):
        client.request_package(docset, docset_url(docset))
        done = poll_until(client, docset, State.COMPLETE)

    pollers = [PackagingClient(backend.open()), PackagingClient(backend.open())]
    seen: list[list[DocsetStatus]] = [[], []]

    def poll(k: int) -> None:
        seen[k] = [pollers[k].status(docset) for _ in range(5)]

    run_together(poll, timeout=90)
    # A poll that catches the queue while the other poller holds it (read, not yet re-sent and acked)
    # sees less than everything - possibly UNKNOWN or an earlier state - but never a wrong result;
    # what must hold is that nothing is lost: afterwards the newest status is still there.
    # (Observed: a concurrent poll may see Complete without the request's copy, so requested_at is None.)
    for status in seen[0] + seen[1]:
        if status.state is State.COMPLETE:
            assert (status.request_id, status.result) == (done.request_id, done.result)
        else:
            assert status.result is None
    assert client.status(docset) == done
