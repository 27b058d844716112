"""Fixtures that build a transport per backend, so one suite runs against every broker and backend.

``backend`` is parametrized over every backend id in :data:`ALL_BACKENDS`. Each test gets a
:class:`Backend` handle: ``backend.open()`` opens a fresh transport on the same broker (a new
"process" as far as the protocol is concerned), with an optional short reply TTL; everything it
opened is closed, and every reply queue it named is deleted where the backend can, at teardown.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from tdm_messaging.destinations import Destination, reply_queue
from tdm_messaging.testing import running_worker as testing_running_worker
from tdm_messaging.transport import Transport, open_transport
from tests.conftest import broker_url

if TYPE_CHECKING:
    from tdm_messaging.server import PackagingClient
    from tdm_messaging.status import DocsetStatus, State
    from tdm_messaging.worker import Job, PackageResult

log = logging.getLogger(__name__)

BROKER_BACKENDS = ("rabbitmq-stomp", "activemq-stomp", "rabbitmq-amqp", "redis")
"""Backends behind a real broker process (their URL comes from ``tests.conftest.broker_url``)."""
LOCAL_BACKENDS = ("sqlite-native", "sqlite", "memory", "inmemory")
"""Backends with no broker daemon: the native ``sqlite://`` transport (the embedded default), kombu over a
SQLite file (``sqla+sqlite://``), kombu ``memory://``, and this library's ``inmemory://``."""
ALL_BACKENDS = BROKER_BACKENDS + LOCAL_BACKENDS

DEFAULT_TEST_TTL = 86_400
"""Reply TTL (seconds) of every test transport: the backends' default, so a peer from another run or test
that meets our reply queue declares it with the same x-expires (RabbitMQ refuses inequivalent arguments).
The suite deletes the queues it used at teardown instead of relying on a short TTL."""

STOMP_DIALECT = {"rabbitmq-stomp": "rabbitmq", "activemq-stomp": "activemq"}


def with_query(url: str, **params: object) -> str:
    """``url`` with ``params`` appended to its query string."""
    extra = "&".join(f"{k}={v}" for k, v in params.items())
    if not extra:
        return url
    return url + ("&" if urlsplit(url).query else "?") + extra


def unique_namespace() -> str:
    """A queue namespace of this test's own (see tdm_messaging/transport/namespace.py)."""
    return "t" + uuid.uuid4().hex[:12]


def unique_docset() -> str:
    """A docset id no other test (or engineer) on a shared broker uses."""
    return "conf-" + uuid.uuid4().hex[:16]


@dataclass
class Backend:
    """One backend under test: how to open transports on it, and what to clean up afterwards.

    Attributes:
        name: the backend id (``rabbitmq-stomp``, ..., ``inmemory``).
        url: the transport URL without ``reply_ttl``.
    """

    name: str
    url: str
    _opened: list[Transport] = field(default_factory=list)
    _queues: list[Destination] = field(default_factory=list)
    namespace: str | None = None
    """Queue namespace put in every URL when set. Tests that run a worker set one, so requests left
    on ``docsets/package`` by other tests or runs (the brokers are shared and durable) never reach it."""
    cleanup_params: dict[str, str] = field(default_factory=dict)
    """URL parameters of the transport that deletes the tracked queues at teardown."""

    @property
    def is_stomp(self) -> bool:
        """True for the two STOMP brokers."""
        return self.name in STOMP_DIALECT

    @property
    def is_rabbitmq(self) -> bool:
        """True for the two backends that talk to RabbitMQ."""
        return self.name in {"rabbitmq-stomp", "rabbitmq-amqp"}

    def url_with(self, *, reply_ttl: int = DEFAULT_TEST_TTL, **params: str) -> str:
        """This backend's URL with ``reply_ttl`` and ``params`` set."""
        if self.namespace is not None:
            params = {"namespace": self.namespace, **params}
        return with_query(self.url, reply_ttl=reply_ttl, **params)

    def open(self, *, reply_ttl: int = DEFAULT_TEST_TTL, **params: str) -> Transport:
        """A new transport on this backend's broker (URL query ``params`` added); closed at teardown."""
        transport = open_transport(self.url_with(reply_ttl=reply_ttl, **params))
        self._opened.append(transport)
        return transport

    def reply_queue(self) -> Destination:
        """A fresh reply queue (unique docset id), deleted at teardown where the backend can delete."""
        destination = reply_queue(unique_docset())
        self._queues.append(destination)
        return destination

    def track(self, destination: Destination) -> Destination:
        """Delete ``destination`` at teardown too."""
        self._queues.append(destination)
        return destination

    def cleanup(self) -> None:
        """Delete the tracked queues (best effort) and close every transport opened."""
        if self._queues:
            with contextlib.suppress(Exception):
                params: dict[str, Any] = dict(self.cleanup_params)
                cleaner = self.open(**params)
                for destination in self._queues:
                    with contextlib.suppress(Exception):
                        cleaner.delete(destination)
        for transport in self._opened:
            with contextlib.suppress(Exception):
                transport.close()


def make_backend(name: str, tmp_path: Path) -> Backend:
    """Build the :class:`Backend` for ``name`` (skips, or fails in CI, when its broker is not reachable)."""
    if name in BROKER_BACKENDS:
        return Backend(name, broker_url(name))
    if name == "sqlite-native":
        return Backend(name, f"sqlite:///{tmp_path / 'native-broker.db'}")
    if name == "sqlite":
        return Backend(name, f"sqla+sqlite:///{tmp_path / 'broker.db'}")
    if name == "memory":
        # ``memory://NAME`` is one in-process broker per name (bare ``memory://`` is private to one
        # transport); a name per test gives every test a fresh broker that its transports share.
        return Backend(name, f"memory://conf{uuid.uuid4().hex[:12]}")
    if name == "inmemory":
        # Like ``memory://NAME``: transports of one name share a broker, so a name per test.
        return Backend(name, f"inmemory://conf{uuid.uuid4().hex[:12]}")
    raise AssertionError(f"unknown backend {name!r}")


@pytest.fixture(params=ALL_BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Every backend in turn (test ids are the backend names)."""
    handle = make_backend(request.param, tmp_path)
    try:
        yield handle
    finally:
        handle.cleanup()


@pytest.fixture(params=(*BROKER_BACKENDS, "sqlite-native", "sqlite"))
def cross_process_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Every backend whose queues other processes can share."""
    handle = make_backend(request.param, tmp_path)
    try:
        yield handle
    finally:
        handle.cleanup()


def backend_fixture(*names: str) -> Any:
    """A fixture parametrized over ``names`` only (for tests about some backends)."""

    @pytest.fixture(params=names)
    def _fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
        handle = make_backend(request.param, tmp_path)
        try:
            yield handle
        finally:
            handle.cleanup()

    return _fixture


# -- protocol helpers: a worker in a thread, a scripted packager, polling until a state ------------

ARCHIVE_SIZE = 345345


def archive_url(docset_id: str) -> str:
    """Where the scripted packager says a docset's archive is."""
    return f"https://bucket.example/package/{docset_id}"


def docset_url(docset_id: str) -> str:
    """A docset URL in the seed's form (the docset id is the last path segment)."""
    return f"http://server.example/api/docsets/{docset_id}?fmt=meta,txt"


class ScriptedPackager:
    """A package handler: Accepted (45 s), Progress 1/2, then waits for :attr:`gate`, then Complete.

    Requests for other docsets (litter other tests left on a shared broker's permanent queue)
    are failed at once, so they never hold up the test.
    """

    def __init__(self, docset_id: str, *, gated: bool = True) -> None:
        self.docset_id = docset_id
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.jobs: list[Job] = []

    def __call__(self, job: Job) -> PackageResult:
        from tdm_messaging.worker import JobFailed, PackageResult

        if job.request.docset_id != self.docset_id:
            raise JobFailed("stray request left by another test; not packaged", retryable=True)
        self.jobs.append(job)
        job.accepted(45)
        job.progress(1, 2, eta_seconds=10)
        if not self.gate.wait(timeout=90):
            raise JobFailed("the test never opened the gate")
        return PackageResult(archive_url=archive_url(self.docset_id), size_bytes=ARCHIVE_SIZE)


@contextlib.contextmanager
def running_worker(
    transport: Transport, on_package: Callable[[Job], PackageResult], *, content_type: str = "application/json"
) -> Iterator[None]:
    """Run a :class:`PackagerWorker` in a thread for the ``with`` block; re-raise what it raised."""
    from tdm_messaging.worker import PackagerWorker

    worker = PackagerWorker(transport, on_package=on_package, content_type=content_type)
    with testing_running_worker(worker):
        yield


def poll_until(
    client: PackagingClient, docset_id: str, wanted: State, *, polls: int = 400, interval: float = 0.05
) -> DocsetStatus:
    """Poll ``docset_id`` until its state is ``wanted``; fail with the last status if it never is.

    A hang guard, not a speed assertion: ``polls`` x ``interval`` is far above what any backend needs.
    """
    status = client.status(docset_id)
    for _ in range(polls):
        if status.state is wanted:
            return status
        time.sleep(interval)
        status = client.status(docset_id)
    raise AssertionError(f"docset {docset_id} never reached {wanted}; last status: {status}")
