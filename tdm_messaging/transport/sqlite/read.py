"""A native SQLite read: the messages taken under a lease, held in a batch until ack() or release()."""

from __future__ import annotations

from collections.abc import Sequence

from tdm_messaging.destinations import Destination
from tdm_messaging.envelope import Envelope
from tdm_messaging.transport.base import Batch
from tdm_messaging.transport.sqlite import store
from tdm_messaging.transport.sqlite.link import SqliteLink

__all__ = ["SqliteBatch", "to_envelope"]


def to_envelope(item: store.Taken) -> Envelope:
    """The envelope of a taken message."""
    return Envelope(item.body, item.content_type, item.headers)


class SqliteBatch(Batch):
    """Messages taken by :meth:`SqliteTransport.read`, leased until ack() or release()."""

    def __init__(self, link: SqliteLink, destination: Destination, taken: list[store.Taken]) -> None:
        self._link = link
        self._destination = destination
        self._taken = taken
        self._envelopes = tuple(to_envelope(item) for item in taken)
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
        self._link.ack(self._destination, self._taken)
        self._done = True

    def _settle(self, keep: frozenset[int]) -> None:
        """Delete all but ``keep`` and make ``keep`` visible again at once, in their places (one transaction).

        Raises:
            TransportClosedError: the transport was closed (which gave the messages back).
            BrokerUnavailableError: the file could not be written; the messages are still held.
        """
        if self._done:
            return
        drop = [t for i, t in enumerate(self._taken) if i not in keep]
        kept = [t for i, t in enumerate(self._taken) if i in keep]
        self._link.settle(self._destination, drop, kept)
        self._done = True

    def release(self) -> None:
        """Make the unacknowledged messages visible again at once, in their places. Idempotent."""
        if self._done:
            return
        self._done = True
        self._link.give_back(self._destination, self._taken)
