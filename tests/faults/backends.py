"""The transports fault tests run on: the in-memory broker, the private RabbitMQ node (STOMP, AMQP) and ActiveMQ."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from tdm_messaging.testing import InMemoryBroker, InMemoryTransport
from tdm_messaging.transport import open_transport
from tdm_messaging.transport.base import Transport

__all__ = ["BACKENDS", "Opener", "opener"]

BACKENDS = ["memory", "rabbitmq-stomp", "rabbitmq-amqp", "activemq-stomp"]
"""The backends of the generic fault tests (``activemq-stomp`` is the private ActiveMQ)."""

Opener = Callable[[], Transport]


def opener(request: pytest.FixtureRequest, backend: str) -> Iterator[Opener]:
    """Yield a function that opens a new transport to ``backend`` (all closed at the end of the test)."""
    opened: list[Transport] = []
    if backend == "memory":
        broker = InMemoryBroker()

        def make() -> Transport:
            return InMemoryTransport(broker)
    elif backend == "activemq-stomp":
        amq_url = request.getfixturevalue("private_activemq").stomp_url(heartbeat_ms="2000")

        def make() -> Transport:
            return open_transport(amq_url)
    else:
        node = request.getfixturevalue("private_rabbit")
        url = node.stomp_url(heartbeat_ms="2000") if backend == "rabbitmq-stomp" else node.amqp_url(heartbeat="10")

        def make() -> Transport:
            return open_transport(url)

    def tracked() -> Transport:
        transport = make()
        opened.append(transport)
        return transport

    yield tracked
    for transport in opened:
        with contextlib.suppress(Exception):  # closing after a fault may fail; the verdict is already in
            transport.close()
