"""A py-amqp TCP transport over one end of a local socket pair: tests of our frame reads without a broker."""

from __future__ import annotations

import socket
from typing import Any

import amqp.transport

from tdm_messaging.transport.kombu.wire import buffer_reads

__all__ = ["socket_pair_transport"]


def socket_pair_transport(*, buffered: bool = True) -> tuple[socket.socket, socket.socket, Any]:
    """A py-amqp ``TCPTransport`` on one end of a socket pair (its reads buffered by ours if ``buffered``,
    asserted); returns our end, the other end, and the transport."""
    ours, theirs = socket.socketpair()
    transport = amqp.transport.TCPTransport.__new__(amqp.transport.TCPTransport)
    transport.sock = ours
    transport.raise_on_initial_eintr = True
    transport._setup_transport()
    if buffered:

        class _Holder:
            pass

        holder = _Holder()
        holder.transport = transport  # type: ignore[attr-defined]
        assert buffer_reads(holder)
    return ours, theirs, transport
