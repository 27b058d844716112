"""A small TCP proxy for fault tests: forwards to a broker, and can black-hole or cut every connection on demand."""

from __future__ import annotations

import contextlib
import socket
import threading

__all__ = ["TcpProxy"]


class TcpProxy:
    """Listen on a free loopback port and forward each connection to ``(host, port)``.

    ``blackhole()`` keeps every socket open but stops moving bytes (a dead peer, a pulled
    cable: nothing is closed, nothing arrives); ``cut()`` closes every connection at once
    (a reset); ``heal()`` forwards again. New connections made while black-holed are accepted
    and then hang, like a SYN to a frozen host that the kernel still answers.

    With ``hold_closes`` the black hole swallows an end-of-stream too, as a real partition does:
    when one side gives up and closes, the other learns it only by itself (its heart-beats), and
    the close crosses once the network heals. Without it a close passes at once.
    """

    def __init__(self, host: str, port: int, *, hold_closes: bool = False) -> None:
        self._target = (host, port)
        self._hold_closes = hold_closes
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = False
        threading.Thread(target=self._accept, name="tcp-proxy-accept", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data and not self._hold_closes:
                break
            self._flowing.wait()  # black-holed: hold the bytes (and with hold_closes the close), send nothing
            if not data or self._closed:
                break
            try:
                dst.sendall(data)
            except OSError:
                break
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def blackhole(self) -> None:
        """Stop forwarding bytes in both directions, leaving every connection open."""
        self._flowing.clear()

    def heal(self) -> None:
        """Forward again (bytes held while black-holed are dropped with their connections by then, or sent)."""
        self._flowing.set()

    def cut(self) -> None:
        """Close every current connection, as a network reset would."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        """Stop listening and close everything."""
        self._closed = True
        self._flowing.set()
        self._listener.close()
        self.cut()
