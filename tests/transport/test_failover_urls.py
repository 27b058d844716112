"""Failover lists of cluster nodes in broker URLs: parsed on both wings, passwords redacted, a dead node skipped."""

from __future__ import annotations

import socket
import string
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tdm_messaging.destinations import Destination, DestinationKind, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import ConfigurationError
from tdm_messaging.transport.kombu.backend import KombuTransport
from tdm_messaging.transport.kombu.queues import queue_arguments
from tdm_messaging.transport.kombu.settings import parse_kombu_url
from tdm_messaging.transport.stomp.backend import StompTransport
from tdm_messaging.transport.stomp.dialect import Dialect
from tdm_messaging.transport.stomp.frames import queue_headers
from tdm_messaging.transport.stomp.settings import parse_stomp_url
from tdm_messaging.transport.urls import redact_url
from tests.conftest import broker_url

# Passwords as they stand in a URL: percent-encoded when they hold anything beyond unreserved characters.
_password = st.text(string.ascii_letters + string.digits + "-._~", min_size=3, max_size=20)


def _dead_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@given(first=_password, second=_password, third=_password)
def test_every_password_of_a_kombu_failover_list_is_redacted(first: str, second: str, third: str) -> None:
    url = f"amqp://a:{first}@h1:5672//;amqp://b:{second}@h2:5672//;amqp://c:{third}@h3:5672//?quorum=true"
    shown = redact_url(url)
    assert shown == "amqp://a:***@h1:5672//;amqp://b:***@h2:5672//;amqp://c:***@h3:5672//?quorum=true"
    settings = parse_kombu_url(url)
    assert settings.display_url == shown
    assert len(settings.hosts) == 3 and settings.quorum


@given(password=st.text(min_size=1, max_size=30).map(lambda p: "".join(f"%{b:02X}" for b in p.encode())))
def test_a_stomp_failover_url_redacts_its_one_password(password: str) -> None:
    url = f"stomp://guest:{password}@mq1:61613,mq2:61614/?dialect=rabbitmq"
    assert password not in redact_url(url) and "mq2:61614" in redact_url(url)


def test_kombu_failover_list_keeps_each_host_and_shares_the_parameters() -> None:
    s = parse_kombu_url("amqp://u:p@h1:5701//;amqp://u:p@h2:5702//?confirm_timeout=3&heartbeat=0")
    assert s.hosts == ("amqp://u:p@h1:5701//", "amqp://u:p@h2:5702//")
    assert s.confirm_timeout == 3 and s.heartbeat == 0
    single = parse_kombu_url("amqp://u:p@h1:5701//")
    assert single.hosts == ("amqp://u:p@h1:5701//",)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("amqp://h1//;redis://h2:6379/0", "amqp:// URLs only"),
        ("amqp://h1//?confirm_timeout=1;amqp://h2//?confirm_timeout=2", "given twice with different values"),
        ("amqp://h1//;amqp://h2//?bogus=1", "unknown parameter 'bogus'"),
    ],
)
def test_bad_kombu_failover_lists(url: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_kombu_url(url)
    assert fragment in str(info.value)


def test_stomp_failover_nodes_in_order_and_rotated() -> None:
    s = parse_stomp_url("stomp://guest:guest@mq1:61613,mq2:61614,[::1]/?dialect=rabbitmq&reply_ttl=60")
    assert (s.host, s.port, s.username, s.password, s.reply_ttl) == ("mq1", 61613, "guest", "guest", 60)
    assert s.nodes == (("mq1", 61613), ("mq2", 61614), ("::1", 61613))
    second = s.on(1)
    assert (second.host, second.port) == ("mq2", 61614)
    assert second.nodes == (("mq2", 61614), ("::1", 61613), ("mq1", 61613))
    assert s.on(3).nodes == s.nodes
    assert parse_stomp_url("stomp://mq1:61613/").failover == ()


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("stomp://guest:s3cret@mq1:61613,mq2:notaport/", "bad host 'mq2:notaport'"),
        ("stomp://guest:s3cret@mq1:61613,/", "bad host ''"),
    ],
)
def test_bad_stomp_failover_hosts_name_the_host_not_the_password(url: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_stomp_url(url)
    assert fragment in str(info.value) and "s3cret" not in str(info.value)


@pytest.mark.broker
def test_a_dead_first_amqp_node_is_skipped_when_opening() -> None:
    good = broker_url("rabbitmq-amqp")
    url = good.replace("@127.0.0.1:5672", f"@127.0.0.1:{_dead_port()}", 1) + ";" + good
    queue = Destination(f"test/failover-{uuid.uuid4().hex}", DestinationKind.PERMANENT)
    with KombuTransport.from_url(url) as t:
        t.send(queue, Envelope(b"via the second node"), confirm=True)
        with t.read(queue) as batch:
            assert [e.body for e in batch.envelopes] == [b"via the second node"]
            batch.ack()
        t.delete(queue)


@pytest.mark.broker
def test_a_dead_first_stomp_node_is_skipped_when_opening() -> None:
    good = broker_url("rabbitmq-stomp")
    url = good.replace("@127.0.0.1:61613", f"@127.0.0.1:{_dead_port()},127.0.0.1:61613", 1)
    queue = Destination(f"test/failover-{uuid.uuid4().hex}", DestinationKind.PERMANENT)
    with StompTransport.from_url(url) as t:
        t.send(queue, Envelope(b"via the second node"), confirm=True)
        with t.read(queue) as batch:
            assert [e.body for e in batch.envelopes] == [b"via the second node"]
            batch.ack()


def test_a_list_of_nodes_makes_permanent_queues_quorum_unless_told_otherwise() -> None:
    assert parse_kombu_url("amqp://h1//;amqp://h2//").quorum
    assert not parse_kombu_url("amqp://h1//;amqp://h2//?quorum=false").quorum
    assert not parse_kombu_url("amqp://h1//").quorum  # one node: classic, as before (seed peers declare plainly)
    assert parse_stomp_url("stomp://h1:1,h2:2/").quorum
    assert not parse_stomp_url("stomp://h1:1,h2:2/?quorum=false").quorum
    assert not parse_stomp_url("stomp://h1:1/").quorum


def test_reply_queue_type_decides_the_reply_queues_arguments_on_both_wings() -> None:
    reply = reply_queue("5")
    quorum = parse_kombu_url("amqp://h//?reply_queue_type=quorum&reply_ttl=60")
    assert queue_arguments(quorum, reply) == {"x-expires": 60000, "x-queue-type": "quorum"}
    assert queue_arguments(parse_kombu_url("amqp://h//?reply_ttl=60"), reply) == {"x-expires": 60000}
    stomp = parse_stomp_url("stomp://h/?dialect=rabbitmq&reply_queue_type=QUORUM&reply_ttl=60")
    headers = queue_headers(reply, stomp, Dialect.RABBITMQ)
    assert headers["x-queue-type"] == "quorum" and headers["x-expires"] == "60000"
    assert "x-queue-type" not in queue_headers(reply, parse_stomp_url("stomp://h/"), Dialect.RABBITMQ)


@pytest.mark.parametrize(
    "parse", [parse_kombu_url, lambda url: parse_stomp_url(url.replace("amqp://h//", "stomp://h/"))]
)
def test_a_bad_reply_queue_type_is_named(parse: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse("amqp://h//?reply_queue_type=stream")  # type: ignore[operator]
    assert "reply_queue_type='stream'" in str(info.value) and "quorum" in str(info.value)


def test_reply_queue_type_quorum_needs_rabbitmq() -> None:
    with pytest.raises(ConfigurationError, match="needs RabbitMQ"):
        parse_kombu_url("redis://h:6379/0?reply_queue_type=quorum")
