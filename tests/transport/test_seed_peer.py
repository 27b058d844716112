"""Our helpers against a peer written from the seed alone (raw STOMP 1.2 frames, plain SENDs, text lines)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tdm_messaging.destinations import reply_queue
from tests.transport.conftest import (
    ARCHIVE_SIZE,
    Backend,
    ScriptedPackager,
    archive_url,
    docset_url,
    make_backend,
    poll_until,
    running_worker,
    unique_docset,
)
from tests.transport.seed_peer import Frame, SeedPeer, SeedPeerError, seed_destination

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]

TEXT = "text/plain"

# How each STOMP broker is set up so that a plain-SENDing seed peer can share reply queues with us:
#   (backend, our transport's extra URL parameters, the prefix the seed peer writes replies to).
# RabbitMQ in the default reply_expiry=arguments mode declares reply queues with x-expires, and a
# plain SEND to /queue/... then fails (see test_rabbitmq_arguments_mode_refuses_a_plain_send);
# so either our side runs in policy mode (the broker policy gives the expiry), or the peer writes
# to /amq/queue/..., which declares nothing.
SETUPS = [
    pytest.param(("rabbitmq-stomp", {"reply_expiry": "policy"}, "/queue/"), id="rabbitmq-policy"),
    pytest.param(("rabbitmq-stomp", {}, "/amq/queue/"), id="rabbitmq-arguments-amq-queue"),
    pytest.param(("activemq-stomp", {}, "/queue/"), id="activemq"),
]


@pytest.fixture
def stomp_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    name, params, _prefix = request.param
    handle = make_backend(name, tmp_path)
    handle.cleanup_params = dict(params)
    try:
        yield handle
    finally:
        handle.cleanup()


def _reply_destination(peer: SeedPeer, docset: str, prefix: str) -> str:
    return seed_destination(f"package/{docset}", peer.dialect).replace("/queue/", prefix, 1)


def _take_request_for(peer: SeedPeer, url: str) -> Frame:
    """The seed packager's loop: take requests off docsets/package until ours (others: acked as litter)."""
    peer.subscribe(seed_destination("docsets/package", peer.dialect))
    while True:
        frame = peer.receive()
        if frame.body.decode().strip() == url:
            return frame
        peer.ack(frame)  # a request some earlier test left behind: nobody waits for it


@pytest.mark.parametrize("stomp_backend", SETUPS, indirect=True)
def test_a_seed_packager_answers_our_server(stomp_backend: Backend, request: pytest.FixtureRequest) -> None:
    from tdm_messaging.server import PackagingClient
    from tdm_messaging.status import State

    _name, params, prefix = request.node.callspec.params["stomp_backend"]
    backend = stomp_backend
    docset = unique_docset()
    backend.track(reply_queue(docset))
    client = PackagingClient(backend.open(**params), content_type=TEXT)
    sent = client.request_package(docset, docset_url(docset)).request

    with SeedPeer(backend.url_with()) as peer:
        frame = _take_request_for(peer, docset_url(docset))
        assert frame.headers.get("content-type", "").startswith(TEXT)
        reply_to = _reply_destination(peer, docset, prefix)
        peer.send(reply_to, "Accepted. 45 seconds")
        peer.send(reply_to, f"Complete: {archive_url(docset)}\nSize: {ARCHIVE_SIZE}")
        peer.ack(frame)
        peer.unsubscribe()

    # Polled until complete, not read once: ActiveMQ does not keep send order between the seed's
    # non-persistent SENDs and our persistent read marker, so a first read may not reach them yet.
    status = poll_until(client, docset, State.COMPLETE)
    assert status.result is not None
    # the seed's reply carried no request id: it was taken as answering the newest request
    assert status.request_id == status.result.request_id == sent.request_id
    assert (status.result.archive_url, status.result.size_bytes) == (archive_url(docset), ARCHIVE_SIZE)
    assert client.status(docset) == status, "the seed's replies must survive a poll"


# A seed-style server subscribes before any reply exists, so /amq/queue/ (which declares nothing)
# cannot serve it: on RabbitMQ only policy mode lets a plain-SUBSCRIBing seed server in.
SERVER_SETUPS = [p for p in SETUPS if p.id != "rabbitmq-arguments-amq-queue"]


@pytest.mark.parametrize("stomp_backend", SERVER_SETUPS, indirect=True)
def test_our_worker_answers_a_seed_server(stomp_backend: Backend, request: pytest.FixtureRequest) -> None:
    _name, params, prefix = request.node.callspec.params["stomp_backend"]
    backend = stomp_backend
    docset = unique_docset()
    backend.track(reply_queue(docset))
    packager = ScriptedPackager(docset, gated=False)
    bodies: list[str] = []
    with running_worker(backend.open(**params), packager, content_type=TEXT), SeedPeer(backend.url_with()) as peer:
        peer.send(seed_destination("docsets/package", peer.dialect), docset_url(docset))
        peer.subscribe(_reply_destination(peer, docset, prefix))
        while not bodies or not bodies[-1].startswith(("Complete:", "Failed:")):
            frame = peer.receive()
            peer.ack(frame)
            assert frame.headers.get("content-type", "").startswith(TEXT), frame.headers
            bodies.append(frame.body.decode())
        peer.unsubscribe()
    assert len(packager.jobs) == 1
    assert bodies[0].strip() == "Accepted. 45 seconds"
    assert any(body.startswith("Progress:") for body in bodies[1:-1])
    assert bodies[-1].splitlines()[:2] == [f"Complete: {archive_url(docset)}", f"Size: {ARCHIVE_SIZE}"]


def test_rabbitmq_arguments_mode_refuses_a_plain_send(tmp_path: Path) -> None:
    """The trap from the design notes, pinned: x-expires on our declare, none on the seed's SEND."""
    backend = make_backend("rabbitmq-stomp", tmp_path)
    docset = unique_docset()
    backend.track(reply_queue(docset))
    try:
        backend.open().declare(reply_queue(docset))  # default reply_expiry=arguments: x-expires
        with SeedPeer(backend.url_with()) as peer, pytest.raises(SeedPeerError, match="PRECONDITION_FAILED"):
            peer.send(seed_destination(f"package/{docset}", "rabbitmq"), "Accepted. 45 seconds")
    finally:
        backend.cleanup()
