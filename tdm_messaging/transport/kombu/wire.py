"""Raw AMQP 0-9-1 frames for the hot path: several methods and publishes in one socket write, buffered reads.

py-amqp writes every method (and every publish) with a socket write of its own, and reads a
frame with three ``recv`` calls (header, payload, end octet). On a job's hot path (a poll's
gets, acknowledgements and fence; a batch's replies and acknowledgements) that is a system
call, and on loopback a pass of the broker's side of TCP, per frame. Here the same frames, byte
for byte (a property test holds them to py-amqp's own), are joined and written at once, and the
connection's reads take whatever the socket holds into py-amqp's own read buffer.

Everything here runs with the link's lock held, as every other talk with the connection does,
so no other thread writes between these frames.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import select
from collections.abc import Iterable
from struct import pack
from typing import Any

import amqp
import amqp.transport
from amqp import spec
from amqp.exceptions import RecoverableConnectionError
from amqp.serialization import dumps

from tdm_messaging.envelope import Envelope

__all__ = [
    "ack_frame",
    "buffer_reads",
    "drain_events",
    "drain_pending",
    "envelope_publish",
    "get_frame",
    "method_frame",
    "passive_declare_frame",
    "publish_method",
    "publish_frames",
    "reject_frame",
    "write_frames",
]

_FRAME_END = b"\xce"
_METHOD, _HEADER, _BODY = 1, 2, 3
_READ_CHUNK = 4096
"""The most one buffered read asks the socket for (beyond what the frame needs): small enough that
slicing the buffer per frame stays cheap, large enough for a poll's or a batch's frames."""


def method_frame(channel_id: int, sig: tuple[int, int], argsig: str, args: tuple[Any, ...]) -> bytes:
    """One method frame, as py-amqp's frame writer builds it."""
    payload: bytes = pack(">HH", *sig) + dumps(argsig, args)
    return pack(">BHI", _METHOD, channel_id, len(payload)) + payload + _FRAME_END


@functools.lru_cache(maxsize=1024)
def publish_method(channel_id: int, routing_key: str, *, mandatory: bool) -> bytes:
    """The ``basic.publish`` method frame to ``routing_key`` through the default exchange.

    It depends on these three alone, so it is built once and kept (bytes: nothing to share
    mutably); bounded, as a long-lived worker replies to ever new reply queues.
    """
    return method_frame(channel_id, spec.Basic.Publish, "Bssbb", (0, "", routing_key, mandatory, False))


def _method(channel_id: int, sig: tuple[int, int], args: bytes) -> bytes:
    return pack(">BHIHH", _METHOD, channel_id, len(args) + 4, *sig) + args + _FRAME_END


@functools.lru_cache(maxsize=256)
def _cached_shortstr(value: str) -> bytes:
    """:func:`_shortstr` of a string seen again and again (header names, content types)."""
    return _shortstr(value)


def _shortstr(value: str) -> bytes:
    raw = value.encode("utf-8", "surrogatepass")
    if len(raw) > 255:
        raise ValueError(f"AMQP short string of {len(raw)} bytes (at most 255): {value[:40]!r}")
    return pack("B", len(raw)) + raw


# The methods a job's hot path sends again and again, packed by hand (py-amqp's generic argument
# writer takes several times longer); the test suite holds each to py-amqp's bytes.
def ack_frame(channel_id: int, delivery_tag: int) -> bytes:
    """``basic.ack`` of one delivery (not ``multiple``)."""
    return _method(channel_id, spec.Basic.Ack, pack(">QB", delivery_tag, 0))


def reject_frame(channel_id: int, delivery_tag: int, *, requeue: bool) -> bytes:
    """``basic.reject`` of one delivery."""
    return _method(channel_id, spec.Basic.Reject, pack(">QB", delivery_tag, 1 if requeue else 0))


def get_frame(channel_id: int, queue: str) -> bytes:
    """``basic.get`` from ``queue``, acknowledged later (``no_ack`` false)."""
    return _method(channel_id, spec.Basic.Get, b"\x00\x00" + _shortstr(queue) + b"\x00")


def passive_declare_frame(channel_id: int, queue: str) -> bytes:
    """A passive ``queue.declare`` of ``queue`` (creates nothing; answered after what was sent before it).

    As py-amqp's ``queue_declare(queue, passive=True)`` writes it: its defaults for the other
    flags (``auto_delete``; the broker ignores them on a passive declare), no arguments.
    """
    flags = 0b01001  # passive (bit 0) and auto_delete (bit 3)
    return _method(channel_id, spec.Queue.Declare, b"\x00\x00" + _shortstr(queue) + pack(">BI", flags, 0))


def publish_frames(channel_id: int, frame_max: int, method: bytes, message: Any) -> bytes:
    """A publish: its ``basic.publish`` method frame ``method`` (see :func:`method_frame`), the content
    header and the body frames of py-amqp ``message``, split at ``frame_max`` as py-amqp splits them."""
    body = message.body
    if isinstance(body, str):
        body = body.encode(message.properties.setdefault("content_encoding", "utf-8"))
    header = pack(">HHQ", spec.Basic.Publish[0], 0, len(body)) + message._serialize_properties()
    return _content_frames(channel_id, frame_max, method, header, body)


def _content_frames(channel_id: int, frame_max: int, method: bytes, header: bytes, body: bytes) -> bytes:
    """The method frame, the content header frame of ``header``, then ``body`` in frames of ``frame_max`` at most."""
    parts = [method, pack(">BHI", _HEADER, channel_id, len(header)), header, _FRAME_END]
    chunk = frame_max - 8
    for offset in range(0, len(body), chunk):
        piece = body[offset : offset + chunk]
        parts += (pack(">BHI", _BODY, channel_id, len(piece)), piece, _FRAME_END)
    return b"".join(parts)


def envelope_publish(
    channel_id: int,
    frame_max: int,
    method: bytes,
    envelope: Envelope,
    *,
    content_encoding: str,
    persistent: bool,
) -> bytes:
    """:func:`publish_frames` of the py-amqp message ``send.amqp_message`` makes of ``envelope``, built directly.

    The content header's properties are the four our messages carry (content type, content
    encoding, application headers, delivery mode), packed by hand: py-amqp's generic property
    and table writers took most of a publish's Python. A header value that is not a string
    (an envelope's never is) goes through py-amqp's writer instead.
    """
    headers = envelope.headers
    table: list[bytes] = []
    for name, value in headers.items():
        if type(value) is not str:  # exactly str, as the contract says: anything else, py-amqp's way
            message = amqp.Message(
                envelope.body,
                content_type=envelope.content_type,
                content_encoding=content_encoding,
                application_headers=dict(headers),
                delivery_mode=2 if persistent else 1,
            )
            return publish_frames(channel_id, frame_max, method, message)
        raw = value.encode("utf-8", "surrogatepass")
        table += (_cached_shortstr(name), b"S", pack(">I", len(raw)), raw)
    table_bytes = b"".join(table)
    body = envelope.body
    header = b"".join(
        (
            pack(">HHQH", spec.Basic.Publish[0], 0, len(body), 0xF000),  # the four properties' flags
            _cached_shortstr(envelope.content_type),
            _cached_shortstr(content_encoding),
            pack(">I", len(table_bytes)),
            table_bytes,
            b"\x02" if persistent else b"\x01",
        )
    )
    return _content_frames(channel_id, frame_max, method, header, body)


def write_frames(amqp_connection: Any, frames: Iterable[bytes]) -> None:
    """Write ``frames`` to the connection in one socket write. Call with the link's lock held.

    Raises:
        RecoverableConnectionError: the connection is closed (a connection error, as py-amqp's).
        OSError: the socket failed.
    """
    transport = amqp_connection.transport
    if transport is None or not amqp_connection.connected:
        raise RecoverableConnectionError("connection already closed")
    transport.write(b"".join(frames))
    amqp_connection.bytes_sent += 1  # as py-amqp's writer counts, for its heart-beat check


def drain_pending(amqp_connection: Any) -> None:
    """py-amqp's ``drain_events(timeout=0)``, as its ``basic_publish`` runs it before every publish (to hear
    of a ``connection.blocked`` or a closed channel), at the cost of one ``select`` when nothing came.

    py-amqp sets the socket's timeout to 0 and back and calls ``recv`` (which raises) every time;
    a plain TCP connection with nothing in its read buffer and nothing readable on its socket
    has nothing to dispatch. Anything else (something arrived, EOF, TLS) takes py-amqp's own
    drain. Call with the link's lock held.
    """
    transport = amqp_connection.transport
    if transport is None:
        return  # closed: the write that follows says so, as py-amqp's would
    if type(transport) is amqp.transport.TCPTransport and not transport._read_buffer:
        sock = transport.sock
        if sock is None or not select.select((sock,), (), (), 0)[0]:
            return
    with contextlib.suppress(TimeoutError):
        amqp_connection.drain_events(timeout=0)


def buffer_reads(amqp_connection: Any) -> bool:
    """Make a plain-TCP py-amqp connection read what its socket holds, not one frame part per ``recv``.

    py-amqp reads exactly the bytes each part of a frame needs; the frames that come together
    (a ``basic.get-ok``'s method, header and body; a batch's deliveries) then cost three system
    calls each. The replacement keeps py-amqp's own read buffer and its error handling, and
    asks for up to a few KiB more than the frame needs. TLS connections are left as they are.
    Returns whether it was installed.
    """
    transport = amqp_connection.transport
    if type(transport) is not amqp.transport.TCPTransport or transport.sock is None:
        return False
    recv = transport.sock.recv
    retry = (errno.EAGAIN, errno.EINTR)

    def read(n: int, initial: bool = False) -> bytes:
        rbuf = transport._read_buffer
        try:
            while len(rbuf) < n:
                try:
                    got = recv(max(n - len(rbuf), _READ_CHUNK))
                except OSError as exc:
                    if exc.errno in retry:
                        if initial and transport.raise_on_initial_eintr:
                            raise TimeoutError() from None
                        continue
                    raise
                if not got:
                    raise OSError("Server unexpectedly closed connection")
                rbuf += got
        except BaseException:
            transport._read_buffer = rbuf
            raise
        result: bytes = rbuf[:n]
        transport._read_buffer = rbuf[n:]
        return result

    transport._read = read
    return True


def drain_events(amqp_conn: Any, timeout: float, *, most: int = 1) -> None:
    """py-amqp's ``drain_events(timeout=timeout)``, ``most`` times over, the socket's timeout set once for all.

    py-amqp sets the socket's timeout, and puts it back, around every frame it reads: two
    system calls per frame, three frames per delivery. Here a plain TCP connection's socket
    takes ``timeout`` once, its frames are read and dispatched as py-amqp's ``blocking_read``
    does, and the timeout is put back at the end; each read still waits at most ``timeout``
    (0: only what the socket holds). Other transports (TLS) take py-amqp's own path. Call with
    the link's lock held.

    Raises:
        TimeoutError: no frame came within ``timeout``.
    """
    transport = amqp_conn.transport
    sock = transport.sock if type(transport) is amqp.transport.TCPTransport else None
    if sock is None:
        for _ in range(most):
            amqp_conn.drain_events(timeout=timeout)
        return
    # On a TCPTransport an EAGAIN before a frame's first byte is a TimeoutError of its own _read
    # (or of buffer_reads'): what py-amqp's timeout context adds is only needed for TLS sockets.
    read_frame = transport.read_frame
    prev = sock.gettimeout()
    if prev != timeout:
        sock.settimeout(timeout)
    try:
        for _ in range(most):
            while not amqp_conn.on_inbound_frame(read_frame()):
                pass
    finally:
        if prev != timeout:
            sock.settimeout(prev)
