"""A STOMP consume loop: subscriptions renewed on reconnect, each delivery acknowledged after its handler."""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Sequence

from tdm_messaging.destinations import Destination
from tdm_messaging.errors import BrokerRefusedError, BrokerUnavailableError, TransportError
from tdm_messaging.transport.base import Delivery, Handler
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
    link: StompLink, destinations: Sequence[Destination], handler: Handler, *, prefetch: int, stop: threading.Event
) -> None:
    """Run :meth:`StompTransport.consume` (arguments checked by the caller); raises what it documents."""
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
            if isinstance(item, Lost):
                if item.generation == link.generation:
                    link.recover(stop)
                continue
            if isinstance(item, (BrokerRefusedError, BrokerUnavailableError)):  # an ERROR frame
                raise item
            try:
                _deliver(link, item, subs, handler)
            except BaseException:
                if item.generation == link.generation:
                    unacked += 1
                raise
    finally:
        _end(link, subs, inbox, unacked)


def _deliver(link: StompLink, frame: Frame, subs: dict[str, Subscription], handler: Handler) -> None:
    sub = subs[frame.headers.get("subscription", "")]
    if PROBE_HEADER in frame.headers:  # a declare's empty probe: nothing to deliver
        link.ack(frame)
        return
    if MARKER_HEADER in frame.headers:
        forward_marker(link, Target(sub.destination, sub.wire_name, declare=True), frame)
        return
    envelope = envelope_from_headers(frame.headers, frame.body)
    redelivered = frame.headers.get("redelivered", "").lower() == "true"
    handler(Delivery(envelope, sub.destination, redelivered))
    try:
        if not link.ack(frame):
            log.info("delivery from %s not acknowledged: its connection was lost; it comes again", sub.destination)
    except TransportError as exc:
        log.warning("could not acknowledge a delivery from %s (%s); it comes again", sub.destination, exc)


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
