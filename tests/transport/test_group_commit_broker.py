"""Group commit on real brokers: concurrent request_package calls all land; on AMQP they share backend calls,
and one caller's refused send fails no other caller's sends."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from tdm_messaging.codec import decode
from tdm_messaging.destinations import PACKAGE_REQUESTS, Destination, DestinationKind, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import SendNotConfirmedError
from tdm_messaging.models import PackageRequest
from tdm_messaging.server import PackagingClient
from tdm_messaging.transport import Transport, open_transport
from tests.conftest import broker_url

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]

_THREADS = 4
_CALLS = 12  # per thread


def _namespaced(name: str) -> str:
    url = broker_url(name)
    return f"{url}{'&' if '?' in url else '?'}namespace=gc-{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["rabbitmq-amqp", "rabbitmq-stomp"])
def transport(request: pytest.FixtureRequest) -> Iterator[Transport]:
    with open_transport(_namespaced(request.param)) as opened:
        yield opened


def _count_calls(inner: Any) -> list[int]:
    """Count the backend's ``_send_many`` calls on ``inner`` (the transport under the namespace)."""
    counted = [0]
    real: Callable[..., None] = inner._send_many

    def counting(sends: Sequence[tuple[Destination, Envelope]], **kwargs: bool) -> None:
        counted[0] += 1
        real(sends, **kwargs)

    inner._send_many = counting
    return counted


def _read_all(transport: Transport, destination: Destination) -> list[Envelope]:
    taken: list[Envelope] = []
    while True:
        with transport.read(destination, limit=1000) as batch:
            batch.ack()
            if not batch.envelopes:
                return taken
            taken += batch.envelopes


def test_concurrent_request_package_calls_all_land(transport: Transport) -> None:
    inner: Any = transport._inner  # type: ignore[attr-defined]
    calls = _count_calls(inner)
    client = PackagingClient(transport)
    docsets = [[f"gc-{t}-{i}" for i in range(_CALLS)] for t in range(_THREADS)]
    start = threading.Barrier(_THREADS)
    errors: list[BaseException] = []

    def submit(ids: list[str]) -> None:
        try:
            start.wait()
            for docset in ids:
                client.request_package(docset, f"http://server/api/docsets/{docset}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(ids,)) for ids in docsets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    every = sorted(d for ids in docsets for d in ids)
    try:
        assert errors == [] and not any(t.is_alive() for t in threads)
        # What arrived, read back: one request per docset in the requests queue, one copy in each reply queue.
        requests = [decode(e) for e in _read_all(transport, PACKAGE_REQUESTS)]
        assert all(isinstance(r, PackageRequest) for r in requests)
        assert sorted(r.docset_id for r in requests if isinstance(r, PackageRequest)) == every
        for docset in every:
            copies = _read_all(transport, reply_queue(docset))
            assert [getattr(decode(e), "docset_id", None) for e in copies] == [docset]
    finally:
        for docset in every:
            transport.delete(reply_queue(docset))
        transport.delete(PACKAGE_REQUESTS)
    groups = inner._group_commit()
    if "Kombu" in type(inner).__name__:
        # AMQP groups them: fewer backend calls than requests, and every request in one.
        assert groups is not None and groups.callers == len(every)
        assert calls[0] == groups.groups < len(every), (calls[0], len(every))
    else:
        # STOMP does not (its confirm waits overlap already, without a lock): one call per request.
        assert groups is None and calls[0] == len(every)


def test_amqp_one_callers_refused_send_fails_no_other_callers_sends() -> None:
    """Three callers in one group, the middle one sending to a permanent queue gone since this connection
    declared it (the broker returns it): only that caller fails, with its own index; the others' sends are stored."""
    from tdm_messaging.transport.kombu.backend import KombuTransport

    url = broker_url("rabbitmq-amqp")
    run = uuid.uuid4().hex[:10]
    gone = Destination(f"gc-test-{run}/gone", DestinationKind.PERMANENT)
    kept = Destination(f"gc-test-{run}/kept", DestinationKind.PERMANENT)
    with KombuTransport.from_url(url) as transport, KombuTransport.from_url(url) as other:
        try:
            transport.declare(gone)
            transport.declare(kept)
            other.delete(gone)  # this connection still holds it declared: the send is not declared again
            groups = transport._group_commit()
            assert groups is not None
            release = threading.Event()
            real: Callable[..., None] = transport._send_many
            calls: list[int] = []

            def held(sends: Sequence[tuple[Destination, Envelope]], **kwargs: bool) -> None:
                calls.append(len(sends))
                if len(calls) == 1:
                    assert release.wait(30)  # the first group stays in flight while the others queue
                real(sends, **kwargs)

            transport._send_many = held  # type: ignore[method-assign]

            def body(text: str) -> Envelope:
                return Envelope(text.encode(), "text/plain")

            outcomes: dict[str, BaseException | None] = {}

            def caller(name: str, sends: list[tuple[Destination, Envelope]]) -> threading.Thread:
                def run_it() -> None:
                    try:
                        transport.send_many(sends, persistent=True, confirm=True)
                        outcomes[name] = None
                    except BaseException as exc:
                        outcomes[name] = exc

                thread = threading.Thread(target=run_it)
                before = len(groups._queue)
                thread.start()
                deadline = time.monotonic() + 10
                while len(groups._queue) == before and name != "first":
                    assert time.monotonic() < deadline
                    time.sleep(0.001)
                return thread

            first = caller("first", [(kept, body("first"))])
            deadline = time.monotonic() + 10
            while not calls:
                assert time.monotonic() < deadline
                time.sleep(0.001)
            threads = [
                first,
                caller("b1", [(kept, body("b1"))]),
                caller("a", [(gone, body("a"))]),
                caller("b2", [(kept, body("b2-0")), (kept, body("b2-1"))]),
            ]
            release.set()
            for thread in threads:
                thread.join(60)
            assert calls == [1, 4]  # the three queued callers went in one backend call
            assert outcomes["first"] is None and outcomes["b1"] is None and outcomes["b2"] is None
            refused = outcomes["a"]
            assert isinstance(refused, SendNotConfirmedError), refused
            assert (refused.unconfirmed, refused.refused) == ((0,), (0,))  # its own index, not the group's 1
            assert "gone" in str(refused)
            stored = sorted(e.body.decode() for e in _read_all(transport, kept))
            assert stored == ["b1", "b2-0", "b2-1", "first"]
        finally:
            transport.delete(kept)
            transport.delete(gone)
