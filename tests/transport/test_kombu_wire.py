"""The kombu wing's raw AMQP path equals py-amqp's and kombu's: frames byte for byte, envelopes, buffered reads."""

from __future__ import annotations

import socket
import threading
from struct import pack
from typing import Any

import amqp
import amqp.transport
import pytest
from amqp import spec
from amqp.method_framing import frame_writer
from amqp.serialization import dumps
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from kombu.transport.pyamqp import Message as KombuAmqpMessage

from tdm_messaging.envelope import Envelope
from tdm_messaging.transport.kombu.messages import (
    content_encoding,
    raw_envelope,
    raw_redelivered,
    redelivered,
    to_envelope,
)
from tdm_messaging.transport.kombu.send import amqp_message
from tdm_messaging.transport.kombu.wire import (
    ack_frame,
    buffer_reads,
    envelope_publish,
    get_frame,
    method_frame,
    passive_declare_frame,
    publish_frames,
    publish_method,
    reject_frame,
)
from tests.transport.amqp_socket_pair import socket_pair_transport


class _Capture:
    """A py-amqp connection and transport that keep what py-amqp's frame writer writes."""

    def __init__(self, frame_max: int) -> None:
        self.frame_max = frame_max
        self.bytes_sent = 0
        self.written: list[bytes] = []

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))


def _pyamqp(
    frame_max: int, channel_id: int, sig: tuple[int, int], argsig: str, args: tuple[Any, ...], *, content: Any
) -> bytes:
    capture = _Capture(frame_max)
    frame_writer(capture, capture)(1, channel_id, sig, dumps(argsig, args), content)
    return b"".join(capture.written)


_names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40).filter(
    lambda s: len(s.encode()) <= 255
)
_channels = st.integers(1, 2047)
_tags = st.integers(1, 2**63 - 1)


@given(_channels, _tags, st.booleans(), _names)
def test_method_frames_are_py_amqps(channel_id: int, tag: int, requeue: bool, queue: str) -> None:
    frame_max = 131072
    assert ack_frame(channel_id, tag) == _pyamqp(
        frame_max, channel_id, spec.Basic.Ack, "Lb", (tag, False), content=None
    )
    assert reject_frame(channel_id, tag, requeue=requeue) == _pyamqp(
        frame_max, channel_id, spec.Basic.Reject, "Lb", (tag, requeue), content=None
    )
    assert get_frame(channel_id, queue) == _pyamqp(
        frame_max, channel_id, spec.Basic.Get, "Bsb", (0, queue, False), content=None
    )
    passive = (0, queue, True, False, False, True, False, None)  # py-amqp's queue_declare(queue, passive=True)
    assert passive_declare_frame(channel_id, queue) == _pyamqp(
        frame_max, channel_id, spec.Queue.Declare, "BsbbbbbF", passive, content=None
    )


_header_values = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30),
    st.integers(-(2**31), 2**31 - 1),
    st.booleans(),
)


@settings(max_examples=200)
@given(
    _channels,
    _names,
    st.booleans(),
    st.binary(max_size=3000),
    st.sampled_from([4096, 8192, 131072]),
    st.dictionaries(_names.filter(bool), _header_values, max_size=6),
    st.sampled_from(["application/json", "text/plain; charset=utf-8", "application/octet-stream"]),
    st.booleans(),
)
def test_publish_frames_are_py_amqps(  # noqa: PLR0917 - one example's drawn values
    channel_id: int,
    routing_key: str,
    mandatory: bool,
    body: bytes,
    frame_max: int,
    headers: dict[str, Any],
    content_type: str,
    persistent: bool,
) -> None:
    def message() -> amqp.Message:
        return amqp.Message(
            body,
            content_type=content_type,
            content_encoding="utf-8",
            application_headers=dict(headers),
            delivery_mode=2 if persistent else 1,
        )

    args = (0, "", routing_key, mandatory, False)
    method = method_frame(channel_id, spec.Basic.Publish, "Bssbb", args)
    ours = publish_frames(channel_id, frame_max, method, message())
    assert ours == _pyamqp(frame_max, channel_id, spec.Basic.Publish, "Bssbb", args, content=message())


_wire_headers = st.dictionaries(
    st.text(max_size=20),
    st.one_of(st.text(max_size=30), st.binary(max_size=30), st.integers(), st.booleans(), st.none(), st.floats()),
    max_size=6,
)


@settings(max_examples=300)
@given(
    st.one_of(st.binary(max_size=200), st.text(max_size=200)),
    st.one_of(
        st.none(), st.sampled_from(["", "application/json", "text/plain", "application/data"]), st.text(max_size=30)
    ),
    st.one_of(st.none(), _wire_headers),
    st.booleans(),
)
def test_a_raw_read_gives_kombus_envelope(
    body: bytes | str, content_type: str | None, headers: dict[str, Any] | None, redelivered_flag: bool
) -> None:
    properties: dict[str, Any] = {}
    if content_type is not None:
        properties["content_type"] = content_type
    if headers is not None:
        properties["application_headers"] = headers
    message = amqp.Message(body, **properties)
    message.delivery_info = {"delivery_tag": 1, "redelivered": redelivered_flag}
    wrapped = KombuAmqpMessage(message)
    ours = raw_envelope(message)
    if headers and "compression" in headers:
        assert ours is None  # kombu decompresses such a body: the raw path hands it to kombu
    else:
        assert ours == to_envelope(wrapped)
    assert raw_redelivered(message) == redelivered(wrapped)


def _frame(kind: int, channel: int, payload: bytes) -> bytes:
    return pack(">BHI", kind, channel, len(payload)) + payload + b"\xce"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([1, 2, 3]), _channels, st.binary(max_size=9000)), min_size=1, max_size=12),
    st.lists(st.integers(1, 5000), min_size=1, max_size=8),
)
def test_buffered_reads_give_the_frames_written_however_split(
    frames: list[tuple[int, int, bytes]], cuts: list[int]
) -> None:
    wire = b"".join(_frame(*frame) for frame in frames)
    ours, theirs, transport = socket_pair_transport()

    def send() -> None:
        position, turn = 0, 0
        while position < len(wire):
            step = cuts[turn % len(cuts)]
            theirs.sendall(wire[position : position + step])
            position, turn = position + step, turn + 1

    writer = threading.Thread(target=send)
    writer.start()
    try:
        ours.settimeout(10)
        got = [transport.read_frame() for _ in frames]
    finally:
        writer.join()
        ours.close()
        theirs.close()
    assert got == [(kind, channel, payload) for kind, channel, payload in frames]


def test_buffered_reads_keep_a_partial_frame_across_a_timeout() -> None:
    ours, theirs, transport = socket_pair_transport()
    frame = _frame(1, 3, b"payload")
    try:
        theirs.sendall(frame[:9])
        ours.settimeout(0.05)
        with pytest.raises(socket.timeout):
            transport.read_frame()
        theirs.sendall(frame[9:])
        ours.settimeout(10)
        assert transport.read_frame() == (1, 3, b"payload")
    finally:
        ours.close()
        theirs.close()


def test_tls_connections_keep_py_amqps_reads() -> None:
    class _Conn:
        transport = object()

    assert not buffer_reads(_Conn())


_header_text = st.text(st.characters(codec="utf-8"), max_size=30)  # lone surrogates too: py-amqp passes them


@settings(max_examples=300)
@given(
    _channels,
    st.binary(max_size=3000),
    st.sampled_from([4096, 131072]),
    st.dictionaries(_header_text.filter(lambda s: 0 < len(s.encode("utf-8", "surrogatepass")) <= 255), _header_text),
    st.one_of(st.sampled_from(["", "application/json", "text/plain; charset=utf-8"]), st.text(max_size=40)),
    st.booleans(),
)
def test_an_envelopes_publish_is_py_amqps(  # noqa: PLR0917 - one example's drawn values
    channel_id: int, body: bytes, frame_max: int, headers: dict[str, str], content_type: str, persistent: bool
) -> None:
    assume(len(content_type.encode("utf-8", "surrogatepass")) <= 255)
    envelope = Envelope(body, content_type, headers)
    method = method_frame(channel_id, spec.Basic.Publish, "Bssbb", (0, "", "package/5", True, False))
    encoding = content_encoding(content_type)
    ours = envelope_publish(channel_id, frame_max, method, envelope, content_encoding=encoding, persistent=persistent)
    assert ours == publish_frames(channel_id, frame_max, method, amqp_message(envelope, persistent=persistent))


@given(_channels, _names, st.booleans(), _names)
def test_a_kept_publish_method_is_py_amqps_for_its_own_channel_and_destination(
    channel_id: int, routing_key: str, mandatory: bool, other_key: str
) -> None:
    args = (0, "", routing_key, mandatory, False)
    expected = _pyamqp(131072, channel_id, spec.Basic.Publish, "Bssbb", args, content=None)
    assert publish_method(channel_id, routing_key, mandatory=mandatory) == expected
    # Another destination, channel or flag gets a frame of its own, and the first one is kept as it was.
    assume(other_key != routing_key)
    assert publish_method(channel_id, other_key, mandatory=mandatory) != expected
    assert publish_method(channel_id % 2047 + 1, routing_key, mandatory=mandatory) != expected
    assert publish_method(channel_id, routing_key, mandatory=not mandatory) != expected
    again = publish_method(channel_id, routing_key, mandatory=mandatory)
    assert type(again) is bytes  # immutable: no send can change what the next one writes
    assert again == expected
