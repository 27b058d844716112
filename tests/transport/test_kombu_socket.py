"""The kombu backend's TCP settings: ``tcp_user_timeout`` parsed from the URL and set on the live AMQP socket."""

from __future__ import annotations

import errno
import socket
import sys
import threading
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tdm_messaging.destinations import Destination, DestinationKind
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import BrokerUnavailableError, ConfigurationError, MessagingError
from tdm_messaging.transport.kombu.backend import KombuTransport
from tdm_messaging.transport.kombu.link import socket_settings
from tdm_messaging.transport.kombu.settings import parse_kombu_url
from tdm_messaging.transport.kombu.translate import Breaks, translate
from tests.conftest import broker_url
from tests.faults.proxy import TcpProxy

TCP_USER_TIMEOUT = 18  # Linux's number for the option (socket.TCP_USER_TIMEOUT where Python has it)
PY_AMQP_DEFAULT_MS = 1000

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_USER_TIMEOUT is a Linux option")


# ------------------------------------------------------------------ settings (no broker)
@pytest.mark.parametrize(
    ("query", "expected_ms"),
    [
        ("", 10_000),  # confirm_timeout's default
        ("?confirm_timeout=3", 3_000),  # follows confirm_timeout when not given
        ("?confirm_timeout=3&tcp_user_timeout=45", 45_000),
        ("?tcp_user_timeout=0.0015", 2),
        ("?tcp_user_timeout=0", 0),  # the kernel's default
    ],
)
def test_tcp_user_timeout_in_milliseconds(query: str, expected_ms: int) -> None:
    settings = parse_kombu_url("amqp://u:pw@h:5672//" + query)
    assert settings.tcp_user_timeout_ms == expected_ms
    assert "tcp_user_timeout" not in settings.url  # ours, never handed to kombu


def test_a_failover_list_carries_tcp_user_timeout_to_every_node() -> None:
    settings = parse_kombu_url("amqp://h1//;amqp://h2//?tcp_user_timeout=20")
    assert settings.tcp_user_timeout == 20 and settings.tcp_user_timeout_ms == 20_000
    assert all("tcp_user_timeout" not in host for host in settings.hosts)


@given(st.floats(min_value=0.001, max_value=2_147_483, allow_nan=False))
def test_every_valid_value_becomes_a_positive_int_of_milliseconds(seconds: float) -> None:
    ms = parse_kombu_url(f"amqp://h//?tcp_user_timeout={seconds!r}").tcp_user_timeout_ms
    assert isinstance(ms, int)
    assert 1 <= ms <= 2**31 - 1  # what the kernel's setsockopt takes
    assert abs(ms - seconds * 1000) <= 0.5 or ms == 1


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("amqp://u:secret@h//?tcp_user_timeout=soon", "tcp_user_timeout='soon' is not valid"),
        ("amqp://u:secret@h//?tcp_user_timeout=-1", "tcp_user_timeout='-1' is not valid"),
        ("amqp://u:secret@h//?tcp_user_timeout=0.0001", "from 0.001 to 2147483"),
        ("amqp://u:secret@h//?tcp_user_timeout=3e6", "tcp_user_timeout='3e6' is not valid"),
        ("amqp://u:secret@h//?tcp_user_timeout=inf", "tcp_user_timeout='inf' is not valid"),
        ("amqp://u:secret@h//?tcp_user_timeout=nan", "tcp_user_timeout='nan' is not valid"),
        ("amqp://u:secret@h//?tcp_user_timeout=", "tcp_user_timeout='' is not valid"),
        ("redis://:secret@h/0?tcp_user_timeout=30", "tcp_user_timeout needs RabbitMQ"),
        ("amqp://u:secret@h1//;amqp://u:secret@h2//?tcp_user_timeout=-5", "tcp_user_timeout='-5'"),
    ],
)
def test_bad_tcp_user_timeouts_are_configuration_errors(url: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_kombu_url(url)
    message = str(info.value)
    assert fragment in message
    assert "secret" not in message
    assert isinstance(info.value, MessagingError)


def test_unknown_parameter_message_names_tcp_user_timeout() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_kombu_url("amqp://h//?tcp_usertimeout=5")
    assert "tcp_user_timeout" in str(info.value).split("valid parameters are", 1)[1]


@linux_only
def test_socket_settings_replace_py_amqps_user_timeout() -> None:
    assert socket_settings(parse_kombu_url("amqp://h//?tcp_user_timeout=7")) == {TCP_USER_TIMEOUT: 7_000}


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("?tcp_user_timeout=2.5", "for tcp_user_timeout=2.5 s"),
        ("?confirm_timeout=4", "for tcp_user_timeout=4 s"),
        ("?tcp_user_timeout=0", "the kernel's retransmission time (tcp_user_timeout=0)"),
    ],
)
def test_a_connection_the_kernel_timed_out_names_tcp_user_timeout(query: str, fragment: str) -> None:
    settings = parse_kombu_url("amqp://u:pw@h//" + query)
    kernel = OSError(errno.ETIMEDOUT, "Connection timed out")  # what recv/send raise then: a TimeoutError
    translation = translate(kernel, what="sending", settings=settings, driver_errors=lambda: (OSError,))
    assert translation is not None and translation.breaks is Breaks.CONNECTION
    assert isinstance(translation.error, BrokerUnavailableError)
    assert fragment in str(translation.error)
    # Our own socket timeout (no errno) still names the timeouts that set it.
    ours = translate(TimeoutError("timed out"), what="sending", settings=settings, driver_errors=lambda: (OSError,))
    assert ours is not None
    said = str(ours.error).split(settings.display_url, 1)[1]
    assert "confirm_timeout=" in said and "tcp_user_timeout" not in said


# ------------------------------------------------------------------ on a live RabbitMQ connection
def _user_timeout_of(transport: KombuTransport) -> int:
    conn: Any = transport._conn
    sock = conn.connection.transport.sock
    value: int = sock.getsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT)
    return value


@linux_only
@pytest.mark.parametrize(("query", "expected_ms"), [("", 10_000), ("?tcp_user_timeout=45", 45_000)])
def test_the_connected_socket_carries_our_user_timeout(query: str, expected_ms: int) -> None:
    with KombuTransport.from_url(broker_url("rabbitmq-amqp") + query) as t:
        assert _user_timeout_of(t) == expected_ms != PY_AMQP_DEFAULT_MS


@linux_only
def test_a_reconnected_socket_and_its_confirmed_sends_keep_our_user_timeout() -> None:
    with KombuTransport.from_url(broker_url("rabbitmq-amqp") + "?heartbeat=0&tcp_user_timeout=33") as t:
        first = t._conn
        q = Destination(f"test/sockopt-{uuid.uuid4().hex}", DestinationKind.PERMANENT)
        t.send(q, Envelope(b"before", "text/plain"), confirm=True)
        t._conn.connection.sock.shutdown(socket.SHUT_RDWR)
        t.send(q, Envelope(b"after", "text/plain"), confirm=True)  # reconnects once, then publishes
        assert t.reconnects == 1 and t._conn is not first
        assert _user_timeout_of(t) == 33_000
        with t.read(q, limit=5) as batch:
            assert [e.body for e in batch.envelopes] == [b"before", b"after"]  # both confirmed, both kept
            batch.ack()
        t.delete(q)


@linux_only
def test_a_broker_that_stops_reading_for_longer_than_a_second_loses_nothing() -> None:
    """A stall of 2.5 s with megabytes in flight: the broker's receive window closes, sent data waits
    unacknowledged, and with py-amqp's 1 s TCP_USER_TIMEOUT the kernel dropped the connection and
    the confirmed publishes in flight with it. Ours outlives the stall on the same connection."""
    target = urlsplit(broker_url("rabbitmq-amqp"))
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5672)
    url = f"amqp://{target.username}:{target.password}@127.0.0.1:{proxy.port}{target.path}?heartbeat=0"
    q = Destination(f"test/stall-{uuid.uuid4().hex}", DestinationKind.PERMANENT)
    body = b"x" * (256 * 1024)
    heal = threading.Timer(2.5, proxy.heal)
    try:
        with KombuTransport.from_url(url) as t:
            t.send(q, Envelope(b"first", "text/plain"), confirm=True)
            proxy.blackhole()  # the broker's side stops reading: RabbitMQ under a disk stall or flow control
            heal.start()
            # Confirmed, so on the confirm channel in order (unconfirmed sends go out on another channel,
            # which RabbitMQ may store after "last").
            t.send_many(
                [(q, Envelope(body + str(i).encode(), "application/octet-stream")) for i in range(16)], confirm=True
            )
            t.send(q, Envelope(b"last", "text/plain"), confirm=True)
            assert heal.finished.is_set()  # the stall really held the sends back
            assert t.reconnects == 0
            with t.read(q, limit=100) as batch:
                bodies = [e.body for e in batch.envelopes]
                batch.ack()
            assert bodies == [b"first", *(body + str(i).encode() for i in range(16)), b"last"]
            t.delete(q)
    finally:
        heal.cancel()
        proxy.close()
