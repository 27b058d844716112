"""The kombu backend against real RabbitMQ (AMQP), Redis (db 15), SQLite files and isolated memory brokers."""

from __future__ import annotations

import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import amqp.exceptions
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tdm_messaging.destinations import Destination, DestinationKind, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import (
    BrokerRefusedError,
    BrokerUnavailableError,
    ConfigurationError,
    MessagingError,
    SendNotConfirmedError,
    TransportClosedError,
)
from tdm_messaging.transport.base import Delivery
from tdm_messaging.transport.expiry import EXPIRES_AT_HEADER
from tdm_messaging.transport.kombu import backend as kombu_backend
from tdm_messaging.transport.kombu.backend import KombuTransport
from tdm_messaging.transport.kombu.settings import AmqpTls, Backend, parse_kombu_url
from tdm_messaging.transport.urls import redact_url
from tests.conftest import broker_url
from tests.faults.proxy import TcpProxy

BACKENDS = ["memory", "sqlite", "redis", "amqp"]
JSON_BODY = b'{"type": "accepted", "estimate_seconds": 45, "note": "caf\xc3\xa9"}'
TEXT_BODY = b"Accepted. 45 seconds\r\n  trailing spaces kept  "


def _url(kind: str, tmp_path: Path, params: str = "") -> str:
    if kind == "memory":
        base = "memory://"
    elif kind == "sqlite":
        base = f"sqla+sqlite:///{tmp_path}/broker.db"
    elif kind == "redis":
        base = broker_url("redis")
    else:
        base = broker_url("rabbitmq-amqp")
    if not params:
        return base
    return base + ("&" if "?" in base else "?") + params


@pytest.fixture(params=BACKENDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def transport(kind: str, tmp_path: Path) -> Iterator[KombuTransport]:
    t = KombuTransport.from_url(_url(kind, tmp_path))
    yield t
    t.close()


def _work_queue() -> Destination:
    return Destination(f"test/work-{uuid.uuid4().hex}", DestinationKind.PERMANENT)


def _reply() -> Destination:
    return reply_queue(f"kombu-{uuid.uuid4().hex}")


def _consume_until(t: KombuTransport, dests: list[Destination], handler: Any, n: int, prefetch: int = 1) -> None:
    """Consume until the handler saw ``n`` deliveries (or give up after a generous deadline)."""
    stop = threading.Event()
    seen = 0

    def counting(delivery: Delivery) -> None:
        nonlocal seen
        handler(delivery)
        seen += 1
        if seen >= n:
            stop.set()

    timer = threading.Timer(60, stop.set)
    timer.start()
    try:
        t.consume(dests, counting, prefetch=prefetch, stop=stop)
    finally:
        timer.cancel()


# ------------------------------------------------------------------ settings (no broker)
def test_settings_strip_our_parameters_and_keep_kombu_ones() -> None:
    s = parse_kombu_url("rediss://:pw@host:6380/0?reply_ttl=2.5&ssl_cert_reqs=required&heartbeat=0")
    assert s.url == "rediss://:pw@host:6380/0?ssl_cert_reqs=required"
    assert s.reply_ttl == 2.5
    assert s.reply_ttl_ms == 2500
    assert s.heartbeat == 0
    assert s.backend is Backend.REDIS
    assert "pw" not in s.display_url


def test_settings_defaults_and_quorum() -> None:
    s = parse_kombu_url("amqp://guest:guest@127.0.0.1:5672//?quorum=true&dialect=plain")
    assert s.quorum is True
    assert s.url == "amqp://guest:guest@127.0.0.1:5672//"
    assert s.reply_ttl == 86400
    assert parse_kombu_url("sqla+sqlite:////tmp/x.db").url == "sqla+sqlite:////tmp/x.db"


def test_amqps_tls_parameters_become_py_amqp_ssl_options() -> None:
    s = parse_kombu_url(
        "amqps://u:pw@broker:5671//?ssl_ca_certs=/etc/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem&heartbeat=0"
    )
    assert s.url == "amqps://u:pw@broker:5671//"  # nothing TLS left for kombu's URL parser
    assert s.tls == AmqpTls(ca_certs="/etc/ca.pem", certfile="/c.pem", keyfile="/k.pem")
    assert s.tls.kombu_ssl() == {
        "cert_reqs": ssl.CERT_REQUIRED,
        "server_hostname": None,  # kombu fills in the URL's host: the host name is checked
        "ca_certs": "/etc/ca.pem",
        "certfile": "/c.pem",
        "keyfile": "/k.pem",
    }


def test_amqps_verifies_by_default_and_accepts_cert_reqs_names() -> None:
    default = parse_kombu_url("amqps://h//").tls
    assert default is not None and default.cert_reqs == ssl.CERT_REQUIRED and default.ca_certs is None
    assert parse_kombu_url("amqp://h//").tls is None
    for raw, expected in [
        ("CERT_REQUIRED", ssl.CERT_REQUIRED),
        ("optional", ssl.CERT_OPTIONAL),
        ("none", ssl.CERT_NONE),
    ]:
        tls = parse_kombu_url(f"amqps://h//?ssl_cert_reqs={raw}").tls
        assert tls is not None and tls.cert_reqs == expected
    unverified = parse_kombu_url("amqps://h//?ssl_cert_reqs=none").tls
    assert unverified is not None and "server_hostname" not in unverified.kombu_ssl()


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("amqp://h//?ssl_ca_certs=/ca.pem", "amqps://"),
        ("amqps://h//?ssl_cert_reqs=sometimes", "ssl_cert_reqs='sometimes'"),
        ("amqps://h//?ssl_ca_certs=", "ssl_ca_certs is empty"),
        ("amqps://h//?ssl_keyfile=/k.pem", "ssl_keyfile needs ssl_certfile"),
    ],
)
def test_bad_amqp_tls_parameters(url: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_kombu_url(url)
    assert fragment in str(info.value)


def test_only_an_inequivalent_arguments_406_is_a_refusal() -> None:
    t = KombuTransport.from_url(f"memory://refusal-{uuid.uuid4().hex}")
    try:
        timed_out = amqp.exceptions.PreconditionFailed(
            "PRECONDITION_FAILED - delivery acknowledgement on channel 2 timed out. Timeout value used: 1000 ms."
        )
        with pytest.raises(BrokerUnavailableError) as lost, t._driver("sending"):
            raise timed_out
        assert lost.value.__cause__ is timed_out
        assert "consumer_timeout" in str(lost.value)
        inequivalent = amqp.exceptions.PreconditionFailed(
            "PRECONDITION_FAILED - inequivalent arg 'x-expires' for queue 'package/1' in vhost '/'"
        )
        with pytest.raises(BrokerRefusedError), t._driver("declaring"):
            raise inequivalent
    finally:
        t.close()


def test_a_certificate_failure_is_a_messaging_error_naming_the_ca() -> None:
    t = KombuTransport.from_url(f"memory://cert-{uuid.uuid4().hex}")
    try:
        failure = ssl.SSLCertVerificationError(1, "certificate verify failed")
        failure.verify_message = "self-signed certificate in certificate chain"
        with pytest.raises(BrokerUnavailableError) as refused, t._driver("connecting"):
            raise failure
        assert "certificate" in str(refused.value) and "ssl_ca_certs" in str(refused.value)
        assert "self-signed certificate in certificate chain" in str(refused.value)
    finally:
        t.close()


def test_unknown_parameter_lists_valid_ones() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_kombu_url("amqp://u:secret@h//?reply_tl=5")
    message = str(info.value)
    assert "'reply_tl'" in message
    for name in ("reply_ttl", "quorum", "confirm_timeout", "heartbeat"):
        assert name in message
    assert "secret" not in message


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("amqp://h//?reply_ttl=soon", "reply_ttl='soon'"),
        ("amqp://h//?reply_ttl=0", "reply_ttl='0'"),
        ("amqp://h//?heartbeat=-1", "heartbeat='-1'"),
        ("amqp://h//?quorum=maybe", "quorum='maybe'"),
        ("redis://h/0?quorum=true", "needs RabbitMQ"),
        ("amqp://h//?dialect=rabbitmq", "dialect='rabbitmq'"),
        ("stomp://h:61613", "not a kombu transport"),
        ("no-scheme", "no scheme"),
    ],
)
def test_bad_settings_are_configuration_errors(url: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_kombu_url(url)
    assert fragment in str(info.value)
    assert isinstance(info.value, MessagingError)


@given(st.text(alphabet="abcXYZ019-_.~", min_size=1, max_size=20))
def test_redact_never_leaks_the_password(password: str) -> None:
    redacted = redact_url(f"amqp://user:{password}@host:5672//")
    assert redacted == "amqp://user:***@host:5672//"


# ------------------------------------------------------------------ every backend
def test_round_trip_json_and_text_byte_exact(transport: KombuTransport) -> None:
    q = _reply()
    transport.send(q, Envelope(JSON_BODY, "application/json", {"tdm-type": "accepted", "tdm-sequence": "1"}))
    transport.send(q, Envelope(TEXT_BODY, "text/plain"), persistent=False)
    with transport.read(q) as batch:
        first, second = batch.envelopes
        batch.ack()
    assert first.body == JSON_BODY
    assert first.content_type == "application/json"
    assert first.header("tdm-type") == "accepted"
    assert first.header("tdm-sequence") == "1"
    assert second.body == TEXT_BODY
    assert second.content_type == "text/plain"
    assert set(second.headers) <= {EXPIRES_AT_HEADER}
    transport.delete(q)


def test_read_of_an_empty_or_missing_queue(transport: KombuTransport) -> None:
    q = _reply()
    with transport.read(q) as batch:
        assert list(batch.envelopes) == []
        batch.ack()
    transport.delete(q)


def test_read_limit_and_ack_removes_only_what_was_read(transport: KombuTransport) -> None:
    q = _work_queue()
    for i in range(5):
        transport.send(q, Envelope(str(i).encode(), "text/plain"))
    with transport.read(q, limit=2) as batch:
        assert [e.body for e in batch.envelopes] == [b"0", b"1"]
        batch.ack()
    with transport.read(q) as batch:
        assert [e.body for e in batch.envelopes] == [b"2", b"3", b"4"]
        batch.ack()
    with transport.read(q) as batch:
        assert list(batch.envelopes) == []
    transport.delete(q)


def test_release_gives_messages_back_in_order(transport: KombuTransport) -> None:
    q = _reply()
    for i in range(3):
        transport.send(q, Envelope(f"m{i}".encode(), "text/plain"))
    with transport.read(q) as batch:
        assert len(batch.envelopes) == 3
    with transport.read(q) as batch:
        assert [e.body for e in batch.envelopes] == [b"m0", b"m1", b"m2"]
        batch.release()
        batch.release()  # idempotent
    try:
        with transport.read(q) as batch:
            raise RuntimeError("reader crashed")
    except RuntimeError:
        pass
    with transport.read(q) as batch:
        assert [e.body for e in batch.envelopes] == [b"m0", b"m1", b"m2"]
        batch.ack()
    transport.delete(q)


def test_consume_acks_after_handler_and_handler_may_send(transport: KombuTransport) -> None:
    requests, replies = _work_queue(), _reply()
    for i in range(3):
        transport.send(requests, Envelope(f"job{i}".encode(), "text/plain", {"tdm-n": str(i)}))
    seen: list[bytes] = []

    def handler(delivery: Delivery) -> None:
        assert delivery.destination == requests
        seen.append(delivery.envelope.body)
        transport.send(replies, Envelope(b"done " + delivery.envelope.body, "text/plain"))

    _consume_until(transport, [requests], handler, 3, prefetch=2)
    assert seen == [b"job0", b"job1", b"job2"]
    with transport.read(requests) as batch:
        assert list(batch.envelopes) == []  # all acknowledged
    with transport.read(replies) as batch:
        assert sorted(e.body for e in batch.envelopes) == [b"done job0", b"done job1", b"done job2"]
        batch.ack()
    transport.delete(requests)
    transport.delete(replies)


def test_handler_raising_leaves_the_message_for_redelivery(transport: KombuTransport) -> None:
    q = _work_queue()
    transport.send(q, Envelope(b"poison?", "text/plain"))
    stop = threading.Event()

    def failing(delivery: Delivery) -> None:
        raise KeyError("handler bug")

    with pytest.raises(KeyError):
        transport.consume([q], failing, stop=stop)
    redeliveries: list[Delivery] = []
    _consume_until(transport, [q], redeliveries.append, 1)
    assert [d.envelope.body for d in redeliveries] == [b"poison?"]
    assert redeliveries[0].redelivered
    transport.delete(q)


def test_consume_several_destinations(transport: KombuTransport) -> None:
    a, b = _work_queue(), _work_queue()
    transport.send(a, Envelope(b"a", "text/plain"))
    transport.send(b, Envelope(b"b", "text/plain"))
    got: dict[str, bytes] = {}
    _consume_until(transport, [a, b], lambda d: got.__setitem__(d.destination.name, d.envelope.body), 2)
    assert got == {a.name: b"a", b.name: b"b"}
    transport.delete(a)
    transport.delete(b)


def test_delete_removes_queue_and_contents(transport: KombuTransport) -> None:
    q = _work_queue()
    transport.send(q, Envelope(b"x", "text/plain"))
    transport.delete(q)
    transport.delete(q)  # deleting a missing queue is fine
    with transport.read(q) as batch:
        assert list(batch.envelopes) == []
    transport.delete(q)


def test_closed_transport_refuses_use(kind: str, tmp_path: Path) -> None:
    t = KombuTransport.from_url(_url(kind, tmp_path))
    t.close()
    t.close()
    with pytest.raises(TransportClosedError, match="closed"):
        t.send(_work_queue(), Envelope(b"x", "text/plain"))
    with pytest.raises(TransportClosedError):
        t.read(_work_queue())


def test_capabilities_per_backend(transport: KombuTransport, kind: str) -> None:
    caps = transport.capabilities
    assert caps.queue_expiry == caps.confirms == caps.dead_lettering == (kind == "amqp")
    assert caps.cross_process == (kind != "memory")
    assert caps.nack_requeue and caps.delete_queue


# ------------------------------------------------------------------ lazy expiry (redis, sqlite, memory)
@pytest.mark.parametrize("lazy_kind", ["memory", "sqlite", "redis"])
def test_lazy_expiry_drops_stale_replies_then_the_queue(
    lazy_kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1_000_000]
    monkeypatch.setattr(kombu_backend, "_now_ms", lambda: clock[0])
    with KombuTransport.from_url(_url(lazy_kind, tmp_path, "reply_ttl=10")) as t:
        assert isinstance(t, KombuTransport)
        q = _reply()
        t.send(q, Envelope(b"old", "text/plain"))
        clock[0] += 5_000
        t.send(q, Envelope(b"new", "text/plain"))
        with t.read(q) as batch:
            assert [e.header(EXPIRES_AT_HEADER) for e in batch.envelopes] == ["1010000", "1015000"]
        clock[0] += 6_000  # "old" expired, "new" has 4 s left
        with t.read(q) as batch:
            assert [e.body for e in batch.envelopes] == [b"new"]
        clock[0] += 10_000  # everything expired
        with t.read(q) as batch:
            assert list(batch.envelopes) == []
        # the queue was deleted, not only emptied
        if lazy_kind == "redis":
            client = t._base_channel().client
            assert client.exists(q.name) == 0
        elif lazy_kind == "sqlite":
            rows = sqlite3.connect(tmp_path / "broker.db").execute(
                "SELECT count(*) FROM kombu_queue WHERE name = ?", (q.name,)
            )
            assert rows.fetchone() == (0,)
        else:
            assert q.name not in t._base_channel().queues


def test_lazy_expiry_never_touches_permanent_queues(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0]
    monkeypatch.setattr(kombu_backend, "_now_ms", lambda: clock[0])
    with KombuTransport.from_url("memory://?reply_ttl=1") as t:
        q = _work_queue()
        t.send(q, Envelope(b"job", "text/plain", {EXPIRES_AT_HEADER: "1"}))
        clock[0] = 10**12
        with t.read(q) as batch:
            assert [e.body for e in batch.envelopes] == [b"job"]


# ------------------------------------------------------------------ SQLite specifics
def test_sqlite_ack_leaves_no_rows_behind(tmp_path: Path) -> None:
    with KombuTransport.from_url(_url("sqlite", tmp_path)) as t:
        q = _work_queue()
        for i in range(4):
            t.send(q, Envelope(str(i).encode(), "text/plain"))
        with t.read(q) as batch:
            batch.ack()
        t.send(q, Envelope(b"consumed", "text/plain"))
        _consume_until(t, [q], lambda d: None, 1)
        rows = sqlite3.connect(tmp_path / "broker.db").execute("SELECT count(*) FROM kombu_message")
        assert rows.fetchone() == (0,)


def test_sqlite_is_visible_across_processes(tmp_path: Path) -> None:
    url = _url("sqlite", tmp_path)
    q = _reply()
    script = (
        "from tdm_messaging.transport.kombu.backend import KombuTransport\n"
        "from tdm_messaging.destinations import reply_queue\n"
        "from tdm_messaging.envelope import Envelope\n"
        f"t = KombuTransport.from_url({url!r})\n"
        f"t.send(reply_queue({q.docset_id!r}), Envelope(b'from the other process', 'text/plain', {{'tdm-x': 'y'}}))\n"
        "t.close()\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    with KombuTransport.from_url(url) as t, t.read(q) as batch:
        assert [(e.body, e.header("tdm-x")) for e in batch.envelopes] == [(b"from the other process", "y")]
        batch.ack()


def test_sqlite_unusable_path_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(BrokerUnavailableError, match="check that the broker"):
        KombuTransport.from_url(f"sqla+sqlite:///{blocker}/broker.db")


# ------------------------------------------------------------------ memory specifics
def test_memory_transports_are_isolated_unless_named() -> None:
    q = _work_queue()
    with KombuTransport.from_url("memory://") as a, KombuTransport.from_url("memory://") as b:
        a.send(q, Envelope(b"only in a", "text/plain"))
        with b.read(q) as batch:
            assert list(batch.envelopes) == []
        with a.read(q) as batch:
            assert [e.body for e in batch.envelopes] == [b"only in a"]
    name = f"memory://shared-{uuid.uuid4().hex}"
    with KombuTransport.from_url(name) as a, KombuTransport.from_url(name) as b:
        a.send(q, Envelope(b"shared", "text/plain"))
        with b.read(q) as batch:
            assert [e.body for e in batch.envelopes] == [b"shared"]
            batch.ack()


# ------------------------------------------------------------------ RabbitMQ (AMQP) specifics
@pytest.fixture
def amqp_url() -> str:
    return broker_url("rabbitmq-amqp")


def _raw_channel(url: str) -> tuple[Any, Any]:
    import kombu

    kombu_module: Any = kombu
    conn = kombu_module.Connection(parse_kombu_url(url).url)
    conn.connect()
    return conn, conn.channel()


def _queue_exists(url: str, name: str) -> bool:
    import amqp.exceptions

    conn, channel = _raw_channel(url)
    try:
        channel.queue_declare(queue=name, passive=True)
        return True
    except amqp.exceptions.NotFound:
        return False
    finally:
        conn.release()


def test_amqp_confirmed_send(amqp_url: str) -> None:
    with KombuTransport.from_url(amqp_url + "?confirm_timeout=5") as t:
        q = _reply()
        for i in range(3):
            t.send(q, Envelope(str(i).encode(), "text/plain"), confirm=True)
        t.send(q, Envelope(b"unconfirmed", "text/plain"))
        with t.read(q) as batch:
            assert [e.body for e in batch.envelopes] == [b"0", b"1", b"2", b"unconfirmed"]
            batch.ack()
        t.delete(q)


def test_amqp_reply_queue_declared_with_x_expires(amqp_url: str) -> None:
    with KombuTransport.from_url(amqp_url + "?reply_ttl=300") as t:
        q = _reply()
        t.declare(q)
        t.declare(q)  # identical every time
        t.send(q, Envelope(b"x", "text/plain"))
        conn, channel = _raw_channel(amqp_url)
        try:
            # the same arguments are accepted, any other are refused: proves what was declared
            channel.queue_declare(
                queue=q.name, durable=True, exclusive=False, auto_delete=False, arguments={"x-expires": 300_000}
            )
        finally:
            conn.release()
        with KombuTransport.from_url(amqp_url + "?reply_ttl=301") as other:
            with pytest.raises(BrokerRefusedError, match="reply_ttl"):
                other.declare(q)
            # the transport carries on after the refusal
            other.send(_work_queue(), Envelope(b"z", "text/plain"))
            # a send declares no reply queue (it would be refused): it reaches the queue as it is
            other.send(q, Envelope(b"y", "text/plain"), confirm=True)
            other.send(q, Envelope(b"w", "text/plain"))
        with t.read(q) as batch:
            assert [e.body for e in batch.envelopes] == [b"x", b"y", b"w"]
        t.delete(q)


def test_amqp_x_expires_collects_an_idle_reply_queue(amqp_url: str) -> None:
    with KombuTransport.from_url(amqp_url + "?reply_ttl=2") as t:
        q = _reply()
        t.send(q, Envelope(b"never read", "text/plain"))
    assert _queue_exists(amqp_url, q.name)
    # Any declare, even a passive one, counts as use and restarts the 2 s timer: so look
    # only after the queue was left alone well past its TTL, a few times at most.
    for _ in range(5):
        time.sleep(4)
        if not _queue_exists(amqp_url, q.name):
            break
    assert not _queue_exists(amqp_url, q.name)


def test_amqp_quorum_permanent_queue(amqp_url: str) -> None:
    import amqp.exceptions

    q = _work_queue()
    with KombuTransport.from_url(amqp_url + "?quorum=true") as t:
        t.declare(q)
        t.send(q, Envelope(b"q", "text/plain"), confirm=True)
        with t.read(q) as batch:
            assert [e.body for e in batch.envelopes] == [b"q"]
            batch.ack()
        conn, channel = _raw_channel(amqp_url)
        try:
            with pytest.raises(amqp.exceptions.PreconditionFailed, match="x-queue-type"):
                channel.queue_declare(queue=q.name, durable=True, exclusive=False, auto_delete=False)
        finally:
            conn.release()
        t.delete(q)


def test_amqp_heartbeat_survives_a_long_handler(amqp_url: str) -> None:
    with KombuTransport.from_url(amqp_url + "?heartbeat=1") as t:
        q = _work_queue()
        t.send(q, Envelope(b"slow", "text/plain"))
        t.send(q, Envelope(b"fast", "text/plain"))
        seen: list[bytes] = []

        def handler(delivery: Delivery) -> None:
            if delivery.envelope.body == b"slow":
                time.sleep(3.5)  # longer than two heartbeat intervals
            seen.append(delivery.envelope.body)

        _consume_until(t, [q], handler, 2)
        assert seen == [b"slow", b"fast"]
        assert t.reconnects == 0
        time.sleep(2.5)  # idle, not consuming: the helper thread keeps the connection
        t.send(q, Envelope(b"after idle", "text/plain"))
        with t.read(q) as batch:
            assert [e.body for e in batch.envelopes] == [b"after idle"]
            batch.ack()
        assert t.reconnects == 0
        t.delete(q)


def test_amqp_consume_resumes_after_connection_loss(amqp_url: str) -> None:
    with KombuTransport.from_url(amqp_url + "?heartbeat=0") as t:
        q = _work_queue()
        t.send(q, Envelope(b"first", "text/plain"))
        t.send(q, Envelope(b"second", "text/plain"))
        seen: list[bytes] = []
        broken = [False]

        def handler(delivery: Delivery) -> None:
            seen.append(delivery.envelope.body)
            if not broken[0]:
                broken[0] = True
                # cut the socket under the driver: the ack fails, the broker requeues "first"
                t._conn.connection.sock.shutdown(2)

        _consume_until(t, [q], handler, 3)
        assert t.reconnects >= 1
        assert seen[0] == b"first"
        assert sorted(seen[1:]) == [b"first", b"second"]
        t.delete(q)


def test_amqp_unreachable_and_refused(amqp_url: str) -> None:
    with pytest.raises(BrokerUnavailableError) as info:
        KombuTransport.from_url("amqp://guest:s3cret@127.0.0.1:1//?connect_timeout=2")
    assert "s3cret" not in str(info.value)
    assert "127.0.0.1:1" in str(info.value)
    bad = amqp_url.replace("guest:guest@", "guest:wrong-pw@")
    with pytest.raises(BrokerRefusedError) as refused:
        KombuTransport.from_url(bad)
    assert "wrong-pw" not in str(refused.value)
    assert "password" in str(refused.value)


def test_amqp_broker_that_never_answers_is_tried_once_per_connect() -> None:
    """A listener that accepts and stays silent: one connect attempt, then the connect_timeout error.

    kombu's own connect() tries twice with a 2 s pause, which made the wait 2 x connect_timeout + 2 s
    while the error named connect_timeout; counting the attempts proves the backend makes one.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)  # never answers the AMQP protocol header

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    try:
        with pytest.raises(BrokerUnavailableError, match="connect_timeout=1 s"):
            KombuTransport.from_url(f"amqp://guest:guest@127.0.0.1:{port}//?connect_timeout=1")
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
        for conn in held:
            conn.close()
    assert len(held) == 1, f"{len(held)} connection attempts for one connect"


def test_redis_unreachable() -> None:
    with pytest.raises(BrokerUnavailableError, match=r"127\.0\.0\.1:1") as info:
        KombuTransport.from_url("redis://:hush@127.0.0.1:1/15?connect_timeout=2")
    assert "hush" not in str(info.value)


def _behind_proxy(amqp_url: str, params: str) -> tuple[TcpProxy, str]:
    """A proxy in front of the shared RabbitMQ, and a URL through it (black-holing it touches nobody else)."""
    parts = urlsplit(amqp_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    netloc = parts.netloc.rsplit(":", 1)[0] if parts.port else parts.netloc
    return proxy, f"{parts.scheme}://{netloc}:{proxy.port}{parts.path}?{params}"


def _bounded(action: Any) -> BaseException | None:
    """Run ``action`` in a thread; fail if it is still blocked after 30 s; return what it raised."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:  # reported to the test
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "a call over a black-holed connection hung"
    return raised[0] if raised else None


@pytest.mark.parametrize("call", ["confirmed send", "plain send", "read", "declare"])
def test_amqp_calls_over_a_black_holed_connection_end(amqp_url: str, call: str) -> None:
    # heartbeat=0: the bound must come from the transport's own timeouts, not from heart-beats.
    proxy, url = _behind_proxy(amqp_url, "heartbeat=0&confirm_timeout=1&connect_timeout=1")
    q = _reply()
    try:
        with KombuTransport.from_url(url) as t:
            t.send(q, Envelope(b"before", "text/plain"), confirm=True)
            proxy.blackhole()
            actions = {
                "confirmed send": lambda: t.send(q, Envelope(b"x", "text/plain"), confirm=True),
                # a send to a permanent queue not declared yet declares it first: that waits for an
                # answer (a plain send to a reply queue writes to the socket and waits for nothing)
                "plain send": lambda: t.send(_work_queue(), Envelope(b"x", "text/plain")),
                "read": lambda: t.read(q),
                "declare": lambda: t.declare(_work_queue()),
            }
            error = _bounded(actions[call])
            assert isinstance(error, (BrokerUnavailableError, SendNotConfirmedError)), repr(error)
            assert "guest:guest" not in str(error)
            proxy.heal()
            # the transport recovers by itself on the next call: a fresh connection
            with t.read(q) as batch:
                assert b"before" in [e.body for e in batch.envelopes]
                batch.ack()
            t.delete(q)
    finally:
        proxy.close()


def test_amqp_an_unconfirmed_batch_to_many_queues_names_a_few_and_counts_the_rest(amqp_url: str) -> None:
    # A bench's 10,000 confirmed sends that timed out raised an error naming every queue (400 KB).
    proxy, url = _behind_proxy(amqp_url, "heartbeat=0&confirm_timeout=1&connect_timeout=1")
    queues = [_reply() for _ in range(40)]
    try:
        with KombuTransport.from_url(url) as t:
            t.send(queues[0], Envelope(b"before", "text/plain"), confirm=True)  # connected, then cut off
            proxy.blackhole()
            error = _bounded(
                lambda: t.send_many([(q, Envelope(b"x", "text/plain")) for q in queues], persistent=True, confirm=True)
            )
            assert isinstance(error, SendNotConfirmedError), repr(error)
            said = str(error)
            named = sorted(q.name for q in queues if repr(q.name) in said)
            assert named == sorted(q.name for q in queues)[:5]
            assert "and 35 more" in said
            assert len(said) < 1000
            proxy.heal()
            for q in queues:
                t.delete(q)
    finally:
        proxy.close()


def test_amqp_heartbeat_thread_drops_a_dead_idle_connection(amqp_url: str, caplog: pytest.LogCaptureFixture) -> None:
    proxy, url = _behind_proxy(amqp_url, "heartbeat=1&confirm_timeout=2&connect_timeout=2")
    try:
        with KombuTransport.from_url(url) as t:
            caplog.set_level("WARNING", logger="tdm_messaging")
            proxy.blackhole()
            deadline = time.monotonic() + 30
            while t._conn is not None:  # idle: only the heart-beat thread can notice
                assert time.monotonic() < deadline, "the heart-beat thread never noticed the dead connection"
                time.sleep(0.1)
            assert any("lost" in r.getMessage() for r in caplog.records if r.name.startswith("tdm_messaging"))
            proxy.heal()
            q = _work_queue()
            t.send(q, Envelope(b"after", "text/plain"), confirm=True)  # reconnects on demand
            with t.read(q) as batch:
                assert [e.body for e in batch.envelopes] == [b"after"]
                batch.ack()
            t.delete(q)
    finally:
        proxy.close()


def test_reply_queues_are_declared_again_only_after_half_a_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(kombu_backend.time, "monotonic", lambda: clock[0])
    with KombuTransport.from_url("memory://?reply_ttl=100") as t:
        declares: list[str] = []
        real = t._declare_on

        def counting(channel: Any, destination: Destination) -> int | None:
            before = destination.name in t._declared and t._declared[destination.name]
            result = real(channel, destination)
            if t._declared.get(destination.name) != before:
                declares.append(destination.name)
            return result

        monkeypatch.setattr(t, "_declare_on", counting)
        q, work = _reply(), _work_queue()
        for _ in range(3):
            t.send(q, Envelope(b"r", "text/plain"))
            t.send(work, Envelope(b"w", "text/plain"))
        assert declares == [q.name, work.name]
        clock[0] += 49.9
        t.declare(q)
        assert declares == [q.name, work.name]
        clock[0] += 0.1  # half of reply_ttl since the declare: the lease may run short, declare again
        t.send(q, Envelope(b"r", "text/plain"))
        clock[0] += 1e6
        t.send(work, Envelope(b"w", "text/plain"))  # permanent queues never expire
        assert declares == [q.name, work.name, q.name]
        with t.read(q) as batch:
            assert [e.body for e in batch.envelopes] == [b"r"] * 4
            batch.ack()


@pytest.mark.parametrize(
    ("given", "expected"), [(None, ""), ("", ""), ("application/data", ""), ("text/plain", "text/plain")]
)
def test_to_envelope_keeps_a_missing_content_type_missing(given: str | None, expected: str) -> None:
    """kombu's application/data is what its Producer writes for untyped bytes: it means none was given."""
    from types import SimpleNamespace

    from tdm_messaging.transport.kombu.messages import to_envelope

    message = SimpleNamespace(body=b"Accepted.", content_type=given, headers={"tdm-type": "accepted"})
    assert to_envelope(message).content_type == expected


def test_amqp_send_many_says_which_send_the_broker_returned(amqp_url: str) -> None:
    """A permanent queue deleted under the connection that declared it: its send comes back, the other is stored."""
    with KombuTransport.from_url(amqp_url) as t:
        work, reply = _work_queue(), _reply()
        t.declare(work)
        conn, channel = _raw_channel(amqp_url)
        try:
            channel.queue_delete(queue=work.name)
        finally:
            conn.release()
        with pytest.raises(SendNotConfirmedError, match="returned as unroutable") as info:
            sends = [(reply, Envelope(b"copy", "text/plain")), (work, Envelope(b"req", "text/plain"))]
            t.send_many(sends, confirm=True)
        assert (info.value.unconfirmed, info.value.refused) == ((1,), (1,))
        t.send(work, Envelope(b"again", "text/plain"), confirm=True)  # declared again, as the return said
        with t.read(reply) as batch:
            assert [e.body for e in batch.envelopes] == [b"copy"]
            batch.ack()
        with t.read(work) as batch:
            assert [e.body for e in batch.envelopes] == [b"again"]
            batch.ack()
        t.delete(work)
        t.delete(reply)


def test_amqp_replies_to_a_missing_queue_are_declared_on_return_never_lost(amqp_url: str) -> None:
    """The worker's pattern: two unconfirmed replies and a confirmed one to a queue nobody declared."""
    with KombuTransport.from_url(amqp_url) as worker, KombuTransport.from_url(amqp_url) as server:
        reply = _reply()
        worker.send(reply, Envelope(b"accepted", "text/plain"))
        worker.send(reply, Envelope(b"progress", "text/plain"))
        assert not _queue_exists(amqp_url, reply.name)  # nothing declared it: both came back
        worker.send(reply, Envelope(b"complete", "text/plain"), confirm=True)
        with server.read(reply) as batch:
            assert sorted(e.body for e in batch.envelopes) == [b"accepted", b"complete", b"progress"]
            batch.ack()
        server.delete(reply)


def test_amqp_unconfirmed_sends_carry_their_properties_to_each_destination(amqp_url: str) -> None:
    """The plain publish (frames built by us, a method frame kept per destination) stores what py-amqp's would."""
    queues = [_work_queue(), _work_queue()]
    headers = {"tdm-type": "progress", "tdm-sequence": "2", "note": "café"}
    with KombuTransport.from_url(amqp_url) as t:
        for q in queues:
            t.declare(q)
        for i, q in enumerate(queues):
            t.send(q, Envelope(JSON_BODY, "application/json", {**headers, "n": str(i)}), persistent=True)
            t.send(q, Envelope(TEXT_BODY, "text/plain", {"n": str(i)}), persistent=False)
            t.send(q, Envelope(b"\x00\xff", "application/octet-stream", {}), persistent=True)
        conn, channel = _raw_channel(amqp_url)
        try:
            for i, q in enumerate(queues):
                got = [channel.basic_get(q.name, no_ack=True) for _ in range(4)]
                assert got[3] is None  # three each, none in the wrong queue
                first, second, third = got[:3]
                assert first.body == JSON_BODY.decode()  # py-amqp decodes by the content encoding
                assert first.properties["delivery_mode"] == 2
                assert first.properties["content_type"] == "application/json"
                assert first.properties["content_encoding"] == "utf-8"
                assert first.properties["application_headers"] == {**headers, "n": str(i)}
                assert second.body == TEXT_BODY.decode()
                assert second.properties["delivery_mode"] == 1
                assert second.properties["application_headers"] == {"n": str(i)}
                assert third.body == b"\x00\xff"
                assert third.properties["content_encoding"] == "binary"
                assert third.properties["delivery_mode"] == 2
                assert not third.delivery_info.get("redelivered")
        finally:
            conn.release()
        for q in queues:
            t.delete(q)
