"""The listing is read in the largest pages the server allows: against the reference server, on real HTTP in-process."""

from __future__ import annotations

import io
import json
import threading
import wsgiref.util
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

import examples.server.routes.docsets as docset_routes
from examples.packager.api import LISTING_PAGE_SIZE, ApiClient
from examples.packager.listing_meter import PROBES
from examples.packager.packaging import Packager
from examples.packager.storage import LocalStorage
from examples.server import ApiKeySpec, Settings, create_app
from examples.server.repo import NewDocument, insert_document
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport

OWNER, PACKAGER_KEY = "alice-key", "packager-key"
MEMBERS = 2_345


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class ReferenceServer:
    """The reference server's WSGI app on 127.0.0.1 (a free port), in a thread; ``listings`` records each
    ``GET /api/docsets/<id>`` query string; ``cap``, when set, cuts a larger ``limit`` down to it silently."""

    def __init__(self, tmp: Path) -> None:
        self.listings: list[dict[str, list[str]]] = []
        self.cap: int | None = None
        self._server: WSGIServer = make_server("127.0.0.1", 0, self._app, handler_class=_Quiet)
        self.base = f"http://127.0.0.1:{self._server.server_port}"
        settings = Settings(
            db_url=f"sqlite:///{tmp / 'tdm.db'}",
            broker_url="memory://",
            archive_dir=tmp / "archives",
            public_url=self.base,
            api_keys=(ApiKeySpec("alice", OWNER), ApiKeySpec("packager", PACKAGER_KEY, "packager")),
        )
        broker = InMemoryBroker()
        self.app = create_app(settings, transport_factory=lambda: InMemoryTransport(broker))
        with self.app.config["tdm.db"].connect() as conn:
            ids = [
                insert_document(
                    conn,
                    NewDocument(
                        title=f"Thesis {i}",
                        authors=["A. Author"],
                        department="Physics",
                        degree="Ph.D.",
                        year=2000 + i % 20,
                        abstract="An abstract.",
                        full_text=f"text {i} " * 20,
                    ),
                )
                for i in range(MEMBERS)
            ]
        self.docset_id = self._create_docset(ids)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _create_docset(self, ids: list[int]) -> int:
        # Through the app's own route (no socket yet): the server decides what a docset is.
        body = json.dumps({"name": "all", "document_ids": ids}).encode()
        environ = _environ("POST", "/api/docsets", body=body, key=OWNER)
        status: list[str] = []
        out = b"".join(self.app(environ, lambda s, h, e=None: status.append(s)))
        assert status[0].startswith("201"), out
        return int(json.loads(out)["id"])

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/api/docsets/") and path.count("/") == 3:
            query = parse_qs(environ.get("QUERY_STRING", ""))
            if self.cap is not None and int(query.get("limit", ["100"])[0]) > self.cap:
                query["limit"] = [str(self.cap)]
                environ["QUERY_STRING"] = "&".join(f"{k}={v[0]}" for k, v in query.items())
            self.listings.append(query)
        return self.app(environ, start_response)

    @property
    def docset_url(self) -> str:
        return f"{self.base}/api/docsets/{self.docset_id}?fmt=meta,txt"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self.app.config["tdm.close"]()


def _environ(method: str, path: str, *, body: bytes, key: str) -> dict[str, Any]:
    environ: dict[str, Any] = {}
    wsgiref.util.setup_testing_defaults(environ)
    environ.update(
        REQUEST_METHOD=method, PATH_INFO=path, QUERY_STRING="", CONTENT_LENGTH=str(len(body)),
        CONTENT_TYPE="application/json", HTTP_X_API_KEY=key,
    )  # fmt: skip
    environ["wsgi.input"] = io.BytesIO(body)
    return environ


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceServer]:
    running = ReferenceServer(tmp_path_factory.mktemp("reference-server"))
    yield running
    running.close()


@pytest.fixture
def reference(server: ReferenceServer) -> ReferenceServer:
    server.listings.clear()
    server.cap = None
    return server


def _client(server: ReferenceServer, **kwargs: Any) -> ApiClient:
    return ApiClient(api_base=server.base, api_key=PACKAGER_KEY, **kwargs)


def _read_all(client: ApiClient, url: str) -> tuple[list[int], list[str]]:
    sizes, ids = [], []
    for page in client.docset_pages(url):
        sizes.append(len(page.members))
        ids += [m.doc_id for m in page.members]
    return sizes, ids


def test_the_listing_is_read_in_pages_of_the_servers_largest(reference: ReferenceServer) -> None:
    sizes, ids = _read_all(_client(reference), reference.docset_url)
    assert LISTING_PAGE_SIZE == docset_routes.MAX_PER_PAGE == 1000  # the documented largest (docs/server.md)
    assert sizes == [1000, 1000, 345]
    assert len(ids) == len(set(ids)) == MEMBERS
    assert [q["limit"] for q in reference.listings] == [["1000"]] * 3  # the server's next links keep it
    assert "after" not in reference.listings[0]


def test_a_limit_in_the_requests_url_is_replaced(reference: ReferenceServer) -> None:
    sizes, _ = _read_all(_client(reference), reference.docset_url + "&limit=7")
    assert sizes == [1000, 1000, 345]


def test_a_server_that_caps_smaller_is_followed_page_by_page(reference: ReferenceServer) -> None:
    reference.cap = 400
    sizes, ids = _read_all(_client(reference), reference.docset_url)
    assert sizes == [400] * 5 + [345]
    assert len(set(ids)) == MEMBERS


def test_a_server_that_refuses_the_size_is_read_at_its_default(
    reference: ReferenceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(docset_routes, "MAX_PER_PAGE", 500)  # the server answers 400 to limit=1000
    sizes, ids = _read_all(_client(reference), reference.docset_url)
    assert reference.listings[0]["limit"] == ["1000"]
    assert "limit" not in reference.listings[1]  # asked again as given
    assert sizes == [100] * 23 + [45]  # the server's default page
    assert len(set(ids)) == MEMBERS


def test_the_page_size_is_a_setting(reference: ReferenceServer) -> None:
    assert _read_all(_client(reference, listing_page_size=600), reference.docset_url)[0] == [600] * 3 + [545]
    assert _read_all(_client(reference, listing_page_size=None), reference.docset_url)[0] == [100] * 23 + [45]


def test_the_packager_builds_from_large_pages_and_estimates_from_sizes(
    reference: ReferenceServer, tmp_path: Path
) -> None:
    """The whole job: 3 pages and the one-member probes of latency; the estimate knows the texts' sizes."""
    estimates: list[float | None] = []
    done: list[int] = []

    class Sink:
        def accepted(self, estimate_seconds: float | None) -> None:
            estimates.append(estimate_seconds)

        def progress(self, items_done: int, items_total: int, *, eta_seconds: float | None = None) -> None:
            done.append(items_done)

    storage = LocalStorage(tmp_path / "archives", "http://127.0.0.1:9/archives")
    packager = Packager(api=_client(reference), storage=storage, work_dir=tmp_path, secret=b"s" * 32)
    stored = packager.package(docset_id=str(reference.docset_id), docset_url=reference.docset_url, sink=Sink())
    assert stored.size_bytes > 0
    limits = [q.get("limit") for q in reference.listings]
    assert limits.count(["1"]) == PROBES + 1  # the latency probes and their warm-up
    assert limits.count(["1000"]) == 3
    assert done[-1] == MEMBERS
    assert len(done) <= 101
    [estimate] = estimates
    assert estimate is not None and estimate > 0
    assert packager._meter.text_bytes(MEMBERS) is not None  # the reference server lists text_bytes
