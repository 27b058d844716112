"""Publishing one envelope over kombu: kombu's Producer on the virtual transports, py-amqp with confirms on AMQP."""

from __future__ import annotations

from typing import Any

import amqp
import amqp.exceptions
import kombu as _kombu_module

from tdm_messaging.destinations import Destination
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import SendNotConfirmedError
from tdm_messaging.transport.kombu.link import KombuLink
from tdm_messaging.transport.kombu.messages import content_encoding
from tdm_messaging.transport.kombu.settings import Backend

__all__ = ["publish"]

# kombu is only partly typed: treat it as dynamic at this one edge.
kombu: Any = _kombu_module


def publish(
    link: KombuLink, channel: Any, destination: Destination, envelope: Envelope, *, persistent: bool, confirm: bool
) -> None:
    """Publish ``envelope`` to the declared queue ``destination`` through the default exchange.

    Call with the lock held. ``confirm`` (AMQP only) waits ``confirm_timeout`` for the
    publisher confirm, on a channel of its own in confirm mode, and publishes ``mandatory``:
    a message no queue took (the queue is gone, or its home node in a cluster is down) comes
    back as ``basic.return`` before its confirm, and the confirm alone would say "stored".

    Raises:
        SendNotConfirmedError: the broker nacked or returned the message, or no confirm came in time.
    """
    body = envelope.body
    content_type = envelope.content_type
    headers = dict(envelope.headers)
    if link.settings.backend is not Backend.AMQP:
        # Virtual transports: kombu's Producer shapes the payload they store; one per channel.
        producer = link.producer
        if producer is None or producer.channel is not channel:
            producer = link.producer = kombu.Producer(channel, auto_declare=False)
        producer.publish(
            body,
            routing_key=destination.name,
            content_type=content_type,
            content_encoding=content_encoding(content_type),
            headers=headers,
            delivery_mode=2 if persistent else 1,
            retry=False,
        )
        return
    # AMQP: the py-amqp message kombu's Producer would build, published without its layers.
    message = amqp.Message(
        body,
        content_type=content_type,
        content_encoding=content_encoding(content_type),
        application_headers=headers,
        delivery_mode=2 if persistent else 1,
    )
    if not confirm:
        channel.basic_publish(message, exchange="", routing_key=destination.name)
        return
    if link.confirm_channel is None:
        link.confirm_channel = link.conn.channel()
        link.returned.clear()
        # Without a handler py-amqp raises the return from inside the wait for the confirm,
        # leaving that confirm to be taken for the next publish's.
        link.confirm_channel.events["basic_return"].add(
            lambda exc, _exchange, routing_key, _message: link.returned.append(f"{routing_key}: {exc}")
        )
    link.returned.clear()
    try:
        link.confirm_channel.basic_publish_confirm(
            message,
            exchange="",
            routing_key=destination.name,
            mandatory=True,
            confirm_timeout=link.settings.confirm_timeout,
        )
    except amqp.exceptions.MessageNacked as exc:
        raise SendNotConfirmedError(
            f"{link.settings.display_url} refused (nacked) a message to {destination.name!r}; "
            "check the broker's logs (disk or memory alarm, queue length limit)"
        ) from exc
    except TimeoutError as exc:
        # A late confirm would confuse the next publish on this channel, and closing the
        # channel would wait for a broker that may be gone: drop the connection (no I/O);
        # the next operation opens a fresh one.
        link.conn_broken()
        raise SendNotConfirmedError(
            f"no publisher confirm from {link.settings.display_url} for a message to {destination.name!r} "
            f"within {link.settings.confirm_timeout:g} s; it may or may not have been stored "
            "(raise confirm_timeout, or check the broker's load)"
        ) from exc
    if link.returned:
        # RabbitMQ sends basic.return before the confirm of the same message.
        why = link.returned[0]
        link.returned.clear()
        link.declared.pop(destination.name, None)  # the next send declares it again, and hears why
        raise SendNotConfirmedError(
            f"{link.settings.display_url} did not store a message to {destination.name!r}: no queue took it "
            f"(returned as unroutable, {why}); the queue does not exist, or its home node in a cluster is "
            "down (quorum queues survive that: see docs/brokers.md)"
        )
