"""The open broker file under a SqliteTransport: its connection and lock, send, the leases it holds, take, ack."""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from tdm_messaging.destinations import Destination, DestinationKind
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import MessagingError, TransportClosedError, TransportError
from tdm_messaging.transport.sqlite import store
from tdm_messaging.transport.sqlite.settings import SqliteSettings
from tdm_messaging.transport.sqlite.translate import translate

__all__ = ["SqliteLink", "now_ms"]

log = logging.getLogger(__name__)

_REPLY = DestinationKind.REPLY


def now_ms() -> int:
    """Wall-clock Unix epoch milliseconds: leases and queue use are stamped with it (one machine, one clock)."""
    return int(time.time() * 1000)


class SqliteLink:
    """One connection to the broker file, shared by the threads of one transport.

    Rules: every use of the connection happens inside :meth:`db`, which holds ``lock``, refuses
    use after :meth:`close` and translates sqlite3 errors; ``lock`` is never held while a handler
    runs. ``held`` (message id -> (deliveries, queue name)) lists the leases this transport holds,
    which the lease keeper renews; it is guarded by ``lock``.
    """

    def __init__(self, settings: SqliteSettings) -> None:
        """Open (creating if needed) the database file ``settings`` names.

        Raises:
            BrokerUnavailableError: the file cannot be opened or created.
            ConfigurationError: the file is not a SQLite database, or was written by a newer version.
        """
        self.settings = settings
        self.path = settings.resolved_path()
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lock = threading.RLock()
        self.closed = False
        self.held: dict[int, tuple[int, str]] = {}
        self.full_sync = True  # what store.connect set; send() switches it only when persistence changes
        try:
            self.conn = store.connect(self.path, busy_timeout=settings.busy_timeout)
        except sqlite3.Error as exc:
            raise self.translate(exc, "opening") from exc
        # Used by send() alone, under the lock: conn.execute would make (and register) a cursor per message.
        self.send_cursor = self.conn.cursor()

    def check_open(self) -> None:
        """Raise TransportClosedError after :meth:`close`."""
        if self.closed:
            raise TransportClosedError(f"transport to {self.settings.display_url} is closed; open a new one")

    @contextmanager
    def db(self, what: str) -> Iterator[sqlite3.Connection]:
        """Hold the lock, refuse use after close, and translate sqlite3 errors raised inside."""
        with self.lock:
            self.check_open()
            try:
                yield self.conn
            except sqlite3.Error as exc:
                raise self.translate(exc, what) from exc

    def translate(self, exc: sqlite3.Error, what: str) -> MessagingError:
        """The error to raise for ``exc`` met while doing ``what`` (see :func:`translate.translate`)."""
        return translate(exc, what, path=self.path, settings=self.settings)

    def spec(self, destination: Destination) -> store.QueueSpec:
        """How ``destination`` is stored: reply queues with ``reply_ttl`` as their idle lifetime."""
        expires = self.settings.reply_ttl_ms if destination.kind is DestinationKind.REPLY else None
        return store.QueueSpec(destination.name, destination.kind.value, expires)

    # ------------------------------------------------------------------ send
    def send(self, destination: Destination, envelope: Envelope, persistent: bool) -> int:
        """Append ``envelope`` to ``destination`` (created if missing) and commit; return the message's id.

        A send's hot path: it does what :meth:`db` does (the lock, the closed check, the error
        translation) written out, which spares a generator-based context manager per send, and
        a permanent queue's send is one statement on a cursor kept for it.
        """
        with self.lock:
            if self.closed:
                self.check_open()
            try:
                if self.full_sync is not persistent:
                    store.set_synchronous(self.conn, full=persistent)
                    self.full_sync = persistent
                if destination.kind is not _REPLY:
                    message_id = store.append(
                        self.send_cursor, destination.name, envelope.body, envelope.content_type, envelope.headers
                    )
                    if message_id is not None:
                        return message_id
                return store.send(
                    self.conn,
                    self.spec(destination),
                    body=envelope.body,
                    content_type=envelope.content_type,
                    headers=envelope.headers,
                    now_ms=now_ms(),
                )
            except sqlite3.Error as exc:
                raise self.translate(exc, f"sending to {destination.name!r}") from exc

    # ------------------------------------------------------------------ leases held
    def take(self, destination: Destination, limit: int) -> list[store.Taken]:
        """Lease up to ``limit`` visible messages of ``destination`` to this transport, and hold them."""
        with self.db(f"reading {destination.name!r}") as conn:
            taken = store.take(
                conn,
                destination.name,
                holder=self.holder,
                limit=limit,
                now_ms=now_ms(),
                lease_ms=self.settings.visibility_timeout_ms,
            )
            self._hold(destination, taken)
        if taken:
            log.debug("took %d message(s) of %s", len(taken), destination.name)
        return taken

    def _hold(self, destination: Destination, taken: Sequence[store.Taken]) -> None:
        """Call with the lock held: remember the leases, and say which messages a dead holder left."""
        for item in taken:
            self.held[item.id] = (item.deliveries, destination.name)
            if item.previous_holder is not None:
                log.warning(
                    "message %d of %s: the lease of %s ran out unacknowledged (its process stopped renewing it: "
                    "killed, crashed or frozen); delivering it again (delivery %d)",
                    item.id,
                    destination.name,
                    item.previous_holder,
                    item.deliveries,
                )

    def forget(self, taken: Sequence[store.Taken]) -> None:
        """Stop renewing ``taken``: unless acknowledged, they come back after ``visibility_timeout``."""
        with self.lock:
            for item in taken:
                self.held.pop(item.id, None)

    def ack(self, destination: Destination, taken: Sequence[store.Taken]) -> None:
        """Delete ``taken`` from ``destination`` (those this transport still holds), and stop holding them.

        Raises:
            TransportClosedError: after :meth:`close` (which gave the messages back).
            BrokerUnavailableError: the file could not be written; the messages are still held.
        """
        with self.db(f"acknowledging messages of {destination.name!r}") as conn:
            deleted = store.ack(conn, holder=self.holder, taken=[(t.id, t.deliveries) for t in taken])
            for item in taken:
                self.held.pop(item.id, None)
        if deleted < len(taken):
            log.warning(
                "%d of %d messages of %s were no longer held by this transport when acknowledged (lease run out "
                "or queue deleted); they may be delivered again",
                len(taken) - deleted,
                len(taken),
                destination.name,
            )
        log.debug("acknowledged %d message(s) of %s", deleted, destination.name)

    def settle(self, destination: Destination, drop: Sequence[store.Taken], keep: Sequence[store.Taken]) -> None:
        """Delete ``drop`` and make ``keep`` visible again at once, in one transaction; stop holding both.

        Raises:
            TransportClosedError: after :meth:`close` (which gave the messages back).
            BrokerUnavailableError: the file could not be written; the messages are still held.
        """
        with self.db(f"settling messages of {destination.name!r}") as conn:
            deleted, _ = store.settle(
                conn,
                holder=self.holder,
                drop=[(t.id, t.deliveries) for t in drop],
                keep=[(t.id, t.deliveries) for t in keep],
            )
            for item in (*drop, *keep):
                self.held.pop(item.id, None)
        if deleted < len(drop):
            log.warning(
                "%d of %d messages of %s were no longer held by this transport when acknowledged (lease run out "
                "or queue deleted); they may be delivered again",
                len(drop) - deleted,
                len(drop),
                destination.name,
            )

    def give_back(self, destination: Destination, taken: Sequence[store.Taken]) -> None:
        """Release ``taken`` at once; if that fails, stop renewing them so they come back after the timeout."""
        if not taken:
            return
        try:
            with self.db(f"releasing messages of {destination.name!r}") as conn:
                store.release(conn, holder=self.holder, taken=[(t.id, t.deliveries) for t in taken])
        except TransportClosedError:
            return  # close() gave back everything this transport held
        except TransportError as exc:
            log.warning(
                "releasing %d message(s) of %s failed (%s); they come back after visibility_timeout=%g s",
                len(taken),
                destination.name,
                exc,
                self.settings.visibility_timeout,
            )
        finally:
            self.forget(taken)

    def drop_queue(self, destination: Destination) -> None:
        """Delete ``destination`` with its messages, and stop holding those this transport held."""
        with self.db(f"deleting {destination.name!r}") as conn:
            store.delete_queue(conn, destination.name)
            for message_id in [i for i, (_, queue) in self.held.items() if queue == destination.name]:
                del self.held[message_id]

    # ------------------------------------------------------------------ close
    def close(self) -> bool:
        """Give back every message this transport holds and close the file; return False if already closed."""
        with self.lock:
            if self.closed:
                return False
            self.closed = True
            self.held.clear()
            try:
                given = store.release_all(self.conn, holder=self.holder)
                if given:
                    log.info("gave back %d unacknowledged message(s) on close", given)
            except sqlite3.Error as exc:
                log.warning(
                    "giving back held messages on close failed (%s); they come back after visibility_timeout", exc
                )
            self.conn.close()
        return True
