"""The in-memory broker and transport: FIFO, at-least-once, lazy reply expiry, fault hooks, the contract."""

from __future__ import annotations

import threading
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tdm_messaging.destinations import DEAD_LETTER, DELETE_REQUESTS, PACKAGE_REQUESTS, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import (
    BrokerUnavailableError,
    ConfigurationError,
    MessagingError,
    SendNotConfirmedError,
    TransportClosedError,
)
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport
from tdm_messaging.transport.base import Delivery, Transport
from tdm_messaging.transport.expiry import EXPIRES_AT_HEADER


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def env(n: int) -> Envelope:
    return Envelope(str(n).encode(), "text/plain", {"n": str(n)})


def bodies(envelopes: object) -> list[bytes]:
    return [e.body for e in envelopes]  # type: ignore[attr-defined]


def test_is_a_transport_with_declared_capabilities() -> None:
    transport = InMemoryTransport(InMemoryBroker())
    assert isinstance(transport, Transport)
    caps = transport.capabilities
    assert caps.delete_queue and caps.confirms
    assert not caps.cross_process and not caps.nack_requeue and not caps.queue_expiry


def test_fifo_and_ack_removes() -> None:
    broker = InMemoryBroker()
    t = InMemoryTransport(broker)
    for i in range(5):
        t.send(PACKAGE_REQUESTS, env(i))
    with t.read(PACKAGE_REQUESTS) as batch:
        assert bodies(batch.envelopes) == [b"0", b"1", b"2", b"3", b"4"]
        assert batch.envelopes[0].headers == {"n": "0"}
        assert broker.unacked_count(PACKAGE_REQUESTS) == 5
        batch.ack()
    assert broker.messages(PACKAGE_REQUESTS) == []
    assert broker.unacked_count(PACKAGE_REQUESTS) == 0


def test_read_limit_and_release_gives_back_in_order() -> None:
    broker = InMemoryBroker()
    t = InMemoryTransport(broker)
    for i in range(4):
        t.send(PACKAGE_REQUESTS, env(i))
    with t.read(PACKAGE_REQUESTS, limit=2) as batch:
        assert bodies(batch.envelopes) == [b"0", b"1"]
        t.send(PACKAGE_REQUESTS, env(9))
        # Taken messages are invisible to another reader until released.
        with t.read(PACKAGE_REQUESTS) as other:
            assert bodies(other.envelopes) == [b"2", b"3", b"9"]
    assert bodies(broker.messages(PACKAGE_REQUESTS)) == [b"0", b"1", b"2", b"3", b"9"]


def test_read_of_missing_queue_is_empty_and_creates_nothing() -> None:
    broker = InMemoryBroker()
    t = InMemoryTransport(broker)
    with t.read(reply_queue("nothing-here")) as batch:
        assert list(batch.envelopes) == []
        batch.ack()
    assert broker.queue_names() == []


def test_close_gives_back_unacked_and_refuses_calls() -> None:
    broker = InMemoryBroker()
    t = InMemoryTransport(broker)
    t.send(PACKAGE_REQUESTS, env(1))
    batch = t.read(PACKAGE_REQUESTS)
    assert broker.messages(PACKAGE_REQUESTS) == []
    t.close()
    t.close()  # idempotent
    assert bodies(broker.messages(PACKAGE_REQUESTS)) == [b"1"]
    with pytest.raises(TransportClosedError):
        t.send(PACKAGE_REQUESTS, env(2))
    with pytest.raises(TransportClosedError):
        t.read(PACKAGE_REQUESTS)
    with pytest.raises(TransportClosedError):
        batch.ack()
    with pytest.raises(TransportClosedError):
        t.consume([PACKAGE_REQUESTS], lambda d: None, stop=threading.Event())
    batch.release()  # harmless after close
    assert bodies(broker.messages(PACKAGE_REQUESTS)) == [b"1"]


def test_declare_and_delete() -> None:
    broker = InMemoryBroker()
    t = InMemoryTransport(broker)
    t.declare(DEAD_LETTER)
    assert broker.queue_names() == ["docsets/dead-letter"]
    t.send(DEAD_LETTER, env(1))
    batch = t.read(DEAD_LETTER)
    t.delete(DEAD_LETTER)
    batch.release()  # the queue is gone, and what it held with it
    assert broker.queue_names() == []


def test_reply_expiry_is_lazy_and_uses_the_clock() -> None:
    broker = InMemoryBroker()
    clock = FakeClock()
    t = InMemoryTransport(broker, reply_ttl_seconds=60, clock=clock)
    queue = reply_queue(uuid.uuid4().hex)
    t.send(queue, env(1))
    stored = broker.messages(queue)[0]
    assert stored.headers[EXPIRES_AT_HEADER] == str(int((clock.now + 60) * 1000))
    clock.now += 30
    t.send(queue, env(2))
    with t.read(queue) as batch:
        # The stamp is the transport's business: readers never see it.
        assert all(EXPIRES_AT_HEADER not in e.headers for e in batch.envelopes)
        assert bodies(batch.envelopes) == [b"1", b"2"]
    clock.now += 31  # the first is past its time, the second is not
    with t.read(queue) as batch:
        assert bodies(batch.envelopes) == [b"2"]
    assert queue.name in broker.queue_names()  # nothing swept until it is touched
    clock.now += 1000
    with t.read(queue) as batch:
        assert list(batch.envelopes) == []
    assert broker.queue_names() == []


def test_permanent_queues_never_expire() -> None:
    broker = InMemoryBroker()
    clock = FakeClock()
    t = InMemoryTransport(broker, reply_ttl_seconds=1, clock=clock)
    t.send(PACKAGE_REQUESTS, env(1))
    clock.now += 10**6
    with t.read(PACKAGE_REQUESTS) as batch:
        assert bodies(batch.envelopes) == [b"1"]
    assert EXPIRES_AT_HEADER not in broker.messages(PACKAGE_REQUESTS)[0].headers


def test_bad_settings_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="reply_ttl_seconds"):
        InMemoryTransport(InMemoryBroker(), reply_ttl_seconds=0)


def test_fail_next_send_enqueues_nothing() -> None:
    broker = InMemoryBroker()
    t = InMemoryTransport(broker)
    broker.fail_next_send()
    with pytest.raises(SendNotConfirmedError):
        t.send(PACKAGE_REQUESTS, env(1), confirm=True)
    t.send(PACKAGE_REQUESTS, env(2))
    assert bodies(broker.messages(PACKAGE_REQUESTS)) == [b"2"]


def test_fail_next_ack_keeps_the_batch() -> None:
    broker = InMemoryBroker()
    t = InMemoryTransport(broker)
    t.send(PACKAGE_REQUESTS, env(1))
    broker.fail_next_ack()
    with pytest.raises(BrokerUnavailableError), t.read(PACKAGE_REQUESTS) as batch:
        batch.ack()
    assert bodies(broker.messages(PACKAGE_REQUESTS)) == [b"1"]


def test_disconnect_gives_back_and_fails_calls_until_reconnect() -> None:
    broker = InMemoryBroker()
    t = InMemoryTransport(broker)
    t.send(PACKAGE_REQUESTS, env(1))
    batch = t.read(PACKAGE_REQUESTS)
    broker.disconnect()
    assert bodies(broker.messages(PACKAGE_REQUESTS)) == [b"1"]
    for call in (lambda: t.send(PACKAGE_REQUESTS, env(2)), lambda: t.read(PACKAGE_REQUESTS), batch.ack):
        with pytest.raises(BrokerUnavailableError, match="reconnect"):
            call()
    broker.reconnect()
    with t.read(PACKAGE_REQUESTS) as again:
        assert bodies(again.envelopes) == [b"1"]


def run_consumer(t: InMemoryTransport, handler: object, stop: threading.Event, **kw: int) -> threading.Thread:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            t.consume([PACKAGE_REQUESTS, DELETE_REQUESTS], handler, stop=stop, **kw)  # type: ignore[arg-type]
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    return thread


def test_consume_delivers_from_each_queue_and_acks_after_handler() -> None:
    broker = InMemoryBroker()
    producer = InMemoryTransport(broker)
    consumer = InMemoryTransport(broker)
    seen: list[tuple[str, bytes]] = []
    done = threading.Event()
    stop = threading.Event()

    def handler(delivery: Delivery) -> None:
        # While the handler runs its message is unacknowledged; prefetch 1 holds back the rest.
        assert broker.unacked_count(delivery.destination) == 1
        seen.append((delivery.destination.name, delivery.envelope.body))
        if len(seen) == 4:
            done.set()

    thread = run_consumer(consumer, handler, stop)
    for i in range(3):
        producer.send(PACKAGE_REQUESTS, env(i))
    producer.send(DELETE_REQUESTS, env(7))
    assert done.wait(10)
    stop.set()
    thread.join(10)
    assert not thread.is_alive() and not thread.errors  # type: ignore[attr-defined]
    assert [b for q, b in seen if q == "docsets/package"] == [b"0", b"1", b"2"]
    assert ("docsets/delete", b"7") in seen
    assert broker.messages(PACKAGE_REQUESTS) == [] and broker.unacked_count(PACKAGE_REQUESTS) == 0


def test_consume_handler_error_leaves_message_and_propagates() -> None:
    broker = InMemoryBroker()
    t = InMemoryTransport(broker)
    t.send(PACKAGE_REQUESTS, env(1))
    t.send(PACKAGE_REQUESTS, env(2))

    def handler(delivery: Delivery) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        t.consume([PACKAGE_REQUESTS], handler, prefetch=2, stop=threading.Event())
    assert bodies(broker.messages(PACKAGE_REQUESTS)) == [b"1", b"2"]
    with t.read(PACKAGE_REQUESTS) as batch:
        assert len(batch.envelopes) == 2


def test_redelivered_flag_after_give_back() -> None:
    broker = InMemoryBroker()
    t = InMemoryTransport(broker)
    t.send(PACKAGE_REQUESTS, env(1))
    t.read(PACKAGE_REQUESTS).release()
    got: list[Delivery] = []
    stop = threading.Event()

    def handler(delivery: Delivery) -> None:
        got.append(delivery)
        stop.set()

    t.consume([PACKAGE_REQUESTS], handler, stop=stop)
    assert got[0].redelivered is True


def test_consumer_waits_through_an_outage() -> None:
    broker = InMemoryBroker()
    producer = InMemoryTransport(broker)
    consumer = InMemoryTransport(broker)
    got = threading.Event()
    stop = threading.Event()
    broker.disconnect()
    thread = run_consumer(consumer, lambda d: got.set(), stop)
    broker.reconnect()
    producer.send(PACKAGE_REQUESTS, env(1))
    assert got.wait(10)
    stop.set()
    thread.join(10)
    assert not thread.errors  # type: ignore[attr-defined]


def test_competing_consumers_share_without_duplicates() -> None:
    broker = InMemoryBroker()
    producer = InMemoryTransport(broker)
    total = 60
    lock = threading.Lock()
    seen: dict[str, list[bytes]] = {"a": [], "b": []}
    all_done = threading.Event()
    stop = threading.Event()

    # Each consumer's first message waits for the other's: sharing happens whatever the scheduling.
    both_busy = threading.Barrier(2, timeout=10)

    def handler_for(name: str) -> object:
        def handler(delivery: Delivery) -> None:
            with lock:
                seen[name].append(delivery.envelope.body)
                first = len(seen[name]) == 1
                if len(seen["a"]) + len(seen["b"]) == total:
                    all_done.set()
            if first:
                both_busy.wait()

        return handler

    threads = [run_consumer(InMemoryTransport(broker), handler_for(n), stop) for n in ("a", "b")]
    for i in range(total):
        producer.send(PACKAGE_REQUESTS, env(i))
    assert all_done.wait(20)
    stop.set()
    for thread in threads:
        thread.join(10)
    assert sorted(seen["a"] + seen["b"], key=int) == [str(i).encode() for i in range(total)]
    assert seen["a"] and seen["b"]


def test_brokers_are_independent() -> None:
    a, b = InMemoryBroker(), InMemoryBroker()
    InMemoryTransport(a).send(PACKAGE_REQUESTS, env(1))
    assert b.queue_names() == []


def test_errors_share_the_root() -> None:
    assert issubclass(TransportClosedError, MessagingError)


@given(st.lists(st.sampled_from(["send", "read-ack", "read-release", "read-fail-ack"]), max_size=30))
def test_nothing_lost_nothing_invented(ops: list[str]) -> None:
    """Law: whatever sequence of sends and reads, the queue holds exactly what was sent and not acked, in order."""
    broker = InMemoryBroker()
    t = InMemoryTransport(broker)
    expected: list[bytes] = []
    counter = 0
    for op in ops:
        if op == "send":
            t.send(PACKAGE_REQUESTS, env(counter))
            expected.append(str(counter).encode())
            counter += 1
        else:
            with t.read(PACKAGE_REQUESTS, limit=3) as batch:
                assert bodies(batch.envelopes) == expected[:3]
                if op == "read-ack":
                    batch.ack()
                    del expected[:3]
                elif op == "read-fail-ack":
                    broker.fail_next_ack()
                    with pytest.raises(BrokerUnavailableError):
                        batch.ack()
    assert bodies(broker.messages(PACKAGE_REQUESTS)) == expected
