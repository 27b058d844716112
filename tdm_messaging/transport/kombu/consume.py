"""A kombu consume loop: one channel per queue, deliveries acknowledged after their handler, resumed after a loss."""

from __future__ import annotations

import functools
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any

import kombu as _kombu_module
from kombu.message import Message as KombuMessage

from tdm_messaging.destinations import Destination, names_in_words
from tdm_messaging.errors import BrokerUnavailableError
from tdm_messaging.transport.base import BatchHandler, Delivery
from tdm_messaging.transport.kombu.link import KombuLink, quietly
from tdm_messaging.transport.kombu.messages import raw_envelope, raw_redelivered, redelivered, to_envelope
from tdm_messaging.transport.kombu.queues import collect_acked
from tdm_messaging.transport.kombu.settings import Backend
from tdm_messaging.transport.kombu.wire import ack_frame, drain_events, write_frames

__all__ = ["Declare", "consume_queues"]

log = logging.getLogger(__name__)

# kombu is only partly typed: treat it as dynamic at this one edge.
kombu: Any = _kombu_module

_DRAIN_SECONDS = 0.5
_MOST_READY_FRAMES = 1000  # a bound on one non-blocking read: prefetch bounds it anyway

Declare = Callable[[Any, Destination], object]
"""How the transport declares a queue on a channel (its one gate for declares)."""


def consume_queues(
    link: KombuLink,
    destinations: Sequence[Destination],
    handler: BatchHandler,
    *,
    prefetch: int,
    stop: threading.Event,
    declare: Declare,
    batched: bool = False,
) -> None:
    """Run :meth:`KombuTransport.consume` or ``consume_batches`` (arguments checked by the caller).

    ``batched``: hand ``handler`` every message already received (those the socket holds are
    read without waiting); else one at a time. Raises what ``consume`` documents.
    A lost connection is re-established with exponential backoff (up to ``retry_max``
    seconds) while ``stop`` is unset, and a new session subscribes again.
    """
    link.check_open()
    failures = 0
    acked = [0]  # deliveries acknowledged so far: progress since the last failure resets the backoff
    while not stop.is_set():
        acked_before = acked[0]
        try:
            _session(
                link, destinations, handler, prefetch=prefetch, stop=stop, declare=declare, acked=acked, batched=batched
            )
            return
        except BrokerUnavailableError as exc:
            # A reconnect that works is not progress: a handler that fails on every delivery (its
            # reply queue's node is down) would otherwise be retried every 0.4 s.
            failures = 1 if acked[0] > acked_before else failures + 1
            delay = min(link.settings.retry_max, 0.2 * 2 ** min(failures, 10))
            log.warning("consuming from %s: %s; retrying in %.1f s", link.settings.display_url, exc, delay)
            if stop.wait(delay):
                return
            try:
                with link.driver("reconnecting"):
                    link.reconnect()
            except BrokerUnavailableError as again:
                log.warning("reconnect to %s failed: %s", link.settings.display_url, again)


def _session(
    link: KombuLink,
    destinations: Sequence[Destination],
    handler: BatchHandler,
    *,
    prefetch: int,
    stop: threading.Event,
    declare: Declare,
    acked: list[int],
    batched: bool,
) -> None:
    """Subscribe on the current connection and deliver until ``stop``; raises BrokerUnavailableError when it is lost.

    ``acked[0]`` counts the deliveries acknowledged.
    """
    pending: deque[tuple[Any, Destination]] = deque()
    channels: list[Any] = []

    def receiver(destination: Destination) -> Callable[[Any], None]:
        return lambda message: pending.append((message, destination))

    with link.driver("subscribing"):
        link.check_open()
        base = link.base_channel()
        for destination in destinations:
            declare(base, destination)
        raw = link.settings.backend is Backend.AMQP
        for destination in destinations:
            channel = link.conn.channel()
            channels.append(channel)
            channel.basic_qos(0, prefetch, False)
            if raw:
                # py-amqp's messages as they are: kombu's wrapper only where a body needs it (_deliver).
                channel.basic_consume(queue=destination.name, callback=receiver(destination), no_ack=False)
                continue
            consumer = kombu.Consumer(
                channel,
                queues=[kombu.Queue(destination.name, no_declare=True)],
                on_message=receiver(destination),
                no_ack=False,
                auto_declare=False,
            )
            consumer.consume()
        session_conn = link.conn
    try:
        while not stop.is_set():
            if pending:
                if batched:
                    _read_ready(link, session_conn)
                    batch = list(pending)
                    pending.clear()
                else:
                    batch = [pending.popleft()]
                _deliver(link, batch, handler, session_conn)
                acked[0] += len(batch)
                continue
            with link.driver("waiting for messages"):
                link.check_open()
                conn = link.conn
                if conn is None:  # dropped by another thread (heart-beat, a failed send)
                    raise BrokerUnavailableError(f"connection to {link.settings.display_url} was lost")
                if conn is not session_conn:
                    # Replaced by another operation's reconnect: our subscriptions went with the old one.
                    raise BrokerUnavailableError(
                        f"connection to {link.settings.display_url} was replaced; subscribing again"
                    )
                with suppress(TimeoutError):
                    # AMQP: py-amqp's own connection (kombu's only hands the call down); the virtual
                    # transports need kombu's, which polls their store.
                    if raw:
                        drain_events(conn.connection, _DRAIN_SECONDS)
                    else:
                        conn.drain_events(timeout=_DRAIN_SECONDS)
                conn.heartbeat_check()
    finally:
        with link.lock:
            for channel in channels:
                # Closing gives prefetched, unhandled messages back to the queue.
                quietly(channel.close)


def _read_ready(link: KombuLink, session_conn: Any) -> None:
    """Take in the deliveries the socket already holds (prefetched), without waiting for more."""
    with link.driver("reading prefetched messages"):
        if link.conn is not session_conn:
            return  # the next wait says the connection was lost
        with suppress(TimeoutError):  # py-amqp's own connection (batches are AMQP only)
            drain_events(session_conn.connection, 0, most=_MOST_READY_FRAMES)


def _delivery(message: Any, destination: Destination) -> Delivery:
    """The delivery of a kombu message, or of py-amqp's own (AMQP), unwrapped by kombu only if its body needs it."""
    if isinstance(message, KombuMessage):
        return Delivery(envelope=to_envelope(message), destination=destination, redelivered=redelivered(message))
    envelope = raw_envelope(message)
    if envelope is None:  # a body kombu decompresses
        wrapped = message.channel.message_to_python(message)
        if wrapped.errors:
            wrapped._reraise_error()  # as kombu's Consumer does with no decode-error handler
        envelope = to_envelope(wrapped)
    return Delivery(envelope=envelope, destination=destination, redelivered=raw_redelivered(message))


def _give_back(message: Any) -> None:
    if isinstance(message, KombuMessage):
        message.reject(requeue=True)  # type: ignore[no-untyped-call]
    else:
        message.channel.basic_reject(message.delivery_tag, requeue=True)


def _deliver(link: KombuLink, batch: list[tuple[Any, Destination]], handler: BatchHandler, session_conn: Any) -> None:
    deliveries = [_delivery(message, destination) for message, destination in batch]
    try:
        handler(deliveries)
    except BaseException:
        with link.lock:
            if link.conn is session_conn:
                for message, _destination in batch:
                    quietly(functools.partial(_give_back, message))
        raise
    if link.settings.backend is Backend.AMQP:
        _ack_raw(link, batch, session_conn)
        return
    for message, destination in batch:
        with link.driver(f"acknowledging a message of {destination.name!r}"):
            if link.conn is not session_conn:
                # The connection it came on is gone (lost, or closed by the broker and replaced while
                # the handler ran): the broker redelivers the message; acknowledging it is impossible.
                raise BrokerUnavailableError(
                    f"acknowledging a message of {destination.name!r}: the connection to "
                    f"{link.settings.display_url} it came on was lost while it was handled; the broker "
                    "delivers it again"
                )
            message.ack()
            collect_acked(link, destination)


def _ack_raw(link: KombuLink, batch: list[tuple[Any, Destination]], session_conn: Any) -> None:
    """AMQP: acknowledge a handled batch, every ``basic.ack`` in one socket write."""
    names = names_in_words(destination.name for _, destination in batch)
    with link.driver(f"acknowledging messages of {names}"):
        if link.conn is not session_conn:
            # The connection they came on is gone (lost, or closed by the broker and replaced while
            # the handler ran): the broker redelivers them; acknowledging them is impossible.
            raise BrokerUnavailableError(
                f"acknowledging messages of {names}: the connection to {link.settings.display_url} "
                "they came on was lost while they were handled; the broker delivers them again"
            )
        frames = [ack_frame(message.channel.channel_id, message.delivery_tag) for message, _ in batch]
        write_frames(batch[0][0].channel.connection, frames)
