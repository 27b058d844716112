"""The in-memory wing's own rules: its URL, named brokers shared within a process, private bare URLs."""

from __future__ import annotations

import gc

import pytest

from tdm_messaging import open_transport
from tdm_messaging.destinations import PACKAGE_REQUESTS, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import ConfigurationError
from tdm_messaging.transport.memory.backend import DEFAULT_REPLY_TTL_SECONDS, InMemoryTransport
from tdm_messaging.transport.memory.broker import broker_named


def _take(transport: InMemoryTransport) -> list[bytes]:
    with transport.read(PACKAGE_REQUESTS) as batch:
        batch.ack()
        return [e.body for e in batch.envelopes]


def test_transports_of_one_name_share_a_broker_and_other_names_do_not() -> None:
    a = open_transport("inmemory://shared-a")
    b = open_transport("inmemory://shared-a")
    other = open_transport("inmemory://shared-b")
    assert isinstance(a, InMemoryTransport) and isinstance(b, InMemoryTransport)
    assert isinstance(other, InMemoryTransport)
    a.send(PACKAGE_REQUESTS, Envelope(b"one", "text/plain"))
    assert _take(other) == []
    assert _take(b) == [b"one"]
    assert a.broker is b.broker is broker_named("shared-a")


def test_a_bare_url_is_a_broker_of_its_own() -> None:
    a = open_transport("inmemory://")
    b = open_transport("inmemory://")
    assert isinstance(a, InMemoryTransport) and isinstance(b, InMemoryTransport)
    a.send(PACKAGE_REQUESTS, Envelope(b"private", "text/plain"))
    assert _take(b) == []
    assert _take(a) == [b"private"]


def test_a_named_broker_goes_when_nothing_holds_it() -> None:
    transport = open_transport("inmemory://short-lived")
    transport.send(PACKAGE_REQUESTS, Envelope(b"kept while open", "text/plain"))
    transport.close()
    del transport
    gc.collect()
    assert _take(InMemoryTransport.from_url("inmemory://short-lived")) == []


def test_reply_ttl_and_namespace_come_from_the_url() -> None:
    plain = InMemoryTransport.from_url("inmemory://ttl")
    assert plain._ttl_ms == int(DEFAULT_REPLY_TTL_SECONDS * 1000)
    assert InMemoryTransport.from_url("inmemory://ttl?reply_ttl=2.5")._ttl_ms == 2500
    namespaced = open_transport("inmemory://ns?namespace=demo")
    namespaced.send(reply_queue("5"), Envelope(b"r", "text/plain"))
    assert broker_named("ns").queue_names() == ["demo/package/5"]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("inmemory://x?reply_ttl=0", "reply_ttl"),
        ("inmemory://x?reply_ttl=-3", "reply_ttl"),
        ("inmemory://x?reply_ttl=inf", "reply_ttl"),
        ("inmemory://x?reply_ttl=nan", "reply_ttl"),
        ("inmemory://x?reply_ttl=%D9%A5", "reply_ttl"),
        ("inmemory://x?reply_ttl=", "reply_ttl"),
        ("inmemory://x?ttl=5", "ttl"),
        ("inmemory://x/some/path", "path"),
    ],
)
def test_a_bad_url_is_a_configuration_error_naming_what(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        open_transport(url)
