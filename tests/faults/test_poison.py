"""Issue 5, item 6: poison messages are dead-lettered with the reason, once, and the worker keeps serving."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from tdm_messaging.clock import utc_now
from tdm_messaging.codec import encode
from tdm_messaging.destinations import DEAD_LETTER, PACKAGE_REQUESTS
from tdm_messaging.envelope import Envelope
from tdm_messaging.headers import DEAD_LETTER_REASON as DEAD_LETTER_REASON_HEADER
from tdm_messaging.ids import new_request_id
from tdm_messaging.models import Complete, PackageRequest
from tdm_messaging.server import PackagingClient
from tdm_messaging.status import State
from tdm_messaging.worker import Job, PackageResult, PackagerWorker
from tests.faults.backends import BACKENDS, Opener, opener
from tests.faults.helpers import drain, read_all, run_worker, wait_until
from tests.faults.reliability import Row, record

MAX_BODY = 4096
MAX_ATTEMPTS = 3


@pytest.fixture(params=BACKENDS)
def open_backend(request: pytest.FixtureRequest) -> Iterator[Opener]:
    yield from opener(request, request.param)


def _request(docset_id: str) -> PackageRequest:
    now = utc_now()
    return PackageRequest(
        docset_id=docset_id,
        request_id=new_request_id(),
        timestamp=now,
        docset_url=f"http://api.test/api/docsets/{docset_id}",
        reply_to=f"package/{docset_id}",
        requested_at=now,
    )


def _poison(tag: str) -> dict[str, Envelope]:
    good = json.loads(encode(_request(f"p-{tag}")).body)
    unknown_version = dict(good, protocol_version="99.0")
    wrong_schema = {k: v for k, v in good.items() if k != "docset_url"} | {"formats": 7}
    return {
        "bad JSON": Envelope(b'{"type": "package-request", ', "application/json"),
        "wrong schema": Envelope(json.dumps(wrong_schema).encode(), "application/json"),
        "unknown version": Envelope(json.dumps(unknown_version).encode(), "application/json"),
        "oversize body": Envelope(b"{" + b" " * (MAX_BODY * 2) + b"}", "application/json"),
        "a reply on the request queue": encode(
            Complete(
                docset_id=f"p-{tag}",
                request_id="0190a0b0-0000-7000-8000-000000000001",
                sequence=3,
                timestamp=utc_now(),
                archive_url="https://archives.test/p.zip",
                size_bytes=1,
            )
        ),
    }


@pytest.mark.broker
def test_poison_messages_are_dead_lettered_and_the_worker_keeps_serving(
    open_backend: Opener, request: pytest.FixtureRequest
) -> None:
    backend = request.node.callspec.params["open_backend"]
    client_transport = open_backend()
    drain(client_transport)
    tag = uuid.uuid4().hex[:10]
    always_fails = f"boom-{tag}"
    good_id = f"good-{tag}"
    calls: dict[str, int] = {}

    def on_package(job: Job) -> PackageResult:
        calls[job.request.docset_id] = calls.get(job.request.docset_id, 0) + 1
        if job.request.docset_id == always_fails:
            raise RuntimeError("the handler fails every time")
        return PackageResult(archive_url=f"https://archives.test/{job.request.docset_id}.zip", size_bytes=10)

    poison = _poison(tag)
    for envelope in poison.values():
        client_transport.send(PACKAGE_REQUESTS, envelope, confirm=True)
    client = PackagingClient(client_transport)
    client.request_package(always_fails, f"http://api.test/api/docsets/{always_fails}")
    client.request_package(good_id, f"http://api.test/api/docsets/{good_id}")

    worker = PackagerWorker(
        open_backend(),
        on_package=on_package,
        max_attempts=MAX_ATTEMPTS,
        retry_backoff_seconds=0,
        max_body_bytes=MAX_BODY,
    )
    dead: list[Envelope] = []
    with run_worker(worker):
        wait_until(lambda: client.status(good_id).state is State.COMPLETE, timeout=60, what="the good request")

        def all_dead() -> bool:
            dead.extend(read_all(client_transport, DEAD_LETTER))
            return len(dead) >= len(poison) + 1

        wait_until(all_dead, timeout=60, what="every poison message in the dead-letter queue")
        # The worker still serves after the poison: a request sent now completes too.
        late_id = f"late-{tag}"
        client.request_package(late_id, f"http://api.test/api/docsets/{late_id}")
        wait_until(lambda: client.status(late_id).state is State.COMPLETE, timeout=60, what="a request after poison")
        failed_status = client.status(always_fails)
        dead.extend(read_all(client_transport, DEAD_LETTER))

    reasons = [e.header(DEAD_LETTER_REASON_HEADER) or "" for e in dead]
    assert len(dead) == len(poison) + 1, reasons  # each poison message exactly once: no requeue loop
    bodies = {e.body for e in dead}
    for envelope in poison.values():
        assert envelope.body in bodies
    assert any("undecodable" in r and "exceeds the limit" in r for r in reasons)
    assert any("gave up after 3 attempts" in r and "fails every time" in r for r in reasons)
    assert any("expected a PackageRequest" in r for r in reasons)
    assert calls[always_fails] == MAX_ATTEMPTS
    assert calls[good_id] == 1
    assert failed_status.state is State.FAILED
    assert failed_status.failure is not None and failed_status.failure.retryable
    good = client.status(good_id)
    assert isinstance(good.result, Complete)
    record(
        Row(
            id=f"poison-{backend}",
            item="6 poison messages",
            done=f"{backend}: sent {', '.join(poison)} and a request whose handler always raises, "
            f"then good requests before and after",
            expected=f"each dead-lettered once with a reason; the failing one after {MAX_ATTEMPTS} attempts "
            "and a Failed(retryable) reply; good requests complete",
            happened=f"{len(dead)} dead letters, one per poison message; failing handler called "
            f"{calls[always_fails]} times; good requests handled {calls[good_id]} + {calls[late_id]} time(s), "
            f"COMPLETE; status of the failing docset {failed_status.state.name}",
            lost=0 if good.state is State.COMPLETE and client.status(late_id).state is State.COMPLETE else 1,
            duplicates=len(dead) - len(poison) - 1,
            test=request.node.nodeid,
        )
    )
