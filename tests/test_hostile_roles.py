"""Issue 10, deliver 2: no delivery stops a packager, and no poisoned reply queue breaks a poll (public API only).

Arbitrary envelopes (full-Unicode and random bodies, arbitrary header maps with hostile ``tdm-*``
values, huge and deeply nested JSON) go through a ``PackagerWorker`` on the in-memory broker;
then a valid request must still be served, and every envelope the worker cannot use must be
dead-lettered exactly once. Likewise, poison in ``package/<id>`` under ``PackagingClient.status``
is dead-lettered once, the status stays right, and no exception escapes.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tdm_messaging import (
    DEAD_LETTER,
    DELETE_REQUESTS,
    JSON_CONTENT_TYPE,
    PACKAGE_REQUESTS,
    TEXT_CONTENT_TYPE,
    Accepted,
    DecodeContext,
    DecodeError,
    DeleteRequest,
    Envelope,
    Job,
    PackageRequest,
    PackageResult,
    PackagerWorker,
    PackagingClient,
    State,
    decode,
    encode,
    http_view,
    reply_queue,
)
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport

ROLE_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
_docsets = itertools.count()

HOSTILE_TEXT = st.sampled_from(
    [
        "\u00b2",
        "\u00b9.0",
        "1.\u00b2",
        "\u0661.\u0660",
        "1" * 5000,
        "1." + "0" * 5000,
        "1e400",
        "Infinity",
        "zzzz",
        "-1",
        "ffffffff-ffff-7fff-bfff-ffffffffffff",
        "javascript:alert(1)",
        "https://b/p.zip\r\nX: y",
        "http://[::1/api/docsets/5",
        "\x00",
    ]
) | st.text(max_size=60)
HEADER_NAMES = st.sampled_from(
    [
        "tdm-type",
        "tdm-protocol-version",
        "tdm-docset-id",
        "tdm-request-id",
        "tdm-sequence",
        "tdm-timestamp",
        "tdm-requested-at",
        "tdm-formats",
        "tdm-attempt",
    ]
) | st.text(max_size=16)
HEADERS = st.dictionaries(HEADER_NAMES, HOSTILE_TEXT, max_size=6)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | HOSTILE_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=12,
)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _request_json(fields: dict[str, object]) -> bytes:
    base: dict[str, object] = {
        "type": "package_request",
        "docset_id": "5",
        "request_id": "",
        "timestamp": "2026-01-01T00:00:00Z",
        "docset_url": "http://server/api/docsets/5",
        "reply_to": "package/5",
        "requested_at": "2026-01-01T00:00:00Z",
    }
    return json.dumps({**base, **fields}, allow_nan=True).encode()


BODIES = st.one_of(
    st.binary(max_size=500),
    st.text(max_size=300).map(_utf8),
    st.lists(HOSTILE_TEXT, max_size=3).map(lambda lines: _utf8("\n".join(lines))),
    st.sampled_from([b"http://127.0.0.1:8080/api/docsets/1", b"Complete: http://x/a.zip\nSize: \xc2\xb2"]),
    JSON_VALUES.map(lambda value: json.dumps(value, allow_nan=True).encode()),
    st.dictionaries(
        st.sampled_from(["protocol_version", "sequence", "request_id", "docset_url", "formats", "timestamp"]),
        JSON_VALUES,
        min_size=1,
        max_size=2,
    ).map(_request_json),
    st.integers(9, 100_000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(9, 100_000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
)
ENVELOPES = st.builds(
    Envelope,
    BODIES,
    st.sampled_from([JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE, ""]) | st.text(max_size=20),
    HEADERS,
)


def _handler(job: Job) -> PackageResult:
    job.accepted(1)
    return PackageResult(archive_url=f"https://files.test/package/{job.request.docset_id}.zip", size_bytes=1)


def _on_delete(request: DeleteRequest) -> None:
    return None


@contextmanager
def running(worker: PackagerWorker) -> Iterator[list[BaseException]]:
    """Run ``worker`` in a thread for the block; yields the list its exception (if any) lands in."""
    stop = threading.Event()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(stop)
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield failures
    finally:
        stop.set()
        thread.join(10)


def _served(broker: InMemoryBroker, failures: list[BaseException], client: PackagingClient, docset: str) -> State:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not failures:
        state = client.status(docset).state
        if state is State.COMPLETE:
            return state
        time.sleep(0.005)
    assert not failures, f"the worker died: {failures[0]!r}"
    return client.status(docset).state


def _usable_by_worker(envelope: Envelope, source: str) -> bool:
    """Whether the worker would take ``envelope`` as a job (else it must dead-letter it)."""
    try:
        message = decode(envelope, context=DecodeContext(received_at=datetime.now(UTC)))
    except DecodeError:
        return False
    expected = PackageRequest if source == PACKAGE_REQUESTS.name else DeleteRequest
    return isinstance(message, expected)


@ROLE_SETTINGS
@given(
    poison=st.lists(st.tuples(ENVELOPES, st.sampled_from([PACKAGE_REQUESTS, DELETE_REQUESTS])), min_size=1, max_size=4)
)
def test_no_delivery_stops_a_worker(poison: list[tuple[Envelope, object]]) -> None:
    unusable = [(e, q) for e, q in poison if not _usable_by_worker(e, str(q))]
    assume(unusable)  # what the worker can use is a job like any other, tested elsewhere
    broker = InMemoryBroker()
    sender = InMemoryTransport(broker)
    worker = PackagerWorker(
        InMemoryTransport(broker), on_package=_handler, on_delete=_on_delete, retry_backoff_seconds=0
    )
    with running(worker) as failures:
        for envelope, queue in unusable:
            sender.send(queue, envelope)  # type: ignore[arg-type]
        client = PackagingClient(InMemoryTransport(broker))
        docset = f"ok-{next(_docsets)}"
        client.request_package(docset, f"http://server/api/docsets/{docset}")
        assert _served(broker, failures, client, docset) is State.COMPLETE
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
            broker.messages(DELETE_REQUESTS) or broker.unacked_count(DELETE_REQUESTS)
        ):
            time.sleep(0.005)
        assert not failures, f"the worker died: {failures[0]!r}"
    parked = broker.messages(DEAD_LETTER)
    assert len(parked) == len(unusable)  # each once: none lost, none parked twice
    assert sorted(p.body for p in parked) == sorted(e.body for e, _ in unusable)
    assert all(p.header("tdm-dead-letter-reason") for p in parked)
    assert broker.messages(PACKAGE_REQUESTS) == []


def _job(client: PackagingClient, broker: InMemoryBroker, docset: str) -> str:
    """A real job, requested and completed by a packager; returns its request id."""
    worker = PackagerWorker(InMemoryTransport(broker), on_package=_handler, retry_backoff_seconds=0)
    with running(worker) as failures:
        request = client.request_package(docset, f"http://server/api/docsets/{docset}").request
        assert _served(broker, failures, client, docset) is State.COMPLETE
    return request.request_id


@ROLE_SETTINGS
@given(poison=st.lists(ENVELOPES, min_size=1, max_size=5), data=st.data())
def test_a_poisoned_reply_queue_never_breaks_a_poll(poison: list[Envelope], data: st.DataObject) -> None:
    broker = InMemoryBroker()
    client = PackagingClient(InMemoryTransport(broker))
    docset = f"ok-{next(_docsets)}"
    context = DecodeContext(docset_id=docset, received_at=datetime.now(UTC))
    bad = [e for e in poison if _undecodable(e, context)]
    assume(bad)
    request_id = _job(client, broker, docset)
    # Forged but well-formed replies to ids the server never issued must not count either.
    forged_ids = data.draw(st.lists(st.integers(0, (1 << 128) - 1).map(_uuid7), max_size=2))
    sender = InMemoryTransport(broker)
    forged_bodies = []
    for forged_id in forged_ids:
        forged = encode(Accepted(docset_id=docset, request_id=forged_id, timestamp=datetime.now(UTC)))
        forged_bodies.append(forged.body)
        sender.send(reply_queue(docset), forged)
    for envelope in bad:
        sender.send(reply_queue(docset), envelope)
    for _ in range(2):  # the second poll reads what the first kept: same status, nothing new parked
        status = client.status(docset)
        assert (status.state, status.request_id) == (State.COMPLETE, request_id)
        assert http_view(status, now=datetime.now(UTC)).status_code == 303
    # Every undecodable envelope is parked once; a forged id dated in the future (by the ids' own
    # clock) is parked too, and nothing else is.
    parked = [p.body for p in broker.messages(DEAD_LETTER)]
    for envelope in bad:
        parked.remove(envelope.body)
    assert all(body in forged_bodies for body in parked), parked
    kept = [decode(e, context=context) for e in broker.messages(reply_queue(docset))]
    assert {m.request_id for m in kept} == {request_id}


def _uuid7(bits: int) -> str:
    """Any UUIDv7: the version and variant bits set, the rest (its time included) as drawn."""
    value = (bits & ~(0xF << 76) & ~(0b11 << 62)) | (0x7 << 76) | (0b10 << 62)
    return str(uuid.UUID(int=value))


def _undecodable(envelope: Envelope, context: DecodeContext) -> bool:
    try:
        decode(envelope, context=context)
    except DecodeError:
        return True
    return False


def test_the_reported_forged_accepted_with_request_id_zzzz() -> None:
    # Issue 10: an Accepted with request_id "zzzz" in package/2 made GET /dump answer 202 for ever.
    broker = InMemoryBroker()
    client = PackagingClient(InMemoryTransport(broker))
    request_id = _job(client, broker, "2")
    forged = Accepted(docset_id="2", request_id=request_id, timestamp=datetime.now(UTC))
    body = json.loads(encode(forged).body)
    body["request_id"] = "zzzz"
    InMemoryTransport(broker).send(reply_queue("2"), Envelope(json.dumps(body).encode(), JSON_CONTENT_TYPE, {}))
    status = client.status("2")
    assert (status.state, status.request_id) == (State.COMPLETE, request_id)
    assert http_view(status, now=datetime.now(UTC)).status_code == 303
    [parked] = broker.messages(DEAD_LETTER)
    assert "request_id" in (parked.header("tdm-dead-letter-reason") or "")


def test_the_reported_text_request_with_a_superscript_sequence() -> None:
    # Issue 10: this request raised ValueError in PackagerWorker.run, unacknowledged, for ever.
    broker = InMemoryBroker()
    worker = PackagerWorker(InMemoryTransport(broker), on_package=_handler, retry_backoff_seconds=0)
    poison = Envelope(b"http://127.0.0.1:8080/api/docsets/1", TEXT_CONTENT_TYPE, {"tdm-sequence": "\u00b2"})
    with running(worker) as failures:
        InMemoryTransport(broker).send(PACKAGE_REQUESTS, poison)
        client = PackagingClient(InMemoryTransport(broker))
        client.request_package("1", "http://127.0.0.1:8080/api/docsets/1")
        assert _served(broker, failures, client, "1") is State.COMPLETE
    [parked] = broker.messages(DEAD_LETTER)
    assert parked.body == poison.body and "tdm-sequence" in (parked.header("tdm-dead-letter-reason") or "")


def test_the_reported_poison_replies_keep_the_status() -> None:
    # Issue 10: the same poison as a reply in package/<id> made every /dump of the docset a 500.
    broker = InMemoryBroker()
    client = PackagingClient(InMemoryTransport(broker))
    request_id = _job(client, broker, "7")
    poison = [
        Envelope(b"Complete: http://x/a.zip\nSize: \xc2\xb2", TEXT_CONTENT_TYPE, {}),
        Envelope(b"Accepted.", TEXT_CONTENT_TYPE, {"tdm-sequence": "1" * 5000}),
        Envelope(b'{"a":' * 100_000, JSON_CONTENT_TYPE, {}),
        Envelope(b'{"type": "accepted", "estimate_seconds": 1e400}', JSON_CONTENT_TYPE, {}),
    ]
    for envelope in poison:
        InMemoryTransport(broker).send(reply_queue("7"), envelope)
    for _ in range(2):
        status = client.status("7")
        assert (status.state, status.request_id) == (State.COMPLETE, request_id)
        assert http_view(status, now=datetime.now(UTC)).status_code == 303
    assert sorted(p.body for p in broker.messages(DEAD_LETTER)) == sorted(e.body for e in poison)


@pytest.mark.parametrize("name", ["tdm-next-sequence", "tdm-attempt"])
@pytest.mark.parametrize("value", ["9" * 25, str(1 << 63), "9" * 4000, "\u00b2", "-5", "0", "\U000a5b43"])
def test_worker_headers_of_a_valid_request_never_stop_a_worker(name: str, value: str) -> None:
    # The worker reads tdm-attempt and tdm-next-sequence itself (the codec does not): a value past
    # what a sequence may hold must not make building a reply raise out of PackagerWorker.run.
    broker = InMemoryBroker()
    worker = PackagerWorker(InMemoryTransport(broker), on_package=_handler, retry_backoff_seconds=0)
    client = PackagingClient(InMemoryTransport(broker))
    first = f"ok-{next(_docsets)}"
    request = client.request_package(first, f"http://server/api/docsets/{first}").request
    [sent] = broker.messages(PACKAGE_REQUESTS)
    assert decode(sent) == request
    InMemoryTransport(broker).send(
        PACKAGE_REQUESTS, Envelope(sent.body, sent.content_type, {**sent.headers, name: value})
    )
    with running(worker) as failures:
        second = f"ok-{next(_docsets)}"
        client.request_package(second, f"http://server/api/docsets/{second}")
        assert _served(broker, failures, client, second) is State.COMPLETE
        assert _served(broker, failures, client, first) is State.COMPLETE
    assert not failures
