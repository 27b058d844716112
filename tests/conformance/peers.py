"""Peers for the kit to judge: the reference packager in a thread, a server on PackagingClient, and broken ones."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from examples.packager.app import PackagerConfig, run
from tdm_messaging.clock import utc_now
from tdm_messaging.codec import JSON_CONTENT_TYPE, decode, encode
from tdm_messaging.conformance.server_run import Triggers
from tdm_messaging.conformance.triggers import CallableTrigger
from tdm_messaging.destinations import PACKAGE_REQUESTS, reply_queue
from tdm_messaging.ids import new_request_id
from tdm_messaging.models import Accepted, Complete, PackageRequest, Progress
from tdm_messaging.server import PackagingClient
from tdm_messaging.testing import running_worker
from tdm_messaging.transport.base import Delivery, Transport
from tdm_messaging.worker import Job, JobFailed, PackageResult, PackagerWorker

__all__ = ["BROKEN_PACKAGERS", "broken_packager", "client_triggers", "library_packager", "reference_packager"]

BROKEN_PACKAGERS = {
    # flaw -> the case numbers of --role packager it must fail
    "wrong-request-id": {2, 11, 7, 16},
    # A Complete alone is allowed (a job that ended within the packager's linger, protocol § 1);
    # a Progress before any Accepted is not.
    "progress-first": {3, 12},
}


@contextmanager
def reference_packager(
    transport: Transport, *, api_base: str, archive_dir: Path, archive_base: str | None = None
) -> Iterator[None]:
    """The reference packager (examples/packager) serving ``transport`` in a thread, fetching from ``api_base``.

    Archives go to ``archive_dir``, published under ``archive_base`` (default: the API's ``/archives``).
    """
    config = PackagerConfig(
        broker_url="unused://",
        api_base=api_base,
        api_key="conformance",
        storage=f"local:{archive_dir}",
        public_base_url=archive_base,
        work_dir=str(archive_dir.parent / "work"),
        retry_backoff_seconds=0.0,
    )
    stop = threading.Event()
    thread = threading.Thread(target=run, args=(config, stop), kwargs={"transport": transport}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive(), "the reference packager did not stop within 30 s"


@contextmanager
def library_packager(transport: Transport, *, content_type: str, linger: float = 0.0) -> Iterator[None]:
    """A packager on ``PackagerWorker`` replying in ``content_type``: it reads the docset URL, then completes.

    A docset URL that answers an HTTP error fails the job (not retryable); the archive URL is made up.
    ``linger``: the worker's ``progress_linger_seconds`` (a job ending within it replies with its outcome alone).
    """

    def on_package(job: Job) -> PackageResult:
        job.accepted(estimate_seconds=1)
        try:
            with urllib.request.urlopen(job.request.docset_url, timeout=5) as response:
                size = len(response.read())
        except urllib.error.HTTPError as exc:
            raise JobFailed(f"GET {job.request.docset_url}: HTTP {exc.code}") from exc
        job.progress(1, 2)
        job.progress(2, 2)
        return PackageResult(archive_url=f"https://archives.invalid/{job.request.docset_id}.zip", size_bytes=size)

    worker = PackagerWorker(
        transport,
        on_package=on_package,
        on_delete=lambda request: None,
        content_type=content_type,
        progress_linger_seconds=linger,
    )
    with running_worker(worker):
        yield


@contextmanager
def broken_packager(transport: Transport, flaw: str) -> Iterator[None]:
    """A packager that answers every request at once with complete, breaking the protocol as ``flaw`` says.

    ``wrong-request-id``: its replies carry a fresh request id, not the request's.
    ``progress-first``: it never sends accepted: a progress, then complete.
    """
    assert flaw in BROKEN_PACKAGERS, flaw

    def answer(delivery: Delivery) -> None:
        try:
            request = decode(delivery.envelope)
        except Exception:  # a poison request: a broken packager ignores it
            return
        if not isinstance(request, PackageRequest):
            return
        request_id = new_request_id() if flaw == "wrong-request-id" else request.request_id
        fields = {"docset_id": request.docset_id, "request_id": request_id, "timestamp": utc_now()}
        replies: list[Accepted | Progress | Complete] = (
            [Progress(**fields, sequence=1, items_done=1, items_total=1, percent=100.0)]
            if flaw == "progress-first"
            else [Accepted(**fields, sequence=1)]
        )
        replies.append(Complete(**fields, sequence=2, archive_url="https://archives.invalid/x.zip", size_bytes=1))
        for message in replies:
            transport.send(reply_queue(request.docset_id), encode(message), confirm=True)

    stop = threading.Event()
    thread = threading.Thread(
        target=transport.consume, args=([PACKAGE_REQUESTS], answer), kwargs={"stop": stop}, daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def client_triggers(
    transport: Transport, *, poll: bool = True, copy: bool = True, content_type: str = JSON_CONTENT_TYPE
) -> Triggers:
    """Triggers of a server built on ``PackagingClient``; ``poll=False`` never polls, ``copy=False`` sends no copy."""
    client = PackagingClient(transport, content_type=content_type)

    def request(docset_id: str) -> None:
        url = f"http://server.invalid/api/docsets/{docset_id}"
        if copy:
            client.request_package(docset_id, url)
            return
        now = utc_now()
        bare = PackageRequest(
            docset_id=docset_id,
            request_id=new_request_id(),
            timestamp=now,
            docset_url=url,
            reply_to=f"package/{docset_id}",
            requested_at=now,
        )
        transport.send(PACKAGE_REQUESTS, encode(bare), confirm=True)

    return Triggers(
        CallableTrigger("request", request),
        CallableTrigger("poll", client.status if poll else lambda docset_id: None),
        CallableTrigger("delete", client.request_delete),
    )
