"""Server test fixtures: a WSGI client (no sockets), a seeded database, an in-memory broker, a fake packager."""

from __future__ import annotations

import io
import json
import threading
import wsgiref.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bottle
import pytest

from examples.server import ApiKeySpec, Settings, create_app
from examples.server.repo import NewDocument, insert_document
from tdm_messaging.codec import decode, encode
from tdm_messaging.destinations import DELETE_REQUESTS, PACKAGE_REQUESTS, reply_queue
from tdm_messaging.models import Accepted, Complete, Deleted, DeleteRequest, Failed, Message, PackageRequest, Progress
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport
from tdm_messaging.transport import Delivery

ALICE, BOB, PACKAGER = "alice-key", "bob-key", "packager-key"
PUBLIC_URL = "http://tdm.test"


@dataclass
class Response:
    """What the app answered."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers.get("content-type", "").startswith("application/json"), self.headers
        return json.loads(self.body)

    @property
    def error_code(self) -> str:
        return str(self.json()["error"]["code"])


@dataclass
class Client:
    """Calls the WSGI app in-process, as waitress would, with ``key`` as X-API-Key."""

    app: bottle.Bottle
    key: str | None = ALICE

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        body: bytes | None = None,
        content_type: str | None = None,
        key: str | None = "default",
        headers: dict[str, str] | None = None,
    ) -> Response:
        if json_body is not None:
            body = json.dumps(json_body).encode()
            content_type = content_type or "application/json"
        body = body or b""
        environ: dict[str, Any] = {}
        wsgiref.util.setup_testing_defaults(environ)
        path_info, _, query = path.partition("?")
        environ.update(
            REQUEST_METHOD=method,
            PATH_INFO=path_info,
            QUERY_STRING=query,
            CONTENT_LENGTH=str(len(body)),
            HTTP_HOST="tdm.test",
        )
        environ["wsgi.input"] = io.BytesIO(body)
        if content_type:
            environ["CONTENT_TYPE"] = content_type
        api_key = self.key if key == "default" else key
        if api_key is not None:
            environ["HTTP_X_API_KEY"] = api_key
        for name, value in (headers or {}).items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        captured: dict[str, Any] = {}

        def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            captured["status"] = int(status.split(maxsplit=1)[0])
            captured["headers"] = {k.lower(): v for k, v in response_headers}

        chunks = self.app(environ, start_response)
        try:
            data = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        return Response(captured["status"], captured["headers"], data)

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, json_body: Any = None, **kw: Any) -> Response:
        return self.request("POST", path, json_body=json_body, **kw)

    def patch(self, path: str, json_body: Any = None, **kw: Any) -> Response:
        return self.request("PATCH", path, json_body=json_body, **kw)

    def delete(self, path: str, **kw: Any) -> Response:
        return self.request("DELETE", path, **kw)


SAMPLE_DOCS = [
    NewDocument(
        title="Turbulent mixing in stratified ocean layers",
        authors=["Ada Lovelace"],
        department="Department of Earth, Atmospheric, and Planetary Sciences",
        degree="Ph.D.",
        year=1975,
        abstract="We measure turbulence and mixing in the ocean thermocline.",
        full_text="Ocean turbulence " * 200,
        handle="1721.1/0001",
        uri="https://dspace.example/handle/1721.1/0001",
    ),
    NewDocument(
        title="Neural networks for protein folding",
        authors=["Grace Hopper", "Alan Turing"],
        department="Department of Electrical Engineering and Computer Science",
        degree="S.M.",
        year=1999,
        abstract="A neural approach to predicting protein structure.",
        full_text="Protein folding with neural networks. " * 100,
        handle="1721.1/0002",
    ),
    NewDocument(
        title="Urban heat islands and zoning",
        authors=["Jane Jacobs"],
        department="Department of Urban Studies and Planning",
        degree="M.C.P.",
        year=2010,
        abstract="Zoning decisions change the urban heat island effect.",
        full_text="Heat islands in dense neighbourhoods; ocean breezes cool the coast. " * 50,
        handle="1721.1/0003",
    ),
    NewDocument(
        title="Deep learning for ocean turbulence closure",
        authors=["Edward Lorenz"],
        department="Department of Electrical Engineering and Computer Science",
        degree="Ph.D.",
        year=2021,
        abstract="Learned closures for turbulence in ocean models.",
        full_text="Turbulence closure learned by deep neural networks. " * 80,
        handle="1721.1/0004",
        collection="eecs-theses",
    ),
]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        db_url=f"sqlite:///{tmp_path / 'tdm.db'}",
        broker_url="memory://",
        archive_dir=tmp_path / "archives",
        public_url=PUBLIC_URL,
        api_keys=(
            ApiKeySpec("alice", ALICE),
            ApiKeySpec("bob", BOB),
            ApiKeySpec("packager", PACKAGER, "packager"),
        ),
    )


@pytest.fixture
def broker() -> InMemoryBroker:
    return InMemoryBroker()


@pytest.fixture
def app(settings: Settings, broker: InMemoryBroker) -> Iterator[bottle.Bottle]:
    application = create_app(settings, transport_factory=lambda: InMemoryTransport(broker))
    with application.config["tdm.db"].connect() as conn:
        for doc in SAMPLE_DOCS:
            insert_document(conn, doc)
    yield application
    application.config["tdm.close"]()


@pytest.fixture
def client(app: bottle.Bottle) -> Client:
    return Client(app)


def make_docset(client: Client, document_ids: list[int] | None = None, name: str = "mine") -> int:
    response = client.post("/api/docsets", {"name": name, "document_ids": document_ids or [1, 2]})
    assert response.status == 201, response.body
    return int(response.json()["id"])


Step = Callable[[PackageRequest, datetime], Message]


@dataclass
class FakePackager:
    """A packager thread on its own transport: for each request it sends the scripted replies,
    one per :meth:`step` call by the test, so the test decides what the server sees when."""

    broker: InMemoryBroker
    script: list[Step]
    requests: list[PackageRequest] = field(default_factory=list)
    deletes: list[DeleteRequest] = field(default_factory=list)
    _go: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    _sent: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> FakePackager:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        transport = InMemoryTransport(self.broker)

        def handle(delivery: Delivery) -> None:
            message = decode(delivery.envelope)
            if isinstance(message, DeleteRequest):
                self.deletes.append(message)
                reply = Deleted(
                    docset_id=message.docset_id,
                    request_id=message.request_id,
                    sequence=1,
                    timestamp=datetime.now(UTC),
                    archive_url=message.archive_url,
                )
                transport.send(reply_queue(message.docset_id), encode(reply), confirm=True)
                self._sent.release()
                return
            assert isinstance(message, PackageRequest)
            self.requests.append(message)
            for step in self.script:
                while not self._go.acquire(timeout=0.1):
                    if self._stop.is_set():
                        return
                scripted = step(message, datetime.now(UTC))
                transport.send(reply_queue(message.docset_id), encode(scripted), confirm=True)
                self._sent.release()

        try:
            transport.consume([PACKAGE_REQUESTS, DELETE_REQUESTS], handle, stop=self._stop)
        finally:
            transport.close()

    def step(self) -> None:
        """Let the packager send its next reply, and wait until it is in the reply queue."""
        self._go.release()
        assert self._sent.acquire(timeout=10), "the fake packager did not reply"

    def wait_delete(self) -> None:
        assert self._sent.acquire(timeout=10), "the fake packager did not answer the delete"

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def accepted(request: PackageRequest, now: datetime) -> Message:
    return Accepted(
        docset_id=request.docset_id, request_id=request.request_id, sequence=1, timestamp=now, estimate_seconds=30
    )


def progress(request: PackageRequest, now: datetime) -> Message:
    return Progress(
        docset_id=request.docset_id,
        request_id=request.request_id,
        sequence=2,
        timestamp=now,
        items_done=1,
        items_total=2,
        percent=50.0,
        eta_seconds=15,
    )


def complete(request: PackageRequest, now: datetime) -> Message:
    return Complete(
        docset_id=request.docset_id,
        request_id=request.request_id,
        sequence=3,
        timestamp=now,
        archive_url=f"{PUBLIC_URL}/archives/docset-{request.docset_id}.zip",
        size_bytes=1234,
        sha256="ab" * 32,
    )


def failed(request: PackageRequest, now: datetime) -> Message:
    return Failed(
        docset_id=request.docset_id,
        request_id=request.request_id,
        sequence=2,
        timestamp=now,
        reason="storage is full",
        retryable=True,
    )
