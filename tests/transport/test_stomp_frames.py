"""Tests of stomp_frames.send_frame: the SEND bytes we write ourselves, against stomp.py's own encoding."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tdm_messaging.transport.stomp.frames import send_frame

pytest.importorskip("stomp")

import stomp.protocol
import stomp.transport
import stomp.utils

_TRICKY = [
    "",
    "plain",
    "a:b",
    "back\\slash",
    "line\nfeed",
    "carriage\rreturn",
    "\\n not a newline",
    "é ünï ☃",
    ":\\:\n",
]


class _Recorder(stomp.transport.BaseTransport):  # type: ignore[misc]
    """stomp.py's own transport, but the socket write keeps the bytes instead."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""

    def send(self, encoded_frame: bytes) -> None:
        self.written = encoded_frame


def _stomp_py_bytes(destination: str, body: bytes, content_type: str, headers: dict[str, str]) -> bytes:
    recorder = _Recorder()
    stomp.protocol.Protocol12(recorder).send(destination, body, content_type=content_type, headers=dict(headers))
    return recorder.written


def _parsed(frame: bytes) -> Any:
    assert frame.endswith(b"\x00")
    return stomp.utils.parse_frame(frame[:-1])


@pytest.mark.parametrize("value", _TRICKY)
def test_tricky_values_give_stomp_py_bytes(value: str) -> None:
    headers = {"tdm-value": value, "persistent": "true", "durable": "true"}
    ours = send_frame("/queue/package%2F5", b'{"a": 1}', "application/json", dict(headers))
    assert ours == _stomp_py_bytes("/queue/package%2F5", b'{"a": 1}', "application/json", headers)
    frame = _parsed(ours)
    assert frame.cmd == "SEND" and frame.headers["tdm-value"] == value and frame.body == b'{"a": 1}'


@given(
    st.dictionaries(st.from_regex(r"tdm-[a-z-]{1,12}", fullmatch=True), st.text(max_size=30), max_size=8),
    st.binary(max_size=64),
    st.sampled_from(["application/json", "text/plain; charset=utf-8", ""]),
)
def test_any_headers_and_body_give_stomp_py_bytes(headers: dict[str, str], body: bytes, content_type: str) -> None:
    ours = send_frame("/queue/a:b", body, content_type, dict(headers))
    assert ours == _stomp_py_bytes("/queue/a:b", body, content_type, headers)


def test_content_length_counts_bytes_and_is_left_out_for_an_empty_body() -> None:
    frame = _parsed(send_frame("/queue/q", "é".encode(), "text/plain", {}))
    assert frame.headers["content-length"] == "2" and frame.body == "é".encode()
    empty = send_frame("/queue/q", b"", "text/plain", {"receipt": "r-1"})
    assert empty == b"SEND\ncontent-type:text/plain\ndestination:/queue/q\nreceipt:r-1\n\n\x00"
    assert empty == _stomp_py_bytes("/queue/q", b"", "text/plain", {"receipt": "r-1"})


def test_a_body_with_nul_bytes_is_framed_by_its_length() -> None:
    body = b"a\x00b\x00"
    frame = send_frame("/queue/q", body, "application/octet-stream", {})
    assert frame.endswith(b"\n\n" + body + b"\x00")
    assert _parsed(frame).headers["content-length"] == str(len(body))


def test_header_names_are_escaped_too() -> None:
    """STOMP 1.2 escapes names as well as values; stomp.py escapes only values (its frame would break here)."""
    frame = send_frame("/queue/q", b"x", "text/plain", {"tdm-a:b": "v:w", "tdm-c\nd": "e"})
    assert b"tdm-a\\cb:v\\cw\n" in frame and b"tdm-c\\nd:e\n" in frame
    parsed = _parsed(frame)
    assert parsed.headers["tdm-a:b"] == "v:w" and parsed.headers["tdm-c\nd"] == "e"


def test_headers_are_taken_over_and_completed() -> None:
    headers = {"tdm-type": "progress"}
    send_frame("/queue/q", b"xyz", "text/plain", headers)
    assert headers == {
        "tdm-type": "progress",
        "destination": "/queue/q",
        "content-type": "text/plain",
        "content-length": "3",
    }


def test_a_message_without_content_type_has_none() -> None:
    """docs/protocol.md § 3: no content type means "guess from the body", so none is made up."""
    from tdm_messaging.transport.stomp.frames import envelope_from_headers

    got = envelope_from_headers({"destination": "/queue/q", "message-id": "1", "tdm-type": "accepted"}, b"x")
    assert (got.content_type, dict(got.headers)) == ("", {"tdm-type": "accepted"})
    assert envelope_from_headers({"content-type": "text/plain"}, b"x").content_type == "text/plain"


_ID = st.text(alphabet=st.sampled_from(list("aT_@-0:\\\r\né")), max_size=10)


@given(_ID, st.lists(_ID, max_size=4), st.lists(_ID, max_size=4), st.one_of(st.none(), _ID), _ID)
def test_settle_frames_are_header_frames_joined(
    tx: str, acks: list[str], nacks: list[str], unsubscribe: str | None, receipt: str
) -> None:
    from tdm_messaging.transport.stomp.frames import header_frame, settle_frames

    expected = [header_frame("BEGIN", {"transaction": tx})]
    expected += [header_frame("ACK", {"id": a, "transaction": tx}) for a in acks]
    expected += [header_frame("NACK", {"id": n, "transaction": tx}) for n in nacks]
    if unsubscribe is not None:
        expected.append(header_frame("UNSUBSCRIBE", {"id": unsubscribe}))
    expected.append(header_frame("COMMIT", {"transaction": tx, "receipt": receipt}))
    assert settle_frames(tx, acks, nacks, unsubscribe, receipt) == b"".join(expected)


@given(
    st.sampled_from(["/queue/package%2Fa", "/amq/queue/package%2Fb", "/queue/odd{0}:name"]),
    st.sampled_from([{}, {"durable": "true", "auto-delete": "false", "exclusive": "false", "x-expires": "900000"}]),
    st.sampled_from(["rabbitmq", "activemq"]),
    st.integers(min_value=1, max_value=5000),
    st.integers(min_value=0, max_value=2**45),
)
def test_read_start_frames_are_the_marker_send_and_the_subscribe(
    wire: str, declare: dict[str, str], dialect_name: str, prefetch: int, sent_at: int
) -> None:
    """The same bytes as send_frame/header_frame of the marker's and the subscription's headers; RabbitMQ:
    SUBSCRIBE first, with the declare headers, the marker without them; ActiveMQ: the marker first."""
    from tdm_messaging.transport.markers import MARKER_TTL_MS
    from tdm_messaging.transport.stomp.dialect import Dialect
    from tdm_messaging.transport.stomp.frames import (
        MARKER_AT_HEADER,
        MARKER_HEADER,
        header_frame,
        prefetch_headers,
        read_start_frames,
    )

    dialect = Dialect(dialect_name)
    marker, sub_id = "0123456789abcdef" * 2, "tdm-read-x1"
    subscribe = {**declare, **prefetch_headers(dialect, prefetch), "destination": wire, "id": sub_id}
    subscribe["ack"] = "client-individual"
    mark = {MARKER_HEADER: marker, MARKER_AT_HEADER: str(sent_at)}
    if dialect is Dialect.ACTIVEMQ:
        mark.update({"persistent": "true", "expires": str(sent_at + MARKER_TTL_MS), **declare})
        expected = send_frame(wire, b"", "", mark) + header_frame("SUBSCRIBE", subscribe)
    else:
        mark["expiration"] = str(MARKER_TTL_MS)
        expected = header_frame("SUBSCRIBE", subscribe) + send_frame(wire, b"", "", mark)
    got = read_start_frames(wire, declare, dialect, prefetch, marker=marker, sent_at_ms=sent_at, sub_id=sub_id)
    assert got == expected


@given(
    st.dictionaries(st.sampled_from(["tdm-type", "TDM-Type", "ack", "x-expires", "content-type", "Tdm-A", "b"]), _ID)
)
def test_envelope_headers_are_the_application_headers_lower_cased(headers: dict[str, str]) -> None:
    from tdm_messaging.transport.stomp.frames import envelope_from_headers

    expected: dict[str, str] = {}
    for name, value in headers.items():  # the rule, written out: a later name that lowers the same wins
        lowered = name.lower()
        if lowered not in {"ack", "content-type"} and not lowered.startswith("x-"):
            expected[lowered] = value
    for _ in range(2):  # the second time from the names' plan
        envelope = envelope_from_headers(headers, b"x")
        assert dict(envelope.headers) == expected
        assert envelope.content_type == (headers.get("content-type") or "")
