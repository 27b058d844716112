"""Issue 5, item 7: a job longer than RabbitMQ's consumer_timeout, and the setting that makes it run once."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from tdm_messaging.destinations import DEAD_LETTER, PACKAGE_REQUESTS
from tdm_messaging.server import PackagingClient
from tdm_messaging.status import State
from tdm_messaging.transport import open_transport
from tdm_messaging.transport.base import Transport
from tdm_messaging.worker import Job, PackageResult, PackagerWorker
from tests.faults.conftest import PrivateRabbit
from tests.faults.helpers import drain, read_all, run_worker, wait_until
from tests.faults.reliability import Row, record

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]

SHORT_TIMEOUT_MS = 1000
LONG_TIMEOUT_MS = 60_000
DEFAULT_TIMEOUT_MS = 30 * 60 * 1000  # RabbitMQ 3.10's default
JOB_SECONDS = 3.5


def _set_consumer_timeout(node: PrivateRabbit, ms: int) -> None:
    # Read by each channel when it opens: channels opened after this call get the new value.
    node.eval(f"application:set_env(rabbit, consumer_timeout, {ms}).")


class LongJobs:
    """A package handler whose every job takes ``JOB_SECONDS``, holding its request unacknowledged meanwhile."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[str, int] = {}
        self.ended: dict[str, int] = {}

    def handler(self, job: Job) -> PackageResult:
        docset = job.request.docset_id
        with self.lock:
            self.runs[docset] = self.runs.get(docset, 0) + 1
        job.accepted(JOB_SECONDS)
        time.sleep(JOB_SECONDS)
        with self.lock:
            self.ended[docset] = self.ended.get(docset, 0) + 1
        return PackageResult(archive_url=f"https://archives.test/{docset}.zip", size_bytes=1)

    def count(self, docset: str) -> int:
        with self.lock:
            return self.runs.get(docset, 0)

    def idle(self, docset: str) -> bool:
        """No run of ``docset`` is in progress (every run that started has ended)."""
        with self.lock:
            return self.runs.get(docset, 0) == self.ended.get(docset, 0)


@pytest.fixture(params=["amqp", "stomp"])
def rabbit_url(request: pytest.FixtureRequest, private_rabbit: PrivateRabbit) -> Iterator[str]:
    url = private_rabbit.amqp_url() if request.param == "amqp" else private_rabbit.stomp_url()
    yield url
    _set_consumer_timeout(private_rabbit, DEFAULT_TIMEOUT_MS)


def _open(url: str) -> Transport:
    transport = open_transport(url)
    drain(transport)
    return transport


def test_consumer_timeout_above_the_longest_job_runs_it_once(
    private_rabbit: PrivateRabbit, rabbit_url: str, request: pytest.FixtureRequest
) -> None:
    protocol = request.node.callspec.params["rabbit_url"]
    _set_consumer_timeout(private_rabbit, LONG_TIMEOUT_MS)
    jobs = LongJobs()
    client_side = _open(rabbit_url)
    worker_side = open_transport(rabbit_url)
    docset = f"ct-long-{uuid.uuid4().hex[:10]}"
    try:
        client = PackagingClient(client_side)
        with run_worker(PackagerWorker(worker_side, on_package=jobs.handler, retry_backoff_seconds=0)):
            client.request_package(docset, f"http://api.test/api/docsets/{docset}")
            wait_until(lambda: client.status(docset).state is State.COMPLETE, timeout=60, what="the long job")
            time.sleep(2 * SHORT_TIMEOUT_MS / 1000)  # time for a redelivery, had there been one
            left = read_all(client_side, PACKAGE_REQUESTS, ack=False)
            dead = read_all(client_side, DEAD_LETTER)
        status = client.status(docset).state
    finally:
        for transport in (worker_side, client_side):
            with contextlib.suppress(Exception):
                transport.close()
    assert jobs.count(docset) == 1 and status is State.COMPLETE
    assert not left and not dead
    record(
        Row(
            id=f"consumer-timeout-raised-{protocol}",
            item="7 long jobs",
            done=f"rabbitmq-{protocol} (private node): consumer_timeout {LONG_TIMEOUT_MS} ms (above the longest "
            f"job; set at run time with rabbitmqctl eval application:set_env), a {JOB_SECONDS} s job",
            expected="the job runs once and completes; the request is acknowledged after it",
            happened=f"ran {jobs.count(docset)} time(s); status {status.name}; request queue and dead-letter "
            "queue empty afterwards",
            lost=0,
            duplicates=jobs.count(docset) - 1,
            test=request.node.nodeid,
        )
    )


def test_a_job_longer_than_consumer_timeout_is_redelivered(
    private_rabbit: PrivateRabbit, rabbit_url: str, request: pytest.FixtureRequest
) -> None:
    protocol = request.node.callspec.params["rabbit_url"]
    _set_consumer_timeout(private_rabbit, SHORT_TIMEOUT_MS)
    jobs = LongJobs()
    client_side = _open(rabbit_url)
    worker_side = open_transport(rabbit_url)
    docset = f"ct-short-{uuid.uuid4().hex[:10]}"
    try:
        client = PackagingClient(client_side)
        with run_worker(PackagerWorker(worker_side, on_package=jobs.handler, retry_backoff_seconds=0)):
            client.request_package(docset, f"http://api.test/api/docsets/{docset}")
            wait_until(
                lambda: jobs.count(docset) >= 2 or bool(read_all(client_side, DEAD_LETTER, ack=False)),
                timeout=60,
                every=1.0,
                what="the broker to take the job back (a second run, or a dead letter)",
            )
            runs_at_timeout = jobs.count(docset)
            # Raise the setting: the worker's next channel gets it, so the run in progress (or the
            # next) is acknowledged in time and the redelivery loop ends by itself.
            _set_consumer_timeout(private_rabbit, LONG_TIMEOUT_MS)
            # Over when no run is in progress, the status is final and the request is neither waiting
            # nor taken back into the queue (a channel closed by the old timeout requeues it).
            wait_until(
                lambda: (
                    jobs.idle(docset)
                    and client.status(docset).state is State.COMPLETE
                    and not read_all(client_side, PACKAGE_REQUESTS, ack=False)
                ),
                timeout=60,
                every=1.0,
                what="the redelivery loop to end after consumer_timeout was raised",
            )
            left = read_all(client_side, PACKAGE_REQUESTS, ack=False)
            dead = read_all(client_side, DEAD_LETTER)
        status = client.status(docset).state
        runs = jobs.count(docset)
    finally:
        for transport in (worker_side, client_side):
            with contextlib.suppress(Exception):
                transport.close()
    reasons = [e.header("tdm-dead-letter-reason") or "" for e in dead]
    assert not any("refused a send" in r for r in reasons), reasons  # a consumer_timeout is no refusal
    assert runs_at_timeout >= 2
    assert status is State.COMPLETE, (status, reasons)
    assert not dead, reasons
    assert not left
    record(
        Row(
            id=f"consumer-timeout-short-{protocol}",
            item="7 long jobs",
            done=f"rabbitmq-{protocol} (private node): consumer_timeout {SHORT_TIMEOUT_MS} ms, a {JOB_SECONDS} s "
            f"job; once redelivered, consumer_timeout raised to {LONG_TIMEOUT_MS} ms",
            expected="the broker closes the channel and redelivers: the job runs again (a duplicate, harmless); "
            "once the setting is above the job it is acknowledged; one final status",
            happened=f"the job ran {runs_at_timeout} times under the short timeout, {runs} in all; status "
            f"{status.name}; request queue and dead-letter queue empty afterwards",
            lost=0,
            duplicates=runs - 1,
            test=request.node.nodeid,
        )
    )
