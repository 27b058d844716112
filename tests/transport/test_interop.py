"""Cross-protocol interop on one RabbitMQ: a STOMP server with an AMQP packager, and the reverse."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdm_messaging.destinations import reply_queue
from tdm_messaging.envelope import Envelope
from tests.transport.conftest import (
    ARCHIVE_SIZE,
    ScriptedPackager,
    archive_url,
    docset_url,
    make_backend,
    poll_until,
    running_worker,
    unique_docset,
    unique_namespace,
)

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]

DIRECTIONS = [
    pytest.param("rabbitmq-stomp", "rabbitmq-amqp", id="server-stomp-packager-amqp"),
    pytest.param("rabbitmq-amqp", "rabbitmq-stomp", id="server-amqp-packager-stomp"),
]


@pytest.mark.parametrize(("server_side", "packager_side"), DIRECTIONS)
@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_full_lifecycle_across_protocols(
    server_side: str, packager_side: str, content_type: str, tmp_path: Path
) -> None:
    from tdm_messaging.server import PackagingClient
    from tdm_messaging.status import State

    server, packager_broker = make_backend(server_side, tmp_path), make_backend(packager_side, tmp_path)
    server.namespace = packager_broker.namespace = unique_namespace()  # shared, and no stray requests
    docset = unique_docset()
    server.track(reply_queue(docset))
    try:
        client = PackagingClient(server.open(), content_type=content_type)
        packager = ScriptedPackager(docset)
        with running_worker(packager_broker.open(), packager, content_type=content_type):
            request = client.request_package(docset, docset_url(docset)).request
            working = poll_until(client, docset, State.IN_PROGRESS)
            assert working.request_id == request.request_id
            assert working.estimate_seconds == 45
            packager.gate.set()
            done = poll_until(client, docset, State.COMPLETE)
        assert done.result is not None
        assert (done.result.archive_url, done.result.size_bytes) == (archive_url(docset), ARCHIVE_SIZE)
        # The other protocol's client reads the very same queue, and sees the same status.
        assert PackagingClient(packager_broker.open(), content_type=content_type).status(docset) == done
        assert client.status(docset) == done
    finally:
        server.cleanup()
        packager_broker.cleanup()


@pytest.mark.parametrize(("sender_side", "reader_side"), DIRECTIONS)
def test_envelopes_cross_protocols_intact(sender_side: str, reader_side: str, tmp_path: Path) -> None:
    sender_backend, reader_backend = make_backend(sender_side, tmp_path), make_backend(reader_side, tmp_path)
    queue = sender_backend.reply_queue()
    try:
        sent = Envelope(b"Accepted. 45 seconds", "text/plain", {"tdm-type": "accepted", "app-note": "a:b"})
        sender_backend.open().send(queue, sent, confirm=True)
        with reader_backend.open().read(queue) as batch:
            [got] = batch.envelopes
            batch.ack()
        assert (got.body, got.content_type) == (sent.body, sent.content_type)
        assert got.header("tdm-type") == "accepted"
        assert got.header("app-note") == "a:b"
    finally:
        sender_backend.cleanup()
        reader_backend.cleanup()


@pytest.mark.parametrize(("sender", "reader"), DIRECTIONS)
def test_trace_context_headers_cross_protocols(sender: str, reader: str, tmp_path: Path) -> None:
    """traceparent/tracestate as a STOMP frame header arrive as AMQP message headers, and back (docs/protocol.md)."""
    from tdm_messaging.tracing import TraceContext, trace_of, with_trace

    writer, receiver = make_backend(sender, tmp_path), make_backend(reader, tmp_path)
    writer.namespace = receiver.namespace = unique_namespace()
    docset = unique_docset()
    writer.track(reply_queue(docset))
    # tracestate values may hold ':' which STOMP 1.2 escapes in headers; it must arrive as sent
    trace = TraceContext("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "rojo=00f067aa0ba902b7,congo=t:61")
    try:
        writer.open().send(reply_queue(docset), with_trace(Envelope(b"{}", "application/json"), trace), confirm=True)
        with receiver.open().read(reply_queue(docset)) as batch:
            assert [trace_of(e.headers) for e in batch.envelopes] == [trace]
            batch.ack()
    finally:
        writer.cleanup()
        receiver.cleanup()
