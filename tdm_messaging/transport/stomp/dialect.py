"""How a STOMP broker spells a logical destination: the dialects and the wire names (pure, no driver)."""

from __future__ import annotations

import enum

from tdm_messaging.destinations import Destination, known_destination
from tdm_messaging.errors import InvalidDestinationError

__all__ = ["Dialect", "from_wire_name", "to_wire_name"]


class Dialect(enum.Enum):
    """How a broker spells a logical destination."""

    ACTIVEMQ = "activemq"
    """ActiveMQ STOMP: ``/queue/package/5``, as the seed system wrote it."""
    RABBITMQ = "rabbitmq"
    """RabbitMQ STOMP: ``/queue/package%2F5`` — the queue that AMQP clients call ``package/5``."""
    PLAIN = "plain"
    """AMQP and kombu's virtual transports: the logical name itself, ``package/5``."""


def to_wire_name(destination: Destination, dialect: Dialect) -> str:
    """Spell ``destination`` for ``dialect`` (see :class:`Dialect`)."""
    if dialect is Dialect.ACTIVEMQ:
        return "/queue/" + destination.name
    if dialect is Dialect.RABBITMQ:
        return "/queue/" + destination.name.replace("/", "%2F")
    return destination.name


def from_wire_name(wire_name: str, dialect: Dialect) -> Destination:
    """Inverse of :func:`to_wire_name`.

    Raises:
        InvalidDestinationError: if ``wire_name`` is not a destination of this protocol.
    """
    name = wire_name
    if dialect is not Dialect.PLAIN:
        if not name.startswith("/queue/"):
            raise InvalidDestinationError(
                f"{wire_name!r} is not a {dialect.value} queue destination (expected '/queue/...')"
            )
        name = name[len("/queue/") :]
        if dialect is Dialect.RABBITMQ:
            name = name.replace("%2F", "/").replace("%2f", "/")
    return known_destination(name, spelled=wire_name)
