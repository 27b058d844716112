"""The live kombu connection under a KombuTransport: connect, reconnect, retry once, error translation, heart-beats."""

from __future__ import annotations

import importlib.util
import logging
import socket
import threading
from collections.abc import Callable
from contextlib import suppress
from types import TracebackType
from typing import Any, TypeVar

import amqp.exceptions
import amqp.platform
import kombu as _kombu_module

from tdm_messaging.errors import ConfigurationError, TransportClosedError
from tdm_messaging.transport.kombu.memory import MemoryBroker, memory_broker
from tdm_messaging.transport.kombu.settings import Backend, KombuSettings
from tdm_messaging.transport.kombu.translate import Breaks, is_refusal, translate
from tdm_messaging.transport.kombu.wire import buffer_reads
from tdm_messaging.transport.urls import redact_url

__all__ = ["KombuLink", "quietly"]

log = logging.getLogger(__name__)

# kombu is only partly typed: treat it as dynamic at this one edge.
kombu: Any = _kombu_module

_T = TypeVar("_T")

_LINUX_TCP_USER_TIMEOUT = 18
"""The option's number on Linux, for a Python built without ``socket.TCP_USER_TIMEOUT`` (as py-amqp does)."""

# backend -> (the module kombu imports for it, the package to name); AMQP's py-amqp comes with kombu.
_DRIVER_MODULES = {Backend.REDIS: ("redis", "redis"), Backend.SQLITE: ("sqlalchemy", "SQLAlchemy")}


class KombuLink:
    """One kombu connection at a time, with the channels and declares tied to it.

    Rules: every talk with the broker happens inside :meth:`driver`, which holds ``lock`` and
    translates driver errors. A broken channel is replaced on the same connection; a broken
    connection is dropped without I/O (``conn`` is None) and the next operation opens a new
    one. ``declared`` (queue name -> monotonic time of its last declare) belongs to the
    connection and is cleared with it. All fields are guarded by ``lock``.
    """

    def __init__(self, settings: KombuSettings) -> None:
        self.settings = settings
        self.lock = threading.RLock()
        self.closed = False
        self.memory: MemoryBroker | None = None
        if settings.backend is Backend.MEMORY:
            self.memory = memory_broker(settings.url.split("://", 1)[1].strip("/"))
        self.conn: Any = None
        self.channel: Any = None
        self.confirm_channel: Any = None  # send.ConfirmChannel: the channel in confirm mode, tracking publishes
        self.declared: dict[str, float] = {}
        self.producer: Any = None  # kombu Producer of self.channel (virtual transports), built once
        self.reconnects = 0
        self.hosts = settings.hosts or (settings.url,)
        self.host = 0  # index in hosts of the node connected to, or to try first
        self._heartbeat_stop = threading.Event()
        self._heartbeat_thread: threading.Thread | None = None

    def open(self) -> None:
        """Connect, and start the heart-beat thread of an AMQP connection that asks for one.

        Raises:
            BrokerUnavailableError: the broker could not be reached.
            BrokerRefusedError: the broker refused the login.
        """
        self._check_driver()
        with self.driver("connecting"):
            self._connect()
        if self.settings.backend is Backend.AMQP and self.settings.heartbeat > 0:
            self._heartbeat_thread = threading.Thread(
                target=self._heartbeat_loop, name="tdm-kombu-heartbeat", daemon=True
            )
            self._heartbeat_thread.start()

    # ------------------------------------------------------------------ connecting
    def _check_driver(self) -> None:
        """kombu imports a URL's driver (redis, SQLAlchemy) only when it first connects, and then fails
        with a traceback (redis: an AttributeError): look for it first, and name it with its extra."""
        module, package = _DRIVER_MODULES.get(self.settings.backend, (None, ""))
        if module is None or importlib.util.find_spec(module) is not None:
            return
        scheme = self.settings.display_url.partition("://")[0]
        raise ConfigurationError(
            f"the {scheme!r} transport needs {package}, which kombu uses for it and which is not installed "
            "here; install with: pip install 'tdm-messaging[kombu]'"
        )

    def _new_connection(self, host: int = 0) -> Any:
        s = self.settings
        if self.memory is not None:
            return kombu.Connection("memory://", transport=self.memory.transport_class)
        url = self.hosts[host]
        if s.backend is not Backend.AMQP:
            return kombu.Connection(url, connect_timeout=s.connect_timeout, heartbeat=0)
        # kombu hands transport options to py-amqp's Connection as keywords.
        options = {"socket_settings": socket_settings(s)}
        if s.tls is not None:
            return kombu.Connection(
                url,
                connect_timeout=s.connect_timeout,
                heartbeat=s.heartbeat,
                ssl=s.tls.kombu_ssl(),
                transport_options=options,
            )
        return kombu.Connection(
            url, connect_timeout=s.connect_timeout, heartbeat=s.heartbeat, transport_options=options
        )

    def _connect(self) -> None:
        """Connect to the node at ``host``, else each next one of a failover list in turn.

        kombu's own failover (``ensure_connection`` switching hosts) never runs here: one
        attempt each (see :meth:`_connect_to`), so a dead node costs one refused connect (or
        ``connect_timeout``), and the error of the last node tried is raised when none answers.
        """
        count = len(self.hosts)
        for step in range(count):
            index = (self.host + step) % count
            try:
                self._connect_to(index)
            except Exception as exc:
                if step == count - 1 or not isinstance(exc, self._connection_errors()):
                    raise
                log.warning("cannot connect to %s (%s); trying the next node", redact_url(self.hosts[index]), exc)
                continue
            self.host = index
            return

    def _move_on(self) -> None:
        """The connection was lost: the next connect starts at the next node of a failover list."""
        self.host = (self.host + 1) % len(self.hosts)

    def _connect_to(self, host: int) -> None:
        conn = self._new_connection(host)
        try:
            # One attempt: kombu's connect() tries twice with a 2 s pause between, so a broker that
            # does not answer took connect_timeout x 2 + 2 s (measured 8 s for 3 s) before the error
            # that names connect_timeout. Reconnecting is this backend's job (retrying, consume).
            conn.ensure_connection(max_retries=0, reraise_as_library_errors=False)
            if self.settings.backend is Backend.AMQP:
                _bound_broker_waits(conn, self.settings.confirm_timeout)
                buffer_reads(conn.connection)
            channel = conn.channel()
            if self.settings.backend in (Backend.SQLITE, Backend.MEMORY):
                # Not a transport option: kombu's SQLAlchemy transport hands those to create_engine.
                conn.transport.polling_interval = self.settings.poll_interval
            if self.settings.backend is Backend.SQLITE:
                channel._open()  # creates the engine and tables: proves the file is usable
            elif self.settings.backend is Backend.REDIS:
                channel.client.ping()
        except BaseException:
            quietly(conn.release)
            raise
        self.conn, self.channel, self.confirm_channel = conn, channel, None
        self.declared.clear()

    def reconnect(self) -> None:
        """Drop the (broken) connection and open a new one. Call with the lock held."""
        old = self.conn
        self.conn = self.channel = self.confirm_channel = None
        if old is not None:
            quietly(old.collect)
            self._move_on()
        self._connect()
        self.reconnects += 1
        log.info("reconnected to %s", redact_url(self.hosts[self.host]))

    def check_open(self) -> None:
        """Raise :class:`TransportClosedError` once the transport is closed."""
        if self.closed:
            raise TransportClosedError(f"transport to {self.settings.display_url} is closed; open a new one")

    def base_channel(self) -> Any:
        """The connection's main channel, connecting first if the connection was dropped. Call with the lock held."""
        if self.conn is None:
            self._connect()
        return self.channel

    # ------------------------------------------------------------------ talking to the broker
    def retrying(self, what: str, operation: Callable[[], _T]) -> _T:
        """Run ``operation`` under the lock; after a connection loss reconnect once and retry."""
        self.check_open()
        with self.driver(what):
            try:
                return operation()
            except self._connection_errors() as exc:
                if isinstance(exc, TimeoutError):
                    raise  # an unresponsive broker would only time out again: report it now
                log.warning("%s on %s failed (%s); reconnecting once", what, self.settings.display_url, exc)
                self.reconnect()
                return operation()
            except amqp.exceptions.PreconditionFailed as exc:
                if is_refusal(exc):
                    raise
                # A channel closed under us (e.g. RabbitMQ's consumer_timeout on a consumer's
                # channel, read while waiting for this operation's answer): not this operation's
                # fault. The connection's state is unknown: start afresh and try once more.
                log.warning(
                    "%s on %s: the broker closed a channel (%s); reconnecting once",
                    what,
                    self.settings.display_url,
                    exc,
                )
                self.reconnect()
                return operation()

    def driver(self, what: str) -> _Driver:
        """Hold the lock and translate any driver error raised inside into tdm_messaging.errors."""
        return _Driver(self, what)

    def translated(self, exc: Exception, what: str) -> BaseException | None:
        """The error to raise instead of driver error ``exc`` (None: raise it as it is); drops what it broke.

        Call with the lock held.
        """
        translation = translate(exc, what=what, settings=self.settings, driver_errors=self._driver_errors)
        if translation is None:
            return None
        if translation.breaks is Breaks.CONNECTION:
            self.conn_broken()
        elif translation.breaks is Breaks.CHANNEL:
            self.channel_broken()
        return translation.error

    def _connection_errors(self) -> tuple[type[BaseException], ...]:
        conn = self.conn or self._new_connection()
        return (*conn.connection_errors, OSError)

    def _driver_errors(self) -> tuple[type[BaseException], ...]:
        conn = self.conn or self._new_connection()
        return (*conn.connection_errors, OSError, *conn.channel_errors)

    def channel_broken(self) -> None:
        """The broker closed a channel after an error: open fresh ones next time."""
        conn = self.conn
        for channel in (self.channel, self.confirm_channel):
            if channel is not None:
                quietly(channel.close)
        self.confirm_channel = None
        self.declared.clear()
        self.channel = None
        if conn is not None:
            try:
                self.channel = conn.channel()
            except Exception:
                self.conn_broken()

    def conn_broken(self) -> None:
        """Drop the connection without I/O; the next operation opens a new one."""
        old, self.conn = self.conn, None
        self.channel = self.confirm_channel = None
        self.declared.clear()
        if old is not None:
            quietly(old.collect)
            self._move_on()

    # ------------------------------------------------------------------ heart-beats
    def _heartbeat_loop(self) -> None:
        """Keep an AMQP connection alive while nobody talks to it (idle server, long handler).

        py-amqp sends heartbeats only from ``heartbeat_check`` and counts the broker's only
        when frames are read, so both happen here, under the connection lock.
        """
        interval = max(self.settings.heartbeat / 4, 0.05)
        while not self._heartbeat_stop.wait(interval):
            with self.lock:
                conn = self.conn
                if conn is None or self.closed:
                    continue
                try:
                    with suppress(TimeoutError):
                        conn.drain_events(timeout=0)
                    conn.heartbeat_check()
                except Exception as exc:
                    if isinstance(exc, amqp.exceptions.PreconditionFailed) and not is_refusal(exc):
                        # RabbitMQ closed a consumer's channel (consumer_timeout, unknown delivery tag):
                        # its subscription is gone and py-amqp reopens the channel bare. Drop the
                        # connection so the consume loop subscribes again instead of idling.
                        log.warning(
                            "the broker at %s closed a channel (%s); the next operation reconnects",
                            self.settings.display_url,
                            exc,
                        )
                        self.conn_broken()
                        continue
                    if not isinstance(exc, self._connection_errors()):
                        log.debug("heartbeat on %s: %s", self.settings.display_url, exc)
                        continue
                    # Drop the dead connection now (no I/O), so the next operation opens a
                    # fresh one at once instead of waiting out a timeout on this one.
                    log.warning(
                        "connection to %s lost (%s: %s); the next operation reconnects",
                        self.settings.display_url,
                        type(exc).__name__,
                        exc,
                    )
                    self.conn_broken()

    # ------------------------------------------------------------------ closing
    def close(self) -> None:
        """Disconnect; unacknowledged messages go back to their queues. Idempotent."""
        if self.closed:
            return
        self._heartbeat_stop.set()
        with self.lock:
            self.closed = True
            conn, self.conn = self.conn, None
            self.channel = self.confirm_channel = None
            if conn is not None:
                quietly(conn.release)
        if self._heartbeat_thread is not None and self._heartbeat_thread is not threading.current_thread():
            self._heartbeat_thread.join(timeout=5)


class _Driver:
    """:meth:`KombuLink.driver`'s context: the lock held, driver errors translated on the way out.

    A class rather than a generator context manager: every operation on the hot path enters one.
    """

    __slots__ = ("_link", "_what")

    def __init__(self, link: KombuLink, what: str) -> None:
        self._link = link
        self._what = what

    def __enter__(self) -> None:
        self._link.lock.acquire()

    def __exit__(self, _type: type[BaseException] | None, exc: BaseException | None, _tb: TracebackType | None) -> None:
        try:
            if isinstance(exc, Exception):
                error = self._link.translated(exc, self._what)
                if error is not None:
                    raise error from exc
        finally:
            self._link.lock.release()


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


def socket_settings(settings: KombuSettings) -> dict[int, int]:
    """The TCP options of an AMQP connection's socket beyond py-amqp's defaults (its ``socket_settings``).

    py-amqp sets ``TCP_USER_TIMEOUT`` to 1000 ms wherever the platform has it: data the broker's
    TCP has not acknowledged for a second (a broker that stops reading its socket through a disk
    stall, a long GC or flow control, with its receive buffer full) then kills the connection
    with ``ETIMEDOUT``, and a confirmed publish in flight fails. Ours is
    :attr:`KombuSettings.tcp_user_timeout_ms` (by default ``confirm_timeout``), set where py-amqp
    would set its own.
    """
    if "TCP_USER_TIMEOUT" not in amqp.platform.KNOWN_TCP_OPTS:
        return {}
    return {getattr(socket, "TCP_USER_TIMEOUT", _LINUX_TCP_USER_TIMEOUT): settings.tcp_user_timeout_ms}


def quietly(action: Callable[[], object]) -> None:
    """Run a clean-up step whose failure must not hide the error being handled."""
    try:
        action()
    except Exception as exc:
        log.debug("clean-up step failed: %s", exc)
