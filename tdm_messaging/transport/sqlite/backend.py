"""The native SQLite backend: queues in one file shared by processes, with leases that a crash gives back."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from tdm_messaging.destinations import Destination
from tdm_messaging.envelope import Envelope
from tdm_messaging.transport.base import Batch, Capabilities, Handler, Transport
from tdm_messaging.transport.sqlite import store
from tdm_messaging.transport.sqlite.consume import consume_queues
from tdm_messaging.transport.sqlite.leases import LeaseKeeper, sweep
from tdm_messaging.transport.sqlite.link import SqliteLink, now_ms
from tdm_messaging.transport.sqlite.read import SqliteBatch
from tdm_messaging.transport.sqlite.settings import SqliteSettings, parse_sqlite_url
from tdm_messaging.transport.sqlite.wake import waker_for

__all__ = ["CAPABILITIES", "SqliteTransport"]

log = logging.getLogger(__name__)

CAPABILITIES = Capabilities(
    queue_expiry=True,  # a reply queue unused for reply_ttl is removed with its messages
    message_expiry=False,  # no per-message time to live
    nack_requeue=True,  # release() makes a message visible again at once
    dead_lettering=False,
    cross_process=True,
    delete_queue=True,
    confirms=True,  # send() returns after its transaction committed
)


class SqliteTransport(Transport):
    """A :class:`~tdm_messaging.transport.base.Transport` over one SQLite file, with no broker and no driver.

    Open it with :func:`~tdm_messaging.transport.registry.open_transport` (``sqlite:///tdm-broker.db``)
    or :meth:`from_url`. Any number of processes on one machine may share the file. A taken
    message is leased to this transport: a background thread renews the lease every
    ``visibility_timeout / 3`` while the message is held (in a batch or a running handler),
    so a long job is never redelivered while its process lives; if the process dies (even by
    SIGKILL) the lease runs out and the message is delivered again, marked redelivered.
    One connection is shared by this transport's threads, guarded by a lock that is never held
    while a handler runs.

    The pieces: ``store`` (the schema and every SQL statement), ``link`` (the
    connection, its lock and the leases held: take, ack, give back), ``translate``
    (sqlite3 errors into tdm_messaging.errors), ``read`` (the batch of a read),
    ``consume`` (the consume loop), ``leases`` (the thread that renews leases
    and sweeps expired reply queues), ``wake`` (a send wakes this process's idle
    consumers), ``settings`` (the URL and its parameters).
    """

    def __init__(self, *, settings: SqliteSettings) -> None:
        """Open (creating if needed) the database file ``settings`` names.

        Raises:
            BrokerUnavailableError: the file cannot be opened or created (the message names the
                path and what to check).
            ConfigurationError: the file is not a SQLite database, or was written by a newer version.
        """
        self._settings = settings
        self._link = SqliteLink(settings)
        self._waker = waker_for(self._link.path)
        try:
            sweep(self._link)
        except BaseException:
            self._link.close()  # nothing is held yet; do not leave the file open behind the error
            raise
        self._keeper = LeaseKeeper(self._link)
        self._keeper.start()
        log.info("opened SQLite broker file %s (holder %s)", self._link.path, self._link.holder)

    @classmethod
    def from_url(cls, url: str) -> SqliteTransport:
        """Open a transport from a URL such as ``sqlite:////var/lib/tdm/broker.db?visibility_timeout=30``.

        Raises:
            ConfigurationError: a bad URL or parameter (see
                :func:`~tdm_messaging.transport.sqlite.settings.parse_sqlite_url`).
            BrokerUnavailableError: the file cannot be opened or created.
        """
        return cls(settings=parse_sqlite_url(url))

    @property
    def settings(self) -> SqliteSettings:
        """The frozen settings this transport was opened with."""
        return self._settings

    @property
    def holder(self) -> str:
        """The name this transport's leases carry in the file: ``host:pid:random``."""
        return self._link.holder

    @property
    def capabilities(self) -> Capabilities:
        """Queue expiry, requeue, cross-process, delete and confirms; no message expiry, no dead-lettering."""
        return CAPABILITIES

    # ------------------------------------------------------------------ send
    def _send(
        self,
        destination: Destination,
        envelope: Envelope,
        *,
        persistent: bool = True,
        confirm: bool = False,
    ) -> None:
        """Append ``envelope`` to ``destination`` (created if missing) in one committed transaction.

        Args:
            persistent: commit with ``synchronous=FULL`` (on disk when this returns, power loss
                included); otherwise ``NORMAL`` (survives a crash of this process).
            confirm: accepted; every send is confirmed by its commit.

        Raises:
            TransportClosedError: after :meth:`close`.
            BrokerUnavailableError: the file could not be written.
        """
        message_id = self._link.send(destination, envelope, persistent)
        self._waker.notify()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("sent message %d to %s (%d bytes)", message_id, destination.name, len(envelope.body))

    # ------------------------------------------------------------------ read and consume
    def _read(self, destination: Destination, *, limit: int = 1000) -> Batch:
        """Take what is visible in ``destination`` now (up to ``limit``), leased until ack or release.

        A reply queue unused for longer than ``reply_ttl`` is removed first (and reads empty).

        Raises:
            TransportClosedError: after :meth:`close`.
            BrokerUnavailableError: the file could not be read or written.
        """
        return SqliteBatch(self._link, destination, self._link.take(destination, limit))

    def _consume(
        self,
        destinations: Sequence[Destination],
        handler: Handler,
        *,
        prefetch: int = 1,
        stop: threading.Event,
    ) -> None:
        """Deliver messages from ``destinations`` to ``handler`` in this thread until ``stop`` is set.

        Each pass takes up to ``prefetch`` visible messages from each destination in turn and
        hands them over one by one, each acknowledged after ``handler`` returns. Idle, it sleeps
        at most ``poll_interval`` (a send from this process wakes it at once). A handler that
        raises gets its message, and the rest of the pass, released at once; the exception
        propagates. A file that cannot be read or written is retried with backoff while
        ``stop`` is unset. Consumed reply queues count as used.

        Raises:
            TransportClosedError: the transport is (or gets) closed.
        """
        consume_queues(self._link, self._waker, destinations, handler, prefetch=prefetch, stop=stop)

    # ------------------------------------------------------------------ queues
    def _declare(self, destination: Destination) -> None:
        """Create ``destination`` if it does not exist, and count this as a use of it.

        Raises:
            TransportClosedError: after :meth:`close`.
            BrokerUnavailableError: the file could not be written.
        """
        with self._link.db(f"declaring {destination.name!r}") as conn:
            if store.declare(conn, self._link.spec(destination), now_ms=now_ms()):
                log.info("reply queue %s was unused for longer than reply_ttl: removed and created anew", destination)

    def _depth(self, destination: Destination) -> int | None:
        """How many messages of ``destination`` a read would take now (leased ones left out); read-only.

        Raises:
            TransportClosedError: after :meth:`close`.
            BrokerUnavailableError: the file could not be read.
        """
        with self._link.db(f"counting {destination.name!r}") as conn:
            return store.visible_count(conn, destination.name, now_ms=now_ms())

    def _delete(self, destination: Destination) -> None:
        """Remove ``destination`` and every message in it, held ones included (a missing queue is no error).

        Raises:
            TransportClosedError: after :meth:`close`.
            BrokerUnavailableError: the file could not be written.
        """
        self._link.drop_queue(destination)
        log.debug("deleted queue %s", destination.name)

    # ------------------------------------------------------------------ close
    def close(self) -> None:
        """Give back every message this transport holds, stop renewing, and close the file. Idempotent."""
        if not self._link.close():
            return
        self._keeper.stop()
        self._waker.notify()  # a consumer of this transport sleeping in another thread sees the close now

    def __enter__(self) -> SqliteTransport:
        return self

    def __repr__(self) -> str:
        return f"SqliteTransport({self._settings.display_url!r})"
