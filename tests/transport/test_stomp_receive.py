"""The faster frame parse gives exactly stomp.py's Frame, for any frame (property test), and runs on real brokers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("stomp")

from stomp.utils import parse_frame as stomp_parse_frame

from tdm_messaging.transport.stomp.receive import install, parse_frame

_TEXT = st.text(alphabet=st.sampled_from(list("ab:\\\r\n ncrt-é")), max_size=12)


@st.composite
def _frames(draw: st.DrawFn) -> bytes:
    lead = draw(st.sampled_from(["", "\n", "\r\n", "\n\n"]))
    command = draw(st.sampled_from(["MESSAGE", "RECEIPT", "ERROR", "CONNECTED", ""]))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    lines = draw(st.lists(st.tuples(_TEXT, _TEXT), max_size=8))
    raw = draw(st.lists(_TEXT, max_size=3))  # lines that are not name:value pairs, and odd ones
    headers = [f"{name}:{value}" for name, value in lines] + raw
    body = draw(st.binary(max_size=20))
    end = draw(st.sampled_from(["\n\n", "\r\n\r\n", ""]))
    return (lead + command + eol + eol.join(headers) + end).encode() + body


def _same(raw: bytes) -> None:
    ours, theirs = parse_frame(raw), stomp_parse_frame(raw)
    if theirs is None:
        assert ours is None
        return
    assert ours is not None
    assert (ours.cmd, ours.headers, ours.body) == (theirs.cmd, theirs.headers, theirs.body)


@given(_frames())
def test_parse_frame_is_stomp_pys(raw: bytes) -> None:
    _same(raw)


@given(st.text(max_size=40).map(str.encode))
def test_parse_frame_is_stomp_pys_for_any_text(raw: bytes) -> None:
    _same(raw)


def test_escaped_headers_and_repeats() -> None:
    raw = b"MESSAGE\r\nk\\cey:v\\\\a\\nl:u:e\nk:ey:second\nrepeat:first\nrepeat:second\n:no-name\nno-colon\n\nbody\x00x"
    _same(raw)
    frame = parse_frame(raw)
    assert frame.headers == {"k:ey": "v\\a\nl:u:e", "k": "ey:second", "repeat": "first"}
    assert frame.body == b"body\x00x"


def test_install_leaves_an_unknown_transport_alone() -> None:
    class Other:
        pass

    other = Other()
    install(other)
    assert not hasattr(other, "_BaseTransport__read_frames")


class _Recorder:
    """A listener that records which callback got which frame, in a log shared by all listeners."""

    def __init__(self, name: str, log: list[tuple[str, str, object]]) -> None:
        self.name = name
        self.log = log

    def on_message(self, frame: object) -> None:
        self.log.append((self.name, "on_message", frame))

    def on_receipt(self, frame: object) -> None:
        self.log.append((self.name, "on_receipt", frame))

    def on_error(self, frame: object) -> None:
        self.log.append((self.name, "on_error", frame))


class _OnlyMessages:
    def __init__(self, log: list[tuple[str, str, object]]) -> None:
        self.log = log

    def on_message(self, frame: object) -> None:
        self.log.append(("only", "on_message", frame))


_ANY_TEXT = st.text(max_size=10)  # full Unicode


@given(
    st.sampled_from(["MESSAGE", "RECEIPT", "ERROR", "CONNECTED"]),
    st.dictionaries(_ANY_TEXT, _ANY_TEXT, max_size=6),
    st.one_of(st.none(), _ANY_TEXT),
    st.booleans(),
    st.lists(st.sampled_from(["b", "a", "c", "tdm", "ZZZ"]), unique=True, max_size=4),
)
def test_dispatch_calls_the_listeners_stomp_py_would(
    command: str, headers: dict[str, str], receipt_id: str | None, tracked: bool, names: list[str]
) -> None:
    """For MESSAGE and untracked RECEIPT frames: the same callbacks, in the same order, as stomp.py's
    process_frame (``on_before_message`` aside); every other frame is left to stomp.py."""
    from stomp.transport import Transport
    from stomp.utils import Frame as StompFrame

    from tdm_messaging.transport.stomp.receive import dispatch

    if receipt_id is not None:
        headers = {**headers, "receipt-id": receipt_id}
    frame = StompFrame(command, headers, b"body")
    theirs: list[tuple[str, str, object]] = []
    ours: list[tuple[str, str, object]] = []
    stomp_receipts = {receipt_id: "DISCONNECT"} if tracked and receipt_id is not None else {}
    transport = Transport(host_and_ports=[("127.0.0.1", 1)])
    for name in names:
        transport.set_listener(name, _Recorder(name, theirs))
    transport.set_listener("only", _OnlyMessages(theirs))
    transport._BaseTransport__receipts.update(stomp_receipts)  # as Protocol12.disconnect records its own
    handled = dispatch(frame, {n: _Recorder(n, ours) for n in names} | {"only": _OnlyMessages(ours)}, stomp_receipts)
    if command == "RECEIPT" and "receipt-id" not in headers:
        assert handled  # stomp.py itself would fail on it (KeyError): ours hands it on
        return
    transport.process_frame(frame, b"")
    expected = command == "MESSAGE" or (command == "RECEIPT" and not (tracked and receipt_id is not None))
    assert handled is expected
    if handled:
        assert ours == theirs
