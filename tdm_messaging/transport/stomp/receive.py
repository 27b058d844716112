"""A faster receive for stomp.py: the stream split and parsed without regexes; MESSAGE and RECEIPT handed on directly.

stomp.py's receiver reads the socket into a ``BytesIO``, appends it to a buffer, finds each frame's
end with two regexes (preamble end, ``content-length``), then ``parse_frame`` matches a regex per
header line and unescapes every name and value with ``re.sub``, and ``notify`` takes a lock, sorts
the listeners and looks each callback up twice per MESSAGE: about 40 µs per MESSAGE of our ~18
headers, on the receiver thread, so on a poll's critical path once per frame (the messages, the
read's marker, the settlement's RECEIPT).

Here, on one connection's receiver (:func:`install`; stomp.py's module is left alone, so other
stomp.py users in the process are not changed):

* :class:`FrameSplitter` cuts the stream into frames as stomp.py's ``BaseTransport.__read`` does
  (a frame ends at its ``content-length`` or else at the first NUL; line feeds after a frame are
  skipped), parsing each one once: string methods, no regex, escapes undone only in names and
  values that hold a backslash (:func:`parse_frame`, property-tested equal to stomp.py's);
* MESSAGE frames, and RECEIPTs that stomp.py is not waiting for itself, go straight to the
  listeners' ``on_message`` / ``on_receipt`` (see :func:`dispatch`); every other frame (CONNECTED,
  ERROR, a DISCONNECT's RECEIPT) and every heart-beat goes through stomp.py's ``process_frame``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import stomp.exception
from stomp.utils import (
    HEARTBEAT_FRAME,
    Frame,
    _unescape_header,
    decode,
)

__all__ = ["FrameSplitter", "Received", "dispatch", "install", "parse_frame", "parse_headers"]

log = logging.getLogger("stomp.py")  # stomp.py's own logger: its DEBUG level asks for its frame log
_ESCAPED = re.compile(r"\\.")
_CONTENT_LENGTH = re.compile(b"^content-length[:]\\s*(?P<value>[0-9]+)", re.MULTILINE)  # stomp.py's own


class Received:
    """A received frame: what stomp.py's ``Frame`` holds that listeners read (``cmd``, ``headers``, ``body``)."""

    __slots__ = ("body", "cmd", "headers")

    def __init__(self, cmd: str, headers: dict[str, str], body: Any) -> None:
        self.cmd = cmd
        self.headers = headers
        self.body = body


def _lines(text: str) -> list[str]:
    """stomp.utils' ``LINE_END_RE.split(text)`` without the regex: lines end at LF or CR LF."""
    lines = text.split("\n")
    if "\r" not in text:
        return lines
    last = len(lines) - 1
    return [line[:-1] if index < last and line.endswith("\r") else line for index, line in enumerate(lines)]


def parse_headers(lines: list[str], offset: int = 0) -> dict[str, str]:
    """stomp.utils.parse_headers without a regex per line: a header is ``name:value`` with a non-empty name
    (the value may hold more colons), the first of a repeated header wins, escapes are undone."""
    headers: dict[str, str] = {}
    for line in lines[offset:]:
        colon = line.find(":")
        if colon <= 0:
            continue
        key = line[:colon]
        if "\\" in key:
            key = _ESCAPED.sub(_unescape_header, key)
        if key not in headers:
            value = line[colon + 1 :]
            headers[key] = _ESCAPED.sub(_unescape_header, value) if "\\" in value else value
    return headers


def _plain_headers(lines: list[str], offset: int) -> dict[str, str]:
    """:func:`parse_headers` of lines that hold no backslash (nothing to unescape): the common case, 3x faster."""
    headers: dict[str, str] = {}
    for line in lines[offset:]:
        key, colon, value = line.partition(":")
        if colon and key and key not in headers:
            headers[key] = value
    return headers


def _preamble_end(frame: bytes, start: int = 0, end: int | None = None) -> tuple[int, int]:
    """stomp.utils' ``PREAMBLE_END_RE.search`` (the first ``\\n\\n`` or ``\\r\\n\\r\\n``) in ``frame[start:end]``.

    Returns (preamble end, body start), or (-1, -1) when there is none.
    """
    stop = len(frame) if end is None else end
    lf = frame.find(b"\n\n", start, stop)
    # A CR LF CR LF that starts before the first LF LF ends at most 3 bytes after it.
    crlf = frame.find(b"\r\n\r\n", start, stop if lf < 0 else min(stop, lf + 3))
    if crlf >= 0:
        return crlf, crlf + 4
    if lf >= 0:
        return lf, lf + 2
    return -1, -1


def _head(preamble: bytes) -> tuple[str, dict[str, str]] | None:
    """The command and headers of a frame's ``preamble`` (the bytes before its blank line), or None if it is blank."""
    text = preamble.decode("utf-8", "replace")
    lines = _lines(text)
    first = 0
    while first < len(lines) and not lines[first]:
        first += 1
    if first >= len(lines):
        return None
    headers = parse_headers(lines, first + 1) if "\\" in text else _plain_headers(lines, first + 1)
    return lines[first], headers


def _parse(frame: bytes, preamble_end: int, body_start: int) -> Any:
    """The frame of raw ``frame`` whose preamble ends at ``preamble_end`` (-1: none), or None for blank lines."""
    if preamble_end < 0:
        preamble_end = body_start = len(frame)
    head = _head(frame[0:preamble_end])
    return None if head is None else Received(head[0], head[1], frame[body_start:])


def parse_frame(frame: bytes) -> Any:
    """stomp.utils.parse_frame without regexes: the same command, headers and body (or None for blank lines)."""
    preamble_end, body_start = _preamble_end(frame)
    return _parse(frame, preamble_end, body_start)


class FrameSplitter:
    """Cuts a STOMP byte stream into parsed frames, as stomp.py's ``BaseTransport.__read`` + ``parse_frame``.

    Rules (stomp.py 8-9): a frame ends at its first NUL; if its preamble has a ``content-length``
    that reaches past that NUL, at ``content-length`` instead (the byte there is taken as its NUL),
    once that many bytes are in; line feeds right after a frame are skipped. Not thread-safe: the
    receiver thread alone feeds it.
    """

    __slots__ = ("buffer",)

    def __init__(self, buffer: bytes = b"") -> None:
        self.buffer = buffer

    def feed(self, data: bytes) -> list[tuple[Any, bytes]]:
        """Add ``data``; return every frame now complete as (parsed frame or None, raw frame), oldest first."""
        buffer = self.buffer + data if self.buffer else data
        frames: list[tuple[Any, bytes]] = []
        start = 0
        size = len(buffer)
        while start < size:
            end = buffer.find(b"\x00", start)
            if end < 0:
                break
            preamble_end, body_start = _preamble_end(buffer, start, end)
            if preamble_end < 0:  # no blank line before the NUL: all preamble, no body
                frames.append((_parse(buffer[start:end], -1, -1), buffer[start:end]))
            else:
                head = _head(buffer[start:preamble_end])
                length = _content_length(head, buffer, start, preamble_end)
                if length is not None and body_start + length > end:  # the body holds NUL bytes
                    if body_start + length >= size:
                        break  # wait for the rest
                    end = body_start + length
                parsed = None if head is None else Received(head[0], head[1], buffer[body_start:end])
                frames.append((parsed, buffer[start:end]))
            start = end + 1
            while buffer[start : start + 1] == b"\n":  # optional EOLs after a frame
                start += 1
        self.buffer = buffer[start:] if start else buffer
        return frames


def _content_length(head: tuple[str, dict[str, str]] | None, buffer: bytes, start: int, end: int) -> int | None:
    """The ``content-length`` stomp.py's regex finds in ``buffer[start:end]`` (a preamble), or None.

    Its first line ``content-length:<digits>`` (any spaces, even line ends, between): when the
    first such header holds only digits it is that one; otherwise the regex decides.
    """
    if head is not None:
        value = head[1].get("content-length")
        if value is not None and value.isdigit() and value.isascii() and not head[0].startswith("content-length"):
            return int(value)
    preamble = buffer[start:end]
    if b"content-length" not in preamble:
        return None
    found = _CONTENT_LENGTH.search(preamble)
    return None if found is None else int(found.group("value"))


def dispatch(frame: Any, listeners: dict[str, Any], stomp_receipts: dict[str, Any]) -> bool:
    """Hand a MESSAGE, or a RECEIPT stomp.py does not track, to every listener; False for any other frame.

    What stomp.py's ``process_frame`` + ``notify`` do for those two frames, in the same order
    (listeners sorted by name): ``on_message(frame)`` / ``on_receipt(frame)`` of each listener
    that has it. Left out: the ``on_before_message`` call (no-op in every listener a connection
    of ours has: stomp.py's heart-beat and disconnect listeners and ours) and the debug log.
    A RECEIPT stomp.py awaits itself (a DISCONNECT's, in ``stomp_receipts``) goes its own way.
    """
    command = frame.cmd
    if command == "MESSAGE":
        callback = "on_message"
    elif command == "RECEIPT" and frame.headers.get("receipt-id") not in stomp_receipts:
        callback = "on_receipt"
    else:
        return False
    for _, listener in sorted(listeners.items()):
        method = getattr(listener, callback, None)
        if method is not None:
            method(frame)
    return True


def install(transport: Any) -> None:
    """Make stomp.py ``transport``'s receiver read with :class:`FrameSplitter` and hand on with :func:`dispatch`.

    Replaces, on this transport object only, ``BaseTransport.__read_frames`` (stomp.py 8-9: read
    the socket, parse each frame, hand it to ``process_frame``), which its I/O loop looks up afresh
    on every pass. Nothing is changed if the transport lacks what this relies on (another stomp.py).
    A TLS transport (stomp.py reads it non-blocking, through its own buffering) keeps stomp.py's
    reads and gets only the parse and the hand-on.
    """
    read = getattr(transport, "_BaseTransport__read", None)
    is_eol = getattr(transport, "_BaseTransport__is_eol", None)
    receipts = getattr(transport, "_BaseTransport__receipts", None)
    listeners = getattr(transport, "listeners", None)
    if (
        read is None
        or is_eol is None
        or not isinstance(receipts, dict)
        or not isinstance(listeners, dict)
        or not hasattr(transport, "_BaseTransport__read_frames")
        or not hasattr(transport, "_BaseTransport__recvbuf")
    ):
        return
    process = transport.process_frame

    def hand_on(parsed: Any, raw: bytes, direct: bool) -> None:
        if transport._BaseTransport__auto_decode:
            parsed.body = decode(parsed.body)
        if direct and dispatch(parsed, listeners, receipts):
            return
        process(Frame(parsed.cmd, parsed.headers, parsed.body), raw)

    if not getattr(transport, "blocking", True):

        def read_frames_tls() -> None:
            direct = not log.isEnabledFor(logging.DEBUG)  # stomp.py logs every frame at DEBUG: let it
            for raw in read():
                if is_eol(raw):
                    process(HEARTBEAT_FRAME, raw)
                    continue
                parsed = parse_frame(raw)
                if parsed is not None:
                    hand_on(parsed, raw, direct)

        transport._BaseTransport__read_frames = read_frames_tls
        return

    splitter = FrameSplitter()
    receive = transport.receive

    def read_frames() -> None:
        """stomp.py's ``__read_frames`` of a blocking socket: read until a frame (or a heart-beat) is in, hand it on."""
        carried = transport._BaseTransport__recvbuf  # what stomp.py's own reads left (before this was installed)
        if carried:
            transport._BaseTransport__recvbuf = b""
            splitter.buffer = carried + splitter.buffer
        frames: list[tuple[Any, bytes]] = []
        while transport.running:
            try:
                # A blocking socket (stomp.py sets no timeout on it): Python retries EINTR itself
                # (PEP 475) and EAGAIN cannot come, so stomp.py's "interrupted, read again" never does.
                data = receive()
            except Exception:  # as stomp.py: any failure to read is the end of the connection
                log.debug("socket read error", exc_info=True)
                data = b""
            if not data:
                splitter.buffer = b""
                raise stomp.exception.ConnectionClosedException()
            if is_eol(data) and not splitter.buffer:
                process(HEARTBEAT_FRAME, data)
                return
            frames = splitter.feed(data)
            if frames:
                break
        direct = not log.isEnabledFor(logging.DEBUG)  # stomp.py logs every frame at DEBUG: let it
        for parsed, raw in frames:
            if parsed is not None:
                hand_on(parsed, raw, direct)

    transport._BaseTransport__read_frames = read_frames
