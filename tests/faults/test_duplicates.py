"""Issue 5, item 5: duplicate delivery (the same request twice; the connection cut after the work, before the ack)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest

from tdm_messaging.codec import decode, encode
from tdm_messaging.destinations import PACKAGE_REQUESTS, reply_queue
from tdm_messaging.models import Complete
from tdm_messaging.server import PackagingClient
from tdm_messaging.status import State
from tdm_messaging.transport import open_transport
from tdm_messaging.worker import Job, PackageResult, PackagerWorker
from tests.faults.backends import BACKENDS, Opener, opener
from tests.faults.conftest import PrivateActiveMQ, PrivateRabbit
from tests.faults.helpers import drain, read_all, run_worker, wait_until
from tests.faults.proxy import TcpProxy
from tests.faults.reliability import Row, record
from tests.faults.wrapping import HookedTransport


class Archives:
    """Stands in for the packager's storage: archives keyed by (docset, request), as the reference packager does."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[str, int] = {}
        self.stored: set[str] = set()

    def handler(self, job: Job) -> PackageResult:
        key = f"{job.request.docset_id}/{job.request.request_id}.zip"
        with self.lock:
            self.runs[job.request.docset_id] = self.runs.get(job.request.docset_id, 0) + 1
            self.stored.add(key)  # a re-run overwrites the same object: still one package
        return PackageResult(archive_url=f"https://archives.test/{key}", size_bytes=42)


@pytest.fixture(params=BACKENDS)
def open_backend(request: pytest.FixtureRequest) -> Iterator[Opener]:
    yield from opener(request, request.param)


@pytest.mark.broker
def test_the_same_request_twice_gives_one_package_and_one_status(
    open_backend: Opener, request: pytest.FixtureRequest
) -> None:
    backend = request.node.callspec.params["open_backend"]
    transport = open_backend()
    drain(transport)
    client = PackagingClient(transport)
    docset = f"dup-{uuid.uuid4().hex[:12]}"
    sent = client.request_package(docset, f"http://api.test/api/docsets/{docset}").request
    transport.send(PACKAGE_REQUESTS, encode(sent), confirm=True)  # the very same request, again
    archives = Archives()
    with run_worker(PackagerWorker(open_backend(), on_package=archives.handler, retry_backoff_seconds=0)):
        wait_until(lambda: archives.runs.get(docset, 0) >= 2, timeout=60, what="both deliveries to be handled")
        wait_until(lambda: client.status(docset).state is State.COMPLETE, timeout=60, what="COMPLETE")
    status = client.status(docset)
    replies = [decode(e) for e in read_all(transport, reply_queue(docset), ack=False)]
    assert status.state is State.COMPLETE
    assert status.request_id == sent.request_id
    assert len(archives.stored) == 1
    completes = {m.archive_url for m in replies if isinstance(m, Complete)}
    assert len(completes) == 1  # the poll compacted both runs' replies into one final status
    record(
        Row(
            id=f"duplicate-request-{backend}",
            item="5 duplicate delivery",
            done=f"{backend}: the same package request sent twice",
            expected="one package (same storage key), one final status; the fold ignores the duplicate",
            happened=f"handler ran {archives.runs[docset]} times; {len(archives.stored)} archive stored; "
            f"status {status.state.name} for request {sent.request_id}; {len(completes)} Complete kept after poll",
            lost=0,
            duplicates=archives.runs[docset] - 1,
            test=request.node.nodeid,
        )
    )


def _cut_urls(request: pytest.FixtureRequest, broker: str) -> tuple[TcpProxy, str, str]:
    """A proxy in front of ``broker`` (a private RabbitMQ or ActiveMQ), the direct URL and the proxied one."""
    if broker == "activemq-stomp":
        amq: PrivateActiveMQ = request.getfixturevalue("private_activemq")
        proxy = TcpProxy("127.0.0.1", amq.stomp_port)
        return proxy, amq.stomp_url(), amq.stomp_url(port=proxy.port, heartbeat_ms="2000")
    rabbit: PrivateRabbit = request.getfixturevalue("private_rabbit")
    if broker == "rabbitmq-stomp":
        proxy = TcpProxy("127.0.0.1", rabbit.stomp_port)
        return proxy, rabbit.stomp_url(), rabbit.stomp_url(port=proxy.port, heartbeat_ms="2000")
    proxy = TcpProxy("127.0.0.1", rabbit.amqp_port)
    return proxy, rabbit.amqp_url(), rabbit.amqp_url(port=proxy.port, heartbeat="4")


@pytest.mark.broker
@pytest.mark.parametrize("broker", ["rabbitmq-stomp", "rabbitmq-amqp", "activemq-stomp"])
def test_connection_cut_after_the_work_before_the_ack(broker: str, request: pytest.FixtureRequest) -> None:
    proxy, direct_url, proxied_url = _cut_urls(request, broker)
    transport = open_transport(direct_url)
    worker_transport = HookedTransport(
        open_transport(proxied_url),
        when=lambda _dest, env: env.header("tdm-type") == "complete",
        then=proxy.cut,  # the Complete is confirmed; the ack of the request has not been sent yet
    )
    try:
        drain(transport)
        client = PackagingClient(transport)
        docset = f"cut-{uuid.uuid4().hex[:12]}"
        sent = client.request_package(docset, f"http://api.test/api/docsets/{docset}").request
        archives = Archives()
        with run_worker(PackagerWorker(worker_transport, on_package=archives.handler, retry_backoff_seconds=0)):
            wait_until(lambda: archives.runs.get(docset, 0) >= 2, timeout=90, what="the redelivery after the cut")
            wait_until(lambda: client.status(docset).state is State.COMPLETE, timeout=60, what="COMPLETE")
        left = read_all(transport, PACKAGE_REQUESTS)
        status = client.status(docset)
    finally:
        worker_transport.close()
        transport.close()
        proxy.close()
    assert worker_transport.fired.is_set()
    assert status.state is State.COMPLETE and status.request_id == sent.request_id
    assert len(archives.stored) == 1
    assert not left  # acknowledged on the second delivery: nothing left to run a third time
    record(
        Row(
            # The RabbitMQ rows keep the ids they were first measured under.
            id=f"duplicate-cut-before-ack-{broker.removeprefix('rabbitmq-')}",
            item="5 duplicate delivery",
            done=f"{broker} (private instance): TCP connection of the worker cut (proxy) right after its Complete was "
            "confirmed, before the request's ack",
            expected="the broker redelivers; the job runs again; one package, one final status",
            happened=f"handler ran {archives.runs[docset]} times; {len(archives.stored)} archive stored; "
            f"status {status.state.name}; request queue empty afterwards",
            lost=0,
            duplicates=archives.runs[docset] - 1,
            test=request.node.nodeid,
        )
    )
