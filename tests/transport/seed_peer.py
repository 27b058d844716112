"""A peer written from the seed system alone: raw STOMP 1.2 frames over a socket, plain SENDs, text lines.

Nothing here imports stomp.py or tdm_messaging. It speaks the way the seed's packager and API
server spoke: a package request is a ``text/plain`` body holding the docset URL, replies are the
lines ``Accepted. 45 seconds`` and ``Complete: <url>`` / ``Size: <n>``, and every SEND is plain
(no queue arguments). It is deliberately small and strict, so the tests that use it show what a
hand-written peer in another language would see.
"""

from __future__ import annotations

import itertools
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["Frame", "SeedPeer", "SeedPeerError", "seed_destination"]

_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", ":": "\\c"}
_UNESCAPES = {"\\\\": "\\", "\\n": "\n", "\\r": "\r", "\\c": ":"}


class SeedPeerError(Exception):
    """The broker sent an ERROR frame, closed the socket, or said something we cannot read."""


@dataclass(frozen=True)
class Frame:
    """One STOMP frame as read off the wire (headers unescaped; first occurrence of a header wins)."""

    command: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def seed_destination(name: str, dialect: str) -> str:
    """Spell logical queue ``name`` (``package/5``) as the seed would on ``dialect``'s STOMP.

    ActiveMQ takes ``/queue/package/5`` as written; RabbitMQ refuses ``/`` in a queue name and
    takes the percent-encoded ``/queue/package%2F5`` (the queue AMQP clients call ``package/5``).
    """
    if dialect == "rabbitmq":
        return "/queue/" + name.replace("/", "%2F")
    return "/queue/" + name


def _escape(value: str) -> str:
    return "".join(_ESCAPES.get(ch, ch) for ch in value)


def _unescape(value: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        pair = value[i : i + 2]
        if value[i] == "\\" and pair in _UNESCAPES:
            out.append(_UNESCAPES[pair])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def encode_frame(command: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    """Serialise one STOMP 1.2 frame; ``content-length`` is always set so bodies may hold NULs."""
    lines = [command]
    lines += [f"{_escape(k)}:{_escape(v)}" for k, v in headers.items()]
    if command not in {"CONNECT", "STOMP"}:
        lines.append(f"content-length:{len(body)}")
    return ("\n".join(lines) + "\n\n").encode() + body + b"\x00"


class SeedPeer:
    """A STOMP 1.2 client over a plain socket, in the seed's style.

    Args:
        url: ``stomp://[user:pass@]host:port/?dialect=rabbitmq|activemq`` (the test broker URLs).
        timeout: seconds a socket read may block before :class:`SeedPeerError` (a hang guard,
            not a protocol rule).
    """

    def __init__(self, url: str, *, timeout: float = 20.0) -> None:
        parts = urlsplit(url)
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        self.dialect = query.get("dialect", "activemq")
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 61613
        self._login = parts.username
        self._passcode = parts.password
        self._timeout = timeout
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._broker_closed = False  # after an ERROR frame the broker closes the connection
        self._pending: list[Frame] = []  # MESSAGE frames that arrived while we waited for a RECEIPT
        self._receipts = itertools.count(1)

    # -- connection -----------------------------------------------------------------------------
    def connect(self) -> Frame:
        """Open the socket and CONNECT (no heart-beats); return the CONNECTED frame."""
        self._sock = socket.create_connection((self._host, self._port), timeout=self._timeout)
        headers = {"accept-version": "1.2", "heart-beat": "0,0"}
        # RabbitMQ reads the STOMP host header as the vhost; ActiveMQ ignores it.
        headers["host"] = "/" if self.dialect == "rabbitmq" else self._host
        if self._login is not None:
            headers["login"] = self._login
            headers["passcode"] = self._passcode or ""
        self._write(encode_frame("CONNECT", headers))
        frame = self.next_frame()
        if frame.command != "CONNECTED":
            raise SeedPeerError(f"expected CONNECTED, got {frame.command}: {frame.headers} {frame.body!r}")
        return frame

    def disconnect(self) -> None:
        """DISCONNECT with a receipt (so every earlier frame was processed), then close the socket."""
        if self._sock is None:
            return
        try:
            if not self._broker_closed:
                self._write(encode_frame("DISCONNECT", {"receipt": "bye"}))
                self._wait_receipt("bye")
        finally:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> SeedPeer:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    # -- frames ---------------------------------------------------------------------------------
    def send(
        self,
        destination: str,
        body: str | bytes,
        *,
        content_type: str | None = "text/plain",
        extra: dict[str, str] | None = None,
    ) -> None:
        """A plain SEND (no queue arguments, no persistence header), confirmed by a receipt.

        ``content_type=None`` sends no ``content-type`` header at all, as some seed-style peers do;
        ``extra`` adds headers (e.g. a read marker's).
        """
        data = body.encode() if isinstance(body, str) else body
        receipt = f"r{next(self._receipts)}"
        headers = {"destination": destination, "receipt": receipt}
        if content_type is not None:
            headers["content-type"] = content_type
        headers.update(extra or {})
        self._write(encode_frame("SEND", headers, data))
        self._wait_receipt(receipt)

    def subscribe(self, destination: str, *, sub_id: str = "0", extra: dict[str, str] | None = None) -> None:
        """SUBSCRIBE with ``client-individual`` acknowledgement (plus ``extra`` headers), confirmed by a receipt."""
        receipt = f"r{next(self._receipts)}"
        headers = {"destination": destination, "id": sub_id, "ack": "client-individual", "receipt": receipt}
        headers.update(extra or {})
        self._write(encode_frame("SUBSCRIBE", headers))
        self._wait_receipt(receipt)

    def unsubscribe(self, *, sub_id: str = "0") -> None:
        """UNSUBSCRIBE; unacknowledged messages go back to the queue."""
        receipt = f"r{next(self._receipts)}"
        self._write(encode_frame("UNSUBSCRIBE", {"id": sub_id, "receipt": receipt}))
        self._wait_receipt(receipt)

    def ack(self, message: Frame) -> None:
        """ACK one MESSAGE frame (STOMP 1.2: by its ``ack`` header)."""
        self._write(encode_frame("ACK", {"id": message.headers["ack"]}))

    def receive(self) -> Frame:
        """The next MESSAGE frame (blocks up to the timeout; raises on ERROR)."""
        frame = self._pending.pop(0) if self._pending else self.next_frame()
        if frame.command != "MESSAGE":
            raise SeedPeerError(f"expected MESSAGE, got {frame.command}: {frame.headers} {frame.body!r}")
        return frame

    def next_frame(self) -> Frame:
        """Read one frame off the socket, skipping heart-beat newlines; ERROR frames raise."""
        while True:
            frame = self._parse()
            if frame is not None:
                if frame.command == "ERROR":
                    self._broker_closed = True
                    raise SeedPeerError(
                        f"broker ERROR: {frame.headers.get('message', '')} {frame.body.decode(errors='replace')}"
                    )
                return frame
            if self._sock is None:
                raise SeedPeerError("not connected")
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError as exc:
                raise SeedPeerError(f"no frame from the broker within {self._timeout} s") from exc
            if not chunk:
                self._broker_closed = True
                raise SeedPeerError("the broker closed the connection")
            self._buffer += chunk

    # -- internals ------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self._sock is None:
            raise SeedPeerError("not connected")
        self._sock.sendall(data)

    def _wait_receipt(self, receipt: str) -> None:
        frame = self.next_frame()
        while frame.command == "MESSAGE":
            self._pending.append(frame)
            frame = self.next_frame()
        if frame.command != "RECEIPT" or frame.headers.get("receipt-id") != receipt:
            raise SeedPeerError(f"expected RECEIPT {receipt}, got {frame.command}: {frame.headers}")

    def _parse(self) -> Frame | None:
        self._buffer = self._buffer.lstrip(b"\r\n")
        head_end = self._buffer.find(b"\n\n")
        if head_end < 0:
            return None
        head = self._buffer[:head_end].decode().replace("\r\n", "\n").split("\n")
        headers: dict[str, str] = {}
        for line in head[1:]:
            key, _, value = line.partition(":")
            headers.setdefault(_unescape(key), _unescape(value))
        start = head_end + 2
        if "content-length" in headers:
            end = start + int(headers["content-length"])
            if len(self._buffer) < end + 1:
                return None
        else:
            end = self._buffer.find(b"\x00", start)
            if end < 0:
                return None
        body = self._buffer[start:end]
        self._buffer = self._buffer[end + 1 :]
        return Frame(head[0], headers, body)
