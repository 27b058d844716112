"""The native SQLite backend: queues in one file shared by processes, with leases that a crash gives back."""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tdm_messaging.destinations import Destination, DestinationKind
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import (
    BrokerUnavailableError,
    ConfigurationError,
    MessagingError,
    TransportClosedError,
    TransportError,
)
from tdm_messaging.transport import sqlite_store as store
from tdm_messaging.transport.base import Batch, Capabilities, Delivery, Handler, Transport
from tdm_messaging.transport.sqlite_settings import SqliteSettings, parse_sqlite_url

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

_RETRY_MAX_SECONDS = 5.0
_SWEEP_MAX_SECONDS = 60.0


class _Waker:
    """Wakes idle consumers of one database file in this process when a message is sent."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0

    @property
    def generation(self) -> int:
        """Counts sends; a consumer notes it before looking, and sleeps only if it did not move."""
        return self._generation

    def notify(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> None:
        with self._cond:
            if self._generation == seen:
                self._cond.wait(timeout)


# One waker per database file: a wake-up is only a hint (consumers poll anyway), so sharing it
# between the transports of a process shares no queue state.
_WAKERS: weakref.WeakValueDictionary[str, _Waker] = weakref.WeakValueDictionary()
_WAKERS_LOCK = threading.Lock()


def _waker_for(path: Path) -> _Waker:
    with _WAKERS_LOCK:
        waker = _WAKERS.get(str(path))
        if waker is None:
            waker = _Waker()
            _WAKERS[str(path)] = waker
        return waker


def _now_ms() -> int:
    return int(time.time() * 1000)


class _SqliteBatch(Batch):
    """Messages taken by :meth:`SqliteTransport.read`, leased until ack() or release()."""

    def __init__(self, owner: SqliteTransport, destination: Destination, taken: list[store.Taken]) -> None:
        self._owner = owner
        self._destination = destination
        self._taken = taken
        self._envelopes = tuple(_envelope(item) for item in taken)
        self._done = False

    @property
    def envelopes(self) -> Sequence[Envelope]:
        """What was visible in the queue when the read began, oldest first."""
        return self._envelopes

    def ack(self) -> None:
        """Delete every message of the batch from the queue.

        Raises:
            TransportClosedError: the transport was closed (which gave the messages back).
            BrokerUnavailableError: the file could not be written; the messages are still held.
        """
        if self._done:
            return
        self._owner._ack(self._destination, self._taken)
        self._done = True

    def release(self) -> None:
        """Make the unacknowledged messages visible again at once, in their places. Idempotent."""
        if self._done:
            return
        self._done = True
        self._owner._give_back(self._destination, self._taken)


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
    """

    def __init__(self, *, settings: SqliteSettings) -> None:
        """Open (creating if needed) the database file ``settings`` names.

        Raises:
            BrokerUnavailableError: the file cannot be opened or created (the message names the
                path and what to check).
            ConfigurationError: the file is not a SQLite database, or was written by a newer version.
        """
        self._settings = settings
        self._path = settings.resolved_path()
        self._holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lock = threading.RLock()
        self._closed = False
        self._held: dict[int, tuple[int, str]] = {}  # message id -> (deliveries, queue name)
        self._full_sync = True
        try:
            self._conn = store.connect(self._path, busy_timeout=settings.busy_timeout)
        except sqlite3.Error as exc:
            raise self._translate(exc, "opening") from exc
        self._waker = _waker_for(self._path)
        self._sweep()
        self._keeper_stop = threading.Event()
        self._keeper = threading.Thread(target=self._keep_leases, name="tdm-sqlite-leases", daemon=True)
        self._keeper.start()
        log.info("opened SQLite broker file %s (holder %s)", self._path, self._holder)

    @classmethod
    def from_url(cls, url: str) -> SqliteTransport:
        """Open a transport from a URL such as ``sqlite:////var/lib/tdm/broker.db?visibility_timeout=30``.

        Raises:
            ConfigurationError: a bad URL or parameter (see
                :func:`~tdm_messaging.transport.sqlite_settings.parse_sqlite_url`).
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
        return self._holder

    @property
    def capabilities(self) -> Capabilities:
        """Queue expiry, requeue, cross-process, delete and confirms; no message expiry, no dead-lettering."""
        return CAPABILITIES

    # ------------------------------------------------------------------ plumbing
    def _check_open(self) -> None:
        if self._closed:
            raise TransportClosedError(f"transport to {self._settings.display_url} is closed; open a new one")

    @contextmanager
    def _db(self, what: str) -> Iterator[sqlite3.Connection]:
        """Hold the lock, refuse use after close, and translate sqlite3 errors raised inside."""
        with self._lock:
            self._check_open()
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise self._translate(exc, what) from exc

    def _translate(self, exc: sqlite3.Error, what: str) -> MessagingError:
        path, text = self._path, str(exc)
        where = f"{what} on {self._settings.display_url}"
        lowered = text.lower()
        if "not a database" in lowered or "newer tdm-messaging" in lowered:
            return ConfigurationError(
                f"{where}: {path} is not a broker file this version can use ({text}); point the URL at a new "
                "file or at one written by this transport"
            )
        if "unable to open" in lowered:
            if not path.parent.is_dir():
                return BrokerUnavailableError(
                    f"{where}: cannot open the SQLite file {path}: the directory {path.parent} does not exist; "
                    "create it or fix the path in the URL"
                )
            return BrokerUnavailableError(
                f"{where}: cannot open the SQLite file {path} ({text}); check that this user may create and "
                f"write files in {path.parent} (the file and its -wal and -shm companions live there)"
            )
        if "readonly" in lowered or "read-only" in lowered:
            return BrokerUnavailableError(
                f"{where}: the SQLite file {path} is read-only for this user ({text}); give this user write "
                f"access to it and to {path.parent}"
            )
        if "locked" in lowered or "busy" in lowered:
            return BrokerUnavailableError(
                f"{where}: {path} stayed locked by another connection for more than busy_timeout="
                f"{self._settings.busy_timeout:g} s; look for a process stuck holding it, or raise busy_timeout"
            )
        return BrokerUnavailableError(f"{where}: SQLite failed on {path}: {type(exc).__name__}: {text}")

    def _spec(self, destination: Destination) -> store.QueueSpec:
        expires = self._settings.reply_ttl_ms if destination.kind is DestinationKind.REPLY else None
        return store.QueueSpec(destination.name, destination.kind.value, expires)

    def _hold(self, destination: Destination, taken: Sequence[store.Taken]) -> None:
        """Call with the lock held: remember the leases, and say which messages a dead holder left."""
        for item in taken:
            self._held[item.id] = (item.deliveries, destination.name)
            if item.previous_holder is not None:
                log.warning(
                    "message %d of %s: the lease of %s ran out unacknowledged (its process stopped renewing it: "
                    "killed, crashed or frozen); delivering it again (delivery %d)",
                    item.id,
                    destination.name,
                    item.previous_holder,
                    item.deliveries,
                )

    def _forget(self, taken: Sequence[store.Taken]) -> None:
        with self._lock:
            for item in taken:
                self._held.pop(item.id, None)

    def _ack(self, destination: Destination, taken: Sequence[store.Taken]) -> None:
        with self._db(f"acknowledging messages of {destination.name!r}") as conn:
            deleted = store.ack(conn, holder=self._holder, taken=[(t.id, t.deliveries) for t in taken])
            for item in taken:
                self._held.pop(item.id, None)
        if deleted < len(taken):
            log.warning(
                "%d of %d messages of %s were no longer held by this transport when acknowledged (lease run out "
                "or queue deleted); they may be delivered again",
                len(taken) - deleted,
                len(taken),
                destination.name,
            )
        log.debug("acknowledged %d message(s) of %s", deleted, destination.name)

    def _give_back(self, destination: Destination, taken: Sequence[store.Taken]) -> None:
        """Release ``taken`` at once; if that fails, stop renewing them so they come back after the timeout."""
        if not taken:
            return
        try:
            with self._db(f"releasing messages of {destination.name!r}") as conn:
                store.release(conn, holder=self._holder, taken=[(t.id, t.deliveries) for t in taken])
        except TransportClosedError:
            return  # close() gave back everything this transport held
        except TransportError as exc:
            log.warning(
                "releasing %d message(s) of %s failed (%s); they come back after visibility_timeout=%g s",
                len(taken),
                destination.name,
                exc,
                self._settings.visibility_timeout,
            )
        finally:
            self._forget(taken)

    # ------------------------------------------------------------------ leases and sweeping
    def _keep_leases(self) -> None:
        sweep_every = max(1.0, min(self._settings.reply_ttl, _SWEEP_MAX_SECONDS))
        interval = min(self._settings.visibility_timeout / 3, sweep_every)
        next_sweep = time.monotonic() + sweep_every
        while not self._keeper_stop.wait(interval):
            try:
                self._renew()
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + sweep_every
                    self._sweep()
            except TransportClosedError:
                return
            except TransportError as exc:
                log.warning("keeping the leases of %s: %s; trying again", self._settings.display_url, exc)

    def _renew(self) -> None:
        with self._db("renewing leases") as conn:
            if not self._held:
                return
            held = [(message_id, deliveries) for message_id, (deliveries, _) in self._held.items()]
            renewed = store.renew(
                conn, holder=self._holder, taken=held, until_ms=_now_ms() + self._settings.visibility_timeout_ms
            )
            if renewed == len(held):
                return
            kept = store.still_held(conn, holder=self._holder, taken=held)
            for message_id, _ in held:
                if message_id not in kept:
                    del self._held[message_id]  # someone else holds it now, or it is gone: stop renewing it
        log.warning(
            "%d of %d leases of %s were lost before renewal (renewal came later than visibility_timeout=%g s, "
            "or the queue was deleted); those messages may be delivered twice",
            len(held) - renewed,
            len(held),
            self._holder,
            self._settings.visibility_timeout,
        )

    def _sweep(self) -> None:
        with self._db("removing unused reply queues") as conn:
            removed = store.sweep(conn, now_ms=_now_ms())
        if removed:
            log.info("removed %d reply queue(s) unused for longer than reply_ttl: %s", len(removed), ", ".join(removed))

    # ------------------------------------------------------------------ the contract
    def send(
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
        with self._db(f"sending to {destination.name!r}") as conn:
            if self._full_sync is not persistent:
                store.set_synchronous(conn, full=persistent)
                self._full_sync = persistent
            message_id = store.send(
                conn,
                self._spec(destination),
                body=envelope.body,
                content_type=envelope.content_type,
                headers=envelope.headers,
                now_ms=_now_ms(),
            )
        self._waker.notify()
        log.debug("sent message %d to %s (%d bytes)", message_id, destination.name, len(envelope.body))

    def read(self, destination: Destination, *, limit: int = 1000) -> Batch:
        """Take what is visible in ``destination`` now (up to ``limit``), leased until ack or release.

        A reply queue unused for longer than ``reply_ttl`` is removed first (and reads empty).

        Raises:
            ConfigurationError: ``limit`` is less than 1.
            TransportClosedError: after :meth:`close`.
            BrokerUnavailableError: the file could not be read or written.
        """
        if limit < 1:
            raise ConfigurationError(f"read limit must be at least 1, got {limit}")
        taken = self._take(destination, limit)
        return _SqliteBatch(self, destination, taken)

    def _take(self, destination: Destination, limit: int) -> list[store.Taken]:
        with self._db(f"reading {destination.name!r}") as conn:
            taken = store.take(
                conn,
                destination.name,
                holder=self._holder,
                limit=limit,
                now_ms=_now_ms(),
                lease_ms=self._settings.visibility_timeout_ms,
            )
            self._hold(destination, taken)
        if taken:
            log.debug("took %d message(s) of %s", len(taken), destination.name)
        return taken

    def consume(
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
            ConfigurationError: ``prefetch`` is less than 1 or ``destinations`` is empty.
            TransportClosedError: the transport is (or gets) closed.
        """
        if prefetch < 1:
            raise ConfigurationError(f"prefetch must be at least 1, got {prefetch}")
        if not destinations:
            raise ConfigurationError("consume needs at least one destination")
        self._check_open()
        replies = [d.name for d in destinations if d.kind is DestinationKind.REPLY]
        touch_every = self._settings.reply_ttl / 4
        last_touch = time.monotonic()
        failures = 0
        while not stop.is_set():
            seen = self._waker.generation
            try:
                passed = self._take_pass(destinations, prefetch)
                if replies and time.monotonic() - last_touch >= touch_every:
                    with self._db("marking consumed reply queues used") as conn:
                        store.touch(conn, replies, now_ms=_now_ms())
                    last_touch = time.monotonic()
            except BrokerUnavailableError as exc:
                failures += 1
                delay = min(_RETRY_MAX_SECONDS, 0.2 * 2 ** min(failures, 10))
                log.warning("consuming from %s: %s; retrying in %.1f s", self._settings.display_url, exc, delay)
                stop.wait(delay)
                continue
            failures = 0
            if not passed:
                self._waker.wait(seen, self._settings.poll_interval)
                continue
            self._deliver(passed, handler, stop)

    def _take_pass(self, destinations: Sequence[Destination], prefetch: int) -> list[tuple[Destination, store.Taken]]:
        passed: list[tuple[Destination, store.Taken]] = []
        for destination in destinations:
            with self._db(f"looking into {destination.name!r}") as conn:
                visible = store.has_visible(conn, destination.name, now_ms=_now_ms())
            if visible:
                passed.extend((destination, item) for item in self._take(destination, prefetch))
        return passed

    def _deliver(self, passed: list[tuple[Destination, store.Taken]], handler: Handler, stop: threading.Event) -> None:
        for index, (destination, item) in enumerate(passed):
            if stop.is_set():
                self._give_back_pass(passed[index:])
                return
            delivery = Delivery(envelope=_envelope(item), destination=destination, redelivered=item.deliveries > 1)
            try:
                handler(delivery)
            except BaseException:
                self._give_back_pass(passed[index:])
                raise
            try:
                self._ack(destination, [item])
            except BrokerUnavailableError as exc:
                # Not acknowledged: stop renewing it, so it is delivered again after the timeout.
                self._forget([item])
                log.warning("acknowledging a message of %s failed (%s); it will be delivered again", destination, exc)

    def _give_back_pass(self, rest: Sequence[tuple[Destination, store.Taken]]) -> None:
        for destination, item in rest:
            self._give_back(destination, [item])

    def declare(self, destination: Destination) -> None:
        """Create ``destination`` if it does not exist, and count this as a use of it.

        Raises:
            TransportClosedError: after :meth:`close`.
            BrokerUnavailableError: the file could not be written.
        """
        with self._db(f"declaring {destination.name!r}") as conn:
            if store.declare(conn, self._spec(destination), now_ms=_now_ms()):
                log.info("reply queue %s was unused for longer than reply_ttl: removed and created anew", destination)

    def delete(self, destination: Destination) -> None:
        """Remove ``destination`` and every message in it, held ones included (a missing queue is no error).

        Raises:
            TransportClosedError: after :meth:`close`.
            BrokerUnavailableError: the file could not be written.
        """
        with self._db(f"deleting {destination.name!r}") as conn:
            store.delete_queue(conn, destination.name)
            for message_id in [i for i, (_, queue) in self._held.items() if queue == destination.name]:
                del self._held[message_id]
        log.debug("deleted queue %s", destination.name)

    def close(self) -> None:
        """Give back every message this transport holds, stop renewing, and close the file. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._held.clear()
            try:
                given = store.release_all(self._conn, holder=self._holder)
                if given:
                    log.info("gave back %d unacknowledged message(s) on close", given)
            except sqlite3.Error as exc:
                log.warning(
                    "giving back held messages on close failed (%s); they come back after visibility_timeout", exc
                )
            self._conn.close()
        self._keeper_stop.set()
        if self._keeper is not threading.current_thread():
            self._keeper.join(timeout=5)
        self._waker.notify()  # a consumer of this transport sleeping in another thread sees the close now

    def __enter__(self) -> SqliteTransport:
        return self

    def __repr__(self) -> str:
        return f"SqliteTransport({self._settings.display_url!r})"


def _envelope(item: store.Taken) -> Envelope:
    return Envelope(item.body, item.content_type, item.headers)
