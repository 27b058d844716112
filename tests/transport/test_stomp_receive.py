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
