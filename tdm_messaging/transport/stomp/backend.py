"""StompTransport: the transport contract over stomp.py (STOMP 1.2), for RabbitMQ and ActiveMQ Classic."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from tdm_messaging.destinations import Destination, DestinationKind
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import BrokerRefusedError, BrokerUnavailableError, TransportError
from tdm_messaging.transport.base import Batch, BatchHandler, Capabilities, Delivery, Handler, Transport
from tdm_messaging.transport.stomp.connector import send_elsewhere
from tdm_messaging.transport.stomp.consume import consume_queues
from tdm_messaging.transport.stomp.declarer import Declarer
from tdm_messaging.transport.stomp.dialect import Dialect, to_wire_name
from tdm_messaging.transport.stomp.frames import PROBE_HEADER, queue_headers, send_frame, send_headers
from tdm_messaging.transport.stomp.link import Receipt, StompLink
from tdm_messaging.transport.stomp.read import now_ms, read_queue
from tdm_messaging.transport.stomp.routes import Route, Target, around_wire_name, queue_of_refusal
from tdm_messaging.transport.stomp.settings import ReplyExpiry, StompSettings, parse_stomp_url

__all__ = ["StompTransport"]

log = logging.getLogger(__name__)

_READ_ATTEMPTS = 3
"""Reads of one call: a retry is needed only when a delivery was held back meanwhile (RabbitMQ)."""

_CAPABILITIES = {
    Dialect.RABBITMQ: Capabilities(
        queue_expiry=True,
        message_expiry=True,
        nack_requeue=True,
        dead_lettering=True,
        cross_process=True,
        delete_queue=False,
        confirms=True,
        # A SEND to /queue/<name> with the declare headers creates a missing queue (the route book
        # re-declares one that may have expired), so a packager need not declare before each job;
        # a queue that exists with other arguments is reached as it is (see StompTransport._send).
        reply_queue_on_send=True,
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


@lru_cache(maxsize=1024)
def _declaring_target(destination: Destination, dialect: Dialect) -> Target:
    """The usual target of ``destination`` (made once: the same few queues take most sends)."""
    return Target(destination, to_wire_name(destination, dialect), declare=True)


class StompTransport(Transport):
    """The transport contract over STOMP 1.2 with stomp.py, for RabbitMQ and ActiveMQ Classic.

    Open with :meth:`from_url` (or ``open_transport("stomp://...")``). Connects at once,
    with heart-beats and ``TCP_NODELAY`` (without it, a SEND followed by a SUBSCRIBE waits
    ~40 ms for a delayed TCP ACK: see docs/brokers.md). A dropped connection is re-opened
    with backoff by the next call, and active :meth:`consume` subscriptions are renewed.
    Thread-safe: a consume handler may call :meth:`send` on the same transport.

    The pieces: ``connector`` (opening and closing connections), ``link`` (the live
    connection, reconnects, receipts),
    ``routes`` (which reply queues a RabbitMQ connection has declared),
    ``read`` (read and its batch), ``consume`` (the consume loop),
    ``frames`` (pure frame headers).
    """

    def __init__(self, *, settings: StompSettings) -> None:
        """Connect to the broker that ``settings`` names.

        Raises:
            BrokerUnavailableError: nothing answers at host:port (the message says what to check).
            BrokerRefusedError: the broker refused the connection (credentials, vhost).
            ConfigurationError: no ``dialect`` given and the broker's ``server`` header names neither.
        """
        self.settings = settings
        self._link = StompLink(settings)
        self._declarer = Declarer(lambda: self._link.settings)
        with self._link.lock:
            self._link.open()

    @classmethod
    def from_url(cls, url: str) -> StompTransport:
        """Open a transport from a ``stomp://`` or ``stomp+ssl://`` URL (see :func:`parse_stomp_url`)."""
        return cls(settings=parse_stomp_url(url))

    def __enter__(self) -> StompTransport:
        return self

    def __repr__(self) -> str:
        return f"StompTransport({self.settings!r}, server={self._link.server!r})"

    # ------------------------------------------------------------------ properties
    @property
    def dialect(self) -> Dialect:
        """The broker's dialect, given in the URL or detected when connecting."""
        assert self._link.dialect is not None  # set by the first connection, or the constructor fails
        return self._link.dialect

    @property
    def server(self) -> str:
        """The broker's ``server`` header, e.g. ``RabbitMQ/3.10.8``."""
        return self._link.server

    @property
    def connection_count(self) -> int:
        """How many connections this transport has opened (or tried to), for tests and benchmarks.

        1 after construction; each reconnect adds one. A plain poll adds none (nor does
        :meth:`declare`, whose connection is a side connection of its own: see
        :attr:`declare_connection_count`).
        """
        return self._link.generation

    @property
    def declare_connection_count(self) -> int:
        """How many side connections :meth:`declare` (and a reply queue's re-declare) has opened.

        One, kept, for any number of queues (RabbitMQ); another after a refusal (the broker closes
        the connection), when a queue this connection declared is declared again, or every
        10,000 names. 0 on ActiveMQ, which declares nothing.
        """
        return self._declarer.opened

    @property
    def capabilities(self) -> Capabilities:
        """What the broker can do, by dialect (STOMP cannot delete a queue on either)."""
        return _CAPABILITIES[self.dialect]

    @property
    def _conn(self) -> Any:
        """The live stomp.py connection (tests break its socket to simulate a network failure)."""
        return self._link.conn

    # ------------------------------------------------------------------ routes (RabbitMQ)
    def _target(self, destination: Destination) -> Target:
        """Where the next frame to ``destination`` goes; declares it elsewhere first if it may have expired.

        RabbitMQ declares a queue only on a connection's first frame for it (see routes):
        a reply queue this connection declared more than half a ``reply_ttl`` ago is declared
        again on the side connection that declares, so an expired queue behaves like a new one. A reply
        queue RabbitMQ refused to declare for its arguments is reached by ``/amq/queue/``.
        """
        link = self._link
        dialect = self.dialect
        if dialect is not Dialect.RABBITMQ or destination.kind is not DestinationKind.REPLY:
            # Permanent queues never expire: always DECLARE (RabbitMQ's rule 1 decides whether it does).
            return _declaring_target(destination, dialect)
        with link.lock:
            route = link.routes.route(destination, time.monotonic())
        if route is Route.REFRESH:
            route = self._refresh(destination)
        if route is Route.AROUND:
            return Target(destination, around_wire_name(destination), declare=False)
        with link.lock:
            link.routes.sent(destination, time.monotonic())
        return Target(destination, to_wire_name(destination, Dialect.RABBITMQ), declare=True)

    def _refresh(self, destination: Destination) -> Route:
        """Declare ``destination`` on the side connection; say which route the next frame takes."""
        try:
            self._declare_elsewhere(destination)
        except BrokerRefusedError as exc:
            if queue_of_refusal(str(exc)) != destination.name:
                raise
            log.warning(
                "%s exists with other arguments than this transport declares; sending to it as it is "
                "(/amq/queue), declaring nothing: %s",
                destination,
                exc,
            )
            return Route.AROUND
        return Route.DECLARE

    def _classic_in_a_cluster(self, destination: Destination) -> bool:
        """Whether ``destination`` is a classic queue (it lives on one node) of a RabbitMQ cluster.

        A cluster is what the URL says: several nodes, or ``quorum=true`` (a one-node URL in
        front of a cluster, e.g. a load balancer, should set it).
        """
        if self.dialect is not Dialect.RABBITMQ or not (self.settings.failover or self.settings.quorum):
            return False
        return queue_headers(destination, self.settings, self.dialect).get("x-queue-type", "classic") == "classic"

    def _send_declaring(self, target: Target, envelope: Envelope, headers: dict[str, str]) -> None:
        """A confirmed SEND to a classic queue of a cluster, as the first frame of a connection of its own.

        RabbitMQ's adapter declares a queue only on a connection's first frame for it; a later
        SEND to a classic queue whose home node is down is dropped, and receipted all the same.
        As a connection's first frame it declares the queue and is refused ("home node ... is
        down") instead. If the transport's own connection sent to the queue before (an unconfirmed
        Accepted, say), it is flushed first by an empty probe to the same queue with a receipt (a
        publisher confirm: the queue has taken what this channel sent it before), so that comes
        first. (A receipt for an empty transaction, as before, did not order them: one in five sends
        to a new queue overtook the unconfirmed one.) Not sent to it: nothing to flush, and no probe
        that would be this connection's first frame for the queue, and declare it.
        """
        link = self._link
        with link.lock:
            sent_before = target.wire in link.sent_to
        if sent_before:
            flush = f"tdm-flush-{uuid.uuid4().hex}"
            probe = {
                **queue_headers(target.destination, self.settings, self.dialect),
                "expiration": "0",
                PROBE_HEADER: "1",
                "receipt": flush,
            }
            link.transmit(send_frame(target.wire, b"", "", probe), f"send to {target.destination}", receipt=flush)
        destination = target.destination
        try:
            send_elsewhere(
                link.settings, target.wire, envelope.body, envelope.content_type, headers, what=f"send to {destination}"
            )
        except BrokerRefusedError as exc:
            if destination.kind is DestinationKind.REPLY and queue_of_refusal(str(exc)) == destination.name:
                with link.lock:
                    link.routes.refreshed(destination, time.monotonic(), foreign=True)
            raise
        if destination.kind is DestinationKind.REPLY:
            with link.lock:
                link.routes.refreshed(destination, time.monotonic(), foreign=False)

    def _declare_elsewhere(self, destination: Destination, *, prime: bool = False) -> None:
        """Declare on the side connection; record the outcome in the route book. Raises its refusal.

        ``prime``: the probe goes persistent (see :meth:`_declare_primed`).
        """
        headers = queue_headers(destination, self.settings, self.dialect)
        try:
            self._declarer.declare(
                to_wire_name(destination, self.dialect),
                headers,
                renew=destination.kind is DestinationKind.REPLY,
                persistent=prime,
            )
        except BrokerRefusedError as exc:
            if queue_of_refusal(str(exc)) == destination.name:
                with self._link.lock:
                    self._link.routes.refreshed(destination, time.monotonic(), foreign=True)
            raise
        with self._link.lock:
            self._link.routes.refreshed(destination, time.monotonic(), foreign=False)

    # ------------------------------------------------------------------ sending
    def _send(
        self,
        destination: Destination,
        envelope: Envelope,
        *,
        persistent: bool = True,
        confirm: bool = False,
    ) -> None:
        """Send ``envelope`` (see :meth:`Transport.send`); ``confirm`` waits for a RECEIPT.

        On RabbitMQ a reply queue that has expired since this connection declared it is
        declared again first (it would otherwise drop the message), and one that exists with
        other arguments (refused before) is sent to as it is, through ``/amq/queue/``.

        Raises:
            SendNotConfirmedError: no receipt within ``confirm_timeout``, or the connection broke first.
            BrokerRefusedError: the broker answered with an ERROR frame (e.g. inequivalent arguments).
            BrokerUnavailableError: no connection could be made within ``connect_timeout``, or
                (RabbitMQ cluster) the queue's home node is down: nothing was stored.
            LocalProtocolError: an envelope header is reserved by STOMP (e.g. ``destination``).
        """
        self._take_own_refusal(destination)
        self._link.check()
        self._link.connection()
        target = self._target(destination)
        headers = send_headers(
            destination,
            envelope,
            self.settings,
            self.dialect,
            persistent=persistent,
            now_ms=now_ms() if self.dialect is Dialect.ACTIVEMQ else 0,  # only ActiveMQ stamps an expiry
            declare=target.declare,
        )
        if confirm and target.declare and self._classic_in_a_cluster(destination):
            self._send_declaring(target, envelope, headers)
            return
        with self._link.lock:
            generation = self._link.generation
        try:
            self._send_frame(target, envelope, headers, confirm=confirm)
        except (BrokerRefusedError, BrokerUnavailableError) as exc:
            if not (confirm and target.declare and self._refused_for_arguments(destination, exc)):
                raise
            # The queue exists with other arguments: RabbitMQ refused the declare this SEND carried
            # and closes the connection (nothing was stored). The refusal is in the route book, so
            # the frame goes again around (/amq/queue/, declaring nothing) on a new connection. The
            # refused one is dropped first: its RECEIPT's ERROR can wake us before the listener
            # marks it lost, and a frame written to it now would be lost with it.
            log.warning("%s exists with other arguments; sending to it as it is (/amq/queue): %s", destination, exc)
            self._link.recycle(generation, "what a connection whose SEND was refused held")
            self._link.take_refusal(destination.name)  # that connection's ERROR, if it came unasked: handled here
            around = self._target(destination)
            if around.declare:
                raise
            headers = send_headers(
                destination, envelope, self.settings, self.dialect, persistent=persistent, now_ms=0, declare=False
            )
            self._send_frame(around, envelope, headers, confirm=True)

    def _take_own_refusal(self, destination: Destination) -> None:
        """Handle an earlier unconfirmed SEND's refusal of this same reply queue for its arguments.

        RabbitMQ refused it (nothing was stored: an unconfirmed send may be lost) and closes the
        connection; the route book already sends the next frame around (``/amq/queue/``). So this
        SEND is not failed for it: a job's confirmed last reply after its refused Accepted still
        reaches the queue. Any other pending ERROR is raised by ``check()`` as before.
        """
        if self.dialect is not Dialect.RABBITMQ or destination.kind is not DestinationKind.REPLY:
            return
        link = self._link
        with link.lock:
            generation = link.generation
        if link.take_refusal(destination.name):
            log.warning(
                "an earlier unconfirmed SEND to %s was refused for the queue's arguments and not stored; "
                "this one goes to the queue as it is (/amq/queue)",
                destination,
            )
            link.recycle(generation, "what a connection whose SEND was refused held")

    def _refused_for_arguments(
        self, destination: Destination, exc: BrokerRefusedError | BrokerUnavailableError
    ) -> bool:
        """Whether a confirmed SEND to reply queue ``destination`` failed for RabbitMQ's refusal of its arguments.

        The refusal usually names the queue. When an earlier, unconfirmed SEND on the same
        connection was the one refused (a job's Accepted before its confirmed last reply), this
        SEND may instead meet the connection the broker is closing (unusable: the route book,
        told by the ERROR, already marks the queue foreign), or RabbitMQ may answer its receipt
        first with a bare ``Processing error`` that names nothing. For the latter the side
        connection declares the queue to find out: refused for its arguments there too, the SEND
        goes around; declared, the refusal was something else and stands.
        """
        if self.dialect is not Dialect.RABBITMQ or destination.kind is not DestinationKind.REPLY:
            return False
        named = queue_of_refusal(str(exc))
        if named is not None:
            return named == destination.name
        with self._link.lock:
            if self._link.routes.route(destination, time.monotonic()) is Route.AROUND:
                return True
        if isinstance(exc, BrokerUnavailableError):
            return False
        try:
            return self._refresh(destination) is Route.AROUND
        except TransportError as other:
            log.warning("could not tell why a SEND to %s was refused (%s): %s", destination, exc, other)
            return False

    def _send_frame(self, target: Target, envelope: Envelope, headers: dict[str, str], *, confirm: bool) -> None:
        """Write one SEND to ``target`` (with ``confirm``, a receipt, awaited)."""
        receipt = f"tdm-send-{uuid.uuid4().hex}" if confirm else None
        if receipt is not None:
            headers["receipt"] = receipt
        # The frame's bytes are made here, not by stomp.py's send: the same bytes in about a quarter
        # of its encoding time (see frames.send_frame and docs/performance.md).
        frame = send_frame(target.wire, envelope.body, envelope.content_type, headers)
        self._link.transmit(frame, f"send to {target.destination}", receipt=receipt)
        self._link.sent(target.wire)

    def _send_many(self, sends: Sequence[tuple[Destination, Envelope]], *, persistent: bool, confirm: bool) -> None:
        """Send each pair in order, back to back on this connection; with ``confirm``, wait once at the end.

        Every SEND asks for its own receipt; the receipts are awaited after the last frame is
        written, in order, so the first one that fails is the one named. A confirmed send to a
        classic queue of a RabbitMQ cluster still goes first on a short-lived connection (see
        :meth:`_send_declaring`): the frames before it are confirmed first, so order holds.

        Raises:
            BrokerRefusedError, SendNotConfirmedError: as :meth:`send`; the message names the
                refused or unconfirmed item (``item 2 of 2, send to docsets/package``).
            BrokerUnavailableError, LocalProtocolError: as :meth:`send`.
        """
        for destination, _ in sends:
            self._take_own_refusal(destination)
        self._link.check()
        self._link.connection()
        count = len(sends)
        pending: list[tuple[Receipt, str, str]] = []
        for index, (destination, envelope) in enumerate(sends, 1):
            what = f"item {index} of {count}, send to {destination}"
            target = self._target(destination)
            headers = send_headers(
                destination,
                envelope,
                self.settings,
                self.dialect,
                persistent=persistent,
                now_ms=now_ms() if self.dialect is Dialect.ACTIVEMQ else 0,
                declare=target.declare,
            )
            if confirm and target.declare and self._classic_in_a_cluster(destination):
                self._await_all(pending)  # what came before is stored before this one is sent
                pending.clear()
                self._send_declaring(target, envelope, headers)
                continue
            receipt = f"tdm-send-{uuid.uuid4().hex}" if confirm else None
            if receipt is not None:
                headers["receipt"] = receipt
            frame = send_frame(target.wire, envelope.body, envelope.content_type, headers)
            waiting = self._link.transmit(frame, what, receipt=receipt, wait=False)
            self._link.sent(target.wire)
            if receipt is not None:
                pending.append((waiting, receipt, what))
        self._await_all(pending)

    def _await_all(self, pending: Sequence[tuple[Receipt, str, str]]) -> None:
        """Wait for every receipt; raise for the item the broker answered with an ERROR, else the first that failed.

        RabbitMQ confirms a SEND after its refusal of a later one may have closed the connection:
        the earlier item then fails only because the connection ended (``lost``), so the item the
        ERROR answered (by its receipt id, or else by the queue a refusal names) is the one named.
        """
        failures: list[tuple[Receipt, str, TransportError]] = []
        for waiting, receipt, what in pending:
            try:
                self._link.await_receipt(waiting, receipt, what)
            except TransportError as exc:
                failures.append((waiting, what, exc))
        if not failures:
            return
        refused = queue_of_refusal(str(failures[0][2]))
        _, named, error = next(
            (f for f in failures if not f[0].lost),
            next((f for f in failures if refused is not None and f[1].endswith(f"send to {refused}")), failures[0]),
        )
        if isinstance(error, BrokerRefusedError):
            raise BrokerRefusedError(f"{named}: {error}") from error
        raise error

    # ------------------------------------------------------------------ reading
    def _read(self, destination: Destination, *, limit: int = 1000) -> Batch:
        """Take what ``destination`` holds now: a marker read settled by transactions (see ``stomp/read.py``).

        A RabbitMQ reply queue that expired reads as an empty, new queue (see :meth:`send`).

        Raises:
            TransportError: the marker did not come back within ``read_timeout`` seconds;
                nothing is lost (every message goes back to the queue).
            BrokerUnavailableError, BrokerRefusedError: as for :meth:`send`.
        """
        self._link.check()
        link = self._link
        for _ in range(_READ_ATTEMPTS - 1):
            link.return_stuck()
            link.connection()
            with link.lock:
                generation, late_before = link.generation, link.late
            batch = read_queue(link, self._target(destination), limit)
            with link.lock:
                held_meanwhile = link.generation == generation and link.late > late_before
            if not held_meanwhile:
                return batch
            # RabbitMQ pushed a message sent before our marker to a subscription that had ended
            # (an earlier read's): it is held on this connection, not in the queue, so this read
            # missed it. Give back what we took, re-open the connection, and read again.
            log.debug("a read of %s missed a held delivery; reading again", destination)
            batch.release()
        link.return_stuck()
        link.connection()
        return read_queue(link, self._target(destination), limit)

    # ------------------------------------------------------------------ consuming
    def _consume(
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
        self._link.check()

        def one(deliveries: Sequence[Delivery]) -> None:
            (delivery,) = deliveries
            handler(delivery)

        consume_queues(self._link, destinations, one, prefetch=prefetch, stop=stop)

    def _consume_batches(
        self, destinations: Sequence[Destination], handler: BatchHandler, *, prefetch: int, stop: threading.Event
    ) -> None:
        """As :meth:`_consume`, but ``handler`` gets every delivery already received at once (see
        :meth:`Transport.consume_batches`): what stomp.py's receiver thread has put in the inbox,
        up to ``prefetch`` per subscription, taken without waiting; its ACKs go in one write after
        ``handler`` returns, none if it raises.
        """
        self._link.check()
        consume_queues(self._link, destinations, handler, prefetch=prefetch, stop=stop, batched=True)

    # ------------------------------------------------------------------ queues
    def _declare(self, destination: Destination) -> None:
        """Create ``destination`` with its kind's arguments (renewing a reply queue's lease).

        RabbitMQ: a no-op for a reply queue whose declare the broker confirmed less than
        ``reply_ttl / 2`` ago (the queue exists, and most of its lease is left: the same rule as
        :meth:`send`'s re-declare), and for any reply queue in ``reply_expiry=policy`` mode (its
        first SEND declares it; there is no argument to be refused for). Otherwise an empty probe
        SEND (``expiration: 0``) with the declare headers, confirmed by a receipt, on a side
        connection kept for declares (see ``stomp/declarer.py``: one connection for any number of
        queues, not one per declare): nothing subscribes, and a refusal closes only that side
        connection, never the one holding this transport's subscriptions and unacknowledged
        deliveries. A reply queue refused for its arguments is then sent to as it is
        (``/amq/queue/``) by :meth:`send`. ActiveMQ creates queues on first use: nothing to do.

        Raises:
            BrokerRefusedError: the queue exists with other arguments.
            BrokerUnavailableError: no connection could be made.
        """
        self._link.check()
        self._link.connection()
        if self.dialect is not Dialect.RABBITMQ:
            return
        if destination.kind is DestinationKind.REPLY:
            if self.settings.reply_expiry is ReplyExpiry.POLICY:
                # No queue argument to disagree on, so nothing to learn early; and the probe would
                # reach a seed-style server subscribed to the queue as an empty message.
                return
            with self._link.lock:
                if self._link.routes.declared_lately(destination, time.monotonic()):
                    return  # the lease of a declare the broker confirmed holds: nothing to renew yet
        self._declare_elsewhere(destination)

    def _declare_primed(self, destination: Destination) -> None:
        """Declare reply queue ``destination`` and prime its storage (see ``Transport.declare``).

        RabbitMQ: the declare probe goes out persistent (still ``expiration: 0``), so its receipt
        comes once RabbitMQ has stored it and created the queue's on-disk index; sent even when
        a recent declare's lease holds, since that declare need not have stored anything. In
        ``reply_expiry=policy`` mode and on ActiveMQ, as :meth:`_declare` (no probe is sent there).

        Raises:
            BrokerRefusedError: the queue exists with other arguments.
            BrokerUnavailableError: no connection could be made.
            SendNotConfirmedError: no receipt within ``confirm_timeout``.
        """
        if self.dialect is not Dialect.RABBITMQ or self.settings.reply_expiry is ReplyExpiry.POLICY:
            self._declare(destination)
            return
        self._link.check()
        self._link.connection()
        self._declare_elsewhere(destination, prime=True)

    def _delete(self, destination: Destination) -> None:
        """No-op: STOMP has no frame that deletes a queue (``capabilities.delete_queue`` is false).

        Reply queues go away by themselves (RabbitMQ ``x-expires``/policy, ActiveMQ GC policy).
        """
        self._link.check()
        log.debug("delete(%s) is a no-op over STOMP", destination)

    def close(self) -> None:
        """Disconnect (DISCONNECT, then the socket closes). Idempotent."""
        try:
            self._link.close()
        finally:
            self._declarer.close()
