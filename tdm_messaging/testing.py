"""An in-memory broker and transport for tests: thread-safe, FIFO, at-least-once, with fault hooks."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tdm_messaging.destinations import Destination, DestinationKind
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import (
    BrokerUnavailableError,
    ConfigurationError,
    SendNotConfirmedError,
    TransportClosedError,
    TransportError,
)
from tdm_messaging.transport.base import Batch, Capabilities, Delivery, Handler, Transport
from tdm_messaging.transport.expiry import EXPIRES_AT_HEADER, is_expired, stamp_expiry

__all__ = ["DEFAULT_REPLY_TTL_SECONDS", "InMemoryBroker", "InMemoryTransport"]

logger = logging.getLogger(__name__)

DEFAULT_REPLY_TTL_SECONDS = 86_400.0
"""How long a reply stays readable after it was (re-)sent: one day, like the brokers' default policy."""

_IDLE_WAIT_SECONDS = 0.05
"""How often an idle consumer re-checks its stop event (the contract asks for at most 0.5 s)."""

_CAPABILITIES = Capabilities(
    queue_expiry=False,  # replies expire lazily (stamp on send, drop on read), not by the broker
    message_expiry=False,
    nack_requeue=False,
    dead_lettering=False,
    cross_process=False,
    delete_queue=True,
    confirms=True,  # a send is in the queue when it returns; fail_next_send() stands for a lost confirm
)


@dataclass(slots=True)
class _Stored:
    envelope: Envelope
    redelivered: bool = False


@dataclass(slots=True, eq=False)
class _Queue:
    destination: Destination
    ready: deque[_Stored] = field(default_factory=deque)
    unacked: int = 0


class InMemoryBroker:
    """A broker living in this process: queues by logical name, shared by any number of transports.

    Make a fresh one per test (there is no global state). Every method is thread-safe.
    Fault hooks let a test play the broker's failures: :meth:`fail_next_send`,
    :meth:`fail_next_ack`, :meth:`disconnect` / :meth:`reconnect`.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queues: dict[str, _Queue] = {}
        self._send_faults: deque[TransportError] = deque()
        self._ack_faults: deque[TransportError] = deque()
        self._down = False
        # Each open transport's unacknowledged deliveries, so a drop of "connections" gives them back.
        self._holders: set[_Holder] = set()

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

    def _queue_locked(self, destination: Destination, *, create: bool) -> _Queue | None:
        queue = self._queues.get(destination.name)
        if queue is None and create:
            queue = self._queues[destination.name] = _Queue(destination)
        return queue


class _Holder:
    """The unacknowledged deliveries of one transport, each remembered with its queue."""

    def __init__(self, broker: InMemoryBroker) -> None:
        self.broker = broker
        self.taken: dict[int, tuple[_Queue, _Stored]] = {}

    def give_back_locked(self, tokens: Sequence[int]) -> None:
        # Back at the head of the queue, in their original order, so FIFO order survives a failed read.
        by_queue: dict[int, tuple[_Queue, list[_Stored]]] = {}
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


class _InMemoryBatch(Batch):
    def __init__(self, transport: InMemoryTransport, envelopes: list[Envelope], tokens: list[int]) -> None:
        self._transport = transport
        self._envelopes = envelopes
        self._tokens = tokens
        self._done = False

    @property
    def envelopes(self) -> Sequence[Envelope]:
        return self._envelopes

    def ack(self) -> None:
        if self._done:
            return
        broker = self._transport.broker
        with broker._cond:
            self._transport._check_open()
            broker._check_up_locked()
            if broker._ack_faults:
                raise broker._ack_faults.popleft()
            self._transport._holder.ack_locked(self._tokens)
            self._done = True

    def release(self) -> None:
        if self._done:
            return
        self._done = True
        with self._transport.broker._cond:
            self._transport._holder.give_back_locked(self._tokens)


class InMemoryTransport(Transport):
    """A :class:`~tdm_messaging.transport.base.Transport` over an :class:`InMemoryBroker`.

    Like httpx's ``MockTransport`` it ships in the product: use it to test an API server or
    a packager without a broker. Several transports on one broker behave like several
    connections: competing consumers share a queue; a transport's unacknowledged messages
    go back to the queue when its batch is released or the transport is closed.

    Reply queues expire lazily: every send to a reply queue is stamped with
    ``clock() + reply_ttl_seconds``; a read drops the stamped envelopes that are past it and
    deletes a reply queue left empty that way. No background thread is involved.

    Args:
        broker: the broker to talk to.
        reply_ttl_seconds: how long a reply stays readable after it was sent.
        clock: seconds since the epoch; pass your own to move time in a test.

    Raises:
        ConfigurationError: ``reply_ttl_seconds`` is not positive.
    """

    def __init__(
        self,
        broker: InMemoryBroker,
        *,
        reply_ttl_seconds: float = DEFAULT_REPLY_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not reply_ttl_seconds > 0:
            raise ConfigurationError(f"reply_ttl_seconds must be positive, got {reply_ttl_seconds!r}")
        self.broker = broker
        self._ttl_ms = int(reply_ttl_seconds * 1000)
        self._clock = clock
        self._closed = False
        self._holder = _Holder(broker)
        self._tokens = itertools.count()
        with broker._cond:
            broker._holders.add(self._holder)

    @property
    def capabilities(self) -> Capabilities:
        """In-memory: no broker-side expiry, no NACK, one process only; deletes and confirms."""
        return _CAPABILITIES

    def _send(
        self,
        destination: Destination,
        envelope: Envelope,
        *,
        persistent: bool = True,
        confirm: bool = False,
    ) -> None:
        """Append ``envelope`` to ``destination`` (created if missing). See :meth:`Transport.send`.

        Raises:
            TransportClosedError: after :meth:`close`.
            BrokerUnavailableError: the broker is disconnected.
            SendNotConfirmedError: (or what was given) after :meth:`InMemoryBroker.fail_next_send`.
        """
        if destination.kind is DestinationKind.REPLY:
            envelope = stamp_expiry(envelope, now_ms=self._now_ms(), ttl_ms=self._ttl_ms)
        broker = self.broker
        with broker._cond:
            self._check_open()
            broker._check_up_locked()
            if broker._send_faults:
                raise broker._send_faults.popleft()
            queue = broker._queue_locked(destination, create=True)
            assert queue is not None
            queue.ready.append(_Stored(envelope))
            broker._cond.notify_all()

    def _read(self, destination: Destination, *, limit: int = 1000) -> Batch:
        """Take up to ``limit`` envelopes waiting in ``destination`` now; they stay unacknowledged
        (invisible to other readers) until the batch is acked or released.

        Raises:
            TransportClosedError: after :meth:`close`.
            BrokerUnavailableError: the broker is disconnected.
        """
        broker = self.broker
        with broker._cond:
            self._check_open()
            broker._check_up_locked()
            queue = broker._queue_locked(destination, create=False)
            if queue is None:
                return _InMemoryBatch(self, [], [])
            self._sweep_locked(queue)
            envelopes: list[Envelope] = []
            tokens: list[int] = []
            while queue.ready and len(envelopes) < limit:
                item = queue.ready.popleft()
                envelopes.append(_without_stamp(item.envelope))
                tokens.append(self._take_locked(queue, item))
            return _InMemoryBatch(self, envelopes, tokens)

    def _consume(
        self,
        destinations: Sequence[Destination],
        handler: Handler,
        *,
        prefetch: int = 1,
        stop: threading.Event,
    ) -> None:
        """Deliver messages to ``handler`` in this thread until ``stop`` is set. See :meth:`Transport.consume`.

        Queues are visited in turn, up to ``prefetch`` messages from each. While the broker
        is disconnected the consumer waits rather than raising.

        Raises:
            TransportClosedError: after :meth:`close`.
            Exception: whatever ``handler`` raised (that message and the rest of its prefetch
                go back to the queue).
        """
        broker = self.broker
        while not stop.is_set():
            taken = self._take_for_consumer(destinations, prefetch)
            if not taken:
                with broker._cond:
                    self._check_open()
                    broker._cond.wait(_IDLE_WAIT_SECONDS)
                continue
            for index, (token, delivery) in enumerate(taken):
                if not self._still_held(token):
                    continue  # given back by a disconnect: it will be delivered again
                try:
                    handler(delivery)
                    self._ack_one(token)
                except BaseException:
                    with broker._cond:
                        self._holder.give_back_locked([t for t, _ in taken[index:]])
                    raise

    def _declare(self, destination: Destination) -> None:
        """Create ``destination`` if it does not exist.

        Raises:
            TransportClosedError: after :meth:`close`.
            BrokerUnavailableError: the broker is disconnected.
        """
        with self.broker._cond:
            self._check_open()
            self.broker._check_up_locked()
            self.broker._queue_locked(destination, create=True)

    def _delete(self, destination: Destination) -> None:
        """Remove ``destination`` and what it holds (unacknowledged messages of it are dropped when given back).

        Raises:
            TransportClosedError: after :meth:`close`.
            BrokerUnavailableError: the broker is disconnected.
        """
        with self.broker._cond:
            self._check_open()
            self.broker._check_up_locked()
            self.broker._queues.pop(destination.name, None)

    def close(self) -> None:
        """Give back every unacknowledged message and refuse further calls. Idempotent."""
        with self.broker._cond:
            if self._closed:
                return
            self._closed = True
            self._holder.give_back_all_locked()
            self.broker._holders.discard(self._holder)
            self.broker._cond.notify_all()

    # -- internals ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise TransportClosedError("this InMemoryTransport was closed; open a new one on the same broker")

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _take_locked(self, queue: _Queue, item: _Stored) -> int:
        token = next(self._tokens)
        queue.unacked += 1
        self._holder.taken[token] = (queue, item)
        return token

    def _sweep_locked(self, queue: _Queue) -> None:
        if queue.destination.kind is not DestinationKind.REPLY:
            return
        now_ms = self._now_ms()
        fresh = deque(item for item in queue.ready if not is_expired(item.envelope.headers, now_ms=now_ms))
        dropped = len(queue.ready) - len(fresh)
        queue.ready = fresh
        if dropped:
            logger.debug("dropped %d expired replies from %s", dropped, queue.destination)
            if not fresh and not queue.unacked:
                del self.broker._queues[queue.destination.name]

    def _take_for_consumer(self, destinations: Sequence[Destination], prefetch: int) -> list[tuple[int, Delivery]]:
        broker = self.broker
        with broker._cond:
            self._check_open()
            if broker._down:
                return []
            taken: list[tuple[int, Delivery]] = []
            for destination in destinations:
                queue = broker._queue_locked(destination, create=False)
                if queue is None:
                    continue
                self._sweep_locked(queue)
                for _ in range(prefetch):
                    if not queue.ready:
                        break
                    item = queue.ready.popleft()
                    delivery = Delivery(_without_stamp(item.envelope), queue.destination, item.redelivered)
                    taken.append((self._take_locked(queue, item), delivery))
            return taken

    def _still_held(self, token: int) -> bool:
        with self.broker._cond:
            return token in self._holder.taken

    def _ack_one(self, token: int) -> None:
        broker = self.broker
        with broker._cond:
            self._check_open()
            if token not in self._holder.taken:
                # Given back meanwhile (disconnect): the broker will deliver it again.
                return
            broker._check_up_locked()
            if broker._ack_faults:
                raise broker._ack_faults.popleft()
            self._holder.ack_locked([token])


def _without_stamp(envelope: Envelope) -> Envelope:
    if EXPIRES_AT_HEADER not in envelope.headers:
        return envelope
    headers = {k: v for k, v in envelope.headers.items() if k != EXPIRES_AT_HEADER}
    return Envelope(envelope.body, envelope.content_type, headers)
