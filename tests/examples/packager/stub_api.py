"""A stub of the TDM API's packager-facing routes on real HTTP (127.0.0.1, port 0), and a bag validator."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

API_KEY = "packager-secret-key-123"
CHUNK = 64 * 1024


def generated_text(doc_id: str, size: int) -> Iterator[bytes]:
    """``size`` bytes of deterministic text for ``doc_id``, in chunks (never all in memory)."""
    line = f"Thesis {doc_id}: a line of realistic-looking full text about mining texts and data.\n".encode()
    block = line * (CHUNK // len(line) + 1)
    left = size
    while left > 0:
        piece = block[: min(left, CHUNK)]
        left -= len(piece)
        yield piece


@dataclass
class StubDoc:
    """A document: metadata, and either a literal text or a generated one of ``size`` bytes."""

    doc_id: str
    metadata: dict[str, Any]
    text: bytes | None = None
    size: int = 0
    text_link: str | None = None  # override the link the listing gives
    trickle_seconds: float = 0.0  # send the text one byte per this many seconds (a hostile, slow API)

    def chunks(self) -> Iterator[bytes]:
        if self.text is not None:
            yield self.text
        else:
            yield from generated_text(self.doc_id, self.size)

    def length(self) -> int:
        return len(self.text) if self.text is not None else self.size


@dataclass
class StubApi:
    """State of the stub; tests mutate it between requests."""

    docs: dict[str, StubDoc] = field(default_factory=dict)
    docsets: dict[str, list[str]] = field(default_factory=dict)
    page_size: int = 2
    key: str = API_KEY
    # path (without query) -> (status, headers): e.g. redirects
    routes: dict[str, tuple[int, dict[str, str]]] = field(default_factory=dict)
    fail_next: int = 0  # answer this many requests with 503 first
    fail_headers: dict[str, str] = field(default_factory=dict)  # sent with those 503s, e.g. Retry-After
    seen_at: list[float] = field(default_factory=list)  # time.monotonic() of each request
    seen: list[str] = field(default_factory=list)
    seen_keys: list[str | None] = field(default_factory=list)
    seen_cookies: list[str | None] = field(default_factory=list)  # the Cookie header of each request
    listing_hook: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    base: str = ""
    closing: threading.Event = field(default_factory=threading.Event)  # ends trickles when the stub stops
    text_delay: float = 0.0  # seconds each text answer waits before its headers (a remote API's latency)
    in_flight: int = 0  # text requests waiting out text_delay now (none has its answer yet)
    max_in_flight: int = 0  # the most text requests waiting at once
    peers: set[tuple[str, int]] = field(default_factory=set)  # the client's (address, port) of every request

    def add_docset(self, docset_id: str, docs: list[StubDoc]) -> None:
        for doc in docs:
            self.docs[doc.doc_id] = doc
        self.docsets[docset_id] = [d.doc_id for d in docs]

    def text_requests(self) -> int:
        return sum(1 for path in self.seen if path.endswith("/text"))


def _handler(api: StubApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, value: Any) -> None:
            self._send(status, json.dumps(value).encode(), {"Content-Type": "application/json"})

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            path = parts.path
            with api.lock:
                api.seen.append(self.path)
                api.seen_at.append(time.monotonic())
                api.seen_keys.append(self.headers.get("X-API-Key"))
                api.seen_cookies.append(self.headers.get("Cookie"))
                api.peers.add(self.client_address[:2])
                if api.fail_next > 0:
                    api.fail_next -= 1
                    self._send(503, b'{"error": "busy"}', {"Content-Type": "application/json", **api.fail_headers})
                    return
            if path in api.routes:
                status, headers = api.routes[path]
                self._send(status, b"", headers)
                return
            if self.headers.get("X-API-Key") != api.key:
                self._json(401 if not self.headers.get("X-API-Key") else 403, {"error": "bad key"})
                return
            segments = [unquote(seg) for seg in path.strip("/").split("/")]
            if len(segments) == 3 and segments[:2] == ["api", "docsets"]:
                self._listing(segments[2], parse_qs(parts.query))
            elif len(segments) == 4 and segments[:2] == ["api", "documents"] and segments[3] == "text":
                self._text(segments[2])
            else:
                self._json(404, {"error": "no such route"})

        def _listing(self, docset_id: str, query: dict[str, list[str]]) -> None:
            ids = api.docsets.get(docset_id)
            if ids is None:
                self._json(404, {"error": "no such docset"})
                return
            page = int(query.get("page", ["1"])[0])
            start = (page - 1) * api.page_size
            chunk = ids[start : start + api.page_size]
            members = []
            for doc_id in chunk:
                doc = api.docs[doc_id]
                link = doc.text_link if doc.text_link is not None else f"/api/documents/{quote(doc_id, safe='')}/text"
                members.append({"id": doc_id, "metadata": doc.metadata, "links": {"text": link}})
            more = start + api.page_size < len(ids)
            body: dict[str, Any] = {
                "id": docset_id,
                "total": len(ids),
                "members": members,
                "next": f"/api/docsets/{docset_id}?fmt=meta,txt&page={page + 1}" if more else None,
            }
            if api.listing_hook is not None:
                body = api.listing_hook(body)
            self._json(200, body)

        def _text(self, doc_id: str) -> None:
            # Counted before any byte of the answer is sent, so a client cannot have moved on to
            # its next request yet: the count is exactly the client's concurrent requests.
            with api.lock:
                api.in_flight += 1
                api.max_in_flight = max(api.max_in_flight, api.in_flight)
            try:
                api.closing.wait(api.text_delay)
            finally:
                with api.lock:
                    api.in_flight -= 1
            self._answer_text(doc_id)

        def _answer_text(self, doc_id: str) -> None:
            doc = api.docs.get(doc_id)
            if doc is None:
                self._json(404, {"error": "no such document"})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(doc.length()))
            self.end_headers()
            if doc.trickle_seconds:
                try:
                    self.wfile.flush()
                    for byte in b"".join(doc.chunks()):
                        if api.closing.wait(doc.trickle_seconds):
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                except OSError:  # the reader hung up: what a cut-off packager does
                    self.close_connection = True
                return
            for chunk in doc.chunks():
                self.wfile.write(chunk)

    return Handler


@contextmanager
def serve(api: StubApi) -> Iterator[str]:
    """Serve ``api`` on 127.0.0.1 (a free port); yield its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    api.base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield api.base
    finally:
        api.closing.set()
        server.shutdown()
        server.server_close()
        thread.join()


def validate_bag(path: str) -> dict[str, Any]:
    """Check a zipped bag fully (every checksum recomputed from the zip); return what was found.

    Raises AssertionError naming the first problem.
    """
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert len(names) == len(set(names)), "duplicate entries in the zip"
        roots = {n.split("/", 1)[0] for n in names}
        assert len(roots) == 1, f"a bag has one top directory, got {roots}"
        root = roots.pop()
        for name in names:
            assert not name.startswith("/") and "\\" not in name and ".." not in name.split("/"), name
        bagit = zf.read(f"{root}/bagit.txt").decode()
        assert bagit == "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n", bagit
        payload = {n[len(root) + 1 :] for n in names if n.startswith(f"{root}/data/") and not n.endswith("/")}
        manifest = _read_manifest(zf.read(f"{root}/manifest-sha256.txt").decode())
        assert set(manifest) == payload, "manifest and payload differ"
        octets = 0
        for relpath, expected in manifest.items():
            digest = hashlib.sha256()
            with zf.open(f"{root}/{relpath}") as entry:
                while chunk := entry.read(CHUNK):
                    digest.update(chunk)
                    octets += len(chunk)
            assert digest.hexdigest() == expected, f"checksum of {relpath} is wrong"
        info_text = zf.read(f"{root}/bag-info.txt").decode()
        info = dict(line.split(": ", 1) for line in info_text.splitlines())
        assert info["Payload-Oxum"] == f"{octets}.{len(payload)}", (info["Payload-Oxum"], octets, len(payload))
        tags = _read_manifest(zf.read(f"{root}/tagmanifest-sha256.txt").decode())
        assert set(tags) == {"bagit.txt", "bag-info.txt", "manifest-sha256.txt"}, tags
        for relpath, expected in tags.items():
            assert hashlib.sha256(zf.read(f"{root}/{relpath}")).hexdigest() == expected, relpath
        return {"root": root, "payload": sorted(payload), "info": info, "octets": octets}


def _read_manifest(text: str) -> dict[str, str]:
    entries = {}
    for line in text.splitlines():
        digest, relpath = line.split("  ", 1)
        assert len(digest) == 64
        entries[relpath.replace("%0A", "\n").replace("%0D", "\r").replace("%25", "%")] = digest
    return entries


def sample_docs(n: int, *, size: int = 0) -> list[StubDoc]:
    """``n`` documents: tiny texts, or generated texts of ``size`` bytes with a year each."""
    if size:
        return [StubDoc(f"d{i}", {"title": f"Thesis {i}", "year": 2000 + i % 20}, size=size) for i in range(n)]
    return [StubDoc(str(i), {"title": f"Thesis {i}"}, text=f"full text of {i}\n".encode()) for i in range(n)]
