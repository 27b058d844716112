"""The lease keeper of the native SQLite backend: a thread that renews held leases and sweeps expired reply queues."""

from __future__ import annotations

import logging
import threading
import time

from tdm_messaging.errors import TransportClosedError, TransportError
from tdm_messaging.transport.sqlite import store
from tdm_messaging.transport.sqlite.link import SqliteLink, now_ms

__all__ = ["LeaseKeeper", "sweep"]

log = logging.getLogger(__name__)

_SWEEP_MAX_SECONDS = 60.0


def sweep(link: SqliteLink) -> None:
    """Remove every reply queue of the file unused for longer than its lifetime.

    Raises:
        TransportClosedError: after the link was closed.
        BrokerUnavailableError: the file could not be read or written.
    """
    with link.db("removing unused reply queues") as conn:
        removed = store.sweep(conn, now_ms=now_ms())
    if removed:
        log.info("removed %d reply queue(s) unused for longer than reply_ttl: %s", len(removed), ", ".join(removed))


class LeaseKeeper:
    """A daemon thread that renews this transport's leases every ``visibility_timeout / 3``.

    It also sweeps expired reply queues every ``min(reply_ttl, 60)`` seconds (at least 1). It
    ends when stopped or when the link is closed; a file it cannot write is retried next time.
    """

    def __init__(self, link: SqliteLink) -> None:
        self._link = link
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tdm-sqlite-leases", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, and wait for it (up to 5 s) unless called from it."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        settings = self._link.settings
        sweep_every = max(1.0, min(settings.reply_ttl, _SWEEP_MAX_SECONDS))
        interval = min(settings.visibility_timeout / 3, sweep_every)
        next_sweep = time.monotonic() + sweep_every
        while not self._stop.wait(interval):
            try:
                self.renew()
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + sweep_every
                    sweep(self._link)
            except TransportClosedError:
                return
            except TransportError as exc:
                log.warning("keeping the leases of %s: %s; trying again", settings.display_url, exc)

    def renew(self) -> None:
        """Extend every lease this transport holds; stop holding those someone else took meanwhile.

        Raises:
            TransportClosedError: after the link was closed.
            BrokerUnavailableError: the file could not be written.
        """
        link = self._link
        with link.db("renewing leases") as conn:
            if not link.held:
                return
            held = [(message_id, deliveries) for message_id, (deliveries, _) in link.held.items()]
            renewed = store.renew(
                conn, holder=link.holder, taken=held, until_ms=now_ms() + link.settings.visibility_timeout_ms
            )
            if renewed == len(held):
                return
            kept = store.still_held(conn, holder=link.holder, taken=held)
            for message_id, _ in held:
                if message_id not in kept:
                    del link.held[message_id]  # someone else holds it now, or it is gone: stop renewing it
        log.warning(
            "%d of %d leases of %s were lost before renewal (renewal came later than visibility_timeout=%g s, "
            "or the queue was deleted); those messages may be delivered twice",
            len(held) - renewed,
            len(held),
            link.holder,
            link.settings.visibility_timeout,
        )
