"""A STOMP consume loop: subscriptions renewed on reconnect, deliveries acknowledged after their handler returns."""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Sequence

from tdm_messaging.destinations import Destination, names_in_words
from tdm_messaging.errors import TransportError
from tdm_messaging.transport.base import BatchHandler, Delivery
from tdm_messaging.transport.stomp.dialect import Dialect, to_wire_name
from tdm_messaging.transport.stomp.frames import (
    MARKER_HEADER,
    PROBE_HEADER,
    envelope_from_headers,
    prefetch_headers,
    queue_headers,
)
from tdm_messaging.transport.stomp.link import Frame, Item, Lost, StompLink, Subscription
from tdm_messaging.transport.stomp.read import forward_marker
from tdm_messaging.transport.stomp.routes import Target
from tdm_messaging.transport.stomp.translate import DRIVER_ERRORS

__all__ = ["consume_queues"]

log = logging.getLogger(__name__)

_IDLE_CHECK_S = 0.5


def consume_queues(
    link: StompLink,
    destinations: Sequence[Destination],
    handler: BatchHandler,
    *,
    prefetch: int,
    stop: threading.Event,
    batched: bool = False,
) -> None:
    """Run :meth:`StompTransport.consume` or, with ``batched``, ``consume_batches`` (arguments checked by the
    caller); raises what they document.

    Not ``batched``: ``handler`` gets one delivery at a time, each acknowledged after it returns.
    ``batched``: it gets every delivery the receiver thread has already put in the inbox (the
    broker sends at most ``prefetch`` per subscription unacknowledged), oldest first, never
    waiting for more; their ACKs are written together once it returns.
    """
    dialect = link.dialect
    assert dialect is not None  # the link is connected
    inbox: queue.SimpleQueue[Item] = queue.SimpleQueue()
    subs: dict[str, Subscription] = {}
    for destination in destinations:
        headers = queue_headers(destination, link.settings, dialect)
        headers.update(prefetch_headers(dialect, prefetch))
        subs[f"tdm-consume-{uuid.uuid4().hex}"] = Subscription(destination, to_wire_name(destination, dialect), headers)
    # A handler that raised last time (e.g. its reply could not be stored) left its delivery
    # held, unacknowledged, on this connection (RabbitMQ): give it back before subscribing again.
    link.return_stuck()
    with link.lock:
        conn = link.connection()
        for sub_id, sub in subs.items():
            link.inboxes[sub_id] = inbox
            link.consumers[sub_id] = sub
            conn.subscribe(sub.wire_name, id=sub_id, ack="client-individual", headers=sub.headers)
    unacked = 0
    try:
        while not stop.is_set():
            try:
                item = inbox.get(timeout=_IDLE_CHECK_S)
            except queue.Empty:
                if not link.connected:
                    link.recover(stop)
                continue
            frames: list[Frame] = []
            while isinstance(item, Frame):
                frames.append(item)
                if not batched:
                    break
                try:
                    item = inbox.get_nowait()  # what the receiver thread has already put: the batch
                except queue.Empty:
                    break
            if frames:
                try:
                    _deliver(link, frames, subs, handler)
                except BaseException:
                    unacked += sum(1 for frame in frames if frame.generation == link.generation and _delivered(frame))
                    raise
            if isinstance(item, Frame):
                continue
            if isinstance(item, Lost):
                if item.generation == link.generation:
                    link.recover(stop)
                continue
            raise item  # an ERROR frame (BrokerRefusedError or BrokerUnavailableError)
    finally:
        _end(link, subs, inbox, unacked)


def _delivered(frame: Frame) -> bool:
    """Whether ``frame`` is a delivery for the handler (not a declare's probe nor another reader's marker)."""
    return PROBE_HEADER not in frame.headers and MARKER_HEADER not in frame.headers


def _deliver(link: StompLink, frames: Sequence[Frame], subs: dict[str, Subscription], handler: BatchHandler) -> None:
    """Hand ``frames``' deliveries to ``handler`` at once, then acknowledge them (declare probes and
    other readers' markers among them are settled first, never handed over)."""
    deliveries: list[Delivery] = []
    taken: list[Frame] = []
    for frame in frames:
        sub = subs[frame.headers.get("subscription", "")]
        if PROBE_HEADER in frame.headers:  # a declare's empty probe: nothing to deliver
            link.ack(frame)
        elif MARKER_HEADER in frame.headers:
            forward_marker(link, Target(sub.destination, sub.wire_name, declare=True), frame)
        else:
            envelope = envelope_from_headers(frame.headers, frame.body)
            redelivered = frame.headers.get("redelivered", "").lower() == "true"
            deliveries.append(Delivery(envelope, sub.destination, redelivered))
            taken.append(frame)
    if not deliveries:
        return
    handler(deliveries)
    try:
        if not link.ack_all(taken):
            log.info("%s not acknowledged: their connection was lost; they come again", _what(deliveries))
    except TransportError as exc:
        log.warning("could not acknowledge %s (%s); they come again", _what(deliveries), exc)


def _what(deliveries: Sequence[Delivery]) -> str:
    """``deliveries`` in words for a log line: how many, from which queues."""
    queues = names_in_words(str(d.destination) for d in deliveries)
    return f"{len(deliveries)} delivery(ies) from {queues}"


def _end(link: StompLink, subs: dict[str, Subscription], inbox: queue.SimpleQueue[Item], unacked: int) -> None:
    with link.lock:
        for sub_id in subs:
            link.inboxes.pop(sub_id, None)
            link.consumers.pop(sub_id, None)
        live = link.connected and not link.closed
        conn = link.conn
        while not inbox.empty():  # prefetched, never handed to the handler
            item = inbox.get_nowait()
            unacked += isinstance(item, Frame) and item.generation == link.generation
        if live and link.dialect is Dialect.RABBITMQ:
            # Unacknowledged deliveries of a cancelled subscription stay with the connection
            # on RabbitMQ: the next read re-opens it first (see StompLink.return_stuck).
            link.stuck += unacked
    if live:
        for sub_id in subs:
            try:
                conn.unsubscribe(sub_id)
            except DRIVER_ERRORS as exc:  # the subscription ends with the connection anyway
                log.debug("unsubscribe %s failed: %s", sub_id, exc)
