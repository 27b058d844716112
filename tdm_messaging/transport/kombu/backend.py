"""KombuTransport: the transport contract over kombu, for AMQP (RabbitMQ), Redis, SQLite and in-process memory."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from tdm_messaging.destinations import Destination, DestinationKind, names_in_words
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import MessagingError
from tdm_messaging.headers import DECLARE_PROBE
from tdm_messaging.transport.base import Batch, BatchHandler, Capabilities, Delivery, Handler, Transport
from tdm_messaging.transport.expiry import stamp_expiry
from tdm_messaging.transport.group_commit import GroupCommit
from tdm_messaging.transport.kombu.consume import consume_queues
from tdm_messaging.transport.kombu.link import KombuLink
from tdm_messaging.transport.kombu.queues import declare_queue, delete_queue, holds, queue_depth
from tdm_messaging.transport.kombu.read import KombuBatch, take
from tdm_messaging.transport.kombu.send import flush_tracked, publish, publish_confirmed, publish_tracked
from tdm_messaging.transport.kombu.settings import Backend, KombuSettings, capabilities_of, parse_kombu_url

__all__ = ["KombuTransport"]


_PRIME_PROBE = Envelope(b"", "application/octet-stream", {DECLARE_PROBE: "1"})
"""The declare probe that primes a reply queue's storage (``_declare_primed``): empty, read by nobody."""


def _now_ms() -> int:
    """Wall-clock Unix epoch milliseconds, for lazy-expiry stamps (absolute, like the peers')."""
    return int(time.time() * 1000)


class KombuTransport(Transport):
    """A :class:`~tdm_messaging.transport.base.Transport` over kombu: AMQP, Redis, SQLite, memory.

    Open it with :func:`~tdm_messaging.transport.registry.open_transport` or
    :meth:`from_url`. Queues are addressed by their logical names (``package/5``) through the
    default exchange, so STOMP clients of the same RabbitMQ see the same queues. One
    connection is shared by all threads, guarded by a lock; :meth:`consume` holds it only
    while talking to the broker, never while a handler runs.

    The pieces: ``link`` (the live connection: connect, reconnect, retry once,
    heart-beats), ``translate`` (driver errors into tdm_messaging.errors),
    ``memory`` (a memory broker per transport), ``queues`` (declare with the lease
    rule, delete), ``send`` (publish and confirms), ``read`` (read and its batch),
    ``consume`` (the consume loop), ``messages`` (envelopes to and from messages),
    ``settings`` (the URL and its parameters).
    """

    def __init__(self, *, settings: KombuSettings) -> None:
        """Connect to the broker ``settings`` names.

        Raises:
            BrokerUnavailableError: the broker could not be reached.
            BrokerRefusedError: the broker refused the login.
        """
        self._settings = settings
        # AMQP holds the connection's lock across a confirm wait: concurrent confirmed sends share
        # one (group commit). Not Redis, SQLite, memory: their writes are synchronous (nothing to
        # share) and a batch's failure stops the sends after it, which would fail other callers'.
        self._groups = Transport._confirmed_group(self) if settings.backend is Backend.AMQP else None
        self._link = KombuLink(settings)
        self._link.open()

    @classmethod
    def from_url(cls, url: str) -> KombuTransport:
        """Open a transport from a URL such as ``amqp://guest:guest@127.0.0.1:5672//?reply_ttl=86400``.

        Raises:
            ConfigurationError: a bad URL or parameter (see
                :func:`~tdm_messaging.transport.kombu.settings.parse_kombu_url`).
            BrokerUnavailableError: the broker could not be reached.
        """
        return cls(settings=parse_kombu_url(url))

    @property
    def settings(self) -> KombuSettings:
        """The frozen settings this transport was opened with."""
        return self._settings

    @property
    def capabilities(self) -> Capabilities:
        """What this backend and broker can do."""
        return capabilities_of(self._settings.backend)

    @property
    def reconnects(self) -> int:
        """How many times the connection was re-established after a loss."""
        return self._link.reconnects

    # ------------------------------------------------------------------ seams (tests reach in here)
    @property
    def _conn(self) -> Any:
        """The live kombu connection, or None while dropped (tests break its socket)."""
        return self._link.conn

    @property
    def _declared(self) -> dict[str, float]:
        """Queue name -> monotonic time of this connection's last declare of it."""
        return self._link.declared

    def _driver(self, what: str) -> AbstractContextManager[None]:
        """Hold the lock and translate driver errors raised inside (see :meth:`KombuLink.driver`)."""
        return self._link.driver(what)

    def _base_channel(self) -> Any:
        """The connection's main channel, connecting first if it was dropped."""
        return self._link.base_channel()

    def _declare_on(self, channel: Any, destination: Destination) -> int | None:
        """Declare ``destination`` by the lease rule of :func:`declare_queue`; every operation declares through here."""
        return declare_queue(self._link, channel, destination)

    # ------------------------------------------------------------------ send
    def _group_commit(self) -> GroupCommit | None:
        """AMQP: concurrent confirmed sends share one publish and confirm wait (see ``Transport.send_many``)."""
        return self._groups

    def _send(
        self,
        destination: Destination,
        envelope: Envelope,
        *,
        persistent: bool = True,
        confirm: bool = False,
    ) -> None:
        """Send ``envelope`` to ``destination``.

        Args:
            persistent: delivery mode 2 (kept on disk by RabbitMQ).
            confirm: AMQP: wait for the publisher confirm (``confirm_timeout``). Redis,
                SQLite and memory writes are synchronous, so there is nothing more to wait for.

        AMQP: permanent queues are declared once per connection. A reply queue is not declared
        before a send: every send to one is published ``mandatory`` on the confirm channel, and
        one the broker returns (the queue is missing) makes the queue be declared, with the
        reply arguments, and the message sent again (at the latest with the next confirmed
        send). The virtual transports declare before every send, as creating a queue costs
        them nothing.

        Raises:
            SendNotConfirmedError: the broker nacked the message, returned it unroutable (a
                permanent queue is gone or, in a cluster, the queue's home node is down), or no
                confirm came in time.
            BrokerRefusedError: the broker refused the queue declaration.
            BrokerUnavailableError: the broker could not be reached, or the queue's home node is down.
        """
        amqp_reply = self._settings.backend is Backend.AMQP and destination.kind is DestinationKind.REPLY
        # An unconfirmed reply to a queue this connection declared lately goes out plainly (ordered
        # with this connection's reads); to any other, tracked: see publish_tracked.
        plain = not confirm and (not amqp_reply or holds(self._link, destination))
        if self._settings.backend is not Backend.AMQP or plain:
            self._send_plain(destination, envelope, persistent=persistent)
            return
        if not confirm:

            def tracked() -> None:
                self._link.base_channel()
                publish_tracked(self._link, destination, envelope, persistent=persistent)

            self._link.retrying(f"sending to {destination.name!r}", tracked)
            return
        self._send_confirmed([(destination, envelope)], persistent=persistent)

    def _send_many(self, sends: Sequence[tuple[Destination, Envelope]], *, persistent: bool, confirm: bool) -> None:
        """AMQP with ``confirm``: publish all, then one wait for every confirm (see :meth:`_send`).

        Raises:
            SendNotConfirmedError: as :meth:`_send`, with ``unconfirmed``/``refused`` naming which.
        """
        if self._settings.backend is not Backend.AMQP or not confirm or len(sends) < 2:
            super()._send_many(sends, persistent=persistent, confirm=confirm)
            return
        self._send_confirmed(sends, persistent=persistent)

    def _send_plain(self, destination: Destination, envelope: Envelope, *, persistent: bool) -> None:
        if self._settings.backend is not Backend.AMQP and destination.kind is DestinationKind.REPLY:
            envelope = stamp_expiry(envelope, now_ms=_now_ms(), ttl_ms=self._settings.reply_ttl_ms)

        def once() -> None:
            channel = self._link.base_channel()
            self._declare_on(channel, destination)
            publish(self._link, channel, destination, envelope, persistent=persistent)

        self._link.retrying(f"sending to {destination.name!r}", once)

    def _send_confirmed(self, sends: Sequence[tuple[Destination, Envelope]], *, persistent: bool) -> None:
        names = names_in_words(d.name for d, _ in sends)

        def once() -> None:
            channel = self._link.base_channel()
            for destination, _ in sends:
                if destination.kind is not DestinationKind.REPLY:
                    self._declare_on(channel, destination)
            publish_confirmed(
                self._link,
                sends,
                persistent=persistent,
                declare=lambda d: self._declare_on(self._link.base_channel(), d),
            )

        self._link.retrying(f"sending to {names}", once)

    def _flush_tracked(self) -> None:
        """AMQP: unconfirmed replies went out on the confirm channel; settle them before an operation
        on another channel (read, count, delete) that must come after them. Call with the lock held."""
        if self._settings.backend is Backend.AMQP:
            self._link.base_channel()
            flush_tracked(self._link, declare=lambda d: self._declare_on(self._link.base_channel(), d))

    # ------------------------------------------------------------------ read
    def _read(self, destination: Destination, *, limit: int = 1000) -> Batch:
        """Take what is in ``destination`` now (up to ``limit``), held unacknowledged.

        Stops when the broker says the queue is empty. On Redis, SQLite and memory, reply
        envelopes whose lazy-expiry stamp has passed are acknowledged and dropped, and a reply
        queue left with nothing live is deleted.

        Raises:
            BrokerUnavailableError: the broker could not be reached.
        """

        def once() -> list[tuple[Any, Envelope]]:
            channel = self._link.base_channel()
            self._flush_tracked()
            self._declare_on(channel, destination)
            return take(self._link, channel, destination, limit, now_ms=_now_ms())

        taken = self._link.retrying(f"reading {destination.name!r}", once)
        return KombuBatch(self._link, destination, taken)

    # ------------------------------------------------------------------ consume
    def _consume(
        self,
        destinations: Sequence[Destination],
        handler: Handler,
        *,
        prefetch: int = 1,
        stop: threading.Event,
    ) -> None:
        """Deliver messages from ``destinations`` to ``handler`` in this thread until ``stop`` is set.

        One channel per destination with ``basic_qos(prefetch)``; each message is acknowledged
        after ``handler`` returns. If ``handler`` raises, the message is given back (requeued)
        and the exception propagates. A lost connection is re-established with exponential
        backoff (up to ``retry_max`` seconds) while ``stop`` is unset; consumption resumes.

        Raises:
            BrokerRefusedError: the broker refused a queue declaration or subscription.
        """

        def one(deliveries: Sequence[Delivery]) -> None:
            (delivery,) = deliveries
            handler(delivery)

        consume_queues(self._link, destinations, one, prefetch=prefetch, stop=stop, declare=self._consume_declare)

    def _consume_batches(
        self, destinations: Sequence[Destination], handler: BatchHandler, *, prefetch: int, stop: threading.Event
    ) -> None:
        """As :meth:`_consume`; on AMQP a batch holds every delivery the socket already has (read without waiting).

        The virtual transports (Redis, SQLite) hand over one delivery at a time: a read "without
        waiting" there is a poll of the store, not of a socket's buffer.
        """
        consume_queues(
            self._link,
            destinations,
            handler,
            prefetch=prefetch,
            stop=stop,
            declare=self._consume_declare,
            batched=self._settings.backend is Backend.AMQP,
        )

    def _consume_declare(self, channel: Any, destination: Destination) -> None:
        self._flush_tracked()  # replies sent unconfirmed before: in their queues before subscribing
        self._declare_on(channel, destination)

    # ------------------------------------------------------------------ queues
    def _declare(self, destination: Destination) -> None:
        """Create ``destination`` with the arguments its kind calls for, if it does not exist.

        AMQP: durable, non-exclusive, non-auto-delete; reply queues with
        ``x-expires = reply_ttl * 1000``; permanent and dead-letter queues with
        ``x-queue-type: quorum`` when ``quorum=true``.

        Raises:
            BrokerRefusedError: the queue exists with other arguments.
            BrokerUnavailableError: the broker could not be reached.
        """
        self._link.retrying(
            f"declaring {destination.name!r}", lambda: self._declare_on(self._link.base_channel(), destination)
        )

    def _declare_primed(self, destination: Destination) -> None:
        """Declare reply queue ``destination``; on AMQP also prime its storage (see ``Transport.declare``).

        The probe is an empty persistent message with a ``tdm-declare-probe`` header and a time
        to live of 0 ms, published ``mandatory`` on the confirm channel and confirmed: storing it
        makes RabbitMQ create the queue's on-disk index now, and it expires at once (a reader
        that still meets it drops it, docs/protocol.md § 6.2). Redis, SQLite and memory store
        nothing on disk per queue: a plain declare.

        Raises:
            BrokerRefusedError: the queue exists with other arguments.
            SendNotConfirmedError: the probe was not confirmed.
            BrokerUnavailableError: the broker could not be reached.
        """
        if self._settings.backend is not Backend.AMQP:
            self._declare(destination)
            return

        def once() -> None:
            self._declare_on(self._link.base_channel(), destination)
            publish_confirmed(
                self._link,
                [(destination, _PRIME_PROBE)],
                persistent=True,
                declare=lambda d: self._declare_on(self._link.base_channel(), d),
                expiration="0",
            )

        self._link.retrying(f"declaring and priming {destination.name!r}", once)

    def _depth(self, destination: Destination) -> int | None:
        """How many messages wait in ``destination`` (AMQP: passive declare; Redis: LLEN); a missing queue is 0.

        Raises:
            BrokerUnavailableError: the broker could not be reached.
        """

        def once() -> int:
            self._flush_tracked()
            return queue_depth(self._link, destination)

        return self._link.retrying(f"counting {destination.name!r}", once)

    def _delete(self, destination: Destination) -> None:
        """Remove ``destination`` and every message in it (a missing queue is not an error).

        Raises:
            BrokerUnavailableError: the broker could not be reached.
        """

        def once() -> None:
            self._flush_tracked()
            delete_queue(self._link, destination)

        self._link.retrying(f"deleting {destination.name!r}", once)

    # ------------------------------------------------------------------ close
    def close(self) -> None:
        """Disconnect; unacknowledged messages go back to their queues. Idempotent.

        AMQP: unconfirmed replies sent to queues that were missing are sent again first (best
        effort, at most ``confirm_timeout``).
        """
        confirms = self._link.confirm_channel
        if not self._link.closed and self._link.conn is not None and confirms is not None and confirms.pending:
            with contextlib.suppress(MessagingError):
                self._link.retrying("sending unconfirmed replies before closing", self._flush_tracked)
        self._link.close()

    def __enter__(self) -> KombuTransport:
        return self

    def __repr__(self) -> str:
        return f"KombuTransport({self._settings.display_url!r})"
