"""Transports that delegate to another: a base that forwards everything, and one that runs a hook after chosen sends."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from tdm_messaging.destinations import Destination
from tdm_messaging.envelope import Envelope
from tdm_messaging.transport.base import Batch, Capabilities, Handler, Transport

__all__ = ["DelegatingTransport", "HookedTransport"]


class DelegatingTransport(Transport):
    """Forward every call to ``inner``; fault tests subclass it and override the call they watch or break."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    def _send(
        self, destination: Destination, envelope: Envelope, *, persistent: bool = True, confirm: bool = False
    ) -> None:
        self.inner.send(destination, envelope, persistent=persistent, confirm=confirm)

    def _send_many(self, sends: Sequence[tuple[Destination, Envelope]], *, persistent: bool, confirm: bool) -> None:
        # The inner transport's own send_many (one confirm wait on AMQP), not one send() after the other.
        self.inner.send_many(sends, persistent=persistent, confirm=confirm)

    def _read(self, destination: Destination, *, limit: int = 1000) -> Batch:
        # The inner batch itself: its ack, release and settle are the backend's.
        return self.inner.read(destination, limit=limit)

    def _consume(
        self, destinations: Sequence[Destination], handler: Handler, *, prefetch: int = 1, stop: threading.Event
    ) -> None:
        self.inner.consume(destinations, handler, prefetch=prefetch, stop=stop)

    def _declare(self, destination: Destination) -> None:
        self.inner.declare(destination)

    def _declare_primed(self, destination: Destination) -> None:
        self.inner.declare(destination, prime=True)

    def _delete(self, destination: Destination) -> None:
        self.inner.delete(destination)

    def close(self) -> None:
        self.inner.close()


class HookedTransport(DelegatingTransport):
    """Delegate everything to ``inner``; after a send (or send_many) matching ``when``, call ``then`` once."""

    def __init__(
        self, inner: Transport, *, when: Callable[[Destination, Envelope], bool], then: Callable[[], None]
    ) -> None:
        super().__init__(inner)
        self._when = when
        self._then = then
        self.fired = threading.Event()

    def send(
        self, destination: Destination, envelope: Envelope, *, persistent: bool = True, confirm: bool = False
    ) -> None:
        self.inner.send(destination, envelope, persistent=persistent, confirm=confirm)
        if not self.fired.is_set() and self._when(destination, envelope):
            self.fired.set()
            self._then()

    def send_many(
        self, sends: Sequence[tuple[Destination, Envelope]], *, persistent: bool = True, confirm: bool = False
    ) -> None:
        self.inner.send_many(sends, persistent=persistent, confirm=confirm)
        if not self.fired.is_set() and any(self._when(d, e) for d, e in sends):
            self.fired.set()
            self._then()
