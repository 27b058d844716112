"""StompTransport: the transport contract over stomp.py (STOMP 1.2), for RabbitMQ and ActiveMQ Classic."""

from __future__ import annotations

import enum
import logging
import queue
import random
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import stomp
import stomp.exception
import stomp.protocol

from tdm_messaging.destinations import Destination, Dialect, to_wire_name
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import (
    BrokerRefusedError,
    BrokerUnavailableError,
    ConfigurationError,
    LocalProtocolError,
    SendNotConfirmedError,
    TransportClosedError,
    TransportError,
)
from tdm_messaging.transport.base import Batch, Capabilities, Delivery, Handler, Transport
from tdm_messaging.transport.stomp_frames import (
    MARKER_AT_HEADER,
    MARKER_HEADER,
    envelope_from_headers,
    explain_refusal,
    is_late_delivery,
    marker_headers,
    prefetch_headers,
    queue_headers,
    send_headers,
)
from tdm_messaging.transport.stomp_settings import StompSettings, parse_stomp_url

__all__ = ["StompTransport"]

log = logging.getLogger(__name__)

_CAPABILITIES = {
    Dialect.RABBITMQ: Capabilities(
        queue_expiry=True,
        message_expiry=True,
        nack_requeue=True,
        dead_lettering=True,
        cross_process=True,
        delete_queue=False,
        confirms=True,
    ),
    # ActiveMQ expires reply *messages* (``expires``); an idle, empty queue is removed only
    # by the broker's gcInactiveDestinations policy, which is configuration, not protocol.
    Dialect.ACTIVEMQ: Capabilities(
        queue_expiry=False,
        message_expiry=True,
        nack_requeue=False,
        dead_lettering=True,
        cross_process=True,
        delete_queue=False,
        confirms=True,
    ),
}
_IDLE_CHECK_S = 0.5
_HINT = (
    "check that the broker runs and listens for STOMP there (RabbitMQ: rabbitmq-plugins enable rabbitmq_stomp; "
    "ActiveMQ: a stomp transportConnector); for this project's brokers run: bash scripts/brokers.sh up"
)


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class _Frame:
    """A MESSAGE frame, tagged with the connection (generation) that delivered it."""

    headers: dict[str, str]
    body: bytes
    generation: int


@dataclass(frozen=True, slots=True)
class _Lost:
    """Put in every inbox when connection ``generation`` is lost."""

    generation: int


_Item = _Frame | _Lost | BrokerRefusedError


@dataclass(slots=True)
class _Receipt:
    event: threading.Event = field(default_factory=threading.Event)
    error: TransportError | None = None


@dataclass(frozen=True, slots=True)
class _Subscription:
    destination: Destination
    wire_name: str
    headers: dict[str, str]


class _Listener:
    """stomp.py calls these from its receiver thread; each forwards to the transport with its generation.

    A plain object (stomp.py looks callbacks up by name), one per connection, so frames of a
    dropped connection can be told from those of its successor.
    """

    def __init__(self, owner: StompTransport, generation: int) -> None:
        self._owner = owner
        self.generation = generation
        self.connected = threading.Event()
        self.server = ""
        self.refusal: BrokerRefusedError | None = None

    def on_connected(self, frame: Any) -> None:
        self.server = str(frame.headers.get("server", ""))
        self.connected.set()

    def on_message(self, frame: Any) -> None:
        self._owner._on_message(self.generation, frame.headers, frame.body)

    def on_receipt(self, frame: Any) -> None:
        self._owner._on_receipt(str(frame.headers.get("receipt-id", "")), None)

    def on_error(self, frame: Any) -> None:
        body = frame.body.decode("utf-8", "replace") if isinstance(frame.body, bytes) else str(frame.body)
        if is_late_delivery(str(frame.headers.get("message", "")), frame.headers.get("receipt-id")):
            # RabbitMQ: a delivery reached a read's subscription after its UNSUBSCRIBE. The
            # connection lives on, but holds that delivery unacknowledged until it closes.
            self._owner._on_late_delivery(self.generation, body)
            return
        error = BrokerRefusedError(explain_refusal(str(frame.headers.get("message", "")), body, self._owner.settings))
        log.error("%s", error)
        self.refusal = error
        self.connected.set()  # wake a connect() waiting for CONNECTED: it checks refusal
        self._owner._on_error(self.generation, str(frame.headers.get("receipt-id", "")), error)
        # A STOMP server closes the connection after an ERROR frame: stop using it now, so the
        # next call reconnects instead of writing into a connection that is going away.
        self._owner._on_lost(self.generation, error, quiet=True)

    def on_disconnected(self) -> None:
        self.connected.set()
        self._owner._on_lost(self.generation, self.refusal)

    def on_heartbeat_timeout(self) -> None:
        log.warning("no heart-beat from the STOMP broker at %s; reconnecting", self._owner.settings.address)


class StompTransport(Transport):
    """The transport contract over STOMP 1.2 with stomp.py, for RabbitMQ and ActiveMQ Classic.

    Open with :meth:`from_url` (or ``open_transport("stomp://...")``). Connects at once,
    with heart-beats and ``TCP_NODELAY`` (without it, a SEND followed by a SUBSCRIBE waits
    ~40 ms for a delayed TCP ACK: see docs/brokers.md). A dropped connection is re-opened
    with backoff by the next call, and active :meth:`consume` subscriptions are renewed.
    Thread-safe: a consume handler may call :meth:`send` on the same transport.
    """

    def __init__(self, *, settings: StompSettings) -> None:
        """Connect to the broker that ``settings`` names.

        Raises:
            BrokerUnavailableError: nothing answers at host:port (the message says what to check).
            BrokerRefusedError: the broker refused the connection (credentials, vhost).
            ConfigurationError: no ``dialect`` given and the broker's ``server`` header names neither.
        """
        self.settings = settings
        self._lock = threading.RLock()
        self._conn: Any = None
        self._generation = 0
        self._connected = False
        self._closed = False
        self._dialect: Dialect | None = settings.dialect
        self._server = ""
        self._inboxes: dict[str, queue.Queue[_Item]] = {}
        self._consumers: dict[str, _Subscription] = {}
        self._receipts: dict[str, _Receipt] = {}
        self._pending_error: BrokerRefusedError | None = None
        # RabbitMQ: deliveries this connection holds that no subscription can ACK any more
        # (they came after a read's marker); only closing the connection gives them back.
        self._stuck = 0
        self._held: set[str] = set()  # reads whose transactions are open on this connection
        with self._lock:
            self._open()

    @classmethod
    def from_url(cls, url: str) -> StompTransport:
        """Open a transport from a ``stomp://`` or ``stomp+ssl://`` URL (see :func:`parse_stomp_url`)."""
        return cls(settings=parse_stomp_url(url))

    def __repr__(self) -> str:
        return f"StompTransport({self.settings!r}, server={self._server!r})"

    # ------------------------------------------------------------------ properties
    @property
    def dialect(self) -> Dialect:
        """The broker's dialect, given in the URL or detected when connecting."""
        assert self._dialect is not None  # set by _open() or the constructor fails
        return self._dialect

    @property
    def server(self) -> str:
        """The broker's ``server`` header, e.g. ``RabbitMQ/3.10.8``."""
        return self._server

    @property
    def connection_count(self) -> int:
        """How many connections this transport has opened (or tried to), for tests and benchmarks.

        1 after construction; each reconnect adds one. A plain poll adds none.
        """
        return self._generation

    @property
    def capabilities(self) -> Capabilities:
        """What the broker can do, by dialect (STOMP cannot delete a queue on either)."""
        return _CAPABILITIES[self.dialect]

    # ------------------------------------------------------------------ connection
    def _open(self) -> None:
        """Connect (caller holds the lock); the new connection gets the next generation."""
        s = self.settings
        self._generation += 1
        listener = _Listener(self, self._generation)
        heartbeat = (s.heartbeat_ms, s.heartbeat_ms)
        conn = stomp.Connection12(
            host_and_ports=[(s.host, s.port)],
            prefer_localhost=False,
            try_loopback_connect=False,
            reconnect_attempts_max=1,
            timeout=s.connect_timeout,
            heartbeats=heartbeat,
            vhost=s.vhost,
            auto_decode=False,
        )
        if s.tls:
            conn.set_ssl(
                for_hosts=[(s.host, s.port)],
                ca_certs=s.ca_file,
                cert_file=s.cert_file,
                key_file=s.key_file,
                verify=s.verify,
                ssl_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        conn.set_listener("tdm", listener)
        try:
            conn.connect(s.username, s.password, wait=False)
        except (stomp.exception.StompException, OSError, ssl.SSLError) as exc:
            raise BrokerUnavailableError(
                f"cannot connect to the STOMP broker at {s.address}{' (TLS)' if s.tls else ''}: "
                f"{type(exc).__name__} {exc}; {_HINT}"
            ) from exc
        if not listener.connected.wait(s.connect_timeout) or listener.refusal is not None or not conn.is_connected():
            self._drop(conn)
            if listener.refusal is not None:
                raise listener.refusal
            raise BrokerUnavailableError(
                f"the STOMP broker at {s.address} accepted a TCP connection but did not answer CONNECT "
                f"within {s.connect_timeout:g} s; {_HINT}"
            )
        self._set_nodelay(conn)
        self._server = listener.server
        if self._dialect is None:
            self._dialect = self._detect(listener.server)
        self._conn = conn
        self._connected = True
        self._stuck = 0
        self._held.clear()
        for sub_id, sub in self._consumers.items():
            conn.subscribe(sub.wire_name, id=sub_id, ack="client-individual", headers=sub.headers)
        log.info("connected to %s at %s (%s)", self._server or "STOMP broker", s.address, self.dialect.value)

    def _detect(self, server: str) -> Dialect:
        lowered = server.lower()
        if "rabbitmq" in lowered:
            return Dialect.RABBITMQ
        if "activemq" in lowered:
            return Dialect.ACTIVEMQ
        raise ConfigurationError(
            f"cannot tell the dialect of the STOMP broker at {self.settings.address} from its server header "
            f"{server!r}; add ?dialect=rabbitmq or ?dialect=activemq to the URL"
        )

    @staticmethod
    def _set_nodelay(conn: Any) -> None:
        sock = getattr(conn.transport, "socket", None)
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as exc:  # not fatal: only slower
                log.debug("could not set TCP_NODELAY: %s", exc)

    @staticmethod
    def _drop(conn: Any) -> None:
        try:
            conn.transport.disconnect_socket()
        except Exception as exc:  # the connection is being abandoned anyway
            log.debug("closing a failed STOMP connection: %s", exc)

    def _check(self) -> None:
        """Raise if closed, or the ERROR frame that no caller has seen yet."""
        if self._closed:
            raise TransportClosedError("this STOMP transport is closed; open a new one")
        with self._lock:
            error, self._pending_error = self._pending_error, None
        if error is not None:
            raise error

    def _connection(self, *, patience: float | None = None) -> Any:
        """The live stomp.py connection, reconnecting with backoff for up to ``patience`` seconds."""
        deadline = time.monotonic() + (self.settings.connect_timeout if patience is None else patience)
        delay = 0.1
        while True:
            with self._lock:
                if self._closed:
                    raise TransportClosedError("this STOMP transport is closed; open a new one")
                if self._connected:
                    return self._conn
                try:
                    self._open()
                    return self._conn
                except BrokerUnavailableError:
                    if time.monotonic() + delay > deadline:
                        raise
            time.sleep(delay)
            delay = min(delay * 2, self.settings.reconnect_max_delay)

    def _recover(self, stop: threading.Event) -> None:
        """Reconnect with backoff until it works or ``stop`` is set (consume's retry loop)."""
        delay = 0.1
        while not stop.is_set():
            try:
                self._connection(patience=0)
                return
            except BrokerUnavailableError as exc:
                log.warning("STOMP connection lost; retrying in %.1f s: %s", delay, exc)
            stop.wait(delay * (1 + random.random() / 10))
            delay = min(delay * 2, self.settings.reconnect_max_delay)

    def _return_stuck(self) -> None:
        """Re-open the connection if it holds deliveries nothing can ACK, once no read's transactions need it."""
        with self._lock:
            if not self._stuck or self._held or not self._connected:
                return
            stuck, generation = self._stuck, self._generation
        self._recycle(generation, f"{stuck} deliveries that came after a read's marker")

    def _on_late_delivery(self, generation: int, details: str) -> None:
        with self._lock:
            if generation == self._generation and self._connected:
                self._stuck += 1
        log.debug("a delivery reached a finished read (%s); the connection will be re-opened", details)

    def _recycle(self, generation: int, why: str) -> None:
        """Close connection ``generation`` on purpose (RabbitMQ then requeues what it holds unacked).

        The next call reconnects and renews consume subscriptions; their unacknowledged
        deliveries come again (at-least-once).
        """
        with self._lock:
            if generation != self._generation or not self._connected:
                return
            conn = self._conn
            self._on_lost(generation, None, quiet=True)
        log.debug("re-opening the STOMP connection to return %s to the queue", why)
        self._drop(conn)

    # ------------------------------------------------------------------ callbacks (receiver thread)
    def _on_message(self, generation: int, headers: dict[str, str], body: bytes | str) -> None:
        data = body if isinstance(body, bytes) else body.encode("utf-8")
        with self._lock:
            inbox = self._inboxes.get(str(headers.get("subscription", "")))
            if inbox is None and generation == self._generation and self._dialect is Dialect.RABBITMQ:
                # For a subscription already cancelled: RabbitMQ holds it until the connection closes.
                self._stuck += 1
        if inbox is not None:
            inbox.put(_Frame(dict(headers), data, generation))

    def _on_receipt(self, receipt_id: str, error: TransportError | None) -> None:
        with self._lock:
            pending = self._receipts.pop(receipt_id, None)
        if pending is not None:
            pending.error = error
            pending.event.set()

    def _on_error(self, generation: int, receipt_id: str, error: BrokerRefusedError) -> None:
        with self._lock:
            if generation != self._generation:
                return
            if receipt_id and receipt_id in self._receipts:
                self._on_receipt(receipt_id, error)
                return
            if self._inboxes:
                for inbox in self._inboxes.values():
                    inbox.put(error)
            else:
                self._pending_error = error

    def _on_lost(self, generation: int, refusal: BrokerRefusedError | None, *, quiet: bool = False) -> None:
        with self._lock:
            if generation != self._generation or not self._connected:
                return
            self._connected = False
            receipts, self._receipts = self._receipts, {}
            if receipts and refusal is not None and self._pending_error is refusal:
                self._pending_error = None  # the callers waiting for receipts report it
            for inbox in self._inboxes.values():
                inbox.put(_Lost(generation))
        if not self._closed and not quiet:
            log.warning("lost the connection to the STOMP broker at %s", self.settings.address)
        for pending in receipts.values():
            pending.error = refusal or BrokerUnavailableError(
                f"the connection to the STOMP broker at {self.settings.address} was lost before it confirmed"
            )
            pending.event.set()

    # ------------------------------------------------------------------ sending
    def _transmit(
        self,
        action: Callable[[Any], None],
        what: str,
        *,
        receipt: str | None = None,
        generation: int | None = None,
        wait: bool = True,
    ) -> _Receipt:
        """Run ``action(conn)``; with ``receipt``, wait for the broker's RECEIPT of it.

        With ``generation``, only on that connection: its deliveries' ack ids and its
        transactions mean nothing to a successor, so a lost connection is an error, not a reconnect.
        With ``wait=False``, return the pending receipt for :meth:`_await` instead of waiting.
        """
        pending = _Receipt()
        if generation is None:
            conn = self._connection()
        else:
            with self._lock:
                if generation != self._generation or not self._connected:
                    raise BrokerUnavailableError(
                        f"{what}: the connection to the STOMP broker at {self.settings.address} was lost; "
                        "what it held unacknowledged goes back to the queue"
                    )
                conn = self._conn
        if receipt is not None:
            with self._lock:
                self._receipts[receipt] = pending
        try:
            action(conn)
        except (stomp.exception.StompException, OSError) as exc:
            with self._lock:
                self._receipts.pop(receipt or "", None)
            raise BrokerUnavailableError(
                f"{what} failed: the connection to the STOMP broker at {self.settings.address} is broken ({exc})"
            ) from exc
        if receipt is None:
            pending.event.set()
            return pending
        if wait:
            self._await(pending, receipt, what)
        return pending

    def _await(self, pending: _Receipt, receipt: str, what: str) -> None:
        """Wait for the RECEIPT ``receipt``; raise what the broker or the connection said instead."""
        if not pending.event.wait(self.settings.confirm_timeout):
            with self._lock:
                self._receipts.pop(receipt, None)
            raise SendNotConfirmedError(
                f"{what}: no receipt from the STOMP broker at {self.settings.address} within "
                f"{self.settings.confirm_timeout:g} s; it may or may not have been done"
            )
        if isinstance(pending.error, BrokerRefusedError):
            raise pending.error
        if pending.error is not None:
            raise SendNotConfirmedError(f"{what}: {pending.error}") from pending.error

    def send(
        self,
        destination: Destination,
        envelope: Envelope,
        *,
        persistent: bool = True,
        confirm: bool = False,
    ) -> None:
        """Send ``envelope`` (see :meth:`Transport.send`); ``confirm`` waits for a RECEIPT.

        Raises:
            SendNotConfirmedError: no receipt within ``confirm_timeout``, or the connection broke first.
            BrokerRefusedError: the broker answered with an ERROR frame (e.g. inequivalent arguments).
            BrokerUnavailableError: no connection could be made within ``connect_timeout``.
            LocalProtocolError: an envelope header is reserved by STOMP (e.g. ``destination``).
        """
        self._check()
        self._connection()
        headers = send_headers(
            destination, envelope, self.settings, self.dialect, persistent=persistent, now_ms=_now_ms()
        )
        receipt = f"tdm-send-{uuid.uuid4().hex}" if confirm else None
        if receipt is not None:
            headers["receipt"] = receipt
        wire = to_wire_name(destination, self.dialect)
        self._transmit(
            lambda conn: conn.send(wire, envelope.body, content_type=envelope.content_type, headers=headers),
            f"send to {destination}",
            receipt=receipt,
        )

    def _send_marker(self, destination: Destination, marker: str, sent_at_ms: int) -> bool:
        headers = marker_headers(
            destination, self.settings, self.dialect, marker=marker, sent_at_ms=sent_at_ms, now_ms=_now_ms()
        )
        if headers is None:
            return False
        wire = to_wire_name(destination, self.dialect)
        self._transmit(lambda conn: conn.send(wire, b"", headers=headers), f"read marker to {destination}")
        return True

    def _forward_marker(self, destination: Destination, frame: _Frame) -> None:
        """Give a concurrent reader's marker back to the queue (unless stale), then ack our copy."""
        try:
            sent_at = int(frame.headers.get(MARKER_AT_HEADER, "0"))
        except ValueError:
            sent_at = 0
        if not self._send_marker(destination, frame.headers[MARKER_HEADER], sent_at):
            log.debug("dropping a stale read marker in %s", destination)
        self._ack(frame, frame.headers.get("subscription", ""))

    def _ack(self, frame: _Frame, sub_id: str, *, receipt: str | None = None) -> bool:
        """Acknowledge ``frame``; False when its connection is gone (the broker will redeliver it)."""
        with self._lock:
            current = frame.generation == self._generation and self._connected
        if not current:
            return False
        ack_id = _ack_id(frame)
        self._transmit(
            lambda conn: conn.ack(ack_id, receipt=receipt),
            "acknowledgement",
            receipt=receipt,
            generation=frame.generation,
        )
        return True

    # ------------------------------------------------------------------ reading
    def read(self, destination: Destination, *, limit: int = 1000) -> Batch:
        """Take what ``destination`` holds now (see :meth:`Transport.read`).

        How it ends without a sleep: a marker message (unique id, 60 s time to live) is sent
        to the queue, then a client-individual subscription collects messages until that
        marker comes back (queues are FIFO). Another reader's marker is re-sent (so its
        owner still finds it) unless stale. Stops early, marker unseen, at ``limit``.

        How it settles without a reconnect (see docs/brokers.md, "The transactional read"):
        before returning, the read ACKs every message *inside a STOMP transaction* (and, on
        RabbitMQ, NACKs each inside a second one), then UNSUBSCRIBEs. Nothing is applied
        yet, and nothing the caller sends afterwards reaches this read. :meth:`Batch.ack`
        COMMITs the ACK transaction; :meth:`Batch.release` COMMITs the NACK one (RabbitMQ:
        requeued in place) or ABORTs (ActiveMQ: given back). A crash before either leaves
        both uncommitted: the broker gives the messages back when the connection closes.

        Raises:
            TransportError: the marker did not come back within ``read_timeout`` seconds;
                nothing is lost (every message goes back to the queue).
            BrokerUnavailableError, BrokerRefusedError: as for :meth:`send`.
        """
        self._check()
        if limit < 1:
            raise LocalProtocolError(f"read limit must be at least 1, got {limit}")
        self._return_stuck()
        self._connection()
        marker = uuid.uuid4().hex
        sub_id = f"tdm-read-{marker}"
        inbox: queue.Queue[_Item] = queue.Queue()
        with self._lock:
            self._inboxes[sub_id] = inbox
            generation = self._generation
        batch = _StompBatch(self, sub_id, generation)
        try:
            self._send_marker(destination, marker, _now_ms())
            headers = queue_headers(destination, self.settings, self.dialect)
            headers.update(prefetch_headers(self.dialect, limit + 1))
            wire = to_wire_name(destination, self.dialect)
            self._transmit(
                lambda conn: conn.subscribe(wire, id=sub_id, ack="client-individual", headers=headers),
                f"subscribe to {destination}",
            )
            self._collect(destination, inbox, batch, marker, limit)
            batch.settle_later()
        except BaseException:
            batch.release()
            raise
        return batch

    def _collect(
        self, destination: Destination, inbox: queue.Queue[_Item], batch: _StompBatch, marker: str, limit: int
    ) -> None:
        deadline = time.monotonic() + self.settings.read_timeout
        while len(batch.frames) < limit:
            try:
                item = inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TransportError(
                    f"read of {destination} did not finish within {self.settings.read_timeout:g} s "
                    f"({len(batch.frames)} messages taken, own marker not seen); the messages go back to the "
                    "queue; is the broker overloaded? (raise ?read_timeout=)"
                ) from None
            if isinstance(item, _Lost):
                raise BrokerUnavailableError(
                    f"read of {destination}: the connection to {self.settings.address} was lost; "
                    "the messages go back to the queue"
                )
            if isinstance(item, BrokerRefusedError):
                raise item
            found = item.headers.get(MARKER_HEADER)
            if found == marker:
                self._ack(item, batch.sub_id)
                return
            if found is not None:
                self._forward_marker(destination, item)
            else:
                batch.frames.append(item)

    # ------------------------------------------------------------------ consuming
    def consume(
        self,
        destinations: Sequence[Destination],
        handler: Handler,
        *,
        prefetch: int = 1,
        stop: threading.Event,
    ) -> None:
        """Deliver messages to ``handler`` until ``stop`` is set (see :meth:`Transport.consume`).

        Each delivery is acknowledged after ``handler`` returns. A lost connection is
        re-opened with backoff and the subscriptions renewed; deliveries of the lost
        connection are not acknowledged (the broker delivers them again).

        Raises:
            BrokerRefusedError: the broker refused a subscription.
            Exception: whatever ``handler`` raised (that delivery stays unacknowledged).
        """
        self._check()
        if prefetch < 1:
            raise LocalProtocolError(f"prefetch must be at least 1, got {prefetch}")
        if not destinations:
            raise LocalProtocolError("consume() needs at least one destination")
        inbox: queue.Queue[_Item] = queue.Queue()
        subs: dict[str, _Subscription] = {}
        for destination in destinations:
            headers = queue_headers(destination, self.settings, self.dialect)
            headers.update(prefetch_headers(self.dialect, prefetch))
            sub_id = f"tdm-consume-{uuid.uuid4().hex}"
            subs[sub_id] = _Subscription(destination, to_wire_name(destination, self.dialect), headers)
        with self._lock:
            conn = self._connection()
            for sub_id, sub in subs.items():
                self._inboxes[sub_id] = inbox
                self._consumers[sub_id] = sub
                conn.subscribe(sub.wire_name, id=sub_id, ack="client-individual", headers=sub.headers)
        unacked = 0
        try:
            while not stop.is_set():
                try:
                    item = inbox.get(timeout=_IDLE_CHECK_S)
                except queue.Empty:
                    if not self._connected:
                        self._recover(stop)
                    continue
                if isinstance(item, _Lost):
                    if item.generation == self._generation:
                        self._recover(stop)
                    continue
                if isinstance(item, BrokerRefusedError):
                    raise item
                try:
                    self._deliver(item, subs, handler)
                except BaseException:
                    if item.generation == self._generation:
                        unacked += 1
                    raise
        finally:
            self._end_consume(subs, inbox, unacked)

    def _deliver(self, frame: _Frame, subs: dict[str, _Subscription], handler: Handler) -> None:
        sub_id = frame.headers.get("subscription", "")
        sub = subs[sub_id]
        if MARKER_HEADER in frame.headers:
            self._forward_marker(sub.destination, frame)
            return
        envelope = envelope_from_headers(frame.headers, frame.body)
        redelivered = frame.headers.get("redelivered", "").lower() == "true"
        handler(Delivery(envelope, sub.destination, redelivered))
        try:
            if not self._ack(frame, sub_id):
                log.info("delivery from %s not acknowledged: its connection was lost; it comes again", sub.destination)
        except TransportError as exc:
            log.warning("could not acknowledge a delivery from %s (%s); it comes again", sub.destination, exc)

    def _end_consume(self, subs: dict[str, _Subscription], inbox: queue.Queue[_Item], unacked: int) -> None:
        with self._lock:
            for sub_id in subs:
                self._inboxes.pop(sub_id, None)
                self._consumers.pop(sub_id, None)
            live = self._connected and not self._closed
            conn = self._conn
            while not inbox.empty():  # prefetched, never handed to the handler
                item = inbox.get_nowait()
                unacked += isinstance(item, _Frame) and item.generation == self._generation
            if live and self._dialect is Dialect.RABBITMQ:
                # Unacknowledged deliveries of a cancelled subscription stay with the connection
                # on RabbitMQ: the next read re-opens it first (see _return_stuck).
                self._stuck += unacked
        if live:
            for sub_id in subs:
                try:
                    conn.unsubscribe(sub_id)
                except (stomp.exception.StompException, OSError) as exc:
                    log.debug("unsubscribe %s failed: %s", sub_id, exc)

    # ------------------------------------------------------------------ queues
    def declare(self, destination: Destination) -> None:
        """Create ``destination`` with its kind's arguments.

        RabbitMQ: a SUBSCRIBE (prefetch 1) with the declare headers, confirmed by a receipt,
        then UNSUBSCRIBE; a message delivered meanwhile goes back, flagged redelivered.
        ActiveMQ creates queues on first use: nothing to do.

        Raises:
            BrokerRefusedError: the queue exists with other arguments.
        """
        self._check()
        self._connection()
        if self.dialect is not Dialect.RABBITMQ:
            return
        sub_id = f"tdm-declare-{uuid.uuid4().hex}"
        headers = queue_headers(destination, self.settings, self.dialect)
        headers.update(prefetch_headers(self.dialect, 1))
        receipt = f"tdm-declare-{uuid.uuid4().hex}"
        headers["receipt"] = receipt
        wire = to_wire_name(destination, self.dialect)
        self._transmit(
            lambda conn: conn.subscribe(wire, id=sub_id, ack="client-individual", headers=headers),
            f"declare {destination}",
            receipt=receipt,
        )
        self._transmit(lambda conn: conn.unsubscribe(sub_id), f"declare {destination}")

    def delete(self, destination: Destination) -> None:
        """No-op: STOMP has no frame that deletes a queue (``capabilities.delete_queue`` is false).

        Reply queues go away by themselves (RabbitMQ ``x-expires``/policy, ActiveMQ GC policy).
        """
        self._check()
        log.debug("delete(%s) is a no-op over STOMP", destination)

    def close(self) -> None:
        """Disconnect (DISCONNECT, then the socket closes). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            conn, live = self._conn, self._connected
            self._connected = False
            inboxes = list(self._inboxes.values())
        for inbox in inboxes:
            inbox.put(_Lost(self._generation))
        if conn is None:
            return
        if live:
            try:
                # Protocol12.disconnect only sends the frame; stomp.py closes the socket on its
                # receipt. Connection12.disconnect would also join the receiver thread unbounded.
                stomp.protocol.Protocol12.disconnect(conn)
                deadline = time.monotonic() + 2.0
                while conn.transport.socket is not None and time.monotonic() < deadline:
                    time.sleep(0.01)
            except (stomp.exception.StompException, OSError) as exc:
                log.debug("DISCONNECT failed: %s", exc)
        self._drop(conn)


class _BatchState(enum.Enum):
    """Where a read's batch is; the transitions are in :data:`_BATCH_MOVES`."""

    READING = "reading"  # subscribed, collecting up to the marker; nothing settled
    HELD = "held"  # unsubscribed; the ACK (and, on RabbitMQ, NACK) transactions are open
    ACKED = "acked"  # the ACK transaction was committed
    RELEASED = "released"  # ended; anything not acknowledged is back in the queue


_BATCH_MOVES: dict[_BatchState, frozenset[_BatchState]] = {
    _BatchState.READING: frozenset({_BatchState.HELD, _BatchState.RELEASED}),
    _BatchState.HELD: frozenset({_BatchState.ACKED, _BatchState.RELEASED}),
    _BatchState.ACKED: frozenset({_BatchState.RELEASED}),
    _BatchState.RELEASED: frozenset(),
}


def _ack_id(frame: _Frame) -> str:
    return frame.headers.get("ack") or frame.headers.get("message-id", "")


class _StompBatch(Batch):
    """What :meth:`StompTransport.read` took, settled by transactions (see :meth:`StompTransport.read`).

    Rules: ACKs and NACKs are sent while the subscription exists (both brokers refuse or
    ignore them after UNSUBSCRIBE) but inside transactions, so they take effect only at
    COMMIT, which may come after UNSUBSCRIBE. Exactly one of the two transactions is ever
    committed; a connection that closes first commits neither.
    """

    def __init__(self, transport: StompTransport, sub_id: str, generation: int) -> None:
        self._transport = transport
        self.sub_id = sub_id
        self.generation = generation
        self.frames: list[_Frame] = []
        self.state = _BatchState.READING
        self.leftovers = 0  # deliveries after the marker: RabbitMQ keeps them until the connection closes
        self._ack_tx = f"{sub_id}-ack"
        self._back_tx = f"{sub_id}-back"
        self._tx_begun = False
        self._unsubscribed: _Receipt | None = None
        self._unsub_receipt = ""

    def _move(self, to: _BatchState) -> _BatchState:
        before = self.state
        if to not in _BATCH_MOVES[before]:
            raise LocalProtocolError(f"a read's batch cannot go from {before.value} to {to.value}")
        self.state = to
        return before

    @property
    def envelopes(self) -> Sequence[Envelope]:
        """The messages, oldest first, without broker headers."""
        return [envelope_from_headers(f.headers, f.body) for f in self.frames]

    def settle_later(self) -> None:
        """Open the ACK (and NACK) transactions over every frame, then UNSUBSCRIBE (confirmed)."""
        t = self._transport
        rabbit = t.dialect is Dialect.RABBITMQ
        receipt = f"tdm-unsub-{uuid.uuid4().hex}"

        def settle(conn: Any) -> None:
            if self.frames:
                self._tx_begun = True
                conn.begin(transaction=self._ack_tx)
                for frame in self.frames:
                    conn.ack(_ack_id(frame), transaction=self._ack_tx)
                if rabbit:
                    conn.begin(transaction=self._back_tx)
                    for frame in self.frames:
                        conn.nack(_ack_id(frame), transaction=self._back_tx)
            conn.unsubscribe(self.sub_id, headers={"receipt": receipt})

        # RabbitMQ handles a connection's frames in order: whatever the caller sends next comes
        # after the UNSUBSCRIBE, so nothing it sends reaches this read, and there is no need to
        # wait here. Deliveries that came after the marker arrive before the receipt; the
        # receiver thread counts them as stuck (no inbox) once the inbox is gone.
        self._unsubscribed = t._transmit(
            settle, "ending a read", receipt=receipt, generation=self.generation, wait=not rabbit
        )
        self._unsub_receipt = receipt
        with t._lock:
            inbox = t._inboxes.pop(self.sub_id, None)
            while inbox is not None and not inbox.empty():
                self.leftovers += isinstance(inbox.get_nowait(), _Frame)
            if rabbit and self.generation == t._generation:
                t._stuck += self.leftovers
                t._held.add(self.sub_id)
        self._move(_BatchState.HELD)

    def ack(self) -> None:
        """COMMIT the ACK transaction (with a receipt): the messages are gone when this returns.

        Raises:
            BrokerUnavailableError: the connection was lost first; the messages go back to the queue.
            SendNotConfirmedError: no receipt for the COMMIT in time; whether it applied is unknown.
            TransportClosedError: the batch was already released.
        """
        if self.state is _BatchState.RELEASED:
            raise TransportClosedError("this batch was released; read again")
        if self.state is _BatchState.ACKED:
            return
        t = self._transport
        if self.frames:
            receipt = f"tdm-commit-{uuid.uuid4().hex}"
            rabbit = t.dialect is Dialect.RABBITMQ

            def commit(conn: Any) -> None:
                conn.commit(transaction=self._ack_tx, headers={"receipt": receipt})
                if rabbit:
                    conn.abort(transaction=self._back_tx)

            t._transmit(commit, "acknowledging a read", receipt=receipt, generation=self.generation)
        self._move(_BatchState.ACKED)
        self._let_go()

    def release(self) -> None:
        """End the read: what was not acknowledged goes back to the queue at once. Idempotent.

        RabbitMQ: COMMIT the NACK transaction (requeued in place); ActiveMQ: ABORT the ACK
        one. If that fails, or the read failed half-way, the connection is re-opened, which
        gives everything back on both brokers.
        """
        if self.state is _BatchState.RELEASED:
            return
        before = self._move(_BatchState.RELEASED)
        t = self._transport
        with t._lock:
            inbox = t._inboxes.pop(self.sub_id, None)
        if before is _BatchState.READING:
            self._abandon(inbox)
            return
        rabbit = t.dialect is Dialect.RABBITMQ
        if before is _BatchState.HELD and self.frames:
            receipt = f"tdm-back-{uuid.uuid4().hex}"

            def give_back(conn: Any) -> None:
                if rabbit:
                    conn.commit(transaction=self._back_tx, headers={"receipt": receipt})
                    conn.abort(transaction=self._ack_tx)
                else:
                    conn.abort(transaction=self._ack_tx, headers={"receipt": receipt})

            # RabbitMQ: not waiting for the COMMIT's receipt; the connection's next frame comes after it
            # anyway, and if the connection breaks first, the broker gives the messages back all the same.
            try:
                t._transmit(give_back, "releasing a read", receipt=receipt, generation=self.generation, wait=not rabbit)
            except TransportError as exc:
                log.debug("giving back a read failed (%s); re-opening the connection instead", exc)
                t._recycle(self.generation, "a read that could not be given back")
        self._let_go()

    def _let_go(self) -> None:
        """This read no longer needs its connection: re-open it now if it holds stuck deliveries."""
        t = self._transport
        if self._unsubscribed is not None and not self._unsubscribed.event.is_set():
            # Every delivery of the subscription comes before the UNSUBSCRIBE's receipt: after
            # it, the stuck ones are all counted (but for RabbitMQ's rare late ones, see is_late_delivery).
            try:
                t._await(self._unsubscribed, self._unsub_receipt, "ending a read")
            except TransportError as exc:
                log.debug("no receipt for ending a read: %s", exc)
        with t._lock:
            t._held.discard(self.sub_id)
        t._return_stuck()

    def _abandon(self, inbox: queue.Queue[_Item] | None) -> None:
        """The read failed before it settled: UNSUBSCRIBE, and re-open the connection if needed."""
        t = self._transport
        leftovers = len(self.frames)
        while inbox is not None and not inbox.empty():
            leftovers += isinstance(inbox.get_nowait(), _Frame)
        if self._tx_begun:
            # Settling broke half-way: closing the connection returns everything, on both brokers.
            t._recycle(self.generation, "a read that failed while settling")
            return
        try:
            # With a receipt, so the broker has finished with the subscription (ActiveMQ has
            # returned its unacked messages) before the caller's next frame.
            receipt = f"tdm-unsub-{uuid.uuid4().hex}"
            t._transmit(
                lambda c: c.unsubscribe(self.sub_id, headers={"receipt": receipt}),
                "unsubscribe",
                receipt=receipt,
                generation=self.generation,
            )
        except TransportError as exc:
            log.debug("unsubscribe %s failed: %s", self.sub_id, exc)
            return
        # RabbitMQ keeps a cancelled subscription's unacknowledged deliveries until the connection closes.
        if leftovers and t.dialect is Dialect.RABBITMQ:
            t._recycle(self.generation, f"{leftovers} unacknowledged deliveries of a failed read")
