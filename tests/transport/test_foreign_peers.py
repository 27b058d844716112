"""Peers written from docs/protocol.md alone, on real brokers: untyped replies, and replies sent to what reply_to says.

The AMQP peer is raw py-amqp (no kombu, no tdm_messaging): it takes the request from the
namespaced ``docsets/package`` queue, reads ``reply_to`` from the JSON body and publishes to
exactly that queue name through the default exchange. The STOMP peer is the raw-socket
:class:`SeedPeer`, spelling ``reply_to`` as § 2.1 says for its broker.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import amqp
import pytest

from tdm_messaging.destinations import reply_queue
from tests.transport.conftest import (
    ARCHIVE_SIZE,
    Backend,
    archive_url,
    docset_url,
    make_backend,
    poll_until,
    unique_docset,
    unique_namespace,
)
from tests.transport.seed_peer import Frame, SeedPeer, seed_destination

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _complete_json(request: dict[str, Any]) -> bytes:
    docset = request["docset_id"]
    body = {
        "type": "complete",
        "docset_id": docset,
        "request_id": request["request_id"],
        "sequence": 2,
        "timestamp": _now(),
        "archive_url": archive_url(docset),
        "size_bytes": ARCHIVE_SIZE,
    }
    return json.dumps(body).encode()


# -- a raw AMQP peer -------------------------------------------------------------------------------


@contextmanager
def amqp_channel(url: str) -> Iterator[Any]:
    parts = urlsplit(url)
    vhost = unquote(parts.path[1:]) or "/"
    conn = amqp.Connection(
        host=f"{parts.hostname}:{parts.port or 5672}",
        userid=parts.username or "guest",
        password=parts.password or "guest",
        virtual_host=vhost,
    )
    conn.connect()
    try:
        yield conn.channel()
    finally:
        conn.close()


def take_request(channel: Any, queue: str, docset: str, *, timeout: float = 20.0) -> dict[str, Any]:
    """basic_get from ``queue`` until the request for ``docset`` comes (a deadline, not a sleep, ends it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = channel.basic_get(queue=queue, no_ack=False)
        if message is None:
            time.sleep(0.02)  # polling an empty queue: nothing to wait on but the next basic_get
            continue
        channel.basic_ack(message.delivery_tag)
        body = json.loads(message.body)
        if body.get("docset_id") == docset:
            return dict(body)
    raise AssertionError(f"no package request for {docset} in {queue} within {timeout} s")


def test_amqp_peer_that_replies_to_reply_to_lands_in_the_namespace(tmp_path: Path) -> None:
    from tdm_messaging.server import PackagingClient
    from tdm_messaging.status import State

    backend = make_backend("rabbitmq-amqp", tmp_path)
    backend.namespace = namespace = unique_namespace()
    docset = unique_docset()
    backend.track(reply_queue(docset))
    try:
        client = PackagingClient(backend.open())
        sent = client.request_package(docset, docset_url(docset)).request
        assert sent.reply_to == f"{namespace}/package/{docset}"
        with amqp_channel(backend.url_with()) as channel:
            request = take_request(channel, f"{namespace}/docsets/package", docset)
            assert request["reply_to"] == sent.reply_to
            # Exactly what reply_to says, through the default exchange, with the mandatory flag: an
            # unroutable reply (a queue outside the namespace) would come back instead of vanishing.
            for body, content_type in ((b"Accepted. 45 seconds", "text/plain"), (_complete_json(request), None)):
                properties = {"content_type": content_type} if content_type else {}
                channel.basic_publish(
                    amqp.Message(body, **properties), exchange="", routing_key=request["reply_to"], mandatory=True
                )
        status = poll_until(client, docset, State.COMPLETE)
        assert status.request_id == sent.request_id
        assert status.result is not None and status.result.archive_url == archive_url(docset)
    finally:
        backend.cleanup()


@pytest.mark.parametrize("body_kind", ["text", "json"])
def test_amqp_replies_without_content_type_are_decoded(body_kind: str, tmp_path: Path) -> None:
    from tdm_messaging.server import PackagingClient
    from tdm_messaging.status import State

    backend = make_backend("rabbitmq-amqp", tmp_path)
    backend.namespace = unique_namespace()
    docset = unique_docset()
    backend.track(reply_queue(docset))
    try:
        client = PackagingClient(backend.open())
        sent = client.request_package(docset, docset_url(docset)).request
        if body_kind == "text":
            body = f"Complete: {archive_url(docset)}\nSize: {ARCHIVE_SIZE}".encode()
        else:
            body = _complete_json(sent.model_dump(mode="json"))
        with amqp_channel(backend.url_with()) as channel:
            message = amqp.Message(body)  # no content_type property at all
            assert "content_type" not in message.properties
            channel.basic_publish(message, exchange="", routing_key=sent.reply_to, mandatory=True)
        status = client.status(docset)
        assert status.state is State.COMPLETE, status
        assert status.request_id == sent.request_id
        assert status.result is not None and status.result.size_bytes == ARCHIVE_SIZE
    finally:
        backend.cleanup()


# -- a raw STOMP peer ------------------------------------------------------------------------------

# (backend, our transport's URL parameters, how the peer reaches a queue we declared: see test_seed_peer.py)
STOMP_SETUPS = [
    pytest.param(("rabbitmq-stomp", {"reply_expiry": "policy"}, "/queue/"), id="rabbitmq-policy"),
    pytest.param(("rabbitmq-stomp", {}, "/amq/queue/"), id="rabbitmq-amq-queue"),
    pytest.param(("activemq-stomp", {}, "/queue/"), id="activemq"),
]


@pytest.fixture
def stomp_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    name, params, _prefix = request.param
    handle = make_backend(name, tmp_path)
    handle.cleanup_params = dict(params)
    handle.namespace = unique_namespace()
    try:
        yield handle
    finally:
        handle.cleanup()


def _take_stomp_request(peer: SeedPeer, destination: str, docset: str) -> Frame:
    peer.subscribe(destination)
    while True:
        frame = peer.receive()
        peer.ack(frame)
        if json.loads(frame.body).get("docset_id") == docset:
            peer.unsubscribe()
            return frame


@pytest.mark.parametrize("stomp_backend", STOMP_SETUPS, indirect=True)
def test_stomp_peer_replies_to_reply_to_without_content_type(
    stomp_backend: Backend, request: pytest.FixtureRequest
) -> None:
    """The peer spells reply_to for its broker (§ 2.1) and sends text and JSON with no content-type header."""
    from tdm_messaging.server import PackagingClient
    from tdm_messaging.status import State

    _name, params, prefix = request.node.callspec.params["stomp_backend"]
    backend = stomp_backend
    docset = unique_docset()
    backend.track(reply_queue(docset))
    client = PackagingClient(backend.open(**params))
    sent = client.request_package(docset, docset_url(docset)).request
    assert sent.reply_to == f"{backend.namespace}/package/{docset}"

    with SeedPeer(backend.url_with()) as peer:
        frame = _take_stomp_request(
            peer, seed_destination(f"{backend.namespace}/docsets/package", peer.dialect), docset
        )
        payload = json.loads(frame.body)
        reply_to = seed_destination(payload["reply_to"], peer.dialect).replace("/queue/", prefix, 1)
        peer.send(reply_to, "Accepted. 45 seconds", content_type=None)
        peer.send(reply_to, _complete_json(payload), content_type=None)

    status = poll_until(client, docset, State.COMPLETE)
    assert status.request_id == sent.request_id
    assert status.result is not None and status.result.archive_url == archive_url(docset)
    assert client.status(docset) == status


# -- markers met by an AMQP reader ----------------------------------------------------------------


def test_an_amqp_read_passes_on_stomp_markers_and_drops_probes(tmp_path: Path) -> None:
    """§ 6.2: a live foreign marker goes back to the queue, a stale one and a probe are dropped, none is a reply."""
    from tdm_messaging.codec import encode
    from tdm_messaging.ids import new_request_id
    from tdm_messaging.models import Accepted
    from tdm_messaging.server import PackagingClient
    from tdm_messaging.status import State

    amqp_side, stomp_side = make_backend("rabbitmq-amqp", tmp_path), make_backend("rabbitmq-stomp", tmp_path)
    amqp_side.namespace = stomp_side.namespace = namespace = unique_namespace()
    docset = unique_docset()
    queue = amqp_side.track(reply_queue(docset))
    try:
        transport = amqp_side.open()
        reply = Accepted(docset_id=docset, request_id=new_request_id(), sequence=1, timestamp=datetime.now(UTC))
        transport.send(queue, encode(reply), confirm=True)
        now_ms = int(time.time() * 1000)
        with SeedPeer(stomp_side.url_with()) as peer:
            wire = seed_destination(f"{namespace}/{queue.name}", "rabbitmq").replace("/queue/", "/amq/queue/", 1)
            marker = {"tdm-read-marker": "foreign-live", "tdm-read-marker-at": str(now_ms), "expiration": "60000"}
            stale = {"tdm-read-marker": "foreign-stale", "tdm-read-marker-at": str(now_ms - 120_000)}
            peer.send(wire, b"", content_type=None, extra=marker)
            peer.send(wire, b"", content_type=None, extra=stale)
            peer.send(wire, b"", content_type=None, extra={"tdm-declare-probe": "1"})
        with transport.read(queue) as batch:
            assert [e.body for e in batch.envelopes] == [encode(reply).body]
            batch.ack()
        with amqp_channel(amqp_side.url_with()) as channel:
            left = channel.basic_get(queue=f"{namespace}/{queue.name}", no_ack=False)
            assert left is not None and left.headers["tdm-read-marker"] == "foreign-live"
            assert 0 < int(left.properties["expiration"]) <= 60_000
            channel.basic_reject(left.delivery_tag, requeue=True)
        # and a poll with the marker still in the queue reads the status as usual, dead-letters nothing
        transport.send(queue, encode(reply), confirm=True)
        assert PackagingClient(transport).status(docset).state is State.ACCEPTED
        with amqp_channel(amqp_side.url_with()) as channel, pytest.raises(amqp.exceptions.NotFound):
            channel.queue_declare(queue=f"{namespace}/docsets/dead-letter", passive=True)  # never even declared
    finally:
        amqp_side.cleanup()
        stomp_side.cleanup()
