"""Queues over kombu: declare (with the lease rule for reply queues), delete, and SQLite's clean-up of taken rows."""

from __future__ import annotations

import time
from typing import Any

import amqp.exceptions

from tdm_messaging.destinations import Destination, DestinationKind
from tdm_messaging.transport.kombu.link import KombuLink
from tdm_messaging.transport.kombu.settings import Backend, KombuSettings

__all__ = ["collect_acked", "declare_queue", "delete_queue", "holds", "queue_arguments", "queue_depth"]


def queue_arguments(settings: KombuSettings, destination: Destination) -> dict[str, Any]:
    """The AMQP queue arguments ``destination``'s kind calls for (none on the virtual transports)."""
    if settings.backend is not Backend.AMQP:
        return {}
    if destination.kind is DestinationKind.REPLY:
        if settings.reply_queue_type == "quorum":
            return {"x-expires": settings.reply_ttl_ms, "x-queue-type": "quorum"}
        return {"x-expires": settings.reply_ttl_ms}
    if settings.quorum:
        return {"x-queue-type": "quorum"}
    return {}


def declare_queue(link: KombuLink, channel: Any, destination: Destination) -> int | None:
    """Declare ``destination`` unless this connection's last declare of it still holds; return
    its message count when the broker said it. Call with the lock held.

    A publish to a missing queue through the default exchange is silently dropped, and a
    reply queue expires ``reply_ttl`` after its last use. RabbitMQ restarts that clock on
    every declare, so a reply queue this connection declared less than ``reply_ttl / 2`` ago
    surely still exists (the lease rule of stomp.routes): it is declared again only after that.
    Permanent and dead-letter queues never expire: declared once per connection.
    """
    now = time.monotonic()
    if holds(link, destination, now=now):
        return None
    ok = channel.queue_declare(
        queue=destination.name,
        passive=False,
        durable=True,
        exclusive=False,
        auto_delete=False,
        arguments=queue_arguments(link.settings, destination),
    )
    link.declared[destination.name] = now
    return int(ok.message_count) if ok is not None else None


def holds(link: KombuLink, destination: Destination, *, now: float | None = None) -> bool:
    """Whether this connection's last declare of ``destination`` surely still holds (the lease rule)."""
    last = link.declared.get(destination.name)
    if last is None:
        return False
    age = (time.monotonic() if now is None else now) - last
    return destination.kind is not DestinationKind.REPLY or age < link.settings.reply_ttl / 2


def queue_depth(link: KombuLink, destination: Destination) -> int:
    """How many messages wait in ``destination``; a missing queue holds 0. Call with the lock held.

    AMQP: a passive declare (creates nothing, restarts no ``x-expires`` clock) answers with the
    ready-message count; RabbitMQ refuses it for a missing queue by closing the channel (404),
    which is replaced here. Redis (LLEN), SQLite and memory: kombu's own count of the queue.
    """
    channel = link.base_channel()
    if link.settings.backend is not Backend.AMQP:
        return int(channel._size(destination.name))
    try:
        ok = channel.queue_declare(queue=destination.name, passive=True)
    except amqp.exceptions.NotFound:
        link.channel_broken()
        return 0
    return int(ok.message_count)


def delete_queue(link: KombuLink, destination: Destination) -> None:
    """Remove ``destination`` and its messages (a missing queue is not an error). Call with the lock held."""
    channel = link.base_channel()
    link.declared.pop(destination.name, None)
    if link.settings.backend is Backend.AMQP:
        channel.queue_delete(queue=destination.name)
        return
    # Virtual transports delete through bindings, and the default exchange has none.
    channel._delete(destination.name, "", destination.name, None)
    if link.settings.backend is Backend.SQLITE:
        session = channel.session
        session.query(channel.queue_cls).filter(channel.queue_cls.name == destination.name).delete()
        session.commit()


def collect_acked(link: KombuLink, destination: Destination) -> None:
    """SQLite: remove the rows of taken messages (kombu only hides them, so the file would grow forever).

    A hidden row is never read again (kombu restores a released message as a new row),
    so deleting them loses nothing. Call with the lock held.
    """
    if link.settings.backend is not Backend.SQLITE or link.channel is None:
        return
    channel = link.channel
    session = channel.session
    queue = session.query(channel.queue_cls).filter(channel.queue_cls.name == destination.name).first()
    if queue is None:
        return
    message_cls = channel.message_cls
    session.query(message_cls).filter(message_cls.queue_id == queue.id).filter(
        message_cls.visible == False  # noqa: E712 - an SQL expression, not a Python comparison
    ).delete(synchronize_session=False)
    session.commit()
