"""The faster frame parse gives exactly stomp.py's Frame, for any frame (property test), and runs on real brokers."""

from __future__ import annotations

import itertools

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


class _Fed:
    """A stomp.py transport whose socket is a list of chunks (then the connection closes), recording every callback."""

    def __init__(self, chunks: list[bytes], *, ours: bool) -> None:
        from stomp.transport import BaseTransport

        chunks = list(chunks)
        self.log: list[tuple[str, object]] = []
        log = self.log

        class Fed(BaseTransport):  # type: ignore[misc]
            def receive(self) -> bytes:
                return chunks.pop(0) if chunks else b""

        class Recorder:
            def on_message(self, frame: object) -> None:
                log.append(("on_message", _seen(frame)))

            def on_receipt(self, frame: object) -> None:
                log.append(("on_receipt", _seen(frame)))

            def on_error(self, frame: object) -> None:
                log.append(("on_error", _seen(frame)))

            def on_connected(self, frame: object) -> None:
                log.append(("on_connected", _seen(frame)))

            def on_heartbeat(self) -> None:
                log.append(("on_heartbeat", None))

        self.transport = Fed(auto_decode=False)
        self.transport.running = True
        self.transport.set_listener("recorder", Recorder())
        if ours:
            install(self.transport)

    def run(self) -> list[tuple[str, object]]:
        """Read until the connection closes, as stomp.py's I/O loop does."""
        from stomp.exception import ConnectionClosedException

        for _ in range(1000):
            try:
                self.transport._BaseTransport__read_frames()
            except ConnectionClosedException:
                return self.log
        raise AssertionError("the stream never ended")


def _seen(frame: object) -> object:
    return (frame.cmd, dict(frame.headers), frame.body)  # type: ignore[attr-defined]


_NAME = st.text(alphabet=st.sampled_from(list("abc-:\\\r\n é")), min_size=0, max_size=6)


@st.composite
def _stream(draw: st.DrawFn) -> list[bytes]:
    """Frames as a broker writes them (some with content-length, whose bodies may hold NULs), heart-beats between,
    cut into chunks anywhere."""
    parts: list[bytes] = []
    for _ in range(draw(st.integers(min_value=0, max_value=5))):
        parts.append(b"\n" * draw(st.integers(min_value=0, max_value=2)))
        command = draw(st.sampled_from(["MESSAGE", "RECEIPT", "ERROR", "CONNECTED", "OTHER"]))
        headers = draw(st.lists(st.tuples(_NAME, _NAME), max_size=5))
        if command == "RECEIPT":
            headers.insert(0, ("receipt-id", draw(st.sampled_from(["r1", "r2"]))))
        sized = draw(st.booleans())
        body = draw(st.binary(max_size=12) if sized else st.binary(max_size=12).map(lambda b: b.replace(b"\x00", b"")))
        if sized:
            headers.append(("content-length", str(len(body))))
        eol = draw(st.sampled_from(["\n", "\r\n"]))
        preamble = command + eol + "".join(f"{name}:{value}{eol}" for name, value in headers) + eol
        parts.append(preamble.encode() + body + b"\x00")
        parts.append(b"\n" * draw(st.integers(min_value=0, max_value=2)))
    stream = b"".join(parts)
    cuts = sorted(set(draw(st.lists(st.integers(min_value=1, max_value=max(1, len(stream) - 1)), max_size=6))))
    bounds = [0, *[c for c in cuts if c < len(stream)], len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@given(_stream())
def test_the_installed_reader_hands_on_what_stomp_pys_would(chunks: list[bytes]) -> None:
    """Any stream, cut anywhere: the same callbacks, frames and order as stomp.py's own reader."""
    assert _Fed(chunks, ours=True).run() == _Fed(chunks, ours=False).run()


def test_the_installed_reader_splits_bodies_that_hold_nul_by_content_length() -> None:
    frame = b"MESSAGE\nsubscription:s\ncontent-length:5\n\na\x00b\x00c\x00\n"
    chunks = [frame[:10], frame[10:30], frame[30:], b"\n", b"RECEIPT\nreceipt-id:r\n\n\x00"]
    log = _Fed(chunks, ours=True).run()
    assert log == [
        ("on_message", ("MESSAGE", {"subscription": "s", "content-length": "5"}, b"a\x00b\x00c")),
        ("on_heartbeat", None),
        ("on_receipt", ("RECEIPT", {"receipt-id": "r"}, b"")),
    ]
