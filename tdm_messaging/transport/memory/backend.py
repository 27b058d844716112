"""The in-memory backend: a Transport over an InMemoryBroker, for tests and single-process demos (``inmemory://``)."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import parse_qs, unquote, urlsplit

from tdm_messaging.destinations import Destination, DestinationKind
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import ConfigurationError, TransportClosedError
from tdm_messaging.transport.base import Batch, Capabilities, Delivery, Handler, Transport
from tdm_messaging.transport.expiry import EXPIRES_AT_HEADER, is_expired, stamp_expiry
from tdm_messaging.transport.memory.broker import Holder, InMemoryBroker, MemoryQueue, Stored, broker_named

__all__ = ["DEFAULT_REPLY_TTL_SECONDS", "InMemoryTransport"]

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
        self._settle(frozenset())

    def _settle(self, keep: frozenset[int]) -> None:
        """Acknowledge all but ``keep`` and give ``keep`` back, as one step (an injected ack fault fails it whole)."""
        if self._done:
            return
        broker = self._transport.broker
        with broker._cond:
            self._transport._check_open()
            broker._check_up_locked()
            if broker._ack_faults:
                raise broker._ack_faults.popleft()
            self._transport._holder.ack_locked([t for i, t in enumerate(self._tokens) if i not in keep])
            if keep:
                self._transport._holder.give_back_locked([t for i, t in enumerate(self._tokens) if i in keep])
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
        self._holder = Holder(broker)
        self._tokens = itertools.count()
        with broker._cond:
            broker._holders.add(self._holder)

    @classmethod
    def from_url(cls, url: str) -> InMemoryTransport:
        """Open ``inmemory://[NAME][?reply_ttl=SECONDS]``.

        Transports opened with the same NAME share one broker (see
        :func:`~tdm_messaging.transport.memory.broker.broker_named`); a bare ``inmemory://`` gets
        a broker of its own. Only for one process: use ``sqlite:///path.db`` across processes.

        Raises:
            ConfigurationError: an unknown parameter, or a ``reply_ttl`` that is not a positive number.
        """
        parts = urlsplit(url)
        params = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(params) - {"reply_ttl"})
        if unknown or parts.path not in ("", "/"):
            what = f"parameter(s) {', '.join(unknown)}" if unknown else f"path {parts.path!r}"
            raise ConfigurationError(
                f"inmemory:// URL {url!r} has an unknown {what}; it takes inmemory://[NAME][?reply_ttl=SECONDS]"
            )
        ttl = DEFAULT_REPLY_TTL_SECONDS
        if "reply_ttl" in params:
            raw = params["reply_ttl"][-1]
            try:
                ttl = float(raw) if raw.isascii() else float("nan")
            except ValueError:
                ttl = float("nan")
            if not 0 < ttl < float("inf"):
                raise ConfigurationError(
                    f"URL parameter reply_ttl={raw!r} must be a positive number of seconds, e.g. reply_ttl=3600"
                )
        name = unquote(parts.netloc)
        return cls(broker_named(name) if name else InMemoryBroker(), reply_ttl_seconds=ttl)

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
        with self._usable():
            if broker._send_faults:
                raise broker._send_faults.popleft()
            queue = broker._queue_locked(destination, create=True)
            assert queue is not None
            queue.ready.append(Stored(envelope))
            broker._cond.notify_all()

    def _read(self, destination: Destination, *, limit: int = 1000) -> Batch:
        """Take up to ``limit`` envelopes waiting in ``destination`` now; they stay unacknowledged
        (invisible to other readers) until the batch is acked or released.

        Raises:
            TransportClosedError: after :meth:`close`.
            BrokerUnavailableError: the broker is disconnected.
        """
        broker = self.broker
        with self._usable():
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
        with self._usable():
            self.broker._queue_locked(destination, create=True)

    def _depth(self, destination: Destination) -> int | None:
        """How many envelopes wait in ``destination`` (expired replies left out; nothing is removed).

        Raises:
            TransportClosedError: after :meth:`close`.
            BrokerUnavailableError: the broker is disconnected.
        """
        with self._usable():
            queue = self.broker._queue_locked(destination, create=False)
            if queue is None:
                return 0
            now_ms = self._now_ms()
            return sum(1 for item in queue.ready if not is_expired(item.envelope.headers, now_ms=now_ms))

    def _delete(self, destination: Destination) -> None:
        """Remove ``destination`` and what it holds (unacknowledged messages of it are dropped when given back).

        Raises:
            TransportClosedError: after :meth:`close`.
            BrokerUnavailableError: the broker is disconnected.
        """
        with self._usable():
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

    @contextmanager
    def _usable(self) -> Iterator[None]:
        """Hold the broker's lock while this transport is open and the broker up (else raise)."""
        with self.broker._cond:
            self._check_open()
            self.broker._check_up_locked()
            yield

    def _check_open(self) -> None:
        if self._closed:
            raise TransportClosedError("this InMemoryTransport was closed; open a new one on the same broker")

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _take_locked(self, queue: MemoryQueue, item: Stored) -> int:
        token = next(self._tokens)
        queue.unacked += 1
        self._holder.taken[token] = (queue, item)
        return token

    def _sweep_locked(self, queue: MemoryQueue) -> None:
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
