"""The live STOMP connection under a StompTransport: reconnects, receipts, inboxes, and what a dropped one held."""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tdm_messaging.destinations import Destination
from tdm_messaging.errors import (
    BrokerRefusedError,
    BrokerUnavailableError,
    ConfigurationError,
    SendNotConfirmedError,
    TransportClosedError,
    TransportError,
)
from tdm_messaging.transport.stomp.connector import Listener, connect, disconnect, drop, write_frame
from tdm_messaging.transport.stomp.dialect import Dialect
from tdm_messaging.transport.stomp.frames import MARKER_HEADER, PROBE_HEADER, header_frame, late_subscription
from tdm_messaging.transport.stomp.routes import RouteBook, queue_of_refusal
from tdm_messaging.transport.stomp.settings import StompSettings
from tdm_messaging.transport.stomp.translate import DRIVER_ERRORS, ErrorFrame, unavailable

__all__ = ["Frame", "Inbox", "Item", "Lost", "ReadInbox", "Receipt", "StompLink", "Subscription", "ack_id", "anchored"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Frame:
    """A MESSAGE frame, tagged with the connection (generation) that delivered it."""

    headers: dict[str, str]
    body: bytes
    generation: int


@dataclass(frozen=True, slots=True)
class Lost:
    """Put in every inbox when connection ``generation`` is lost."""

    generation: int


Item = Frame | Lost | ErrorFrame
"""What a subscription's inbox holds."""


class Inbox(Protocol):
    """Where the receiver thread puts a subscription's items: a ``queue.SimpleQueue`` or a :class:`ReadInbox`."""

    def put(self, item: Item) -> None: ...


class ReadInbox:
    """A read's inbox: its deliveries held back until its marker (or ``limit`` of them) came, then handed over at once.

    Why: a read's reader waits for the marker anyway; waking it for each delivery costs a thread
    switch and a hand-over of the GIL per frame while the next frames are arriving on the
    receiver thread. Rules: items keep their order; the first item that is not an ordinary
    delivery of this read (its marker, another reader's marker, a declare's probe, an error, a
    lost connection), or the ``limit``-th held item, hands over everything held, and from then on
    every item goes straight through (the reader may have to acknowledge what it met before more
    can come). ``drain`` takes everything, held or not (the read's settlement, its last look).
    Thread-safe: the receiver thread puts, a reconnect may put :class:`Lost`, the reader takes.
    """

    __slots__ = ("_held", "_limit", "_lock", "_marker", "_queue", "_through")

    def __init__(self, marker: str, limit: int) -> None:
        self._queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self._held: list[Item] = []
        self._lock = threading.Lock()
        self._marker = marker
        self._limit = max(1, limit)
        self._through = False

    def put(self, item: Item) -> None:
        """Hold ``item`` or hand it over (see the class rules)."""
        with self._lock:
            if self._through:
                self._queue.put(item)
                return
            self._held.append(item)
            if (
                isinstance(item, Frame)
                and MARKER_HEADER not in item.headers
                and PROBE_HEADER not in item.headers
                and len(self._held) < self._limit
            ):
                return
            self._through = True
            for held in self._held:
                self._queue.put(held)
            self._held.clear()

    def get(self, timeout: float) -> Item:
        """The next item handed over; raises ``queue.Empty`` after ``timeout`` seconds without one."""
        return self._queue.get(timeout=timeout)

    def drain(self) -> list[Item]:
        """Every item put so far and not yet taken, oldest first; later items go straight through."""
        with self._lock:
            self._through = True
            items: list[Item] = []
            while not self._queue.empty():
                items.append(self._queue.get_nowait())
            items.extend(self._held)
            self._held.clear()
        return items


class Receipt:
    """A RECEIPT awaited: set when it (or an ERROR, or the loss of the connection) came.

    Set and awaited through one plain lock, held from the start and released once set (an
    ``Event`` would take its condition's lock and make a new waiter lock on every wait: more
    work on both threads of a poll's last hand-over). Once set it stays set.
    """

    __slots__ = ("_pending", "error", "lost")

    def __init__(self) -> None:
        self._pending = threading.Lock()
        self._pending.acquire()
        self.error: TransportError | None = None
        self.lost = False  # the error is the connection's end, not an answer to this frame

    def set(self) -> None:
        """Mark it answered and wake the waiter (idempotent)."""
        with contextlib.suppress(RuntimeError):  # already set
            self._pending.release()

    def wait(self, timeout: float) -> bool:
        """Whether it was set within ``timeout`` seconds."""
        if not self._pending.acquire(timeout=max(0.0, timeout)):
            return False
        with contextlib.suppress(RuntimeError):  # a second set() came in between: set all the same
            self._pending.release()  # stays set for any later wait
        return True

    def is_set(self) -> bool:
        """Whether it was answered."""
        return not self._pending.locked()


@dataclass(frozen=True, slots=True)
class Subscription:
    """A consume subscription, renewed on every new connection."""

    destination: Destination
    wire_name: str
    headers: dict[str, str]


def _done() -> Receipt:
    done = Receipt()
    done.set()
    return done


_DONE = _done()

EARLY_READS = 64
"""Reads of a queue after a late delivery from it that end their subscription early (see
:meth:`StompLink.unsubscribe_early`)."""
_REMEMBERED_READS = 256
"""Recent reads whose queue a late delivery can be traced to (subscription id to queue), and queues in early mode."""

_ANCHOR = "tdm-anchor"
"""The id of a RabbitMQ connection's cumulative anchor subscription (see ``StompLink._nack_all``)."""
_ANCHOR_ONE = "tdm-anchor-one"
"""The id of its individual anchor subscription (see :func:`anchored`)."""


def anchored(ack: str) -> str:
    """RabbitMQ ack id ``ack`` (``T_<subscription>@@<session>@@<delivery tag>``) named through the individual anchor.

    RabbitMQ's adapter turns ACK/NACK into ``basic.ack``/``basic.nack`` of the delivery tag on the
    connection's one channel; the subscription the id names must exist (for its ack mode) but need
    not be the one that received the delivery. So a read can UNSUBSCRIBE as soon as its marker
    came, and still settle its deliveries later, through an idle subscription in
    ``client-individual`` mode (``multiple`` false). Checked on RabbitMQ 3.10 (docs/brokers.md).
    """
    _, session, tag = ack.rsplit("@@", 2)
    return f"T_{_ANCHOR_ONE}@@{session}@@{tag}"


"""What :meth:`StompLink.transmit` returns for a frame sent without a receipt: already settled, never changed."""


def ack_id(frame: Frame) -> str:
    """The id an ACK of ``frame`` takes (ActiveMQ's ``ack`` header differs from ``message-id``)."""
    return frame.headers.get("ack") or frame.headers.get("message-id", "")


class StompLink:
    """One live STOMP connection at a time, with everything tied to it.

    Rules: each connection gets the next *generation*; frames, receipts and transactions of a
    generation mean nothing to its successor. Inboxes receive the MESSAGE frames of their
    subscription (by subscription id). A lost connection puts :class:`Lost` in every inbox and
    fails every awaited receipt. ``stuck`` counts deliveries RabbitMQ holds on this connection
    that nothing can ACK any more; the connection is re-opened for them once no read holds
    transactions on it (``held``). All fields are guarded by ``lock``.
    """

    def __init__(self, settings: StompSettings) -> None:
        self.base = settings  # as parsed: every node of a failover list
        self.settings = settings  # for the node in use (``base.on(node)``)
        self.node = 0
        self.lock = threading.RLock()
        self.conn: Any = None
        self.generation = 0
        self.connected = False
        self.closed = False
        self.dialect: Dialect | None = settings.dialect
        self.server = ""
        self.inboxes: dict[str, Inbox] = {}
        self.consumers: dict[str, Subscription] = {}
        self.receipts: dict[str, Receipt] = {}
        self.pending_error: ErrorFrame | None = None
        self.stuck = 0
        self.late = 0  # deliveries RabbitMQ pushed to a cancelled subscription, ever (never reset)
        self.held: set[str] = set()  # reads holding deliveries on this connection
        self.anchor: str | None = None  # the subscription give-back NACKs name (see _nack_all)
        self.anchor_generation = 0
        self.anchor_one_generation = 0
        self.given_back = 0  # deliveries given back by a NACK instead of a reconnect, ever
        self.sent_to: set[str] = set()  # RabbitMQ cluster URLs: queues this connection sent to (see sent)
        self.routes = RouteBook(settings.reply_ttl)
        self.cluster = bool(settings.failover or settings.quorum)
        self.anchors = True  # RabbitMQ: anchor subscriptions allowed (False once refused; see on_error)
        self.read_wires: dict[str, str] = {}  # recent reads: subscription id -> queue (wire name), bounded
        self.early: dict[str, int] = {}  # queue (wire name) -> its next reads that end their subscription early
        self.early_any = 0  # next reads of any queue that do (a late delivery whose queue is unknown)

    # ------------------------------------------------------------------ connecting
    def open(self) -> None:
        """Connect (caller holds the lock); the new connection gets the next generation.

        Raises:
            BrokerUnavailableError, BrokerRefusedError, ConfigurationError: as :class:`StompTransport`.
        """
        nodes = len(self.base.nodes)
        for step in range(nodes):
            # A failover list: from the node in use (or the next, after a loss) on, in turn.
            settings = self.base.on(self.node + step) if nodes > 1 else self.base
            self.generation += 1
            listener = Listener(settings, self, self.generation)
            try:
                conn = connect(settings, listener)
            except BrokerUnavailableError as exc:
                if step == nodes - 1:
                    raise
                log.warning("%s; trying the next node", exc)
                continue
            self.node = (self.node + step) % nodes
            self.settings = settings
            break
        self.server = listener.server
        if self.dialect is None:
            self.dialect = self._detect(listener.server)
        self.conn = conn
        self.connected = True
        self.stuck = 0
        self.held.clear()
        self.sent_to.clear()
        self.routes.reconnected()
        for sub_id, sub in self.consumers.items():
            conn.subscribe(sub.wire_name, id=sub_id, ack="client-individual", headers=sub.headers)
        log.info("connected to %s at %s (%s)", self.server or "STOMP broker", self.settings.address, self.dialect.value)

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

    def check(self) -> None:
        """Raise if closed, or the ERROR frame that no caller has seen yet."""
        if self.closed:
            raise TransportClosedError("this STOMP transport is closed; open a new one")
        if self.pending_error is None:  # the common case, without the lock: one set later is for the next call
            return
        with self.lock:
            error, self.pending_error = self.pending_error, None
        if error is not None:
            raise error

    def take_refusal(self, queue: str) -> bool:
        """Take the ERROR no caller has seen yet if it is RabbitMQ's refusal of ``queue`` for its arguments.

        Returns whether it was (it is then gone); any other pending ERROR stays for :meth:`check`.
        """
        if self.pending_error is None:  # the common case, without the lock
            return False
        with self.lock:
            error = self.pending_error
            if error is None or queue_of_refusal(str(error)) != queue:
                return False
            self.pending_error = None
        return True

    def connection(self, *, patience: float | None = None) -> Any:
        """The live stomp.py connection, reconnecting with backoff for up to ``patience`` seconds."""
        deadline: float | None = None
        delay = 0.1
        while True:
            with self.lock:
                if self.closed:
                    raise TransportClosedError("this STOMP transport is closed; open a new one")
                if self.connected:
                    return self.conn
                if deadline is None:  # read the clock only when a connection must be made
                    deadline = time.monotonic() + (self.settings.connect_timeout if patience is None else patience)
                try:
                    self.open()
                    return self.conn
                except BrokerUnavailableError:
                    if time.monotonic() + delay > deadline:
                        raise
            time.sleep(delay)
            delay = min(delay * 2, self.settings.reconnect_max_delay)

    def recover(self, stop: threading.Event) -> None:
        """Reconnect with backoff until it works or ``stop`` is set (consume's retry loop)."""
        delay = 0.1
        while not stop.is_set():
            try:
                self.connection(patience=0)
                return
            except BrokerUnavailableError as exc:
                log.warning("STOMP connection lost; retrying in %.1f s: %s", delay, exc)
            stop.wait(delay * (1 + random.random() / 10))
            delay = min(delay * 2, self.settings.reconnect_max_delay)

    # ------------------------------------------------------------------ deliveries nothing can ACK
    def return_stuck(self) -> None:
        """Give back the deliveries nothing can ACK, once no read holds deliveries on the connection.

        RabbitMQ: one NACK of every outstanding delivery of the channel (see :meth:`_nack_all`)
        when no consume subscription holds any; otherwise, or if that fails, re-open the connection.
        """
        with self.lock:
            if not self.stuck or self.held or not self.connected:
                return
            stuck, generation = self.stuck, self.generation
            anchored = self.anchors and self.dialect is Dialect.RABBITMQ
            pending = self._nack_all() if anchored and not self.consumers else None
        if pending is not None:
            receipt, waiting = pending
            try:
                self.await_receipt(waiting, receipt, "giving back deliveries that came after a read's marker")
            except TransportError as exc:
                log.debug("giving back held deliveries failed (%s); re-opening the connection", exc)
            else:
                self.given_back += stuck
                return
        self.recycle(generation, f"{stuck} deliveries that came after a read's marker")

    def unsubscribe_early(self, wire: str) -> bool:
        """Whether the read of queue ``wire`` just collected ends its subscription now (RabbitMQ), not at settlement.

        Early: an UNSUBSCRIBE with a receipt as soon as the marker came, awaited at settlement, so
        every delivery that raced the marker is in the inbox and given back by the settlement's
        NACKs; a frame and a receipt more per read. At settlement: the UNSUBSCRIBE goes in the
        settlement's one write (BEGIN, ACK/NACK, UNSUBSCRIBE, COMMIT), one write and one receipt
        per read, but a message published to the queue while the read settles may reach the ended
        subscription (a *late* delivery: held on the connection until given back, and a read
        meanwhile reads again). So: early for :data:`EARLY_READS` reads of a queue after a late
        delivery from that queue (messages are arriving at it: its job is in flight), at settlement
        otherwise (an idle queue, e.g. a finished status, and every other docset's queue: a late
        delivery says nothing about them). A late delivery whose queue is unknown makes the next
        :data:`EARLY_READS` reads of any queue early. Both settle the same messages the same way.
        """
        with self.lock:
            left = self.early.get(wire, 0)
            if left:
                if left > 1:
                    self.early[wire] = left - 1
                else:
                    del self.early[wire]
                return True
            if self.early_any:
                self.early_any -= 1
                return True
            return False

    def reading(self, sub_id: str, wire: str) -> None:
        """Remember that a read of queue ``wire`` subscribes as ``sub_id``: a late delivery names its subscription.

        Bounded (the oldest read goes first). The caller holds the lock.
        """
        if len(self.read_wires) >= _REMEMBERED_READS:
            del self.read_wires[next(iter(self.read_wires))]  # the oldest read: long settled
        self.read_wires[sub_id] = wire

    def _arriving(self, sub_id: str | None) -> None:
        """A late delivery to subscription ``sub_id`` (None: unknown): its queue's next reads end early.

        A subscription no recent read had (a consumer's, or an unknown one): every queue's. The caller
        holds the lock.
        """
        wire = None if sub_id is None else self.read_wires.get(sub_id)
        if wire is None:
            self.early_any = EARLY_READS
            return
        self.early.pop(wire, None)
        if len(self.early) >= _REMEMBERED_READS:
            del self.early[next(iter(self.early))]
        self.early[wire] = EARLY_READS

    def anchor_individual(self, conn: Any) -> None:
        """SUBSCRIBE the individual anchor (see :func:`anchored`) on ``conn`` unless this connection has it.

        Called inside a :meth:`transmit` action (the link's lock may be held or not: it is an RLock).
        """
        with self.lock:
            if self.anchor_one_generation == self.generation:
                return
            self.anchor_one_generation = self.generation
        conn.subscribe(f"/exchange/amq.direct/tdm-anchor-{uuid.uuid4().hex}", id=_ANCHOR_ONE, ack="client-individual")

    def _nack_all(self) -> tuple[str, Receipt] | None:
        """NACK (requeue) every unacknowledged delivery of the connection; the caller holds the lock.

        RabbitMQ's adapter maps a NACK to ``basic.nack`` on the connection's one channel and needs
        only a live subscription for it: the *anchor*, a subscription in ``client`` (cumulative)
        mode to an exclusive queue nothing is routed to (``/exchange/amq.direct/<random key>``),
        made once per connection. Delivery tag 0 with ``multiple`` is "all outstanding" in AMQP:
        the deliveries held for cancelled subscriptions, which are all there are while no read
        or consumer holds any (checked by the caller, under the lock, so no read starts first).
        Checked on RabbitMQ 3.10: they are readable from another connection once the receipt came.
        """
        receipt = f"tdm-giveback-{uuid.uuid4().hex}"
        anchor = self.anchor if self.anchor_generation == self.generation else None

        def give_back(conn: Any) -> None:
            if anchor is None:
                conn.subscribe(f"/exchange/amq.direct/tdm-anchor-{uuid.uuid4().hex}", id=_ANCHOR, ack="client")
            conn.nack(f"T_{_ANCHOR}@@tdm@@0", receipt=receipt)

        try:
            pending = self.transmit(give_back, "giving back held deliveries", receipt=receipt, wait=False)
        except TransportError:
            return None
        self.anchor, self.anchor_generation = _ANCHOR, self.generation
        self.stuck = 0
        return receipt, pending

    def _return_stuck_soon(self) -> None:
        """Give held deliveries back now, not at this transport's next call: an idle server would
        otherwise hide them from every other reader. Done off the receiver thread, which cannot
        close its own connection; a read still in progress does it when it settles instead."""
        with self.lock:
            if self.held:
                return
        threading.Thread(target=self.return_stuck, name="tdm-stomp-return-stuck", daemon=True).start()

    def on_late_delivery(self, generation: int, details: str) -> None:
        """RabbitMQ's ERROR for a delivery to a cancelled subscription (receiver thread)."""
        with self.lock:
            if generation == self.generation and self.connected:
                self.stuck += 1
                self.late += 1
                self._arriving(late_subscription(details))
        log.debug("a delivery reached a finished read (%s); the connection will be re-opened", details)
        self._return_stuck_soon()

    def recycle(self, generation: int, why: str) -> None:
        """Close connection ``generation`` on purpose (RabbitMQ then requeues what it holds unacked).

        The next call reconnects and renews consume subscriptions; their unacknowledged
        deliveries come again (at-least-once).
        """
        with self.lock:
            if generation != self.generation or not self.connected:
                return
            conn = self.conn
            self.on_lost(generation, None, quiet=True)
        log.debug("re-opening the STOMP connection to return %s to the queue", why)
        drop(conn)

    # ------------------------------------------------------------------ callbacks (receiver thread)
    def on_message(self, generation: int, headers: dict[str, str], body: bytes | str) -> None:
        """Route a MESSAGE to its subscription's inbox."""
        data = body if isinstance(body, bytes) else body.encode("utf-8")
        with self.lock:
            inbox = self.inboxes.get(str(headers.get("subscription", "")))
            late = inbox is None and generation == self.generation and self.dialect is Dialect.RABBITMQ
            if late:
                # For a subscription already cancelled: RabbitMQ holds it until the connection closes.
                self.stuck += 1
                self.late += 1
                self._arriving(str(headers.get("subscription", "")))
        if inbox is not None:
            inbox.put(Frame(dict(headers), data, generation))
        elif late:
            self._return_stuck_soon()

    def on_receipt(self, receipt_id: str, error: TransportError | None) -> None:
        """A RECEIPT (or the ERROR answering a frame with a receipt)."""
        with self.lock:
            pending = self.receipts.pop(receipt_id, None)
        if pending is not None:
            pending.error = error
            pending.set()

    def on_error(self, generation: int, receipt_id: str, error: ErrorFrame, text: str) -> None:
        """An ERROR frame: to the frame that asked for a receipt, else to every inbox, else to the next call."""
        with self.lock:
            if generation != self.generation:
                return
            refused = queue_of_refusal(text)
            if refused is not None:
                self.routes.refused(refused, time.monotonic())
            if self.anchors and ("amq.gen-" in text or "'amq.direct'" in text):
                # A user without rights on server-named queues or amq.direct cannot have anchors:
                # reads keep their subscription until settled, stragglers cost a reconnect, as before.
                self.anchors = False
                log.warning(
                    "the STOMP broker refused this user the anchor subscription (%s); reads fall back to "
                    "settling on their own subscription and late deliveries to a reconnect. Grant the user "
                    "configure, write and read on '^amq\\.gen-' and read on 'amq.direct' to avoid it",
                    " ".join(text.split())[:200],
                )
            if receipt_id and receipt_id in self.receipts:
                self.on_receipt(receipt_id, error)
                return
            if self.inboxes:
                for inbox in self.inboxes.values():
                    inbox.put(error)
            else:
                self.pending_error = error

    def on_lost(self, generation: int, refusal: ErrorFrame | None, *, quiet: bool = False) -> None:
        """Connection ``generation`` is gone: fail its receipts, tell its inboxes."""
        with self.lock:
            if generation != self.generation or not self.connected:
                return
            self.connected = False
            self.node += 1  # a failover list: the next connection tries the next node first
            receipts, self.receipts = self.receipts, {}
            if receipts and refusal is not None and self.pending_error is refusal:
                self.pending_error = None  # the callers waiting for receipts report it
            for inbox in self.inboxes.values():
                inbox.put(Lost(generation))
        if not self.closed and not quiet:
            log.warning("lost the connection to the STOMP broker at %s", self.settings.address)
        for pending in receipts.values():
            pending.lost = True
            pending.error = refusal or BrokerUnavailableError(
                f"the connection to the STOMP broker at {self.settings.address} was lost before it confirmed"
            )
            pending.set()

    # ------------------------------------------------------------------ sending frames
    def transmit(
        self,
        action: Callable[[Any], None] | bytes,
        what: str,
        *,
        receipt: str | None = None,
        generation: int | None = None,
        wait: bool = True,
    ) -> Receipt:
        """Run ``action(conn)``, or write ``action`` if it is an encoded frame; with ``receipt``, wait for its RECEIPT.

        With ``generation``, only on that connection: its deliveries' ack ids and its
        transactions mean nothing to a successor, so a lost connection is an error, not a reconnect.
        With ``wait=False``, return the pending receipt for :meth:`await_receipt` instead of waiting.

        Raises:
            BrokerUnavailableError: the connection is (or was) lost.
            BrokerRefusedError, SendNotConfirmedError: as :meth:`await_receipt`.
        """
        if generation is None:
            conn = self.connection()
        else:
            with self.lock:
                if generation != self.generation or not self.connected:
                    raise BrokerUnavailableError(
                        f"{what}: the connection to the STOMP broker at {self.settings.address} was lost; "
                        "what it held unacknowledged goes back to the queue"
                    )
                conn = self.conn
        # An unconfirmed frame (most sends) needs no receipt record: no Event, no lock.
        pending = Receipt() if receipt is not None else _DONE
        if receipt is not None:
            with self.lock:
                self.receipts[receipt] = pending
        try:
            if isinstance(action, bytes):
                write_frame(conn, action)
            else:
                action(conn)
        except DRIVER_ERRORS as exc:
            with self.lock:
                self.receipts.pop(receipt or "", None)
            raise unavailable(what, self.settings.address, exc) from exc
        if receipt is None:
            return pending
        if wait:
            self.await_receipt(pending, receipt, what)
        return pending

    def sent(self, wire: str) -> None:
        """A SEND to ``wire`` went out on this connection; remembered on a RabbitMQ cluster URL only
        (its confirmed sends to classic queues flush the connection's earlier ones first)."""
        if self.cluster and wire not in self.sent_to:
            with self.lock:
                self.sent_to.add(wire)

    def expect(self, receipt: str) -> Receipt:
        """Register a receipt a frame written next will ask for (a second receipt of one :meth:`transmit`)."""
        pending = Receipt()
        with self.lock:
            self.receipts[receipt] = pending
        return pending

    def await_receipt(self, pending: Receipt, receipt: str, what: str) -> None:
        """Wait for the RECEIPT ``receipt``; raise what the broker or the connection said instead."""
        if not pending.wait(self.settings.confirm_timeout):
            with self.lock:
                self.receipts.pop(receipt, None)
            raise SendNotConfirmedError(
                f"{what}: no receipt from the STOMP broker at {self.settings.address} within "
                f"{self.settings.confirm_timeout:g} s; it may or may not have been done"
            )
        if isinstance(pending.error, BrokerRefusedError):
            raise pending.error
        if pending.error is not None:
            raise SendNotConfirmedError(f"{what}: {pending.error}") from pending.error

    def ack(self, frame: Frame, *, receipt: str | None = None) -> bool:
        """Acknowledge ``frame``; False when its connection is gone (the broker will redeliver it)."""
        with self.lock:
            current = frame.generation == self.generation and self.connected
        if not current:
            return False
        headers = {"id": ack_id(frame)}
        if receipt is not None:
            headers["receipt"] = receipt
        self.transmit(
            header_frame("ACK", headers),  # the bytes stomp.py would write, without its per-frame work
            "acknowledgement",
            receipt=receipt,
            generation=frame.generation,
        )
        return True

    def ack_all(self, frames: Sequence[Frame]) -> bool:
        """Acknowledge ``frames`` in one write; False when some came on a connection that is gone (redelivered)."""
        with self.lock:
            generation, live = self.generation, self.connected
        current = [frame for frame in frames if live and frame.generation == generation]
        if current:
            acks = b"".join([header_frame("ACK", {"id": ack_id(frame)}) for frame in current])
            self.transmit(acks, "acknowledgement", generation=generation)
        return len(current) == len(frames)

    def close(self) -> None:
        """DISCONNECT and stop using the connection. Idempotent."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            conn, live = self.conn, self.connected
            self.connected = False
            inboxes = list(self.inboxes.values())
        for inbox in inboxes:
            inbox.put(Lost(self.generation))
        if conn is None:
            return
        if live:
            disconnect(conn)
        else:
            drop(conn)
