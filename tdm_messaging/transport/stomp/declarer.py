"""A long-lived side connection that declares RabbitMQ queues, so a declare costs a frame, not a connection."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from tdm_messaging.errors import BrokerUnavailableError, SendNotConfirmedError
from tdm_messaging.transport.stomp.connector import Listener, connect, disconnect, drop
from tdm_messaging.transport.stomp.frames import PROBE_HEADER
from tdm_messaging.transport.stomp.settings import StompSettings
from tdm_messaging.transport.stomp.translate import DRIVER_ERRORS, unavailable

__all__ = ["MAX_NAMES", "Declarer"]

log = logging.getLogger(__name__)

MAX_NAMES = 10_000
"""Names one declare connection declares before it is replaced (RabbitMQ keeps them per connection)."""

# Rules (RabbitMQ's STOMP adapter, checked on this machine, see docs/brokers.md):
# 1. A SEND with the declare headers to /queue/<name> declares the queue on the connection's first
#    frame for that name: a missing queue is created, an equivalent one is left as it is.
# 2. Later frames for that name on the same connection declare nothing; so a name this connection
#    already declared is declared again on a new connection (rare: a reply queue's lease is re-checked
#    every half reply_ttl).
# 3. A queue that exists with other arguments is refused with an ERROR frame that closes the
#    connection: only this side connection, never the transport's own (its subscriptions and
#    unacknowledged deliveries stay). The next declare opens a new one.


class Declarer:
    """Declares queues on one side connection of its own, opened on first use and kept.

    Each declare is an empty probe SEND (``expiration: 0``, dropped at once unless a consumer
    waits; readers drop it) with the declare headers and a receipt, as ``declare_elsewhere`` sent
    on a short-lived connection of its own before. Thread-safe: declares are serialised.

    Args:
        settings: gives the settings of the node to connect to, read at each (re)connect.
    """

    def __init__(self, settings: Callable[[], StompSettings]) -> None:
        self._settings_of = settings  # the node the transport uses now (a failover list moves on)
        self._settings = settings()
        self._lock = threading.Lock()
        self._conn: Any = None
        self._listener: Listener | None = None
        self._names: set[str] = set()
        self.opened = 0  # connections opened, for tests and benchmarks

    def declare(self, wire: str, headers: dict[str, str], *, renew: bool = True, persistent: bool = False) -> None:
        """Declare queue ``wire`` (``/queue/...``) with ``headers``; wait for the broker's answer.

        ``renew=False`` (a queue that never expires): nothing to do if this connection declared
        it already. Otherwise a name it declared before is declared on a new connection (rule 2).
        ``persistent=True`` sends the probe persistent: its receipt then waits until RabbitMQ has
        stored it, so the queue's on-disk index exists before its first real message (priming,
        see ``Transport.declare``); the probe still expires at once.

        Raises:
            BrokerRefusedError: the queue exists with other arguments (or another refusal).
            BrokerUnavailableError: no connection could be made.
            SendNotConfirmedError: no answer within ``confirm_timeout``.
        """
        probe = {**headers, "expiration": "0", PROBE_HEADER: "1"}
        probe.pop("prefetch-count", None)
        if persistent:
            probe["persistent"] = "true"
        with self._lock:
            live = self._conn is not None and self._conn.is_connected()
            if live and not renew and wire in self._names:
                return  # declared on this connection, and it never expires
            if not live or wire in self._names or len(self._names) >= MAX_NAMES:
                self._reopen()
            listener = self._listener
            assert listener is not None
            listener.answered.clear()
            listener.receipted = False
            receipt = f"tdm-declare-{uuid.uuid4().hex}"
            try:
                self._conn.send(wire, b"", headers={**probe, "receipt": receipt})
            except DRIVER_ERRORS as exc:
                self._drop()
                raise unavailable(f"declaring {wire}", self._settings.address, exc) from exc
            if not listener.answered.wait(self._settings.confirm_timeout):
                self._drop()
                raise SendNotConfirmedError(
                    f"declaring {wire}: no receipt from the STOMP broker at {self._settings.address} "
                    f"within {self._settings.confirm_timeout:g} s"
                )
            if listener.refusal is not None or not listener.receipted:
                refusal = listener.refusal
                self._drop()  # the broker closes the connection after an ERROR frame
                if refusal is not None:
                    raise refusal
                raise BrokerUnavailableError(
                    f"declaring {wire}: the connection to the STOMP broker at {self._settings.address} was lost first"
                )
            self._names.add(wire)

    def _reopen(self) -> None:
        if self._conn is not None:
            conn, listener = self._conn, self._listener
            self._conn, self._listener = None, None
            assert listener is not None
            disconnect(conn, listener.closed)
        self._names.clear()
        self._settings = self._settings_of()
        listener = Listener(self._settings, None, 0)
        self._conn = connect(self._settings, listener)
        self._listener = listener
        self.opened += 1

    def _drop(self) -> None:
        if self._conn is not None:
            drop(self._conn)
        self._conn, self._listener = None, None
        self._names.clear()

    def close(self) -> None:
        """DISCONNECT the side connection, if open. Idempotent."""
        with self._lock:
            if self._conn is None:
                return
            conn, listener = self._conn, self._listener
            self._conn, self._listener = None, None
            assert listener is not None
            if listener.refusal is None and conn.is_connected():
                disconnect(conn, listener.closed)
            else:
                drop(conn)
