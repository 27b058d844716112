"""Our drain (consume loop, confirm wait) equals py-amqp's ``drain_events``: same frames dispatched, timeout kept."""

from __future__ import annotations

import contextlib
from struct import pack
from typing import Any

import amqp
import amqp.transport
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tdm_messaging.transport.kombu.wire import drain_events, drain_pending
from tests.transport.amqp_socket_pair import socket_pair_transport


def _frame(kind: int, channel: int, payload: bytes) -> bytes:
    return pack(">BHI", kind, channel, len(payload)) + payload + b"\xce"


class _Conn:
    """What drain_events uses of a py-amqp connection; py-amqp's own drain_events and blocking_read on top."""

    drain_events = amqp.Connection.drain_events
    blocking_read = amqp.Connection.blocking_read

    def __init__(self, transport: Any, completes: list[bool]) -> None:
        self.transport = transport
        self.completes = list(completes)  # per frame: whether it completes a method (drain_events returns)
        self.seen: list[tuple[int, int, bytes]] = []

    def on_inbound_frame(self, frame: tuple[int, int, bytes]) -> bool:
        self.seen.append(frame)
        return self.completes.pop(0) if self.completes else True


def _run(
    frames: list[tuple[int, int, bytes]], completes: list[bool], most: int, *, ours_path: bool, buffered: bool
) -> tuple[list[tuple[int, int, bytes]], bytes, float | None]:
    sock, theirs, transport = socket_pair_transport(buffered=buffered)
    try:
        sock.settimeout(7.5)  # the link's bound on broker waits: put back after the drain
        theirs.sendall(b"".join(_frame(*f) for f in frames))
        conn = _Conn(transport, completes)
        with contextlib.suppress(TimeoutError):
            if ours_path:
                drain_events(conn, 0, most=most)
            else:
                for _ in range(most):
                    conn.drain_events(timeout=0)
        return conn.seen, transport._read_buffer, sock.gettimeout()
    finally:
        sock.close()
        theirs.close()


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([1, 2, 3]), st.integers(0, 3), st.binary(max_size=300)), min_size=0, max_size=12
    ),
    st.lists(st.booleans(), max_size=12),
    st.integers(1, 6),
    st.booleans(),
)
def test_a_drain_dispatches_what_py_amqps_drain_events_dispatches(
    frames: list[tuple[int, int, bytes]], completes: list[bool], most: int, buffered: bool
) -> None:
    ours = _run(frames, completes, most, ours_path=True, buffered=buffered)
    theirs = _run(frames, completes, most, ours_path=False, buffered=buffered)
    assert ours == theirs
    assert ours[2] == 7.5


def test_a_drain_that_times_out_puts_the_sockets_timeout_back_and_keeps_a_partial_frame() -> None:
    sock, theirs, transport = socket_pair_transport(buffered=True)
    try:
        sock.settimeout(7.5)
        frame = _frame(1, 1, b"payload")
        theirs.sendall(frame[:5])
        conn = _Conn(transport, [])
        with pytest.raises(TimeoutError):
            drain_events(conn, 0.01)
        assert sock.gettimeout() == 7.5
        theirs.sendall(frame[5:])
        drain_events(conn, 0.5)
        assert conn.seen == [(1, 1, b"payload")]
        assert sock.gettimeout() == 7.5
    finally:
        sock.close()
        theirs.close()


def test_other_transports_take_py_amqps_drain_events() -> None:
    calls: list[float] = []

    class _Other:
        transport = object()

        def drain_events(self, timeout: float) -> None:
            calls.append(timeout)

    drain_events(_Other(), 0, most=3)
    assert calls == [0, 0, 0]


class _CountingConn(_Conn):
    def __init__(self, transport: Any, completes: list[bool]) -> None:
        super().__init__(transport, completes)
        self.drains = 0

    def drain_events(self, timeout: float) -> Any:
        self.drains += 1
        return _Conn.drain_events(self, timeout=timeout)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([1, 2, 3]), st.integers(0, 3), st.binary(max_size=300)), min_size=0, max_size=4),
    st.lists(st.booleans(), max_size=4),
    st.booleans(),
)
def test_a_drain_before_a_publish_dispatches_what_py_amqps_does(
    frames: list[tuple[int, int, bytes]], completes: list[bool], buffered: bool
) -> None:
    """``drain_pending`` is py-amqp's ``drain_events(timeout=0)`` (its timeout ignored), as its basic_publish runs it.

    (Whole frames only: py-amqp's non-blocking read of a frame cut short spins until the rest comes, ours alike.)
    """
    wire = b"".join(_frame(*f) for f in frames)
    seen = []
    for ours in (True, False):
        sock, theirs, transport = socket_pair_transport(buffered=buffered)
        try:
            sock.settimeout(7.5)
            if wire:
                theirs.sendall(wire)
            conn = _CountingConn(transport, completes)
            if ours:
                drain_pending(conn)
            else:
                with contextlib.suppress(TimeoutError):
                    conn.drain_events(timeout=0)
            seen.append((conn.seen, transport._read_buffer, sock.gettimeout()))
            if ours and not wire:
                assert conn.drains == 0  # nothing came: no py-amqp drain (no timeout set, no recv raised)
        finally:
            sock.close()
            theirs.close()
    assert seen[0] == seen[1]


def test_a_drain_before_a_publish_reads_what_an_earlier_read_left_buffered() -> None:
    sock, theirs, transport = socket_pair_transport(buffered=True)
    try:
        transport._read_buffer = _frame(1, 1, b"left over")
        conn = _CountingConn(transport, [])
        drain_pending(conn)
        assert conn.seen == [(1, 1, b"left over")]
    finally:
        sock.close()
        theirs.close()


def test_a_drain_before_a_publish_on_other_transports_is_py_amqps() -> None:
    calls: list[float] = []

    class _Other:
        transport = object()

        def drain_events(self, timeout: float) -> None:
            calls.append(timeout)
            raise TimeoutError

    drain_pending(_Other())
    assert calls == [0]
