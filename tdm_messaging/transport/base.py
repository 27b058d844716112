"""The transport contract: move envelopes to and from logical destinations. Knows nothing of messages."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

from tdm_messaging.destinations import Destination, DestinationKind
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import InvalidArgumentError, TransportError
from tdm_messaging.transport.group_commit import GroupCommit

__all__ = [
    "Batch",
    "BatchHandler",
    "Capabilities",
    "Delivery",
    "Handler",
    "Transport",
]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend (and the broker behind it) can do; tested by the conformance suite.

    Attributes:
        queue_expiry: the broker deletes an idle reply queue by itself (RabbitMQ ``x-expires``/policy).
        message_expiry: the broker drops a message whose time to live has passed.
        nack_requeue: a NACKed message comes back to the queue (RabbitMQ yes, ActiveMQ no).
        dead_lettering: the broker can route rejected/expired messages to a dead-letter queue.
        cross_process: two processes (or machines) can share queues through it.
        delete_queue: :meth:`Transport.delete` really removes the queue.
        confirms: sends can be confirmed by the broker (STOMP receipts, AMQP publisher confirms).
        reply_queue_on_send: a send to a reply queue that does not exist creates it, with the
            reply arguments, instead of losing the message (AMQP: the broker returns it, and the
            backend declares the queue and sends it again), so a sender need not declare the
            queue first. Where false, a packager declares a reply queue before a job's replies.
    """

    queue_expiry: bool
    message_expiry: bool
    nack_requeue: bool
    dead_lettering: bool
    cross_process: bool
    delete_queue: bool
    confirms: bool
    reply_queue_on_send: bool = False


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message handed to a consumer's handler.

    Attributes:
        envelope: the message.
        destination: where it came from.
        redelivered: the broker says it was delivered before (not every broker says).
    """

    envelope: Envelope
    destination: Destination
    redelivered: bool = False


Handler = Callable[[Delivery], None]
"""A consumer's callback. Returning acknowledges the delivery; raising leaves it unacknowledged."""

BatchHandler = Callable[[Sequence[Delivery]], None]
"""A batch consumer's callback (:meth:`Transport.consume_batches`): the deliveries already received,
oldest first. Returning acknowledges them all; raising leaves them all unacknowledged."""


class Batch(ABC):
    """Messages taken from a queue by :meth:`Transport.read`, held unacknowledged until :meth:`ack`.

    Leaving the ``with`` block without calling :meth:`ack` gives the messages back to
    the queue (unsubscribe / channel close without ack), so a reader that fails loses nothing.
    """

    @property
    @abstractmethod
    def envelopes(self) -> Sequence[Envelope]:
        """What was in the queue when the read began, oldest first."""

    @abstractmethod
    def ack(self) -> None:
        """Acknowledge every envelope of the batch; they are gone from the queue."""

    @abstractmethod
    def release(self) -> None:
        """End the read; unacknowledged envelopes go back to the queue. Idempotent."""

    def settle(self, keep: Sequence[int]) -> None:
        """Acknowledge every envelope except those at the indices ``keep``, which go back to the queue.

        The kept envelopes go back unchanged, as :meth:`release` gives them back (a reader on
        another connection can take them once this returns); the others are gone. This lets a
        poll that compacts a queue keep the messages it would re-send identically, instead of
        sending copies and acknowledging the originals (no new persistent write, no confirm).
        ``settle(())`` is :meth:`ack`; keeping every index is :meth:`release`.

        Args:
            keep: indices into :attr:`envelopes`, each at most once.

        Raises:
            InvalidArgumentError: an index is out of range, repeated, or not a whole number.
            NotImplementedError: the backend cannot give back part of a read (use re-sends + ack).
        """
        count = len(self.envelopes)
        kept: set[int] = set()
        for index in keep:
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count or index in kept:
                raise InvalidArgumentError(
                    f"settle() takes distinct indices into the batch's {count} envelopes, got {list(keep)!r}"
                )
            kept.add(index)
        if not kept:
            self.ack()
        elif len(kept) == count:
            self.release()
        else:
            self._settle(frozenset(kept))

    def _settle(self, keep: frozenset[int]) -> None:
        """Acknowledge all but ``keep`` (a proper, non-empty subset); give ``keep`` back. Backends override."""
        raise NotImplementedError(f"{type(self).__name__} cannot give back part of a read")

    def __enter__(self) -> Batch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class Transport(ABC):
    """A connection to one broker, moving :class:`Envelope` values.

    Expiry and durability follow from the destination's kind: reply queues get the
    backend's reply time-to-live on every declare, identical each time (queue
    arguments are immutable on RabbitMQ); permanent and dead-letter queues never expire.
    All errors raised are :class:`tdm_messaging.errors.TransportError` (or a
    :class:`~tdm_messaging.errors.MessagingError` for misuse), translated from the driver.

    The public methods check their arguments here, once, so every backend refuses a broken
    contract rule with the same :class:`~tdm_messaging.errors.InvalidArgumentError`; a backend
    implements the underscored methods and may assume their arguments are valid.
    """

    @property
    @abstractmethod
    def capabilities(self) -> Capabilities:
        """What this backend and broker can do."""

    def address(self, destination: Destination) -> str:
        """The queue name a peer must use for ``destination`` on this broker: what ``reply_to`` says.

        The logical name (``package/5``) unless a decorator changes it: inside a namespace it is
        ``<namespace>/package/5`` (docs/protocol.md § 2.3). Broker spellings (``%2F`` on RabbitMQ
        STOMP) are not applied: this is the AMQP queue name.
        """
        return destination.name

    def send(
        self,
        destination: Destination,
        envelope: Envelope,
        *,
        persistent: bool = True,
        confirm: bool = False,
    ) -> None:
        """Send ``envelope`` to ``destination``.

        Args:
            persistent: ask the broker to keep it on disk.
            confirm: block until the broker confirms it (receipt / publisher confirm).

        Raises:
            InvalidArgumentError: ``destination`` or ``envelope`` is not what it should be.
            SendNotConfirmedError: ``confirm`` was asked and no confirmation came in time.
            BrokerUnavailableError: the broker could not be reached.
        """
        _check_destination(destination)
        if not isinstance(envelope, Envelope):
            raise InvalidArgumentError(f"send() takes an Envelope, got {type(envelope).__name__}")
        groups = self._group_commit() if confirm else None
        if groups is not None:
            groups.send(((destination, envelope),), persistent=persistent, single=True)
            return
        self._send(destination, envelope, persistent=persistent, confirm=confirm)

    def send_many(
        self,
        sends: Sequence[tuple[Destination, Envelope]],
        *,
        persistent: bool = True,
        confirm: bool = False,
    ) -> None:
        """Send each ``(destination, envelope)`` in order, on one connection.

        With ``confirm``, returns once every message is confirmed; a backend may send them all
        before waiting (one wait for the lot instead of one per message). The broker stores
        them in the order given (one channel / one connection), so a peer that sees the second
        can rely on the first having been routed before it.

        Group commit: where the backend groups confirmed sends (:meth:`_group_commit`: kombu's
        AMQP), confirmed calls made at the same time from several threads share one send and one
        confirm wait; each call still returns once its own sends are confirmed, and raises only
        for its own sends (``unconfirmed``/``refused`` are indices into its own ``sends``). A call
        alone pays nothing for it. See :mod:`tdm_messaging.transport.group_commit`.

        Raises:
            InvalidArgumentError: an item is not a (Destination, Envelope) pair.
            SendNotConfirmedError: ``confirm`` was asked and a message was refused or not confirmed
                in time; the message says which, and so do its ``unconfirmed`` (not known to be
                stored) and ``refused`` (surely not stored) indices. The others were stored. Any
                other ``TransportError`` says which the same way where it can (else ``unconfirmed``
                is ``None``: any may be stored).
            BrokerUnavailableError: the broker could not be reached.
        """
        if isinstance(sends, (str, bytes)) or not isinstance(sends, Sequence):
            raise InvalidArgumentError("send_many() takes a sequence of (Destination, Envelope) pairs")
        checked: list[tuple[Destination, Envelope]] = []
        for item in sends:
            if not isinstance(item, tuple) or len(item) != 2:
                raise InvalidArgumentError(f"send_many() takes (Destination, Envelope) pairs, got {item!r:.80}")
            destination, envelope = item
            _check_destination(destination)
            if not isinstance(envelope, Envelope):
                raise InvalidArgumentError(f"send_many() takes Envelopes, got {type(envelope).__name__}")
            checked.append((destination, envelope))
        groups = self._group_commit() if confirm and checked else None
        if groups is not None:
            groups.send(checked, persistent=persistent)
            return
        self._send_many(checked, persistent=persistent, confirm=confirm)

    def read(self, destination: Destination, *, limit: int = 1000) -> Batch:
        """Take what is in ``destination`` now, without waiting for more.

        Use as ``with transport.read(dest) as batch: ...; batch.ack()``. The read ends at a
        deterministic end (a marker, or the broker saying the queue is empty), never after a
        fixed sleep; leaving the ``with`` block without ``ack()`` gives everything back.

        Args:
            limit: the most messages to take (at least 1).

        Returns:
            The :class:`Batch` of what was taken, held unacknowledged.

        Raises:
            InvalidArgumentError: ``limit`` < 1, or ``destination`` is not a Destination.
            BrokerUnavailableError: the broker could not be reached.
        """
        _check_destination(destination)
        _check_at_least_one("read limit", limit)
        return self._read(destination, limit=limit)

    def consume(
        self,
        destinations: Sequence[Destination],
        handler: Handler,
        *,
        prefetch: int = 1,
        stop: threading.Event,
    ) -> None:
        """Deliver messages from each of ``destinations`` to ``handler``, in the calling
        thread, until ``stop`` is set (checked at least every 0.5 s while idle).

        At most ``prefetch`` messages per destination are unacknowledged at once; each is
        acknowledged only after ``handler`` returns (at-least-once). The handler may call
        :meth:`send` on this same transport. If ``handler`` raises, the message is not
        acknowledged (the broker redelivers it later) and the exception propagates out of
        ``consume``. Connection losses are retried with backoff, not raised, while ``stop``
        is unset.

        Raises:
            InvalidArgumentError: no destinations, ``prefetch`` < 1, ``handler`` not callable,
                or ``stop`` not an event.
        """
        _check_consume("consume", destinations, handler, prefetch, stop)
        self._consume(destinations, handler, prefetch=prefetch, stop=stop)

    def consume_batches(
        self,
        destinations: Sequence[Destination],
        handler: BatchHandler,
        *,
        prefetch: int = 1,
        stop: threading.Event,
    ) -> None:
        """Like :meth:`consume`, but hand ``handler`` every delivery already received at once.

        A batch holds the deliveries the backend has in hand when the handler is free (at most
        ``prefetch`` per destination, oldest first; never waiting for more): with prefetch 1 and
        one destination, or on a backend that does not batch, every batch holds one delivery.
        When ``handler`` returns, every delivery of the batch is acknowledged; when it raises,
        none is (the broker redelivers them all) and the exception propagates. This lets a
        consumer do one thing for many deliveries, e.g. wait once for the confirms of all their
        replies before acknowledging them.

        Raises:
            InvalidArgumentError: as :meth:`consume`.
        """
        _check_consume("consume_batches", destinations, handler, prefetch, stop)
        self._consume_batches(destinations, handler, prefetch=prefetch, stop=stop)

    def declare(self, destination: Destination, *, prime: bool = False) -> None:
        """Create ``destination`` with the arguments its kind calls for, if it does not exist.

        Args:
            prime: also make a reply queue ready to store its first persistent message at the
                speed of any later one. RabbitMQ (AMQP and STOMP) creates a queue's on-disk
                index on the first persistent message it stores, which makes that message's
                confirm take 1-2.5 ms longer (docs/performance.md); priming sends a persistent,
                confirmed declare probe that expires at once (docs/protocol.md § 6.2), so the
                index exists before the first real message. Worth it where the queue is created
                ahead of its use (``PackagingClient.prepare``); elsewhere a no-op (other brokers,
                permanent queues, RabbitMQ STOMP with ``reply_expiry=policy``).

        Raises:
            InvalidArgumentError: ``destination`` is not a Destination.
            BrokerRefusedError: the queue exists with other arguments.
        """
        _check_destination(destination)
        if prime and destination.kind is DestinationKind.REPLY:
            self._declare_primed(destination)
        else:
            self._declare(destination)

    def delete(self, destination: Destination) -> None:
        """Remove ``destination`` and what it holds (a no-op where :attr:`Capabilities.delete_queue` is false).

        Raises:
            InvalidArgumentError: ``destination`` is not a Destination.
        """
        _check_destination(destination)
        self._delete(destination)

    def depth(self, destination: Destination) -> int | None:
        """How many messages wait in ``destination`` now, if the broker can say without taking them.

        Counts what a read would find waiting, not messages another reader holds unacknowledged
        (AMQP's ``message_count``); a queue that does not exist holds 0. Where messages expire
        lazily (kombu's Redis/SQLite, the native SQLite backend) expired replies not yet dropped
        by a read are counted. Nothing is created, taken or counted as a use of the queue.

        Returns:
            The count, or ``None`` where the backend cannot ask (STOMP has no such frame).

        Raises:
            InvalidArgumentError: ``destination`` is not a Destination.
            BrokerUnavailableError: the broker could not be reached.
        """
        _check_destination(destination)
        return self._depth(destination)

    @abstractmethod
    def close(self) -> None:
        """Disconnect. Further calls raise :class:`~tdm_messaging.errors.TransportClosedError`."""

    # What a backend fills in; the arguments were checked by the public method.

    def _group_commit(self) -> GroupCommit | None:
        """The group commit this transport's confirmed sends go through, or ``None`` (the default) to call
        :meth:`_send`/:meth:`_send_many` directly.

        A backend returns one (made once, kept) where a confirmed send holds the connection for
        its confirm wait and merging concurrent callers' batches into one ``_send_many`` changes
        nothing but speed: each send is confirmed and its failure reported on its own (indices),
        so one caller's refused send fails no other's. Off where a merged batch would behave
        otherwise (one transaction for all, or a failure that stops the sends after it).
        """
        return None

    @staticmethod
    def _confirmed_group(transport: Transport) -> GroupCommit:
        """A :class:`GroupCommit` over ``transport``'s own confirmed ``_send_many`` and ``_send``."""
        return GroupCommit(
            lambda sends, persistent: transport._send_many(sends, persistent=persistent, confirm=True),
            lambda destination, envelope, persistent: transport._send(
                destination, envelope, persistent=persistent, confirm=True
            ),
        )

    @abstractmethod
    def _send(self, destination: Destination, envelope: Envelope, *, persistent: bool, confirm: bool) -> None: ...

    def _send_many(self, sends: Sequence[tuple[Destination, Envelope]], *, persistent: bool, confirm: bool) -> None:
        # Not abstract: one send after the other is right, only slower (a wait per confirm).
        count = len(sends)
        for index, (destination, envelope) in enumerate(sends):
            try:
                self._send(destination, envelope, persistent=persistent, confirm=confirm)
            except TransportError as exc:
                if count == 1:
                    raise
                # This one may or may not be stored (a lost confirm, a lost connection); the rest
                # were never sent. Same error, now saying which (a caller may catch its class).
                refused = (index,) if exc.refused == (0,) else ()  # this one surely not stored
                exc.unconfirmed = tuple(range(index, count))
                exc.refused = (*refused, *range(index + 1, count))
                raise

    @abstractmethod
    def _read(self, destination: Destination, *, limit: int) -> Batch: ...

    @abstractmethod
    def _consume(
        self, destinations: Sequence[Destination], handler: Handler, *, prefetch: int, stop: threading.Event
    ) -> None: ...

    def _consume_batches(
        self, destinations: Sequence[Destination], handler: BatchHandler, *, prefetch: int, stop: threading.Event
    ) -> None:
        # Not abstract: batches of one, through _consume, are right for every backend.
        def one(delivery: Delivery) -> None:
            handler((delivery,))

        self._consume(destinations, one, prefetch=prefetch, stop=stop)

    @abstractmethod
    def _declare(self, destination: Destination) -> None: ...

    def _declare_primed(self, destination: Destination) -> None:
        """Declare reply queue ``destination`` and prime its storage (see :meth:`declare`); here a plain declare."""
        self._declare(destination)

    @abstractmethod
    def _delete(self, destination: Destination) -> None: ...

    def _depth(self, destination: Destination) -> int | None:
        # Not abstract: a backend (or wrapper) that cannot ask says so by not overriding it.
        return None

    def __enter__(self) -> Transport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _check_destination(destination: object) -> None:
    if not isinstance(destination, Destination):
        raise InvalidArgumentError(
            f"expected a Destination (e.g. tdm_messaging.reply_queue('5')), got {type(destination).__name__}"
        )


def _check_consume(name: str, destinations: object, handler: object, prefetch: object, stop: object) -> None:
    if isinstance(destinations, (str, bytes)) or not isinstance(destinations, Sequence) or not destinations:
        raise InvalidArgumentError(f"{name}() needs a non-empty sequence of destinations")
    for destination in destinations:
        _check_destination(destination)
    if not callable(handler):
        raise InvalidArgumentError(f"{name}() needs a callable handler, got {type(handler).__name__}")
    _check_at_least_one("prefetch", prefetch)
    if not callable(getattr(stop, "is_set", None)) or not callable(getattr(stop, "wait", None)):
        raise InvalidArgumentError(f"{name}() needs stop=threading.Event(), got {type(stop).__name__}")


def _check_at_least_one(name: str, value: object) -> None:
    # bool is an int, and True would read as a limit of 1: refuse it as the caller's mistake it is.
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidArgumentError(f"{name} must be a whole number at least 1, got {value!r}")
