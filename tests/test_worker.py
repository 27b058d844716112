"""PackagerWorker with a PackagingClient over the in-memory transport, in threads: jobs, retries, poison, sharing."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from tdm_messaging.codec import JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE, decode, encode
from tdm_messaging.destinations import DEAD_LETTER, DELETE_REQUESTS, PACKAGE_REQUESTS, Destination, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import (
    BrokerRefusedError,
    BrokerUnavailableError,
    ConfigurationError,
    LocalProtocolError,
    SendNotConfirmedError,
    TransportClosedError,
)
from tdm_messaging.headers import DEAD_LETTER_QUEUE as DEAD_LETTER_QUEUE_HEADER
from tdm_messaging.headers import DEAD_LETTER_REASON as DEAD_LETTER_REASON_HEADER
from tdm_messaging.models import Accepted, Complete, DeleteRequest, Failed, Message, Progress
from tdm_messaging.server import PackagingClient
from tdm_messaging.status import State
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport, running_worker, wait_until
from tdm_messaging.transport.base import Capabilities, Delivery
from tdm_messaging.worker import ATTEMPT_HEADER, Job, JobFailed, PackageResult, PackagerWorker

RESULT_TIME = datetime(2024, 1, 1, tzinfo=UTC)
RESULT = PackageResult(archive_url="https://bucket/package/5.zip", size_bytes=345345, sha256="ab" * 32)


def new_docset() -> str:
    return "ds-" + uuid.uuid4().hex[:12]


def replies(broker: InMemoryBroker, docset: str) -> list[Message]:
    return [decode(e) for e in broker.messages(reply_queue(docset))]


def idle(broker: InMemoryBroker) -> Callable[[], bool]:
    return lambda: not broker.messages(PACKAGE_REQUESTS) and broker.unacked_count(PACKAGE_REQUESTS) == 0


def final_reply(broker: InMemoryBroker, docset: str) -> Callable[[], bool]:
    return lambda: any(e.header("tdm-type") in {"complete", "failed"} for e in broker.messages(reply_queue(docset)))


def make_worker(broker: InMemoryBroker, handler: Callable[[Job], PackageResult], **kw: object) -> PackagerWorker:
    kw.setdefault("retry_backoff_seconds", 0)
    return PackagerWorker(InMemoryTransport(broker), on_package=handler, **kw)  # type: ignore[arg-type]


def test_full_lifecycle_with_progress() -> None:
    broker = InMemoryBroker()
    client = PackagingClient(InMemoryTransport(broker))
    docset = new_docset()
    jobs: list[Job] = []

    def handler(job: Job) -> PackageResult:
        jobs.append(job)
        job.accepted(45)
        job.progress(1, 2, eta_seconds=10)
        job.progress(2, 2)
        return RESULT

    with running_worker(make_worker(broker, handler)):
        request = client.request_package(docset, f"http://server/api/docsets/{docset}").request
        wait_until(final_reply(broker, docset), what="the Complete reply", timeout=20)
    assert jobs[0].request == request and jobs[0].attempt == 1
    got = replies(broker, docset)
    assert [m.type for m in got] == ["package_request", "accepted", "progress", "progress", "complete"]
    assert [m.sequence for m in got] == [0, 1, 2, 3, 4]
    assert {m.request_id for m in got} == {request.request_id}
    assert isinstance(got[1], Accepted) and got[1].estimate_seconds == 45
    assert isinstance(got[2], Progress) and got[2].percent == 50 and got[2].eta_seconds == 10
    assert isinstance(got[4], Complete) and got[4].size_bytes == 345345 and got[4].sha256 == "ab" * 32
    status = client.status(docset)
    assert status.state is State.COMPLETE
    assert status.result is not None and status.result.archive_url == RESULT.archive_url
    assert client.status(docset) == status
    assert idle(broker)() and broker.messages(DEAD_LETTER) == []


def test_accepted_is_sent_for_a_silent_handler() -> None:
    broker = InMemoryBroker()
    client = PackagingClient(InMemoryTransport(broker))
    docset = new_docset()
    with running_worker(make_worker(broker, lambda job: RESULT)):
        client.request_package(docset, "http://s/api/docsets/x")
        wait_until(final_reply(broker, docset), what="the Complete reply", timeout=20)
    got = replies(broker, docset)
    assert [m.type for m in got] == ["package_request", "accepted", "complete"]
    assert isinstance(got[1], Accepted) and got[1].estimate_seconds is None


def test_accepted_is_sent_before_the_first_progress() -> None:
    broker = InMemoryBroker()
    client = PackagingClient(InMemoryTransport(broker))
    docset = new_docset()

    def handler(job: Job) -> PackageResult:
        job.progress(0, 0)
        return RESULT

    with running_worker(make_worker(broker, handler)):
        client.request_package(docset, "http://s/api/docsets/x")
        wait_until(final_reply(broker, docset), what="the Complete reply", timeout=20)
    got = replies(broker, docset)
    assert [m.type for m in got] == ["package_request", "accepted", "progress", "complete"]
    assert isinstance(got[2], Progress) and got[2].percent == 100


def test_job_failed_reports_and_acks_without_retry() -> None:
    broker = InMemoryBroker()
    client = PackagingClient(InMemoryTransport(broker))
    docset = new_docset()
    calls: list[int] = []

    def handler(job: Job) -> PackageResult:
        calls.append(job.attempt)
        raise JobFailed("docset has no members", retryable=False)

    with running_worker(make_worker(broker, handler)):
        client.request_package(docset, "http://s/api/docsets/x")
        wait_until(final_reply(broker, docset), what="the Failed reply", timeout=20)
        wait_until(idle(broker), what="the request to be acknowledged", timeout=20)
    assert calls == [1]
    status = client.status(docset)
    assert status.state is State.FAILED
    assert status.failure is not None and status.failure.reason == "docset has no members"
    assert status.failure.retryable is False
    assert broker.messages(DEAD_LETTER) == []


def test_crashing_handler_is_retried_then_dead_lettered() -> None:
    broker = InMemoryBroker()
    client = PackagingClient(InMemoryTransport(broker))
    docset = new_docset()
    attempts: list[int] = []

    def handler(job: Job) -> PackageResult:
        attempts.append(job.attempt)
        job.progress(1, 3)
        raise OSError("upload refused")

    with running_worker(make_worker(broker, handler, max_attempts=3)):
        request = client.request_package(docset, "http://s/api/docsets/x").request
        wait_until(lambda: len(broker.messages(DEAD_LETTER)) == 1, what="the dead-lettered request", timeout=20)
        wait_until(idle(broker), what="the queue to drain", timeout=20)
    assert attempts == [1, 2, 3]
    parked = broker.messages(DEAD_LETTER)[0]
    assert decode(parked) == request
    assert parked.headers[ATTEMPT_HEADER] == "3"
    assert parked.headers[DEAD_LETTER_QUEUE_HEADER] == "docsets/package"
    assert "OSError: upload refused" in parked.headers[DEAD_LETTER_REASON_HEADER]
    got = replies(broker, docset)
    # Each attempt continues the sequence where the previous one stopped: no number is reused.
    sequences = [m.sequence for m in got]
    assert len(sequences) == len(set(sequences))
    failed = [m for m in got if isinstance(m, Failed)]
    assert len(failed) == 1 and failed[0].retryable is True and "3 attempts" in failed[0].reason
    assert client.status(docset).state is State.FAILED


def test_retry_then_success_continues_the_sequence() -> None:
    broker = InMemoryBroker()
    client = PackagingClient(InMemoryTransport(broker))
    docset = new_docset()

    def handler(job: Job) -> PackageResult:
        job.accepted(10)
        job.progress(1, 2)
        if job.attempt == 1:
            raise RuntimeError("transient")
        return RESULT

    with running_worker(make_worker(broker, handler, max_attempts=2)):
        client.request_package(docset, "http://s/api/docsets/x")
        wait_until(final_reply(broker, docset), what="the Complete reply", timeout=20)
    got = replies(broker, docset)
    assert [(m.type, m.sequence) for m in got] == [
        ("package_request", 0),
        ("accepted", 1),
        ("progress", 2),
        ("accepted", 3),
        ("progress", 4),
        ("complete", 5),
    ]
    assert client.status(docset).state is State.COMPLETE
    assert broker.messages(DEAD_LETTER) == []


def test_retry_backoff_is_cut_short_by_stop() -> None:
    broker = InMemoryBroker()
    client = PackagingClient(InMemoryTransport(broker))
    entered = threading.Event()

    def handler(job: Job) -> PackageResult:
        entered.set()
        raise RuntimeError("fails")

    # A backoff of an hour would hang the test if stop did not cut it short.
    with running_worker(make_worker(broker, handler, retry_backoff_seconds=3600)):
        client.request_package(new_docset(), "http://s/api/docsets/x")
        assert entered.wait(10)
    # The retry copy was still re-sent, and the original acknowledged.
    wait_until(lambda: len(broker.messages(PACKAGE_REQUESTS)) == 1, what="the retry copy", timeout=20)
    assert broker.messages(PACKAGE_REQUESTS)[0].headers[ATTEMPT_HEADER] == "2"


@pytest.mark.parametrize(
    ("body", "content_type", "why"),
    [
        (b"{not json", JSON_CONTENT_TYPE, "undecodable"),
        (b'{"type": "package_request", "protocol_version": "9.0"}', JSON_CONTENT_TYPE, "9.0"),
        (b"x" * 2048, TEXT_CONTENT_TYPE, "exceeds the limit"),
        (b"ftp://nope", TEXT_CONTENT_TYPE, "undecodable"),
    ],
)
def test_poison_requests_are_dead_lettered_and_the_worker_carries_on(body: bytes, content_type: str, why: str) -> None:
    broker = InMemoryBroker()
    client = PackagingClient(InMemoryTransport(broker))
    docset = new_docset()
    with running_worker(make_worker(broker, lambda job: RESULT, max_body_bytes=1024)):
        InMemoryTransport(broker).send(PACKAGE_REQUESTS, Envelope(body, content_type, {"x-trace": "t1"}))
        client.request_package(docset, "http://s/api/docsets/x")
        wait_until(final_reply(broker, docset), what="the good request to complete", timeout=20)
        wait_until(lambda: len(broker.messages(DEAD_LETTER)) == 1, what="the dead-lettered request", timeout=20)
    parked = broker.messages(DEAD_LETTER)[0]
    assert parked.body == body and parked.headers["x-trace"] == "t1"
    assert why in parked.headers[DEAD_LETTER_REASON_HEADER]


def test_a_refused_reply_dead_letters_the_request_instead_of_blocking_the_queue() -> None:
    broker = InMemoryBroker()
    client = PackagingClient(InMemoryTransport(broker))
    refused, good = new_docset(), new_docset()
    client.request_package(refused, "http://s/api/docsets/x")
    client.request_package(good, "http://s/api/docsets/y")
    broker.fail_next_send(BrokerRefusedError("PRECONDITION_FAILED - inequivalent arg 'durable'"))
    with running_worker(make_worker(broker, lambda job: RESULT)):
        wait_until(final_reply(broker, good), what="the next request to complete", timeout=20)
    parked = broker.messages(DEAD_LETTER)
    assert len(parked) == 1 and decode(parked[0]).docset_id == refused
    assert "inequivalent arg" in parked[0].headers[DEAD_LETTER_REASON_HEADER]


def test_wrong_message_type_on_the_request_queue_is_dead_lettered() -> None:
    broker = InMemoryBroker()
    stray = encode(
        DeleteRequest(docset_id="5", request_id="0190a0b0-0000-7000-8000-000000000001", timestamp=RESULT_TIME)
    )
    with running_worker(make_worker(broker, lambda job: RESULT)):
        InMemoryTransport(broker).send(PACKAGE_REQUESTS, stray)
        wait_until(lambda: len(broker.messages(DEAD_LETTER)) == 1, what="the dead-lettered message", timeout=20)
    assert "expected a PackageRequest" in broker.messages(DEAD_LETTER)[0].headers[DEAD_LETTER_REASON_HEADER]


def test_invalid_result_is_a_handler_failure() -> None:
    broker = InMemoryBroker()
    client = PackagingClient(InMemoryTransport(broker))
    docset = new_docset()
    bad = PackageResult(archive_url="https://b/x.zip", size_bytes=1, sha256="not-hex")
    with running_worker(make_worker(broker, lambda job: bad, max_attempts=1)):
        client.request_package(docset, "http://s/api/docsets/x")
        wait_until(lambda: len(broker.messages(DEAD_LETTER)) == 1, what="the dead-lettered request", timeout=20)
    assert "invalid PackageResult" in broker.messages(DEAD_LETTER)[0].headers[DEAD_LETTER_REASON_HEADER]
    assert client.status(docset).state is State.FAILED


def test_delete_calls_the_handler_and_replies_deleted() -> None:
    broker = InMemoryBroker()
    client = PackagingClient(InMemoryTransport(broker))
    docset = new_docset()
    deleted: list[DeleteRequest] = []
    worker = make_worker(broker, lambda job: RESULT, on_delete=deleted.append)
    with running_worker(worker):
        client.request_package(docset, "http://s/api/docsets/x")
        wait_until(final_reply(broker, docset), what="the Complete reply", timeout=20)
        request = client.request_delete(docset, archive_url=RESULT.archive_url)
        wait_until(lambda: client.status(docset).state is State.DELETED, what="the Deleted reply", timeout=20)
    assert deleted == [request]
    assert broker.messages(DELETE_REQUESTS) == []


def test_a_delete_the_handler_refuses_is_dead_lettered_at_once_with_its_reason() -> None:
    broker = InMemoryBroker()
    client = PackagingClient(InMemoryTransport(broker))
    docset = new_docset()
    calls: list[DeleteRequest] = []

    def refuse(request: DeleteRequest) -> None:
        calls.append(request)
        raise JobFailed("https://elsewhere/x.zip is not one of our archives")

    with running_worker(make_worker(broker, lambda job: RESULT, on_delete=refuse, max_attempts=3)):
        client.request_package(docset, "http://s/api/docsets/x")
        wait_until(final_reply(broker, docset), what="the Complete reply", timeout=20)
        client.request_delete(docset, archive_url="https://elsewhere/x.zip")
        wait_until(lambda: len(broker.messages(DEAD_LETTER)) == 1, what="the dead-lettered delete", timeout=20)
        wait_until(lambda: broker.unacked_count(DELETE_REQUESTS) == 0, what="the delete acknowledged", timeout=20)
    assert len(calls) == 1  # not retried: a refusal is refused again
    parked = broker.messages(DEAD_LETTER)[0]
    assert parked.headers[DEAD_LETTER_QUEUE_HEADER] == "docsets/delete"
    assert "not one of our archives" in parked.headers[DEAD_LETTER_REASON_HEADER]
    assert broker.messages(DELETE_REQUESTS) == []
    assert client.status(docset).state is State.COMPLETE  # no Deleted was sent


def test_without_a_delete_handler_deletes_wait_in_their_queue() -> None:
    broker = InMemoryBroker()
    client = PackagingClient(InMemoryTransport(broker))
    docset = new_docset()
    with running_worker(make_worker(broker, lambda job: RESULT)):
        client.request_delete(docset)
        client.request_package(docset, "http://s/api/docsets/x")
        wait_until(final_reply(broker, docset), what="the Complete reply", timeout=20)
    assert len(broker.messages(DELETE_REQUESTS)) == 1


def test_text_replies_are_read_by_a_json_server() -> None:
    broker = InMemoryBroker()
    client = PackagingClient(InMemoryTransport(broker))
    docset = new_docset()

    def handler(job: Job) -> PackageResult:
        job.accepted(5)
        job.progress(1, 2)
        return PackageResult(archive_url="https://b/x.zip", size_bytes=7)

    with running_worker(make_worker(broker, handler, content_type=TEXT_CONTENT_TYPE)):
        client.request_package(docset, "http://s/api/docsets/x")
        wait_until(final_reply(broker, docset), what="the Complete reply", timeout=20)
    assert {e.content_type for e in broker.messages(reply_queue(docset))[1:]} == {TEXT_CONTENT_TYPE}
    status = client.status(docset)
    assert status.state is State.COMPLETE and status.result is not None and status.result.size_bytes == 7


def test_competing_workers_share_the_work_once_each() -> None:
    broker = InMemoryBroker()
    client = PackagingClient(InMemoryTransport(broker))
    lock = threading.Lock()
    done: dict[str, list[str]] = {"a": [], "b": []}
    # Each worker's first job waits for the other's first job: the work is shared whatever the scheduling.
    both_busy = threading.Barrier(2, timeout=10)

    def handler_for(name: str) -> Callable[[Job], PackageResult]:
        def handler(job: Job) -> PackageResult:
            with lock:
                done[name].append(job.request.docset_id)
                first = len(done[name]) == 1
            if first:
                both_busy.wait()
            return RESULT

        return handler

    docsets = [new_docset() for _ in range(12)]
    with running_worker(make_worker(broker, handler_for("a"))), running_worker(make_worker(broker, handler_for("b"))):
        for docset in docsets:
            client.request_package(docset, "http://s/api/docsets/x")
        for docset in docsets:
            wait_until(final_reply(broker, docset), what=f"docset {docset} to complete", timeout=20)
    assert sorted(done["a"] + done["b"]) == sorted(docsets)
    assert done["a"] and done["b"]
    for docset in docsets:
        assert client.status(docset).state is State.COMPLETE


def test_a_crashed_worker_job_is_done_by_another() -> None:
    broker = InMemoryBroker()
    client = PackagingClient(InMemoryTransport(broker))
    docset = new_docset()
    entered = threading.Event()
    crash = threading.Event()
    crashed_transport = InMemoryTransport(broker)

    def stuck(job: Job) -> PackageResult:
        job.accepted(60)
        entered.set()
        crash.wait(10)
        return RESULT  # too late: its connection is gone

    stop = threading.Event()
    errors: list[BaseException] = []

    def run_stuck() -> None:
        try:
            PackagerWorker(crashed_transport, on_package=stuck).run(stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run_stuck, daemon=True)
    thread.start()
    client.request_package(docset, "http://s/api/docsets/x")
    assert entered.wait(10)
    crashed_transport.close()  # the packager process dies: its unacked request goes back
    crash.set()
    thread.join(10)
    assert errors and isinstance(errors[0], TransportClosedError)
    with running_worker(make_worker(broker, lambda job: RESULT)):
        wait_until(final_reply(broker, docset), what="the Complete reply from the second worker", timeout=20)
    status = client.status(docset)
    assert status.state is State.COMPLETE
    assert broker.messages(DEAD_LETTER) == []


def test_worker_resumes_after_a_broker_outage() -> None:
    broker = InMemoryBroker()
    client = PackagingClient(InMemoryTransport(broker))
    first, second = new_docset(), new_docset()
    with running_worker(make_worker(broker, lambda job: RESULT)):
        client.request_package(first, "http://s/api/docsets/x")
        wait_until(final_reply(broker, first), what="the first Complete", timeout=20)
        broker.disconnect()
        broker.reconnect()
        client.request_package(second, "http://s/api/docsets/y")
        wait_until(final_reply(broker, second), what="the second Complete", timeout=20)


def test_a_job_built_by_hand_reports_nowhere_and_checks_arguments() -> None:
    request = (
        PackagingClient(InMemoryTransport(InMemoryBroker())).request_package("5", "http://s/api/docsets/5").request
    )
    job = Job(request, 1)
    job.accepted(3)
    job.progress(1, 2)
    with pytest.raises(LocalProtocolError, match="items_done"):
        job.progress(3, 2)
    with pytest.raises(LocalProtocolError, match="estimate_seconds"):
        job.accepted(-1)


def test_bad_settings() -> None:
    transport = InMemoryTransport(InMemoryBroker())
    with pytest.raises(ConfigurationError, match="max_attempts"):
        PackagerWorker(transport, on_package=lambda job: RESULT, max_attempts=0)
    with pytest.raises(ConfigurationError, match="retry_backoff_seconds"):
        PackagerWorker(transport, on_package=lambda job: RESULT, retry_backoff_seconds=-1)


def test_a_redelivered_request_that_was_dead_lettered_for_a_refusal_is_acknowledged_once() -> None:
    """RabbitMQ closes the connection on a refusal, so the ACK is lost: the copy that comes again is recognised."""
    broker = InMemoryBroker()
    client = PackagingClient(InMemoryTransport(broker))
    docset = new_docset()
    client.request_package(docset, "http://s/api/docsets/x")
    with InMemoryTransport(broker).read(PACKAGE_REQUESTS) as batch:
        (request,) = batch.envelopes
    runs: list[Job] = []

    def handler(job: Job) -> PackageResult:
        runs.append(job)
        return RESULT

    worker = make_worker(broker, handler)
    delivery = Delivery(request, PACKAGE_REQUESTS)
    broker.fail_next_send(BrokerRefusedError("PRECONDITION_FAILED - inequivalent arg 'x-expires'"))
    worker._handle(delivery)
    worker._handle(Delivery(request, PACKAGE_REQUESTS, redelivered=True))  # the lost ACK's redelivery
    assert len(broker.messages(DEAD_LETTER)) == 1, "the dead-letter queue grew on redelivery"
    assert len(runs) == 1 and all(decode(e).type != "complete" for e in broker.messages(reply_queue(docset)))
    other = make_worker(broker, handler)  # another worker never saw the refusal: it runs the job
    other._handle(Delivery(request, PACKAGE_REQUESTS, redelivered=True))
    assert len(runs) == 2 and isinstance(replies(broker, docset)[-1], Complete)


def test_the_reply_queue_is_declared_before_the_job() -> None:
    broker = InMemoryBroker()
    docset = new_docset()
    seen: list[bool] = []

    def handler(job: Job) -> PackageResult:
        seen.append(reply_queue(docset).name in broker.queue_names())
        return RESULT

    with running_worker(make_worker(broker, handler)):
        PackagingClient(InMemoryTransport(broker)).request_package(docset, "http://s/api/docsets/x")
        wait_until(final_reply(broker, docset), what="the job to finish", timeout=20)
    assert seen == [True]


class _CountsDeclares(InMemoryTransport):
    """An in-memory transport that says (or not) that its sends create missing reply queues, counting declares."""

    def __init__(self, broker: InMemoryBroker, *, on_send: bool) -> None:
        super().__init__(broker)
        self.on_send = on_send
        self.declared: list[str] = []

    @property
    def capabilities(self) -> Capabilities:
        return dataclasses.replace(super().capabilities, reply_queue_on_send=self.on_send)

    def _declare(self, destination: Destination) -> None:
        self.declared.append(destination.name)
        super()._declare(destination)


@pytest.mark.parametrize("on_send", [True, False])
def test_the_worker_declares_a_reply_queue_per_job_only_where_a_send_would_not_create_it(on_send: bool) -> None:
    broker = InMemoryBroker()
    docset = new_docset()
    transport = _CountsDeclares(broker, on_send=on_send)
    with running_worker(PackagerWorker(transport, on_package=lambda job: RESULT, retry_backoff_seconds=0)):
        PackagingClient(InMemoryTransport(broker)).request_package(docset, "http://s/api/docsets/x")
        wait_until(final_reply(broker, docset), what="the job to finish", timeout=20)
    assert (reply_queue(docset).name in transport.declared) is not on_send
    assert [type(m).__name__ for m in replies(broker, docset)] == ["PackageRequest", "Accepted", "Complete"]


@pytest.mark.broker
def test_rabbitmq_stomp_worker_replies_to_a_queue_declared_with_another_expiry() -> None:
    """A reply queue a peer declared with another x-expires: the job completes, nothing is dead-lettered."""
    pytest.importorskip("stomp")
    from tdm_messaging.transport import open_transport
    from tests.conftest import broker_url

    url = broker_url("rabbitmq-stomp")
    namespace = "w" + uuid.uuid4().hex[:12]
    joiner = "&" if "?" in url else "?"
    docset = new_docset()
    with (
        open_transport(f"{url}{joiner}namespace={namespace}&reply_ttl=600") as peer,
        open_transport(f"{url}{joiner}namespace={namespace}") as ours,
    ):
        client = PackagingClient(peer)  # its request copy declares package/<id> with x-expires 600 s
        client.request_package(docset, f"http://s/api/docsets/{docset}")
        worker = PackagerWorker(ours, on_package=lambda job: RESULT, retry_backoff_seconds=0)
        with running_worker(worker):
            wait_until(lambda: client.status(docset).state is State.COMPLETE, what="the job to complete", timeout=60)
        with ours.read(DEAD_LETTER) as batch:
            assert list(batch.envelopes) == [], "nothing may be dead-lettered"


@pytest.mark.parametrize(
    "error",
    [
        SendNotConfirmedError("a message to 'package/x' was returned unroutable: not stored"),
        BrokerUnavailableError("queue 'package/x' is unavailable while its home node is down"),
    ],
)
def test_a_reply_the_handler_could_not_send_spends_no_attempt_and_the_request_is_redone(error: Exception) -> None:
    broker = InMemoryBroker()
    client = PackagingClient(InMemoryTransport(broker))
    docset = new_docset()
    attempts: list[int] = []

    def handler(job: Job) -> PackageResult:
        attempts.append(job.attempt)
        if len(attempts) == 1:
            broker.fail_next_send(error)  # the Accepted below is not stored
        job.accepted(10)
        return RESULT

    client.request_package(docset, "http://s/api/docsets/x")
    with running_worker(make_worker(broker, handler, max_attempts=1)):
        wait_until(final_reply(broker, docset), what="the Complete of the redelivered request", timeout=20)
    # max_attempts=1: had the failed reply spent the attempt, the request would be Failed and dead-lettered.
    assert attempts == [1, 1]
    assert client.status(docset).state is State.COMPLETE
    assert broker.messages(DEAD_LETTER) == []


def test_a_complete_that_was_not_stored_leaves_the_request_unacknowledged_for_redelivery() -> None:
    broker = InMemoryBroker()
    client = PackagingClient(InMemoryTransport(broker))
    docset = new_docset()
    runs: list[int] = []

    def handler(job: Job) -> PackageResult:
        runs.append(job.attempt)
        job.accepted(10)
        if len(runs) == 1:
            broker.fail_next_send(SendNotConfirmedError("returned unroutable: not stored"))  # the Complete
        return RESULT

    client.request_package(docset, "http://s/api/docsets/x")
    with running_worker(make_worker(broker, handler, max_attempts=1)):
        wait_until(final_reply(broker, docset), what="the Complete of the redelivered request", timeout=20)
    assert runs == [1, 1]
    assert [m.type for m in replies(broker, docset)].count("complete") == 1
    assert broker.messages(DEAD_LETTER) == [] and idle(broker)()
