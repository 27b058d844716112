"""Reply-queue expiry, watched happen on each backend with a short reply TTL (2 s)."""

from __future__ import annotations

import sqlite3
import time
from urllib.parse import urlsplit

import pytest

from tdm_messaging.envelope import Envelope
from tests.transport.conftest import Backend, backend_fixture

pytestmark = pytest.mark.timeout(120)

TTL = 2
"""Seconds: the reply TTL of every transport in this module."""
PAST_TTL = TTL + 1.5
"""Seconds to stay idle so that the TTL has surely passed (RabbitMQ deleted a 2 s queue after ~2.2 s here)."""

rabbitmq = backend_fixture("rabbitmq-stomp", "rabbitmq-amqp")
lazy = backend_fixture("redis", "sqlite", "inmemory")


def _reply(text: str) -> Envelope:
    return Envelope(text.encode(), "text/plain", {"tdm-type": "accepted"})


def test_a_reply_older_than_its_ttl_is_never_read(backend: Backend) -> None:
    transport = backend.open(reply_ttl=TTL)
    queue = backend.reply_queue()
    transport.send(queue, _reply("Accepted. 45 seconds"), confirm=True)
    time.sleep(PAST_TTL)  # idle: no reader may touch the queue, or RabbitMQ would renew its lease
    with transport.read(queue) as batch:
        assert list(batch.envelopes) == [], f"{backend.name} handed out a reply past its TTL"
        batch.ack()


def test_a_fresh_reply_outlives_an_expired_one(backend: Backend) -> None:
    """Expiry counts from each send: a reply sent after the TTL passed is read, the older one is not."""
    transport = backend.open(reply_ttl=TTL)
    queue = backend.reply_queue()
    transport.send(queue, _reply("old"))
    time.sleep(PAST_TTL)
    transport.send(queue, _reply("new"))
    with transport.read(queue) as batch:
        assert [e.body for e in batch.envelopes] == [b"new"]
        batch.ack()


def _amqp_queue_exists(name: str) -> bool:
    """Ask RabbitMQ over AMQP (passive declare) whether queue ``name`` exists."""
    import amqp

    from tests.conftest import broker_url

    parts = urlsplit(broker_url("rabbitmq-amqp"))
    connection = amqp.Connection(
        f"{parts.hostname}:{parts.port or 5672}", userid=parts.username or "guest", password=parts.password or "guest"
    )
    connection.connect()
    try:
        channel = connection.channel()
        try:
            channel.queue_declare(name, passive=True)
        except amqp.exceptions.NotFound:
            return False
        return True
    finally:
        connection.close()


def test_rabbitmq_collects_an_idle_reply_queue(rabbitmq: Backend) -> None:
    transport = rabbitmq.open(reply_ttl=TTL)
    assert transport.capabilities.queue_expiry
    queue = rabbitmq.reply_queue()
    transport.send(queue, _reply("Accepted. 45 seconds"), confirm=True)
    assert _amqp_queue_exists(queue.name)
    time.sleep(PAST_TTL)
    assert not _amqp_queue_exists(queue.name), "the idle reply queue outlived its x-expires"


def _queue_present(backend: Backend, name: str) -> bool:
    """Whether the broker still holds anything for queue ``name`` (backend-specific look inside)."""
    if backend.name == "redis":
        import redis

        from tests.conftest import broker_url

        client = redis.Redis.from_url(broker_url("redis"))
        try:
            return bool(client.exists(name))
        finally:
            client.close()
    if backend.name == "sqlite":
        with sqlite3.connect(backend.url.removeprefix("sqla+sqlite:///")) as db:
            (count,) = db.execute("SELECT COUNT(*) FROM kombu_queue WHERE name = ?", (name,)).fetchone()
        return bool(count)
    if backend.name == "inmemory":
        from tdm_messaging.transport.memory.broker import broker_named

        return name in broker_named(urlsplit(backend.url).netloc).queue_names()
    raise AssertionError(f"{backend.name}: no way to look inside")


def test_lazy_expiry_drops_stale_replies_and_the_queue_when_touched(lazy: Backend) -> None:
    backend = lazy
    transport = backend.open(reply_ttl=TTL)
    assert not transport.capabilities.queue_expiry, "lazy backends must not claim broker-side queue expiry"
    queue = backend.reply_queue()
    transport.send(queue, _reply("Accepted. 45 seconds"))
    transport.send(queue, _reply("Progress: 1/2 (50%)"))
    assert _queue_present(backend, queue.name)
    time.sleep(PAST_TTL)
    assert _queue_present(backend, queue.name), "no background sweeper: nothing happens until a read"
    with transport.read(queue) as batch:
        assert list(batch.envelopes) == []
        batch.ack()
    assert not _queue_present(backend, queue.name), "an expired reply queue is deleted when touched"
