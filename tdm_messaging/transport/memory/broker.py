"""The in-memory broker: queues by logical name in this process, with fault hooks for tests."""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from tdm_messaging.destinations import Destination
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import BrokerUnavailableError, SendNotConfirmedError, TransportError

__all__ = ["Holder", "InMemoryBroker", "MemoryQueue", "Stored", "broker_named"]


@dataclass(slots=True)
class Stored:
    """One envelope in a queue, and whether it was given back after a delivery."""

    envelope: Envelope
    redelivered: bool = False


@dataclass(slots=True, eq=False)
class MemoryQueue:
    """One queue: what is ready, and how many of its envelopes are out unacknowledged."""

    destination: Destination
    ready: deque[Stored] = field(default_factory=deque)
    unacked: int = 0


class InMemoryBroker:
    """A broker living in this process: queues by logical name, shared by any number of transports.

    Make a fresh one per test (there is no global state). Every method is thread-safe.
    Fault hooks let a test play the broker's failures: :meth:`fail_next_send`,
    :meth:`fail_next_ack`, :meth:`disconnect` / :meth:`reconnect`.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queues: dict[str, MemoryQueue] = {}
        self._send_faults: deque[TransportError] = deque()
        self._ack_faults: deque[TransportError] = deque()
        self._down = False
        # Each open transport's unacknowledged deliveries, so a drop of "connections" gives them back.
        self._holders: set[Holder] = set()

    # -- inspection, for assertions --------------------------------------------------------

    def queue_names(self) -> list[str]:
        """Names of the queues that exist now, sorted."""
        with self._cond:
            return sorted(self._queues)

    def messages(self, destination: Destination | str) -> list[Envelope]:
        """The envelopes waiting in ``destination`` (not those taken and unacknowledged), oldest first.

        Expiry stamps are left on, so a test can check them; nothing is removed.
        """
        with self._cond:
            queue = self._queues.get(str(destination))
            return [] if queue is None else [item.envelope for item in queue.ready]

    def unacked_count(self, destination: Destination | str) -> int:
        """How many envelopes of ``destination`` are taken and not yet acknowledged."""
        with self._cond:
            queue = self._queues.get(str(destination))
            return 0 if queue is None else queue.unacked

    # -- fault hooks -------------------------------------------------------------------------

    def fail_next_send(self, exc: TransportError | None = None) -> None:
        """Make the next send (from any transport) raise ``exc`` without enqueuing anything.

        Args:
            exc: what to raise; by default a :class:`SendNotConfirmedError`. Calls queue up:
                two calls fail the next two sends.
        """
        with self._cond:
            self._send_faults.append(exc or SendNotConfirmedError("in-memory broker: send refused by fail_next_send()"))

    def fail_next_ack(self, exc: TransportError | None = None) -> None:
        """Make the next acknowledgement (a batch's or a consumer's) raise ``exc``; nothing is acked.

        Use it to play a crash between a re-send and its ack: the batch's envelopes stay in
        the queue, next to what was re-sent. By default raises :class:`BrokerUnavailableError`.
        """
        with self._cond:
            self._ack_faults.append(exc or BrokerUnavailableError("in-memory broker: ack lost by fail_next_ack()"))

    def disconnect(self) -> None:
        """Play a broker outage: unacknowledged deliveries go back to their queues, and every
        transport call raises :class:`BrokerUnavailableError` until :meth:`reconnect`
        (consumers wait instead, as the contract asks)."""
        with self._cond:
            self._down = True
            for holder in list(self._holders):
                holder.give_back_all_locked()
            self._cond.notify_all()

    def reconnect(self) -> None:
        """End an outage begun by :meth:`disconnect`."""
        with self._cond:
            self._down = False
            self._cond.notify_all()

    # -- used by InMemoryTransport (the lock is held by the caller where the name ends in _locked)

    def _check_up_locked(self) -> None:
        if self._down:
            raise BrokerUnavailableError(
                "in-memory broker is disconnected (a test called disconnect()); call reconnect() to restore it"
            )

    def _queue_locked(self, destination: Destination, *, create: bool) -> MemoryQueue | None:
        queue = self._queues.get(destination.name)
        if queue is None and create:
            queue = self._queues[destination.name] = MemoryQueue(destination)
        return queue


class Holder:
    """The unacknowledged deliveries of one transport, each remembered with its queue."""

    def __init__(self, broker: InMemoryBroker) -> None:
        self.broker = broker
        self.taken: dict[int, tuple[MemoryQueue, Stored]] = {}

    def give_back_locked(self, tokens: Sequence[int]) -> None:
        # Back at the head of the queue, in their original order, so FIFO order survives a failed read.
        by_queue: dict[int, tuple[MemoryQueue, list[Stored]]] = {}
        for token in tokens:
            entry = self.taken.pop(token, None)
            if entry is None:
                continue
            queue, item = entry
            queue.unacked -= 1
            item.redelivered = True
            by_queue.setdefault(id(queue), (queue, []))[1].append(item)
        for queue, items in by_queue.values():
            # A queue deleted meanwhile is no longer the broker's: its messages are gone with it.
            if self.broker._queues.get(queue.destination.name) is queue:
                queue.ready.extendleft(reversed(items))
        if by_queue:
            self.broker._cond.notify_all()

    def give_back_all_locked(self) -> None:
        self.give_back_locked(sorted(self.taken))

    def ack_locked(self, tokens: Sequence[int]) -> None:
        for token in tokens:
            entry = self.taken.pop(token, None)
            if entry is not None:
                entry[0].unacked -= 1


_named: weakref.WeakValueDictionary[str, InMemoryBroker] = weakref.WeakValueDictionary()
_named_lock = threading.Lock()


def broker_named(name: str) -> InMemoryBroker:
    """The broker that ``inmemory://NAME`` URLs share in this process, made on first use.

    It lives while something holds it (an open transport, or the caller): when the last
    transport on it is closed and collected, its queues are gone, as a broker's without disk.
    """
    with _named_lock:
        broker = _named.get(name)
        if broker is None:
            broker = _named[name] = InMemoryBroker()
        return broker
