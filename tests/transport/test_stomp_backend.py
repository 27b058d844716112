"""Tests of the STOMP backend: URL settings, frame rules, and behaviour on real RabbitMQ and ActiveMQ."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tdm_messaging.destinations import PACKAGE_REQUESTS, Destination, DestinationKind, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import (
    BrokerRefusedError,
    BrokerUnavailableError,
    ConfigurationError,
    LocalProtocolError,
    TransportClosedError,
)
from tdm_messaging.server import PackagingClient
from tdm_messaging.status import State
from tdm_messaging.transport.base import Delivery, Transport
from tdm_messaging.transport.stomp.dialect import Dialect
from tdm_messaging.transport.stomp.frames import (
    MARKER_HEADER,
    envelope_from_headers,
    explain_refusal,
    is_late_delivery,
    marker_headers,
    queue_headers,
    send_headers,
)
from tdm_messaging.transport.stomp.settings import ReplyExpiry, StompSettings, parse_stomp_url
from tests.conftest import broker_url, in_ci

pytest.importorskip("stomp")

from tdm_messaging.transport.stomp.backend import StompTransport
from tdm_messaging.transport.stomp.declarer import Declarer

# ---------------------------------------------------------------- settings (no broker)


def test_url_parses_every_setting() -> None:
    s = parse_stomp_url(
        "stomp://guest:s%40cret@broker.example:61614/?dialect=rabbitmq&reply_ttl=60&reply_expiry=policy"
        "&quorum=true&heartbeat_ms=0&vhost=tdm&read_timeout=2.5"
    )
    assert (s.host, s.port, s.username, s.password) == ("broker.example", 61614, "guest", "s@cret")
    assert s.dialect is Dialect.RABBITMQ and s.vhost == "tdm" and s.heartbeat_ms == 0
    assert s.reply_ttl == 60 and s.reply_expiry is ReplyExpiry.POLICY and s.quorum
    assert s.read_timeout == 2.5 and not s.tls
    assert "s@cret" not in repr(s)


def test_defaults_and_tls() -> None:
    s = parse_stomp_url("stomp+ssl://host/?ca_file=/etc/ca.pem")
    assert s.port == 61613 and s.dialect is None and s.vhost == "/" and s.tls and s.verify
    assert s.ca_file == "/etc/ca.pem"
    assert not parse_stomp_url("stomp+ssl://host/?verify=false").verify


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("stomp://h/?colour=blue", "valid parameters: ca_file"),
        ("stomp://h/?dialect=kafka", "rabbitmq or activemq"),
        ("stomp://h/?reply_ttl=soon", "whole number"),
        ("stomp://h/?reply_ttl=0", "1 s or more"),
        ("stomp://h/?quorum=maybe", "true or false"),
        ("stomp://h/?reply_expiry=never", "'arguments' or 'policy'"),
        ("stomp://h/?verify=false", "stomp+ssl"),
        ("stomp://h/vhost", "?vhost="),
        ("stomp://h:notaport/", "bad STOMP URL"),
        ("amqp://h/", "not a STOMP URL"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, needle: str) -> None:
    with pytest.raises(ConfigurationError, match=None) as info:
        parse_stomp_url(url)
    assert needle in str(info.value)


def test_bad_url_error_hides_the_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_stomp_url("stomp://guest:hunter2@h/?bogus=1")
    assert "hunter2" not in str(info.value) and "***" in str(info.value)


# ---------------------------------------------------------------- frame rules (no broker)

RABBIT = StompSettings(dialect=Dialect.RABBITMQ, reply_ttl=30)
docset_ids = st.from_regex(r"[A-Za-z0-9._~:@+-]{1,40}", fullmatch=True)


@given(docset_ids, docset_ids)
def test_declare_headers_depend_only_on_kind(a: str, b: str) -> None:
    # RabbitMQ refuses a re-declare with other arguments: every reply queue is declared alike.
    assert queue_headers(reply_queue(a), RABBIT, Dialect.RABBITMQ) == queue_headers(
        reply_queue(b), RABBIT, Dialect.RABBITMQ
    )


def test_declare_headers_per_kind_and_mode() -> None:
    reply = queue_headers(reply_queue("5"), RABBIT, Dialect.RABBITMQ)
    assert reply == {"durable": "true", "auto-delete": "false", "exclusive": "false", "x-expires": "30000"}
    policy = StompSettings(dialect=Dialect.RABBITMQ, reply_expiry=ReplyExpiry.POLICY)
    assert "x-expires" not in queue_headers(reply_queue("5"), policy, Dialect.RABBITMQ)
    assert "x-queue-type" not in queue_headers(PACKAGE_REQUESTS, RABBIT, Dialect.RABBITMQ)
    quorum = StompSettings(dialect=Dialect.RABBITMQ, quorum=True)
    assert queue_headers(PACKAGE_REQUESTS, quorum, Dialect.RABBITMQ)["x-queue-type"] == "quorum"
    assert "x-queue-type" not in queue_headers(reply_queue("5"), quorum, Dialect.RABBITMQ)
    assert queue_headers(reply_queue("5"), RABBIT, Dialect.ACTIVEMQ) == {}


def test_send_headers_activemq_reply_expires_absolute() -> None:
    amq = StompSettings(dialect=Dialect.ACTIVEMQ, reply_ttl=10)
    env = Envelope(b"x", "text/plain", {"tdm-type": "accepted"})
    h = send_headers(reply_queue("5"), env, amq, Dialect.ACTIVEMQ, persistent=True, now_ms=1_000)
    assert h == {"tdm-type": "accepted", "persistent": "true", "expires": "11000"}
    h = send_headers(PACKAGE_REQUESTS, env, amq, Dialect.ACTIVEMQ, persistent=False, now_ms=1_000)
    assert h == {"tdm-type": "accepted", "persistent": "true"}  # mixed persistence breaks FIFO there


def test_send_headers_rabbitmq_transient_omits_persistent() -> None:
    # "persistent:false" would re-declare the queue non-durable, which RabbitMQ refuses.
    h = send_headers(reply_queue("5"), Envelope(b"x"), RABBIT, Dialect.RABBITMQ, persistent=False, now_ms=0)
    assert "persistent" not in h and h["x-expires"] == "30000"


@pytest.mark.parametrize("name", ["destination", "Content-Type", "receipt", "x-expires", "persistent"])
def test_reserved_envelope_headers_are_refused(name: str) -> None:
    with pytest.raises(LocalProtocolError, match="reserved"):
        send_headers(
            PACKAGE_REQUESTS, Envelope(b"x", headers={name: "v"}), RABBIT, Dialect.RABBITMQ, persistent=True, now_ms=0
        )


@given(st.dictionaries(st.from_regex(r"tdm-[a-z]{1,10}", fullmatch=True), st.text(max_size=20), max_size=5))
def test_app_headers_survive_send_and_receive(app: dict[str, str]) -> None:
    sent = send_headers(
        reply_queue("7"), Envelope(b"b", headers=app), RABBIT, Dialect.RABBITMQ, persistent=True, now_ms=0
    )
    received = {**sent, "message-id": "m1", "subscription": "s", "ack": "a", "content-type": "text/plain"}
    env = envelope_from_headers(received, b"b")
    assert dict(env.headers) == app and env.content_type == "text/plain"


def test_markers_keep_their_birth_time_and_go_stale() -> None:
    h = marker_headers(reply_queue("5"), RABBIT, Dialect.RABBITMQ, marker="m", sent_at_ms=1_000, now_ms=31_000)
    assert h is not None and h["expiration"] == "30000" and h[MARKER_HEADER] == "m"
    assert marker_headers(reply_queue("5"), RABBIT, Dialect.RABBITMQ, marker="m", sent_at_ms=0, now_ms=60_000) is None


def test_refusal_explains_inequivalent_expiry() -> None:
    text = explain_refusal(
        "precondition_failed", "PRECONDITION_FAILED - inequivalent arg 'x-expires' for queue 'package/5'", RABBIT
    )
    assert "reply_ttl=30" in text and "reply_expiry=policy" in text


# ---------------------------------------------------------------- real brokers

BROKERS = ["rabbitmq-stomp", "activemq-stomp"]


def _url(name: str, **params: str) -> str:
    url = broker_url(name)
    extra = "&".join(f"{k}={v}" for k, v in params.items())
    if not extra:
        return url
    return url + ("&" if "?" in url else ("?" if url.endswith("/") else "/?")) + extra


@pytest.fixture(params=BROKERS)
def broker(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def transport(broker: str) -> Iterator[StompTransport]:
    t = StompTransport.from_url(_url(broker, read_timeout="10"))
    yield t
    t.close()


def _fresh() -> Destination:
    return reply_queue("test-" + uuid.uuid4().hex)


def _bodies(t: Transport, d: Destination, *, ack: bool = False) -> list[bytes]:
    with t.read(d) as batch:
        bodies = [e.body for e in batch.envelopes]
        if ack:
            batch.ack()
    return bodies


def _kill_socket(t: StompTransport) -> None:
    """Break the connection under stomp.py, as a network failure would."""
    t._conn.transport.socket.shutdown(socket.SHUT_RDWR)


@pytest.mark.broker
def test_dialect_is_detected_from_server_header(broker: str) -> None:
    url = broker_url(broker).split("?")[0]
    with StompTransport.from_url(url) as opened:
        assert isinstance(opened, StompTransport)
        t = opened
        expected = Dialect.RABBITMQ if broker.startswith("rabbitmq") else Dialect.ACTIVEMQ
        assert t.dialect is expected and t.capabilities.nack_requeue is (expected is Dialect.RABBITMQ)
        assert not t.capabilities.delete_queue


@pytest.mark.broker
def test_round_trip_keeps_body_headers_and_content_type(transport: StompTransport) -> None:
    d = _fresh()
    sent = Envelope(b'{"a": "\xc3\xa9"}', "application/json; charset=utf-8", {"tdm-type": "accepted", "tdm-x": "a:b c"})
    transport.send(d, sent, confirm=True)
    transport.send(d, Envelope(b"Accepted. 45 seconds", "text/plain"), persistent=False, confirm=True)
    with transport.read(d) as batch:
        got = list(batch.envelopes)
        batch.ack()
    assert got == [sent, Envelope(b"Accepted. 45 seconds", "text/plain")]
    assert _bodies(transport, d) == []


@pytest.mark.broker
def test_read_of_empty_queue_returns_nothing(transport: StompTransport) -> None:
    assert _bodies(transport, _fresh()) == []


@pytest.mark.broker
def test_read_returns_exactly_what_was_there_in_order(transport: StompTransport) -> None:
    d = _fresh()
    for i in range(5):
        transport.send(d, Envelope(str(i).encode(), "text/plain"), confirm=i == 4)
    assert _bodies(transport, d, ack=True) == [b"0", b"1", b"2", b"3", b"4"]
    transport.send(d, Envelope(b"5", "text/plain"), confirm=True)
    assert _bodies(transport, d) == [b"5"]


@pytest.mark.broker
def test_read_respects_limit_and_loses_nothing(transport: StompTransport) -> None:
    d = _fresh()
    for i in range(4):
        transport.send(d, Envelope(str(i).encode(), "text/plain"), confirm=True)
    with transport.read(d, limit=2) as batch:
        assert [e.body for e in batch.envelopes] == [b"0", b"1"]
    assert _bodies(transport, d) == [b"0", b"1", b"2", b"3"]


@pytest.mark.broker
def test_unacked_batch_goes_back_to_the_queue(transport: StompTransport, broker: str) -> None:
    d = _fresh()
    transport.send(d, Envelope(b"keep me", "text/plain"), confirm=True)
    for _ in range(3):
        assert _bodies(transport, d) == [b"keep me"]
    with StompTransport.from_url(broker_url(broker)) as other:
        assert _bodies(other, d, ack=True) == [b"keep me"]
    assert _bodies(transport, d) == []


@pytest.mark.broker
def test_two_concurrent_readers_lose_nothing(broker: str) -> None:
    d = _fresh()
    expected = {str(i).encode() for i in range(20)}
    with StompTransport.from_url(broker_url(broker)) as seed:
        for body in sorted(expected):
            seed.send(d, Envelope(body, "text/plain"), confirm=True)
    errors: list[BaseException] = []

    def poller() -> None:
        try:
            with StompTransport.from_url(broker_url(broker)) as t:
                for _ in range(5):
                    with t.read(d) as batch:  # the server's poll: re-send first, then ack
                        for e in batch.envelopes:
                            t.send(d, e, confirm=True)
                        batch.ack()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=poller) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    with StompTransport.from_url(broker_url(broker)) as t:
        assert sorted(_bodies(t, d)) == sorted(expected)


@pytest.mark.broker
def test_consume_acks_after_handler_and_handler_may_send(transport: StompTransport) -> None:
    work, out = _fresh(), _fresh()  # reply-kind queues expire, so tests leave nothing behind
    for i in range(3):
        transport.send(work, Envelope(f"job {i}".encode(), "text/plain"), confirm=True)
    stop = threading.Event()
    seen: list[bytes] = []

    def handler(delivery: Delivery) -> None:
        seen.append(delivery.envelope.body)
        transport.send(out, Envelope(b"done " + delivery.envelope.body, "text/plain"))
        if len(seen) == 3:
            stop.set()

    transport.consume([work], handler, prefetch=2, stop=stop)
    assert seen == [b"job 0", b"job 1", b"job 2"]
    assert _bodies(transport, work) == []
    assert _bodies(transport, out) == [b"done job 0", b"done job 1", b"done job 2"]


@pytest.mark.broker
def test_handler_error_leaves_message_in_queue(transport: StompTransport) -> None:
    work = _fresh()
    transport.send(work, Envelope(b"poison", "text/plain"), confirm=True)

    def handler(delivery: Delivery) -> None:
        raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError, match="handler failed"):
        transport.consume([work], handler, stop=threading.Event())
    transport.close()
    # RabbitMQ requeues unacked deliveries when the connection closes; ActiveMQ on unsubscribe.
    with StompTransport.from_url(_url_of(transport)) as other:
        assert _bodies(other, work, ack=True) == [b"poison"]


def _url_of(t: StompTransport) -> str:
    s = t.settings
    auth = f"{s.username}:{s.password}@" if s.username else ""
    return f"stomp://{auth}{s.host}:{s.port}/?dialect={t.dialect.value}"


@pytest.mark.broker
def test_connection_killed_mid_handler_means_redelivery(transport: StompTransport) -> None:
    work = _fresh()
    transport.send(work, Envelope(b"job", "text/plain"), confirm=True)
    stop = threading.Event()
    deliveries: list[Delivery] = []

    def handler(delivery: Delivery) -> None:
        deliveries.append(delivery)
        if len(deliveries) == 1:
            _kill_socket(transport)  # the ack that follows cannot reach the broker
        else:
            stop.set()

    transport.consume([work], handler, stop=stop)
    assert [d.envelope.body for d in deliveries] == [b"job", b"job"]
    assert deliveries[1].redelivered
    assert _bodies(transport, work) == []


@pytest.mark.broker
def test_consume_resumes_after_forced_disconnect(transport: StompTransport, broker: str) -> None:
    work = _fresh()
    stop = threading.Event()
    got: list[bytes] = []
    first = threading.Event()

    def handler(delivery: Delivery) -> None:
        got.append(delivery.envelope.body)
        first.set()
        if delivery.envelope.body == b"after":
            stop.set()

    consumer = threading.Thread(target=transport.consume, args=([work], handler), kwargs={"stop": stop})
    consumer.start()
    with StompTransport.from_url(broker_url(broker)) as producer:
        producer.send(work, Envelope(b"before", "text/plain"), confirm=True)
        assert first.wait(30)
        _kill_socket(transport)
        producer.send(work, Envelope(b"after", "text/plain"), confirm=True)
        consumer.join(60)
        stop.set()
    # The kill can land between the handler's return and its ACK: then "before" comes again
    # (at-least-once), never lost; "after" is delivered on the new connection.
    assert got[0] == b"before" and got[-1] == b"after"
    assert got[1:-1] in ([], [b"before"]), got
    assert _bodies(transport, work) == []


@pytest.mark.broker
def test_closed_transport_refuses_use(transport: StompTransport) -> None:
    transport.close()
    transport.close()
    with pytest.raises(TransportClosedError):
        transport.send(_fresh(), Envelope(b"x"))


def test_connection_refused_names_address_not_password() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BrokerUnavailableError) as info:
        StompTransport.from_url(f"stomp://guest:hunter2@127.0.0.1:{port}/?connect_timeout=2")
    assert f"127.0.0.1:{port}" in str(info.value) and "hunter2" not in str(info.value)
    assert "cannot connect to the STOMP broker" in str(info.value) and "rabbitmq_stomp" in str(info.value)
    assert "scripts/" not in str(info.value), "an installed library must not point at a script of this repository"


# ---------------------------------------------------------------- RabbitMQ only


@pytest.mark.broker
def test_rabbitmq_bad_password_is_refused() -> None:
    url = broker_url("rabbitmq-stomp").replace("guest:guest@", "guest:wrong@")
    with pytest.raises(BrokerRefusedError, match="vhost"):
        StompTransport.from_url(url)


@pytest.mark.broker
def test_rabbitmq_inequivalent_expiry_is_explained(caplog: pytest.LogCaptureFixture) -> None:
    """A confirmed send to a reply queue that exists with another expiry: RabbitMQ refuses the
    declare it carries (the refusal is logged, explained) and closes the connection; the send goes
    again as it is (/amq/queue) on a new connection, and later ones go that way at once."""
    d = _fresh()
    with StompTransport.from_url(_url("rabbitmq-stomp", reply_ttl="60")) as first:
        first.send(d, Envelope(b"x"), confirm=True)
    with StompTransport.from_url(_url("rabbitmq-stomp", reply_ttl="120")) as second:
        with caplog.at_level(logging.WARNING):
            second.send(d, Envelope(b"y"), confirm=True)
        explained = [r.getMessage() for r in caplog.records if "inequivalent arg 'x-expires'" in r.getMessage()]
        assert explained and all("reply_ttl=120" in text for text in explained)
        assert second.connection_count == 2  # the broker closed the refused connection
        before = second.connection_count
        second.send(d, Envelope(b"z"), confirm=True)
        second.send(Destination(f"test-{uuid.uuid4().hex}", DestinationKind.PERMANENT), Envelope(b"p"), confirm=True)
        assert second.connection_count == before
    with StompTransport.from_url(_url("rabbitmq-stomp", reply_ttl="60")) as first:
        assert _bodies(first, d, ack=True) == [b"x", b"y", b"z"]


@pytest.mark.broker
def test_rabbitmq_declare_refusal_leaves_the_connection_alone_and_routes_around() -> None:
    d = _fresh()
    with StompTransport.from_url(_url("rabbitmq-stomp", reply_ttl="60")) as first:
        first.declare(d)
    with StompTransport.from_url(_url("rabbitmq-stomp", reply_ttl="120")) as second:
        with pytest.raises(BrokerRefusedError, match="inequivalent arg 'x-expires'"):
            second.declare(d)
        second.send(d, Envelope(b"after"), confirm=True)
        with second.read(d) as batch:  # read by /amq/queue too
            assert [e.body for e in batch.envelopes] == [b"after"]
            batch.ack()
        assert second.connection_count == 1, "the refusal must not have closed the transport's connection"


@pytest.mark.broker
def test_rabbitmq_declare_holds_nothing_and_keeps_the_connection(transport: StompTransport, broker: str) -> None:
    d = _fresh()
    transport.send(d, Envelope(b"waiting"), confirm=True)
    before = transport.connection_count
    for _ in range(3):
        transport.declare(d)
    with StompTransport.from_url(broker_url(broker)) as other:  # at once, from another connection
        assert _bodies(other, d) == [b"waiting"]
    assert _bodies(transport, d, ack=True) == [b"waiting"]
    assert transport.connection_count == before


@pytest.mark.broker
def test_rabbitmq_expired_reply_queue_reads_empty_and_takes_sends_again() -> None:
    d = _fresh()
    with StompTransport.from_url(_url("rabbitmq-stomp", reply_ttl="1")) as t:
        t.send(d, Envelope(b"old"), confirm=True)
        deadline = time.monotonic() + 30
        while d.name in _rabbit_queues() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert d.name not in _rabbit_queues()
        assert _bodies(t, d) == []  # not NOT_FOUND: the queue is declared again, empty
        t.send(d, Envelope(b"new"), confirm=True)
        assert _bodies(t, d, ack=True) == [b"new"]


def _rabbit_queues() -> set[str]:
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name"], capture_output=True, text=True, check=True)
    return {line.strip() for line in out.stdout.splitlines()[1:]}


@pytest.mark.broker
@pytest.mark.slow
def test_rabbitmq_reply_queue_expires() -> None:
    url = _url("rabbitmq-stomp", reply_ttl="2")
    d = _fresh()
    with StompTransport.from_url(url) as t:
        t.declare(d)
        t.send(d, Envelope(b"x"), confirm=True)
    assert d.name in _rabbit_queues()
    deadline = time.monotonic() + 30
    while d.name in _rabbit_queues() and time.monotonic() < deadline:
        time.sleep(1)
    assert d.name not in _rabbit_queues()


# ---------------------------------------------------------------- ActiveMQ only


@pytest.mark.broker
def test_activemq_reply_messages_expire() -> None:
    d = _fresh()
    with StompTransport.from_url(_url("activemq-stomp", reply_ttl="1")) as t:
        t.send(d, Envelope(b"old"), confirm=True)
        time.sleep(1.5)  # let the message's own expiry pass (not a timing assertion)
        t.send(Destination(d.name, DestinationKind.PERMANENT), Envelope(b"no expiry"), confirm=True)
        assert _bodies(t, d) == [b"no expiry"]


@pytest.mark.broker
@pytest.mark.slow
def test_activemq_gc_policy_collects_idle_reply_queue() -> None:
    log_file = Path(os.environ.get("TDM_ACTIVEMQ_DATA", "/var/lib/tdm-activemq")) / "activemq.log"
    if not log_file.exists():
        why = f"no ActiveMQ log at {log_file} (set TDM_ACTIVEMQ_DATA to the broker's data directory)"
        if in_ci():
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    d = _fresh()
    with StompTransport.from_url(_url("activemq-stomp", reply_ttl="1")) as t:
        t.send(d, Envelope(b"x"), confirm=True)
    # "package/<id>" is stored as "package.<id>" (destinationPathSeparatorPlugin), matched by "package.>".
    needle = d.name.replace("/", ".") + " Inactive for longer than"
    deadline = time.monotonic() + 40
    while needle not in log_file.read_text(errors="replace") and time.monotonic() < deadline:
        time.sleep(1)
    assert needle in log_file.read_text(errors="replace")


# ---------------------------------------------------------------- the transactional read (both brokers)


def test_late_delivery_error_is_recognised() -> None:
    assert is_late_delivery("Subscription not found", None)
    assert not is_late_delivery("Subscription not found", "tdm-commit-1")  # an answer to our frame
    assert not is_late_delivery("PRECONDITION_FAILED", None)


@pytest.mark.broker
def test_plain_polls_never_reconnect(transport: StompTransport, broker: str) -> None:
    client = PackagingClient(transport)
    docset = "test-" + uuid.uuid4().hex
    client.request_package(docset, f"http://server/api/docsets/{docset}")
    before = transport.connection_count
    statuses = [client.status(docset) for _ in range(20)]
    assert {s.state for s in statuses} == {State.REQUESTED}
    assert transport.connection_count == before
    with StompTransport.from_url(broker_url(broker)) as other:  # nothing is held back from another process
        assert PackagingClient(other).status(docset) == statuses[-1]


@pytest.mark.broker
def test_resend_and_ack_path_never_reconnects(transport: StompTransport) -> None:
    d = _fresh()
    before = transport.connection_count
    for i in range(10):
        transport.send(d, Envelope(f"new {i}".encode(), "text/plain"), confirm=True)
        with transport.read(d) as batch:  # the server's poll when the status changed
            assert [e.body for e in batch.envelopes] == [f"kept {i - 1}".encode(), f"new {i}".encode()][i == 0 :]
            transport.send(d, Envelope(f"kept {i}".encode(), "text/plain"), confirm=True)
            batch.ack()
    assert transport.connection_count == before
    assert _bodies(transport, d) == [b"kept 9"]


@pytest.mark.broker
def test_release_gives_back_at_once_without_reconnect(transport: StompTransport, broker: str) -> None:
    d = _fresh()
    for body in (b"a", b"b"):
        transport.send(d, Envelope(body, "text/plain"), confirm=True)
    before = transport.connection_count
    for _ in range(3):
        assert _bodies(transport, d) == [b"a", b"b"]
    assert transport.connection_count == before
    with StompTransport.from_url(broker_url(broker)) as other:  # while the first is still connected
        assert _bodies(other, d) == [b"a", b"b"]


@pytest.mark.broker
def test_deliveries_after_the_marker_are_not_stuck(transport: StompTransport, broker: str) -> None:
    d = _fresh()
    for i in range(4):
        transport.send(d, Envelope(str(i).encode(), "text/plain"), confirm=True)
    with transport.read(d, limit=1) as batch:  # prefetch 2: one more comes, and cannot be acked
        assert [e.body for e in batch.envelopes] == [b"0"]
        batch.ack()
    with StompTransport.from_url(broker_url(broker)) as other:
        assert _bodies(other, d) == [b"1", b"2", b"3"]


# A poll in a child process that dies (no DISCONNECT, socket closed by the kernel) at a step.
_CRASHING_POLL = """
import os, sys
from tdm_messaging.destinations import reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.transport.stomp import backend as stomp_backend
from tdm_messaging.transport.stomp.backend import StompTransport
from tdm_messaging.transport.stomp.declarer import Declarer
url, docset, step = sys.argv[1:4]
t = StompTransport.from_url(url)
d = reply_queue(docset)
batch = t.read(d)
assert [e.body for e in batch.envelopes] == [b"accepted", b"progress"], batch.envelopes
if step == "after-read":
    os._exit(0)
t.send(d, Envelope(b"compacted", "text/plain"), confirm=True)
if step == "after-resend":
    os._exit(0)
batch.ack()
if step == "after-ack":
    os._exit(0)
batch.release()
t.close()
"""

_SURVIVORS = {
    "after-read": [b"accepted", b"progress"],
    "after-resend": [b"accepted", b"compacted", b"progress"],
    "after-ack": [b"compacted"],
    "done": [b"compacted"],
}


@pytest.mark.broker
@pytest.mark.parametrize("step", list(_SURVIVORS))
def test_server_crash_at_any_step_of_a_poll_loses_nothing(broker: str, step: str) -> None:
    docset = "test-" + uuid.uuid4().hex
    d = reply_queue(docset)
    with StompTransport.from_url(broker_url(broker)) as t:
        t.send(d, Envelope(b"accepted", "text/plain"), confirm=True)
        t.send(d, Envelope(b"progress", "text/plain"), confirm=True)
        child = subprocess.run(
            [sys.executable, "-c", _CRASHING_POLL, broker_url(broker), docset, step],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert child.returncode == 0, child.stderr
        # Queues are FIFO per arrival, and given-back messages keep their place only on RabbitMQ.
        deadline = time.monotonic() + 10
        seen = sorted(_bodies(t, d))
        while seen != _SURVIVORS[step] and time.monotonic() < deadline:
            time.sleep(0.2)  # the broker notices the dead connection asynchronously
            seen = sorted(_bodies(t, d))
        assert seen == _SURVIVORS[step]


@pytest.mark.broker
def test_a_late_delivery_is_given_back_without_waiting_for_the_next_call() -> None:
    """A delivery RabbitMQ pushes to a finished read is held on the connection; an idle transport
    must not hide it from other readers until its next call, so it is given back at once, by a
    NACK of every outstanding delivery through the anchor subscription, not by a reconnect.
    (RabbitMQ only: ActiveMQ holds no deliveries of a cancelled subscription.)"""
    d = _fresh()
    with StompTransport.from_url(broker_url("rabbitmq-stomp")) as transport:
        transport.send_many([(d, Envelope(b"one")), (d, Envelope(b"two"))], confirm=True)
        link = transport._link
        headers = {**queue_headers(d, transport.settings, Dialect.RABBITMQ), "prefetch-count": "2"}
        wire = "/queue/" + d.name.replace("/", "%2F")
        with link.lock:
            link.held.add("setting up")  # no give-back until both deliveries are held
        # A subscription no read owns: its deliveries reach no inbox, as a finished read's late ones.
        link.transmit(
            lambda conn: conn.subscribe(wire, id="ended", headers=headers, ack="client-individual"), "subscribe"
        )
        deadline = time.monotonic() + 10
        while link.stuck < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert link.stuck == 2
        receipt = f"r-{uuid.uuid4().hex}"
        link.transmit(
            lambda conn: conn.unsubscribe("ended", headers={"receipt": receipt}), "unsubscribe", receipt=receipt
        )
        with link.lock:
            link.held.discard("setting up")
        link.return_stuck()
        assert link.given_back == 2 and link.stuck == 0
        with StompTransport.from_url(broker_url("rabbitmq-stomp")) as other:  # at once, from another connection
            assert _bodies(other, d) == [b"one", b"two"]
        assert transport.connection_count == 1, "given back without a reconnect"


@pytest.mark.broker
def test_rabbitmq_declare_within_the_lease_opens_no_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = Declarer.declare

    def counting(
        self: Declarer, wire: str, headers: dict[str, str], *, renew: bool = True, persistent: bool = False
    ) -> None:
        calls.append(wire)
        real(self, wire, headers, renew=renew, persistent=persistent)

    monkeypatch.setattr(Declarer, "declare", counting)
    d = _fresh()
    with StompTransport.from_url(_url("rabbitmq-stomp", reply_ttl="600")) as t:
        t.declare(d)
        t.declare(d)  # the broker confirmed a declare less than reply_ttl / 2 ago: nothing to do
        t.send(d, Envelope(b"x"), confirm=True)
        t.declare(d)
        assert len(calls) == 1
        t.declare(PACKAGE_REQUESTS)  # permanent queues: declared every time they are asked for
        t.declare(PACKAGE_REQUESTS)
        assert len(calls) == 3
        assert t.declare_connection_count == 1, "one side connection for every declare"
        assert _bodies(t, d, ack=True) == [b"x"]


@pytest.mark.broker
def test_rabbitmq_a_refused_declare_is_never_skipped() -> None:
    d = _fresh()
    with StompTransport.from_url(_url("rabbitmq-stomp", reply_ttl="60")) as first:
        first.declare(d)
    with StompTransport.from_url(_url("rabbitmq-stomp", reply_ttl="120")) as second:
        for _ in range(2):
            with pytest.raises(BrokerRefusedError, match="inequivalent arg 'x-expires'"):
                second.declare(d)


@pytest.mark.broker
def test_unconfirmed_sends_leave_no_receipt_record(transport: StompTransport) -> None:
    d = _fresh()
    for index in range(5):
        transport.send(d, Envelope(str(index).encode(), headers={"tdm-n": str(index)}))
    assert transport._link.receipts == {}
    received = _bodies(transport, d, ack=True)
    assert received == [b"0", b"1", b"2", b"3", b"4"]


@pytest.mark.broker
def test_written_send_frames_keep_escaped_headers_and_odd_bodies(transport: StompTransport) -> None:
    """send() writes the SEND frame's bytes itself (stomp_frames.send_frame): header escaping,
    content-length and framing must hold on the real brokers, unconfirmed and confirmed alike."""
    d = _fresh()
    tricky = {
        "tdm-colon": "http://server/api/docsets/5?fmt=meta,txt",
        "tdm-backslash": "C:\\temp\\n",
        "tdm-newline": "one\ntwo",
        "tdm-empty": "",
        "tdm-unicode": "é ünï ☃",
    }
    sent = [
        Envelope(b'{"n": 0}', "application/json", tricky),
        Envelope(b"nul\x00inside\x00", "application/octet-stream", {"tdm-n": "1"}),
        Envelope(b"", "text/plain", {"tdm-n": "2"}),
        Envelope("Complete: é".encode(), "text/plain; charset=utf-8", {"tdm-n": "3"}),
    ]
    for envelope in sent[:3]:
        transport.send(d, envelope)
    transport.send(d, sent[3], confirm=True)
    assert transport._link.receipts == {}
    with transport.read(d) as batch:
        got = list(batch.envelopes)
        batch.ack()
    assert got == sent


@pytest.mark.broker
def test_a_declare_never_hides_a_message_from_a_reader(transport: StompTransport, broker: str) -> None:
    """RabbitMQ declares by a probe SEND on a side connection: a SUBSCRIBE there took the queue's
    messages for a moment, and a poll in that moment read an empty queue (UNKNOWN)."""
    d = _fresh()
    transport.send(d, Envelope(b"kept", "text/plain"), confirm=True)
    stop = threading.Event()
    declares = 0

    def keep_declaring() -> None:
        nonlocal declares
        while not stop.is_set():
            with StompTransport.from_url(broker_url(broker)) as other:  # new: no lease, so it declares
                other.declare(d)
            declares += 1

    thread = threading.Thread(target=keep_declaring)
    thread.start()
    try:
        for _ in range(60):
            with transport.read(d) as batch:
                assert [e.body for e in batch.envelopes] == [b"kept"]
                batch.release()
    finally:
        stop.set()
        thread.join(timeout=30)
    assert declares > 0
    assert _bodies(transport, d) == [b"kept"]  # and the probes left nothing behind
