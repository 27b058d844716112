"""The kombu wing's unconfirmed AMQP publish writes what py-amqp's ``basic_publish`` writes, and fails alike."""

from __future__ import annotations

import contextlib
import socket
from struct import pack
from typing import Any

import amqp
import pytest
from amqp.exceptions import RecoverableConnectionError
from amqp.method_framing import frame_writer
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tdm_messaging.envelope import Envelope
from tdm_messaging.transport.kombu.send import amqp_message, basic_publish
from tests.transport.amqp_socket_pair import socket_pair_transport

_text = st.text(st.characters(codec="utf-8"), max_size=30)


class _Conn:
    """What a publish uses of a py-amqp connection, with py-amqp's own frame writer and drain."""

    drain_events = amqp.Connection.drain_events
    blocking_read = amqp.Connection.blocking_read

    def __init__(self, transport: Any, frame_max: int, *, blocked_capability: bool = True) -> None:
        self.transport = transport
        self.frame_max = frame_max
        self.connected = True
        self.bytes_sent = 0
        self.client_properties = {"capabilities": {"connection.blocked": blocked_capability}}
        self.frame_writer = frame_writer(self, transport)
        self.seen: list[tuple[int, int, bytes]] = []

    def on_inbound_frame(self, frame: tuple[int, int, bytes]) -> bool:
        self.seen.append(frame)
        return True


def _channel(conn: Any, channel_id: int) -> Any:
    channel = amqp.Channel.__new__(amqp.Channel)
    channel.connection = conn
    channel.channel_id = channel_id
    return channel


def _receive(sock: socket.socket) -> bytes:
    sock.settimeout(0.05)
    got = b""
    with contextlib.suppress(TimeoutError):
        while chunk := sock.recv(65536):
            got += chunk
    return got


def _publish_over_a_socket_pair(
    ours: bool, routing_key: str, envelope: Envelope, *, persistent: bool, frame_max: int, inbound: bytes
) -> tuple[bytes, list[tuple[int, int, bytes]], int]:
    sock, theirs, transport = socket_pair_transport(buffered=True)
    transport.connected = True
    try:
        sock.settimeout(7.5)
        if inbound:
            theirs.sendall(inbound)
        conn = _Conn(transport, frame_max)
        channel = _channel(conn, 3)
        if ours:
            basic_publish(channel, routing_key, envelope, persistent=persistent)
        else:
            channel.basic_publish(amqp_message(envelope, persistent=persistent), exchange="", routing_key=routing_key)
        return _receive(theirs), conn.seen, conn.bytes_sent
    finally:
        sock.close()
        theirs.close()


@settings(max_examples=60, deadline=None)
@given(
    _text.filter(lambda s: len(s.encode("utf-8", "surrogatepass")) <= 255),
    st.binary(max_size=5000),
    st.dictionaries(_text.filter(lambda s: 0 < len(s.encode("utf-8", "surrogatepass")) <= 255), _text, max_size=6),
    st.sampled_from(["application/json", "text/plain; charset=utf-8", "application/octet-stream", ""]),
    st.booleans(),
    st.sampled_from([4096, 131072]),
    st.sampled_from([b"", pack(">BHI", 8, 0, 0) + b"\xce"]),  # nothing came, or a heart-beat
)
def test_an_unconfirmed_publish_is_py_amqps_basic_publish(  # noqa: PLR0917 - one example's drawn values
    routing_key: str,
    body: bytes,
    headers: dict[str, str],
    content_type: str,
    persistent: bool,
    frame_max: int,
    inbound: bytes,
) -> None:
    assume(len(content_type.encode()) <= 255)
    envelope = Envelope(body, content_type, headers)
    kwargs = {"persistent": persistent, "frame_max": frame_max, "inbound": inbound}
    ours = _publish_over_a_socket_pair(True, routing_key, envelope, **kwargs)  # type: ignore[arg-type]
    theirs = _publish_over_a_socket_pair(False, routing_key, envelope, **kwargs)  # type: ignore[arg-type]
    assert ours[0] == theirs[0]  # the same frames: not mandatory, delivery mode, headers, properties
    assert ours[1] == theirs[1]  # what the broker sent before is dispatched first, as py-amqp does
    assert ours[2] >= 1  # counted as sent, for the heart-beat check


def test_a_publish_to_a_closed_connection_is_a_connection_error() -> None:
    channel = _channel(None, 1)
    with pytest.raises(RecoverableConnectionError):
        basic_publish(channel, "q", Envelope(b"x", "text/plain"), persistent=True)


def test_a_write_that_times_out_is_a_connection_error_as_in_py_amqp() -> None:
    class _StuckTransport:
        connected = True
        _read_buffer = b""
        sock = None

        def write(self, _data: bytes) -> None:
            raise TimeoutError("timed out")

    conn = _Conn(_StuckTransport(), 131072, blocked_capability=False)
    with pytest.raises(RecoverableConnectionError, match="timed out"):
        basic_publish(_channel(conn, 1), "q", Envelope(b"x", "text/plain"), persistent=True)
