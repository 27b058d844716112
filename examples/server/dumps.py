"""The dump endpoints' messaging: a lock-protected pool of transports and the package request/poll/delete flow.

Transports are not thread-safe in general and waitress serves each request in one of a few
threads, so a request *leases* a transport from :class:`TransportPool` for the duration of its
broker work and gives it back afterwards; at most ``threads`` transports are ever open. A
transport whose use raised is closed instead of returned, so a broken connection is never
handed to the next request.

The server keeps no job state: each poll reads the docset's reply queue (the broker holds the
state), folds it into one status, and answers from that.

Overlapping polls of one docset would read each other's held messages as "never requested",
so every client here shares one :class:`tdm_messaging.DocsetLocks`: the library serialises the
broker work of a docset within this process, and each call below holds its docset across the
status read and the request it decides, so concurrent polls send at most one request. Across
server processes nothing serialises it: two processes may both send a request, which is
harmless (the newer request supersedes the older, and the packager reuses the unchanged
archive) -- see docs/server.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tdm_messaging import (
    DocsetLocks,
    DocsetStatus,
    Observer,
    PackagingClient,
    State,
    Tracer,
    Transport,
    open_transport,
)

__all__ = ["DumpService", "TransportPool", "pool_for_url"]

log = logging.getLogger(__name__)


class TransportPool:
    """Hands out one transport per request thread at a time; keeps up to ``max_idle`` open between requests.

    Args:
        factory: opens a new transport (e.g. ``lambda: open_transport(url)``).
        max_idle: how many idle transports to keep; more are closed when given back.
    """

    def __init__(self, factory: Callable[[], Transport], *, max_idle: int = 4) -> None:
        self._factory = factory
        self._max_idle = max_idle
        self._idle: list[Transport] = []
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def lease(self) -> Iterator[Transport]:
        """A transport for the calling thread alone until the block ends.

        Raises:
            MessagingError: opening a new transport failed (e.g. the broker is down).
        """
        with self._lock:
            transport = self._idle.pop() if self._idle else None
        if transport is None:
            transport = self._factory()
        try:
            yield transport
        except BaseException:
            self._discard(transport)
            raise
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle:
                self._idle.append(transport)
                return
        self._discard(transport)

    @staticmethod
    def _discard(transport: Transport) -> None:
        try:
            transport.close()
        except Exception:  # closing a broken connection may fail too; nothing more to do with it
            log.debug("closing a discarded transport failed", exc_info=True)

    def probe(self) -> None:
        """Open a fresh transport and close it: whether the broker answers now (idle ones may be stale).

        Raises:
            MessagingError: it does not.
        """
        self._factory().close()

    def close(self) -> None:
        """Close every idle transport; transports still leased are closed when given back."""
        with self._lock:
            idle, self._idle, self._closed = self._idle, [], True
        for transport in idle:
            self._discard(transport)


def pool_for_url(url: str, *, max_idle: int) -> TransportPool:
    """A pool of transports opened with :func:`tdm_messaging.transport.open_transport` on ``url``."""
    return TransportPool(lambda: open_transport(url), max_idle=max_idle)


@dataclass(frozen=True, slots=True)
class Poll:
    """What one dump request found: the docset's status, and whether this call sent a package request."""

    status: DocsetStatus
    requested: bool


RETRYABLE_STATES = frozenset({State.FAILED, State.DELETED})


class DumpService:
    """The server side of the protocol, as the dump endpoints use it (one method per endpoint).

    Calls about one docset run one at a time in this process (see the module docstring), so
    concurrent polls of a docset agree and send at most one package request between them.

    Args:
        pool: where the calls lease their transports.
        locks: the per-docset locks every client of this service shares (default: a new set).
        observer: told of every request and poll (metrics).
        tracer: opens a span per request and poll (tracing).
    """

    def __init__(
        self,
        pool: TransportPool,
        *,
        locks: DocsetLocks | None = None,
        observer: Observer | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self._pool = pool
        self._locks = DocsetLocks() if locks is None else locks
        self._observer = observer
        self._tracer = tracer

    def _client(self, transport: Transport) -> PackagingClient:
        return PackagingClient(transport, locks=self._locks, observer=self._observer, tracer=self._tracer)

    def probe_broker(self) -> None:
        """Whether the broker answers (see :meth:`TransportPool.probe`); raises if it does not."""
        self._pool.probe()

    def prepare(self, docset_id: str) -> None:
        """Create and prime the docset's reply queue ahead of its first dump (``PackagingClient.prepare``).

        Raises:
            MessagingError: the broker refused or could not be reached.
        """
        with self._pool.lease() as transport:
            self._client(transport).prepare(docset_id)

    def poll(
        self,
        docset_id: str,
        docset_url: str,
        *,
        retry: bool = False,
        admit: Callable[[DocsetStatus], None] = lambda status: None,
    ) -> Poll:
        """Read the docset's status; request the package if none was ever requested (or, with
        ``retry``, if the last one failed or was deleted).

        Args:
            docset_id: the docset's messaging id.
            docset_url: where the packager reads it.
            retry: request again after a failure or a delete.
            admit: called with the status just before a request would be sent; raises to refuse
                it (the quotas).
        """
        # Docset lock first, then a transport: a waiting poll holds no connection.
        with self._locks.hold(docset_id), self._pool.lease() as transport:
            client = self._client(transport)
            status = client.status(docset_id)
            if status.state is State.UNKNOWN or (retry and status.state in RETRYABLE_STATES):
                admit(status)
                requested = client.request_package(docset_id, docset_url)
                log.info("requested the package of docset %s (was %s)", docset_id, status.state.name)
                return Poll(requested.status, requested=True)
            return Poll(status, requested=False)

    def request(
        self, docset_id: str, docset_url: str, *, admit: Callable[[DocsetStatus], None] = lambda status: None
    ) -> Poll:
        """Request a fresh package whatever the status (a newer request supersedes older ones).

        The status is read first and given to ``admit``, which raises to refuse the request.
        """
        with self._locks.hold(docset_id), self._pool.lease() as transport:
            client = self._client(transport)
            admit(client.status(docset_id))
            requested = client.request_package(docset_id, docset_url)
            log.info("requested a fresh package of docset %s", docset_id)
            return Poll(requested.status, requested=True)

    def forget(self, docset_id: str) -> None:
        """Ask the packager to delete every archive of a deleted docset, whatever its status says.

        Raises:
            MessagingError: the request could not be sent.
        """
        with self._locks.hold(docset_id), self._pool.lease() as transport:
            self._client(transport).request_delete(docset_id)
            log.info("requested deletion of the archives of deleted docset %s", docset_id)

    def delete(self, docset_id: str) -> DocsetStatus:
        """Ask the packager to delete the docset's package; return the status seen before asking
        (``UNKNOWN``: there was nothing to delete, and nothing was sent)."""
        with self._locks.hold(docset_id), self._pool.lease() as transport:
            client = self._client(transport)
            status = client.status(docset_id)
            if status.state is not State.UNKNOWN:
                archive_url = status.result.archive_url if status.result is not None else None
                client.request_delete(docset_id, archive_url=archive_url)
                log.info("requested deletion of the package of docset %s", docset_id)
            return status
