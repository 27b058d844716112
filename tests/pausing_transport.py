"""A transport that holds one reply-queue read open on demand: the harness of the poll-overlap tests."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from tdm_messaging.destinations import Destination, DestinationKind
from tdm_messaging.envelope import Envelope
from tdm_messaging.transport import Batch, Capabilities, Handler, Transport

__all__ = ["Gate", "PausingTransport"]


class Gate:
    """Holds the first reply-queue read after :meth:`arm` until :attr:`release` is set; records every read."""

    def __init__(self) -> None:
        self._armed = False
        self.held = threading.Event()
        self.release = threading.Event()
        self.found: list[tuple[str, int]] = []  # (queue, envelopes read), in read order
        self._lock = threading.Lock()

    def arm(self) -> None:
        self._armed = True

    def hold(self, queue: str, count: int) -> None:
        with self._lock:
            self.found.append((queue, count))
            pause, self._armed = self._armed, False
        if pause:
            self.held.set()
            assert self.release.wait(timeout=30), "the test never released the held read"


class PausingTransport(Transport):
    """Delegates to ``inner``; each reply-queue read reports to ``gate`` (which may hold it) before returning."""

    def __init__(self, inner: Transport, gate: Gate) -> None:
        self._inner = inner
        self._gate = gate

    @property
    def capabilities(self) -> Capabilities:
        return self._inner.capabilities

    def _send(
        self, destination: Destination, envelope: Envelope, *, persistent: bool = True, confirm: bool = False
    ) -> None:
        self._inner.send(destination, envelope, persistent=persistent, confirm=confirm)

    def _send_many(self, sends: Sequence[tuple[Destination, Envelope]], *, persistent: bool, confirm: bool) -> None:
        self._inner.send_many(sends, persistent=persistent, confirm=confirm)

    def _read(self, destination: Destination, *, limit: int = 1000) -> Batch:
        batch = self._inner.read(destination, limit=limit)
        if destination.kind is DestinationKind.REPLY:
            self._gate.hold(destination.name, len(batch.envelopes))
        return batch

    def _consume(
        self, destinations: Sequence[Destination], handler: Handler, *, prefetch: int = 1, stop: threading.Event
    ) -> None:
        self._inner.consume(destinations, handler, prefetch=prefetch, stop=stop)

    def _declare(self, destination: Destination) -> None:
        self._inner.declare(destination)

    def _declare_primed(self, destination: Destination) -> None:
        self._inner.declare(destination, prime=True)

    def _delete(self, destination: Destination) -> None:
        self._inner.delete(destination)

    def close(self) -> None:
        self._inner.close()
