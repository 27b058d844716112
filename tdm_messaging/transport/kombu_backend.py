"""The kombu backend: AMQP (RabbitMQ), Redis, SQLite (SQLAlchemy) and in-process memory queues."""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from functools import partial
from typing import Any, TypeVar

import amqp.exceptions
import kombu as _kombu_module
from kombu.transport import memory as kombu_memory
from kombu.transport import virtual as kombu_virtual

from tdm_messaging.destinations import Destination, DestinationKind
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import (
    BrokerRefusedError,
    BrokerUnavailableError,
    ConfigurationError,
    SendNotConfirmedError,
    TransportClosedError,
    TransportError,
)
from tdm_messaging.transport.base import Batch, Capabilities, Delivery, Handler, Transport
from tdm_messaging.transport.expiry import is_expired, stamp_expiry
from tdm_messaging.transport.kombu_settings import Backend, KombuSettings, capabilities_of, parse_kombu_url

__all__ = ["KombuTransport"]

log = logging.getLogger(__name__)

# kombu is only partly typed: treat it as dynamic at this one edge.
kombu: Any = _kombu_module
_BrokerState: Any = kombu_virtual.BrokerState

_T = TypeVar("_T")
_DRAIN_SECONDS = 0.5
# Headers kombu, RabbitMQ or its STOMP plugin add on their own; not the application's.
_DRIVER_HEADERS = frozenset({"redelivered", "compression", "content-length"})


# --------------------------------------------------------------------------- memory isolation
class _MemoryBroker:
    """State of one in-process broker; kombu's own memory transport keeps it class-level (process-wide)."""

    def __init__(self) -> None:
        queues: dict[str, Any] = {}
        state = _BrokerState()

        class Channel(kombu_memory.Channel):
            # Restore unacked messages when a channel closes, like the other transports
            # (kombu's memory channel drops them).
            do_restore = True

        Channel.queues = queues
        Channel.events = defaultdict(set)

        class MemoryTransport(kombu_memory.Transport):
            global_state = state

        MemoryTransport.Channel = Channel
        self.transport_class: type = MemoryTransport


_NAMED_MEMORY_BROKERS: dict[str, _MemoryBroker] = {}
_NAMED_MEMORY_LOCK = threading.Lock()


def _memory_broker(name: str) -> _MemoryBroker:
    """A fresh broker for ``memory://``; the one broker of this process named ``name`` for ``memory://name``."""
    if not name:
        return _MemoryBroker()
    with _NAMED_MEMORY_LOCK:
        broker = _NAMED_MEMORY_BROKERS.get(name)
        if broker is None:
            broker = _NAMED_MEMORY_BROKERS[name] = _MemoryBroker()
        return broker


# --------------------------------------------------------------------------- batch
class _KombuBatch(Batch):
    """Messages taken by basic_get, held unacknowledged until ack() or release()."""

    def __init__(
        self,
        owner: KombuTransport,
        destination: Destination,
        taken: list[tuple[Any, Envelope]],
    ) -> None:
        self._owner = owner
        self._destination = destination
        self._taken = taken
        self._envelopes = tuple(envelope for _, envelope in taken)
        self._done = False

    @property
    def envelopes(self) -> Sequence[Envelope]:
        """What was in the queue when the read began, oldest first."""
        return self._envelopes

    def ack(self) -> None:
        """Acknowledge every envelope of the batch; they are gone from the queue.

        Raises:
            BrokerUnavailableError: the connection was lost; the broker gives the messages back.
        """
        if self._done:
            return
        self._done = True
        with self._owner._driver(f"acknowledging messages of {self._destination.name!r}"):
            for message, _ in self._taken:
                message.ack()
            self._owner._collect_acked(self._destination)

    def release(self) -> None:
        """Give unacknowledged envelopes back to the queue, in their order. Idempotent."""
        if self._done:
            return
        self._done = True
        try:
            with self._owner._driver(f"releasing messages of {self._destination.name!r}"):
                for message, _ in self._taken:
                    message.reject(requeue=True)
        except TransportError as exc:
            # A lost connection gives unacknowledged messages back on its own.
            log.warning("release of %s failed (%s); the broker requeues on disconnect", self._destination, exc)


# --------------------------------------------------------------------------- transport
class KombuTransport(Transport):
    """A :class:`~tdm_messaging.transport.base.Transport` over kombu: AMQP, Redis, SQLite, memory.

    Open it with :func:`~tdm_messaging.transport.registry.open_transport` or
    :meth:`from_url`. Queues are addressed by their logical names (``package/5``) through the
    default exchange, so STOMP clients of the same RabbitMQ see the same queues. One
    connection is shared by all threads, guarded by a lock; :meth:`consume` holds it only
    while talking to the broker, never while a handler runs.
    """

    def __init__(self, *, settings: KombuSettings) -> None:
        """Connect to the broker ``settings`` names.

        Raises:
            BrokerUnavailableError: the broker could not be reached.
            BrokerRefusedError: the broker refused the login.
        """
        self._settings = settings
        self._lock = threading.RLock()
        self._closed = False
        self._memory: _MemoryBroker | None = None
        if settings.backend is Backend.MEMORY:
            self._memory = _memory_broker(settings.url.split("://", 1)[1].strip("/"))
        self._conn: Any = None
        self._channel: Any = None
        self._confirm_channel: Any = None
        # Queue name -> monotonic time of this connection's last declare of it (see _declare).
        self._declared: dict[str, float] = {}
        self._producer: Any = None  # kombu Producer of self._channel (virtual transports), built once
        self._reconnects = 0
        self._heartbeat_stop = threading.Event()
        self._heartbeat_thread: threading.Thread | None = None
        with self._driver("connecting"):
            self._connect()
        if settings.backend is Backend.AMQP and settings.heartbeat > 0:
            self._heartbeat_thread = threading.Thread(
                target=self._heartbeat_loop, name="tdm-kombu-heartbeat", daemon=True
            )
            self._heartbeat_thread.start()

    @classmethod
    def from_url(cls, url: str) -> KombuTransport:
        """Open a transport from a URL such as ``amqp://guest:guest@127.0.0.1:5672//?reply_ttl=86400``.

        Raises:
            ConfigurationError: a bad URL or parameter (see
                :func:`~tdm_messaging.transport.kombu_settings.parse_kombu_url`).
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
        return self._reconnects

    # ------------------------------------------------------------------ connection
    def _new_connection(self) -> Any:
        s = self._settings
        if self._memory is not None:
            return kombu.Connection("memory://", transport=self._memory.transport_class)
        heartbeat = s.heartbeat if s.backend is Backend.AMQP else 0
        if s.tls is not None:
            return kombu.Connection(
                s.url, connect_timeout=s.connect_timeout, heartbeat=heartbeat, ssl=s.tls.kombu_ssl()
            )
        return kombu.Connection(s.url, connect_timeout=s.connect_timeout, heartbeat=heartbeat)

    def _connect(self) -> None:
        conn = self._new_connection()
        try:
            conn.connect()
            if self._settings.backend is Backend.AMQP:
                _bound_broker_waits(conn, self._settings.confirm_timeout)
            channel = conn.channel()
            if self._settings.backend in (Backend.SQLITE, Backend.MEMORY):
                # Not a transport option: kombu's SQLAlchemy transport hands those to create_engine.
                conn.transport.polling_interval = self._settings.poll_interval
            if self._settings.backend is Backend.SQLITE:
                channel._open()  # creates the engine and tables: proves the file is usable
            elif self._settings.backend is Backend.REDIS:
                channel.client.ping()
        except BaseException:
            _quietly(conn.release)
            raise
        self._conn, self._channel, self._confirm_channel = conn, channel, None
        self._declared.clear()

    def _reconnect(self) -> None:
        """Drop the (broken) connection and open a new one. Call with the lock held."""
        old = self._conn
        self._conn = self._channel = self._confirm_channel = None
        if old is not None:
            _quietly(old.collect)
        self._connect()
        self._reconnects += 1
        log.info("reconnected to %s", self._settings.display_url)

    def _check_open(self) -> None:
        if self._closed:
            raise TransportClosedError(f"transport to {self._settings.display_url} is closed; open a new one")

    def _base_channel(self) -> Any:
        if self._conn is None:
            self._connect()
        return self._channel

    def _retrying(self, what: str, operation: Callable[[], _T]) -> _T:
        """Run ``operation`` under the lock; after a connection loss reconnect once and retry."""
        self._check_open()
        with self._driver(what):
            try:
                return operation()
            except self._connection_errors() as exc:
                if isinstance(exc, TimeoutError):
                    raise  # an unresponsive broker would only time out again: report it now
                log.warning("%s on %s failed (%s); reconnecting once", what, self._settings.display_url, exc)
                self._reconnect()
                return operation()
            except amqp.exceptions.PreconditionFailed as exc:
                if _is_refusal(exc):
                    raise
                # A channel closed under us (e.g. RabbitMQ's consumer_timeout on a consumer's
                # channel, read while waiting for this operation's answer): not this operation's
                # fault. The connection's state is unknown: start afresh and try once more.
                log.warning(
                    "%s on %s: the broker closed a channel (%s); reconnecting once",
                    what,
                    self._settings.display_url,
                    exc,
                )
                self._reconnect()
                return operation()

    def _connection_errors(self) -> tuple[type[BaseException], ...]:
        conn = self._conn or self._new_connection()
        return (*conn.connection_errors, OSError)

    @contextmanager
    def _driver(self, what: str) -> Iterator[None]:
        """Hold the lock and translate any driver error raised inside into tdm_messaging.errors."""
        with self._lock:
            try:
                yield
            except TransportError:
                raise
            except TimeoutError as exc:
                # A socket timeout mid-conversation leaves the connection in an unknown state.
                log.warning(
                    "%s on %s: no answer from the broker in time; dropping the connection",
                    what,
                    self._settings.display_url,
                )
                self._conn_broken()
                s = self._settings
                raise BrokerUnavailableError(
                    f"{what} on {s.display_url}: the broker did not answer in time (connect_timeout="
                    f"{s.connect_timeout:g} s when connecting, confirm_timeout={s.confirm_timeout:g} s for other "
                    "answers); check that it is running and reachable, or raise the timeout if it is only slow"
                ) from exc
            except amqp.exceptions.NotFound as exc:
                self._channel_broken()
                raise BrokerRefusedError(f"{what} on {self._settings.display_url}: {exc}") from exc
            except (amqp.exceptions.AccessRefused, amqp.exceptions.NotAllowed) as exc:
                raise BrokerRefusedError(
                    f"{what} on {self._settings.display_url}: access refused ({exc}); "
                    "check the user name, password and virtual host in the URL"
                ) from exc
            except amqp.exceptions.PreconditionFailed as exc:
                if not _is_refusal(exc):
                    # Not about what we asked: RabbitMQ closed a channel, e.g. a consumer's after its
                    # consumer_timeout ("delivery acknowledgement on channel N timed out"). Its
                    # unacknowledged messages are redelivered; drop the connection (the next
                    # operation reconnects, consume() resubscribes).
                    log.warning("%s on %s: the broker closed a channel: %s", what, self._settings.display_url, exc)
                    self._conn_broken()
                    raise BrokerUnavailableError(
                        f"{what} on {self._settings.display_url}: the broker closed a channel ({exc}); "
                        "the connection is reopened and unacknowledged messages are redelivered. If this is "
                        "RabbitMQ's consumer_timeout, raise it above the longest job"
                    ) from exc
                self._channel_broken()
                raise BrokerRefusedError(
                    f"{what} on {self._settings.display_url}: {exc}; a queue of that name exists with other "
                    "arguments (queue arguments are immutable): check reply_ttl/quorum match every peer, "
                    "or delete the queue"
                ) from exc
            except amqp.exceptions.ChannelError as exc:
                self._channel_broken()
                raise BrokerRefusedError(f"{what} on {self._settings.display_url}: {exc}") from exc
            except ssl.SSLCertVerificationError as exc:
                self._conn_broken()
                raise BrokerUnavailableError(
                    f"{what} on {self._settings.display_url}: the broker's TLS certificate was refused "
                    f"({exc.verify_message or exc}); check that the CA file given as ssl_ca_certs (or "
                    "SSL_CERT_FILE, or the system's CAs) is the CA that signed the broker's certificate, and "
                    "that the certificate names the host of the URL"
                ) from exc
            except ssl.SSLError as exc:
                self._conn_broken()
                raise BrokerUnavailableError(
                    f"{what} on {self._settings.display_url}: TLS failed ({exc}); check that the port is the "
                    "broker's TLS listener (amqps://, usually 5671) and that the ssl_* files of the URL are valid"
                ) from exc
            except (ConfigurationError, ValueError, TypeError):
                raise
            except Exception as exc:
                if _is_auth_failure(exc):
                    raise BrokerRefusedError(
                        f"{what} on {self._settings.display_url}: access refused ({exc}); "
                        "check the user name and password in the URL"
                    ) from exc
                if isinstance(exc, (*self._connection_errors(), *self._channel_errors())):
                    self._conn_broken()
                    raise BrokerUnavailableError(
                        f"{what} on {self._settings.display_url} failed: {type(exc).__name__}: {exc}; "
                        "check that the broker is running and reachable at that address"
                    ) from exc
                raise

    def _channel_errors(self) -> tuple[type[BaseException], ...]:
        conn = self._conn or self._new_connection()
        return tuple(conn.channel_errors)

    def _channel_broken(self) -> None:
        """The broker closed a channel after an error: open fresh ones next time."""
        conn = self._conn
        for channel in (self._channel, self._confirm_channel):
            if channel is not None:
                _quietly(channel.close)
        self._confirm_channel = None
        self._declared.clear()
        self._channel = None
        if conn is not None:
            try:
                self._channel = conn.channel()
            except Exception:
                self._conn_broken()

    def _conn_broken(self) -> None:
        old, self._conn = self._conn, None
        self._channel = self._confirm_channel = None
        self._declared.clear()
        if old is not None:
            _quietly(old.collect)

    def _heartbeat_loop(self) -> None:
        """Keep an AMQP connection alive while nobody talks to it (idle server, long handler).

        py-amqp sends heartbeats only from ``heartbeat_check`` and counts the broker's only
        when frames are read, so both happen here, under the connection lock.
        """
        interval = max(self._settings.heartbeat / 4, 0.05)
        while not self._heartbeat_stop.wait(interval):
            with self._lock:
                conn = self._conn
                if conn is None or self._closed:
                    continue
                try:
                    with suppress(TimeoutError):
                        conn.drain_events(timeout=0)
                    conn.heartbeat_check()
                except Exception as exc:
                    if isinstance(exc, amqp.exceptions.PreconditionFailed) and not _is_refusal(exc):
                        # RabbitMQ closed a consumer's channel (consumer_timeout, unknown delivery tag):
                        # its subscription is gone and py-amqp reopens the channel bare. Drop the
                        # connection so the consume loop subscribes again instead of idling.
                        log.warning(
                            "the broker at %s closed a channel (%s); the next operation reconnects",
                            self._settings.display_url,
                            exc,
                        )
                        self._conn_broken()
                        continue
                    if not isinstance(exc, self._connection_errors()):
                        log.debug("heartbeat on %s: %s", self._settings.display_url, exc)
                        continue
                    # Drop the dead connection now (no I/O), so the next operation opens a
                    # fresh one at once instead of waiting out a timeout on this one.
                    log.warning(
                        "connection to %s lost (%s: %s); the next operation reconnects",
                        self._settings.display_url,
                        type(exc).__name__,
                        exc,
                    )
                    self._conn_broken()

    # ------------------------------------------------------------------ queues
    def _queue_arguments(self, destination: Destination) -> dict[str, Any]:
        if self._settings.backend is not Backend.AMQP:
            return {}
        if destination.kind is DestinationKind.REPLY:
            return {"x-expires": self._settings.reply_ttl_ms}
        if self._settings.quorum:
            return {"x-queue-type": "quorum"}
        return {}

    def _declare(self, channel: Any, destination: Destination) -> int | None:
        """Declare ``destination`` unless this connection's last declare of it still holds; return
        its message count when the broker said it.

        A publish to a missing queue through the default exchange is silently dropped, and a
        reply queue expires ``reply_ttl`` after its last use. RabbitMQ restarts that clock on
        every declare, so a reply queue this connection declared less than ``reply_ttl / 2`` ago
        surely still exists (the lease rule of stomp_routes): it is declared again only after that.
        Permanent and dead-letter queues never expire: declared once per connection.
        """
        now = time.monotonic()
        last = self._declared.get(destination.name)
        if last is not None and (
            destination.kind is not DestinationKind.REPLY or now - last < self._settings.reply_ttl / 2
        ):
            return None
        ok = channel.queue_declare(
            queue=destination.name,
            passive=False,
            durable=True,
            exclusive=False,
            auto_delete=False,
            arguments=self._queue_arguments(destination),
        )
        self._declared[destination.name] = now
        return int(ok.message_count) if ok is not None else None

    def declare(self, destination: Destination) -> None:
        """Create ``destination`` with the arguments its kind calls for, if it does not exist.

        AMQP: durable, non-exclusive, non-auto-delete; reply queues with
        ``x-expires = reply_ttl * 1000``; permanent and dead-letter queues with
        ``x-queue-type: quorum`` when ``quorum=true``.

        Raises:
            BrokerRefusedError: the queue exists with other arguments.
            BrokerUnavailableError: the broker could not be reached.
        """
        self._retrying(f"declaring {destination.name!r}", lambda: self._declare(self._base_channel(), destination))

    def delete(self, destination: Destination) -> None:
        """Remove ``destination`` and every message in it (a missing queue is not an error).

        Raises:
            BrokerUnavailableError: the broker could not be reached.
        """
        self._retrying(f"deleting {destination.name!r}", lambda: self._delete(destination))

    def _delete(self, destination: Destination) -> None:
        channel = self._base_channel()
        self._declared.pop(destination.name, None)
        if self._settings.backend is Backend.AMQP:
            channel.queue_delete(queue=destination.name)
            return
        # Virtual transports delete through bindings, and the default exchange has none.
        channel._delete(destination.name, "", destination.name, None)
        if self._settings.backend is Backend.SQLITE:
            session = channel.session
            session.query(channel.queue_cls).filter(channel.queue_cls.name == destination.name).delete()
            session.commit()

    def _collect_acked(self, destination: Destination) -> None:
        """SQLite: remove the rows of taken messages (kombu only hides them, so the file would grow forever).

        A hidden row is never read again (kombu restores a released message as a new row),
        so deleting them loses nothing.
        """
        if self._settings.backend is not Backend.SQLITE or self._channel is None:
            return
        channel = self._channel
        session = channel.session
        queue = session.query(channel.queue_cls).filter(channel.queue_cls.name == destination.name).first()
        if queue is None:
            return
        message_cls = channel.message_cls
        session.query(message_cls).filter(message_cls.queue_id == queue.id).filter(
            message_cls.visible == False  # noqa: E712 - an SQL expression, not a Python comparison
        ).delete(synchronize_session=False)
        session.commit()

    # ------------------------------------------------------------------ send
    def send(
        self,
        destination: Destination,
        envelope: Envelope,
        *,
        persistent: bool = True,
        confirm: bool = False,
    ) -> None:
        """Send ``envelope`` to ``destination`` (declared first, with its kind's arguments).

        Args:
            persistent: delivery mode 2 (kept on disk by RabbitMQ).
            confirm: AMQP: wait for the publisher confirm (``confirm_timeout``). Redis,
                SQLite and memory writes are synchronous, so there is nothing more to wait for.

        Raises:
            SendNotConfirmedError: the broker nacked the message, or no confirm came in time.
            BrokerRefusedError: the broker refused the queue declaration.
            BrokerUnavailableError: the broker could not be reached.
        """
        if self._settings.backend is not Backend.AMQP and destination.kind is DestinationKind.REPLY:
            envelope = stamp_expiry(envelope, now_ms=_now_ms(), ttl_ms=self._settings.reply_ttl_ms)
        use_confirm = confirm and self._settings.backend is Backend.AMQP
        self._retrying(
            f"sending to {destination.name!r}",
            lambda: self._publish(destination, envelope, persistent=persistent, confirm=use_confirm),
        )

    def _publish(self, destination: Destination, envelope: Envelope, *, persistent: bool, confirm: bool) -> None:
        channel = self._base_channel()
        self._declare(channel, destination)
        body = envelope.body
        content_type = envelope.content_type
        headers = dict(envelope.headers)
        if self._settings.backend is not Backend.AMQP:
            # Virtual transports: kombu's Producer shapes the payload they store; one per channel.
            producer = self._producer
            if producer is None or producer.channel is not channel:
                producer = self._producer = kombu.Producer(channel, auto_declare=False)
            producer.publish(
                body,
                routing_key=destination.name,
                content_type=content_type,
                content_encoding=_content_encoding(content_type),
                headers=headers,
                delivery_mode=2 if persistent else 1,
                retry=False,
            )
            return
        # AMQP: the py-amqp message kombu's Producer would build, published without its layers.
        message = amqp.Message(
            body,
            content_type=content_type,
            content_encoding=_content_encoding(content_type),
            application_headers=headers,
            delivery_mode=2 if persistent else 1,
        )
        if not confirm:
            channel.basic_publish(message, exchange="", routing_key=destination.name)
            return
        if self._confirm_channel is None:
            self._confirm_channel = self._conn.channel()
        try:
            self._confirm_channel.basic_publish_confirm(
                message,
                exchange="",
                routing_key=destination.name,
                confirm_timeout=self._settings.confirm_timeout,
            )
        except amqp.exceptions.MessageNacked as exc:
            raise SendNotConfirmedError(
                f"{self._settings.display_url} refused (nacked) a message to {destination.name!r}; "
                "check the broker's logs (disk or memory alarm, queue length limit)"
            ) from exc
        except TimeoutError as exc:
            # A late confirm would confuse the next publish on this channel, and closing the
            # channel would wait for a broker that may be gone: drop the connection (no I/O);
            # the next operation opens a fresh one.
            self._conn_broken()
            raise SendNotConfirmedError(
                f"no publisher confirm from {self._settings.display_url} for a message to {destination.name!r} "
                f"within {self._settings.confirm_timeout:g} s; it may or may not have been stored "
                "(raise confirm_timeout, or check the broker's load)"
            ) from exc

    # ------------------------------------------------------------------ read
    def read(self, destination: Destination, *, limit: int = 1000) -> Batch:
        """Take what is in ``destination`` now (up to ``limit``), held unacknowledged.

        Stops when the broker says the queue is empty. On Redis, SQLite and memory, reply
        envelopes whose lazy-expiry stamp has passed are acknowledged and dropped, and a reply
        queue left with nothing live is deleted.

        Raises:
            ValueError: ``limit`` is less than 1.
            BrokerUnavailableError: the broker could not be reached.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        taken = self._retrying(f"reading {destination.name!r}", lambda: self._take(destination, limit))
        return _KombuBatch(self, destination, taken)

    def _take(self, destination: Destination, limit: int) -> list[tuple[Any, Envelope]]:
        channel = self._base_channel()
        self._declare(channel, destination)
        lazy = self._settings.backend is not Backend.AMQP and destination.kind is DestinationKind.REPLY
        now_ms = _now_ms()
        taken: list[tuple[Any, Envelope]] = []
        dropped = 0
        try:
            while len(taken) < limit:
                message = channel.basic_get(queue=destination.name, no_ack=False)
                if message is None:
                    break
                message = channel.message_to_python(message)
                envelope = _to_envelope(message)
                if lazy and is_expired(envelope.headers, now_ms=now_ms):
                    message.ack()
                    dropped += 1
                    continue
                taken.append((message, envelope))
                if message.delivery_info.get("message_count") == 0:
                    break
        except BaseException:
            for message, _ in taken:
                _quietly(partial(message.reject, requeue=True))
            raise
        if dropped:
            log.info("dropped %d expired replies from %s", dropped, destination.name)
            self._collect_acked(destination)
            if not taken and channel._size(destination.name) == 0:
                self._delete(destination)
        return taken

    # ------------------------------------------------------------------ consume
    def consume(
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
            ValueError: ``prefetch`` is less than 1 or ``destinations`` is empty.
            BrokerRefusedError: the broker refused a queue declaration or subscription.
        """
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        if not destinations:
            raise ValueError("consume needs at least one destination")
        self._check_open()
        failures = 0
        while not stop.is_set():
            try:
                self._consume_session(destinations, handler, prefetch, stop)
                return
            except BrokerUnavailableError as exc:
                failures += 1
                delay = min(self._settings.retry_max, 0.2 * 2 ** min(failures, 10))
                log.warning("consuming from %s: %s; retrying in %.1f s", self._settings.display_url, exc, delay)
                if stop.wait(delay):
                    return
                try:
                    with self._driver("reconnecting"):
                        self._reconnect()
                    failures = 0
                except BrokerUnavailableError as again:
                    log.warning("reconnect to %s failed: %s", self._settings.display_url, again)

    def _consume_session(
        self,
        destinations: Sequence[Destination],
        handler: Handler,
        prefetch: int,
        stop: threading.Event,
    ) -> None:
        pending: deque[tuple[Any, Destination]] = deque()
        channels: list[Any] = []

        def receiver(destination: Destination) -> Callable[[Any], None]:
            return lambda message: pending.append((message, destination))

        with self._driver("subscribing"):
            self._check_open()
            base = self._base_channel()
            for destination in destinations:
                self._declare(base, destination)
            for destination in destinations:
                channel = self._conn.channel()
                channels.append(channel)
                channel.basic_qos(0, prefetch, False)
                consumer = kombu.Consumer(
                    channel,
                    queues=[kombu.Queue(destination.name, no_declare=True)],
                    on_message=receiver(destination),
                    no_ack=False,
                    auto_declare=False,
                )
                consumer.consume()
            session_conn = self._conn
        try:
            while not stop.is_set():
                if pending:
                    message, destination = pending.popleft()
                    self._deliver(message, destination, handler, session_conn)
                    continue
                with self._driver("waiting for messages"):
                    self._check_open()
                    conn = self._conn
                    if conn is None:  # dropped by another thread (heart-beat, a failed send)
                        raise BrokerUnavailableError(f"connection to {self._settings.display_url} was lost")
                    if conn is not session_conn:
                        # Replaced by another operation's reconnect: our subscriptions went with the old one.
                        raise BrokerUnavailableError(
                            f"connection to {self._settings.display_url} was replaced; subscribing again"
                        )
                    with suppress(TimeoutError):
                        conn.drain_events(timeout=_DRAIN_SECONDS)
                    conn.heartbeat_check()
        finally:
            with self._lock:
                for channel in channels:
                    # Closing gives prefetched, unhandled messages back to the queue.
                    _quietly(channel.close)

    def _deliver(self, message: Any, destination: Destination, handler: Handler, session_conn: Any) -> None:
        envelope = _to_envelope(message)
        delivery = Delivery(envelope=envelope, destination=destination, redelivered=_redelivered(message))
        try:
            handler(delivery)
        except BaseException:
            with self._lock:
                if self._conn is session_conn:
                    _quietly(lambda: message.reject(requeue=True))
            raise
        with self._driver(f"acknowledging a message of {destination.name!r}"):
            if self._conn is not session_conn:
                # The connection it came on is gone (lost, or closed by the broker and replaced while
                # the handler ran): the broker redelivers the message; acknowledging it is impossible.
                raise BrokerUnavailableError(
                    f"acknowledging a message of {destination.name!r}: the connection to "
                    f"{self._settings.display_url} it came on was lost while it was handled; the broker "
                    "delivers it again"
                )
            message.ack()
            self._collect_acked(destination)

    # ------------------------------------------------------------------ close
    def close(self) -> None:
        """Disconnect; unacknowledged messages go back to their queues. Idempotent."""
        if self._closed:
            return
        self._heartbeat_stop.set()
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
            self._channel = self._confirm_channel = None
            if conn is not None:
                _quietly(conn.release)
        if self._heartbeat_thread is not None and self._heartbeat_thread is not threading.current_thread():
            self._heartbeat_thread.join(timeout=5)

    def __enter__(self) -> KombuTransport:
        return self

    def __repr__(self) -> str:
        return f"KombuTransport({self._settings.display_url!r})"


# --------------------------------------------------------------------------- helpers
def _now_ms() -> int:
    return int(time.time() * 1000)


def _content_encoding(content_type: str) -> str:
    """``utf-8`` for text and JSON bodies, ``binary`` otherwise (the body is never re-encoded)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media.startswith("text/") or media == "application/json" or media.endswith("+json"):
        return "utf-8"
    return "binary"


def _to_envelope(message: Any) -> Envelope:
    body = message.body
    if isinstance(body, str):
        body = body.encode("utf-8")
    elif body is None:
        body = b""
    headers = _app_headers(message.headers or {})
    return Envelope(bytes(body), message.content_type or "application/octet-stream", headers)


def _app_headers(raw: Mapping[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw.items():
        key = str(name).lower()
        if key in _DRIVER_HEADERS or key.startswith("x-"):
            continue
        if isinstance(value, bytes):
            headers[key] = value.decode("utf-8", "replace")
        else:
            headers[key] = value if isinstance(value, str) else str(value)
    return headers


def _redelivered(message: Any) -> bool:
    info = message.delivery_info or {}
    headers = message.headers or {}
    raw = getattr(message, "_raw", None)  # virtual transports mark a restored payload itself
    marked = isinstance(raw, dict) and raw.get("redelivered") is True
    return bool(info.get("redelivered") or headers.get("redelivered") is True or marked)


def _is_auth_failure(exc: BaseException) -> bool:
    name = type(exc).__name__.lower()
    text = str(exc).lower()
    return "authentication" in name or "noauth" in text or "invalid password" in text or "wrongpass" in text


def _is_refusal(exc: BaseException) -> bool:
    """Whether a 406 PRECONDITION_FAILED refuses what we asked (inequivalent queue arguments).

    Any other 406 (a consumer_timeout, an unknown delivery tag) is a channel loss.
    """
    return "inequivalent arg" in str(exc).lower()


def _bound_broker_waits(conn: Any, seconds: float) -> None:
    """Make every wait for the broker on ``conn``'s socket give up after ``seconds``.

    py-amqp waits without a time limit for the answer to a synchronous method (queue
    declare, channel open/close, basic_get, confirm_select): over a black-holed connection
    that is forever, and heart-beats cannot help while the wait holds the connection. With a
    socket timeout each such wait raises :class:`TimeoutError` (a connection error: the
    connection is dropped and the caller gets ``BrokerUnavailableError``). Waits given an
    explicit timeout (publisher confirms, draining events) still use theirs.
    """
    sock = getattr(getattr(conn.connection, "transport", None), "sock", None)
    if sock is not None:
        sock.settimeout(seconds)


def _quietly(action: Callable[[], object]) -> None:
    """Run a clean-up step whose failure must not hide the error being handled."""
    try:
        action()
    except Exception as exc:
        log.debug("clean-up step failed: %s", exc)
