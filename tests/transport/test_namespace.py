"""Namespaces: one broker, several deployments (or test runs), no shared queues."""

from __future__ import annotations

import threading
import uuid

import pytest

from tdm_messaging.destinations import PACKAGE_REQUESTS, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import ConfigurationError
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport
from tdm_messaging.transport import open_transport
from tdm_messaging.transport.base import Delivery, Transport
from tdm_messaging.transport.namespace import NamespacedTransport, split_namespace
from tdm_messaging.transport.stomp.dialect import Dialect, to_wire_name
from tests.conftest import broker_url


def test_split_namespace() -> None:
    assert split_namespace("memory://") == ("memory://", None)
    assert split_namespace("amqp://h//?namespace=ns&reply_ttl=5") == ("amqp://h//?reply_ttl=5", "ns")
    assert split_namespace("memory://?namespace=ns") == ("memory://", "ns")


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("memory://?namespace=", "empty"),
        ("memory://?namespace=a/b", "'/'"),
        ("memory://?namespace=a&namespace=b", "once"),
    ],
)
def test_bad_namespaces(url: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        split_namespace(url)


def test_names_and_deliveries() -> None:
    broker = InMemoryBroker()
    plain = InMemoryTransport(broker)
    spaced = NamespacedTransport(InMemoryTransport(broker), namespace="staging")
    spaced.send(PACKAGE_REQUESTS, Envelope(b"in staging"))
    plain.send(PACKAGE_REQUESTS, Envelope(b"in prod"))
    assert broker.queue_names() == sorted(["docsets/package", "staging/docsets/package"])
    with spaced.read(PACKAGE_REQUESTS) as batch:
        assert [e.body for e in batch.envelopes] == [b"in staging"]
        batch.ack()
    seen: list[Delivery] = []
    stop = threading.Event()
    spaced.send(reply_queue("5"), Envelope(b"reply"))

    def handler(delivery: Delivery) -> None:
        seen.append(delivery)
        stop.set()

    spaced.consume([reply_queue("5")], handler, stop=stop)
    assert seen[0].destination == reply_queue("5")  # the logical name, not the prefixed one
    assert [e.body for e in broker.messages("docsets/package")] == [b"in prod"]
    wire = to_wire_name(spaced._outer(reply_queue("5")), Dialect.RABBITMQ)
    assert wire == "/queue/staging%2Fpackage%2F5"


@pytest.mark.parametrize("name", ["rabbitmq-stomp", "activemq-stomp", "rabbitmq-amqp", "redis"])
def test_namespaces_are_apart_on_real_brokers(name: str) -> None:
    url = broker_url(name)
    ns_a, ns_b = f"nsa{uuid.uuid4().hex[:8]}", f"nsb{uuid.uuid4().hex[:8]}"
    sep = "&" if "?" in url else "?"
    dest = reply_queue(f"ns-{uuid.uuid4().hex[:8]}")
    a: Transport = open_transport(f"{url}{sep}namespace={ns_a}")
    b: Transport = open_transport(f"{url}{sep}namespace={ns_b}")
    try:
        assert isinstance(a, NamespacedTransport)
        a.send(dest, Envelope(b"for a", "text/plain"), confirm=True)
        with b.read(dest) as batch:
            assert list(batch.envelopes) == []
        with a.read(dest) as batch:
            assert [e.body for e in batch.envelopes] == [b"for a"]
            batch.ack()
    finally:
        a.close()
        b.close()


def test_address_is_the_full_queue_name() -> None:
    plain = InMemoryTransport(InMemoryBroker())
    assert plain.address(reply_queue("5")) == "package/5"
    spaced = NamespacedTransport(plain, namespace="staging")
    assert spaced.address(reply_queue("5")) == "staging/package/5"
    assert spaced.address(PACKAGE_REQUESTS) == "staging/docsets/package"
    nested = NamespacedTransport(spaced, namespace="outer")
    assert nested.address(reply_queue("5")) == "staging/outer/package/5"


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_a_peer_replying_to_reply_to_is_heard_inside_the_namespace(content_type: str) -> None:
    """docs/protocol.md § 2.3: reply_to is the namespaced name, so a peer that takes it literally lands right."""
    from tdm_messaging.codec import decode, encode
    from tdm_messaging.destinations import Destination, DestinationKind
    from tdm_messaging.models import Accepted, PackageRequest
    from tdm_messaging.server import PackagingClient
    from tdm_messaging.status import State

    broker = InMemoryBroker()
    client = PackagingClient(NamespacedTransport(InMemoryTransport(broker), namespace="ns1"), content_type=content_type)
    sent = client.request_package("7", "http://server/api/docsets/7").request
    assert sent.reply_to == "ns1/package/7"
    # The peer sees the broker's queues only: no namespace logic, just what the request says.
    raw = InMemoryTransport(broker)
    [envelope] = broker.messages("ns1/docsets/package")
    request = decode(envelope)
    assert isinstance(request, PackageRequest) and request.reply_to == "ns1/package/7"
    accepted = Accepted(docset_id="7", request_id=request.request_id, sequence=1, timestamp=request.timestamp)
    raw.send(Destination(request.reply_to, DestinationKind.REPLY), encode(accepted, content_type))
    assert client.status("7").state is State.ACCEPTED
    assert broker.messages("package/7") == []
