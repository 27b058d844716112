"""Transport.declare(prime=True): a reply queue made ready for its first persistent message, with nothing to read.

On RabbitMQ (AMQP and STOMP) priming sends a persistent declare probe that expires at once; the
checks here are what a user can see: the queue exists, a read finds nothing, messages already in
it stay as they were, and the probe on the wire is what docs/protocol.md § 6.2 says (watched by
an AMQP consumer of our own, started before the prime). The speed-up itself is measured by the
benchmark (docs/performance.md), never asserted here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tdm_messaging.destinations import PACKAGE_REQUESTS, Destination, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.headers import DECLARE_PROBE
from tdm_messaging.server import PackagingClient
from tdm_messaging.transport import open_transport
from tests.conftest import broker_url
from tests.transport.conftest import Backend, backend_fixture, unique_docset, unique_namespace

rabbitmq = backend_fixture("rabbitmq-amqp", "rabbitmq-stomp")


def _read_all(backend: Backend, queue: Destination) -> list[bytes]:
    """Every body a fresh transport's read finds in ``queue`` (acknowledged: taken away)."""
    reader = backend.open()
    with reader.read(queue) as batch:
        bodies = [envelope.body for envelope in batch.envelopes]
        batch.ack()
    return bodies


def test_a_primed_reply_queue_holds_nothing_to_read(backend: Backend) -> None:
    transport = backend.open()
    queue = backend.reply_queue()
    transport.declare(queue, prime=True)
    assert _read_all(backend, queue) == []
    if not backend.is_stomp:
        assert transport.depth(queue) == 0
    for body in (b'{"n":1}', b'{"n":2}'):
        transport.send(queue, Envelope(body), confirm=True)
    assert _read_all(backend, queue) == [b'{"n":1}', b'{"n":2}']


def test_priming_a_queue_that_holds_messages_leaves_them_as_they_were(backend: Backend) -> None:
    transport = backend.open()
    queue = backend.reply_queue()
    bodies = [f'{{"n":{i}}}'.encode() for i in range(5)]
    for body in bodies:
        transport.send(queue, Envelope(body, headers={"tdm-sequence": "1"}), confirm=True)
    transport.declare(queue, prime=True)
    transport.declare(queue, prime=True)  # twice: as harmless as once
    assert _read_all(backend, queue) == bodies


def test_prime_is_a_plain_declare_for_a_permanent_queue(backend: Backend) -> None:
    backend.namespace = unique_namespace()  # a request queue of this test alone
    transport = backend.open()
    queue = backend.track(PACKAGE_REQUESTS)
    transport.declare(queue, prime=True)
    transport.send(queue, Envelope(b'{"only":true}'), confirm=True)
    assert _read_all(backend, queue) == [b'{"only":true}']


@contextlib.contextmanager
def _amqp_watcher(queue_name: str) -> Iterator[tuple[Any, list[Any]]]:
    """A py-amqp consumer on ``queue_name`` (declared by the transport under test first): connection, deliveries."""
    import amqp

    parts = urlsplit(broker_url("rabbitmq-amqp"))
    connection = amqp.Connection(
        f"{parts.hostname}:{parts.port or 5672}", userid=parts.username or "guest", password=parts.password or "guest"
    )
    connection.connect()
    got: list[Any] = []
    try:
        channel = connection.channel()
        channel.basic_consume(queue_name, callback=got.append, no_ack=True)
        yield connection, got
    finally:
        connection.close()


def test_the_prime_probe_on_the_wire_is_an_empty_persistent_declare_probe(rabbitmq: Backend) -> None:
    transport = rabbitmq.open()
    queue = rabbitmq.reply_queue()
    transport.declare(queue)  # so the watcher can subscribe before the prime
    with _amqp_watcher(queue.name) as (connection, got):
        transport.declare(queue, prime=True)
        while not got:
            connection.drain_events(timeout=10)
    (probe,) = got
    assert probe.body in (b"", "")
    assert probe.properties["delivery_mode"] == 2  # persistent: stored, so the queue's index exists
    assert str(probe.properties["expiration"]) == "0"  # and gone at once
    assert DECLARE_PROBE in probe.properties["application_headers"]
    assert _read_all(rabbitmq, queue) == []


def test_prepare_primes_the_reply_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    primed: list[str] = []
    transport = open_transport("inmemory://")
    plain = transport._declare_primed
    monkeypatch.setattr(transport, "_declare_primed", lambda d: (primed.append(d.name), plain(d)))
    docset = unique_docset()
    PackagingClient(transport).prepare(docset)
    assert primed == [reply_queue(docset).name]
    transport.close()
