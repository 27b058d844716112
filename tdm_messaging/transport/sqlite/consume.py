"""The native SQLite consume loop: take a pass over the queues, hand each message over, ack it, sleep when idle."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from tdm_messaging.destinations import Destination, DestinationKind
from tdm_messaging.errors import BrokerUnavailableError
from tdm_messaging.transport.base import Delivery, Handler
from tdm_messaging.transport.sqlite import store
from tdm_messaging.transport.sqlite.link import SqliteLink, now_ms
from tdm_messaging.transport.sqlite.read import to_envelope
from tdm_messaging.transport.sqlite.wake import Waker

__all__ = ["consume_queues"]

log = logging.getLogger(__name__)

_RETRY_MAX_SECONDS = 5.0

_Pass = list[tuple[Destination, store.Taken]]


def consume_queues(
    link: SqliteLink,
    waker: Waker,
    destinations: Sequence[Destination],
    handler: Handler,
    *,
    prefetch: int,
    stop: threading.Event,
) -> None:
    """Run :meth:`SqliteTransport.consume` (arguments checked by the caller); raises what it documents."""
    link.check_open()
    replies = [d.name for d in destinations if d.kind is DestinationKind.REPLY]
    touch_every = link.settings.reply_ttl / 4
    last_touch = time.monotonic()
    failures = 0
    while not stop.is_set():
        seen = waker.generation
        try:
            passed = _take_pass(link, destinations, prefetch)
            if replies and time.monotonic() - last_touch >= touch_every:
                with link.db("marking consumed reply queues used") as conn:
                    store.touch(conn, replies, now_ms=now_ms())
                last_touch = time.monotonic()
        except BrokerUnavailableError as exc:
            failures += 1
            delay = min(_RETRY_MAX_SECONDS, 0.2 * 2 ** min(failures, 10))
            log.warning("consuming from %s: %s; retrying in %.1f s", link.settings.display_url, exc, delay)
            stop.wait(delay)
            continue
        failures = 0
        if not passed:
            waker.wait(seen, link.settings.poll_interval)
            continue
        _deliver(link, passed, handler, stop)


def _take_pass(link: SqliteLink, destinations: Sequence[Destination], prefetch: int) -> _Pass:
    """Take up to ``prefetch`` messages of each destination in turn; a quick read-only look first spares the lock."""
    passed: _Pass = []
    for destination in destinations:
        with link.db(f"looking into {destination.name!r}") as conn:
            visible = store.has_visible(conn, destination.name, now_ms=now_ms())
        if visible:
            passed.extend((destination, item) for item in link.take(destination, prefetch))
    return passed


def _deliver(link: SqliteLink, passed: _Pass, handler: Handler, stop: threading.Event) -> None:
    for index, (destination, item) in enumerate(passed):
        if stop.is_set():
            _give_back_pass(link, passed[index:])
            return
        delivery = Delivery(envelope=to_envelope(item), destination=destination, redelivered=item.deliveries > 1)
        try:
            handler(delivery)
        except BaseException:
            _give_back_pass(link, passed[index:])
            raise
        try:
            link.ack(destination, [item])
        except BrokerUnavailableError as exc:
            # Not acknowledged: stop renewing it, so it is delivered again after the timeout.
            link.forget([item])
            log.warning("acknowledging a message of %s failed (%s); it will be delivered again", destination, exc)


def _give_back_pass(link: SqliteLink, rest: Sequence[tuple[Destination, store.Taken]]) -> None:
    for destination, item in rest:
        link.give_back(destination, [item])
