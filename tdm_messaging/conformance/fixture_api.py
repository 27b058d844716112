"""A stand-in for the TDM API that a packager under test fetches docsets from: two small documents per docset.

It answers what the reference server answers a packager (``docs/server.md``):

* ``GET /api/docsets/<id>?fmt=meta,txt`` -> ``{"docset": {...}, "formats": [...], "members": [...], "next": null}``,
  each member ``{"id", "title", "year", "links": {"self", "text"}}``; a docset id ending in
  ``-missing`` answers 404 (the kit's "docset the API cannot serve" case);
* ``GET /api/documents/<id>/text`` -> the document's text, ``text/plain; charset=utf-8``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

from tdm_messaging.errors import ConfigurationError

__all__ = ["MISSING_SUFFIX", "DocsetApi", "parse_listen"]

MISSING_SUFFIX: Final = "-missing"
"""Docsets whose id ends with this are answered 404."""

_DOCUMENTS: Final = {
    "conformance-1": ("Über die Konformität von Nachrichten", 2019, "Ein kurzer Text. Ελληνικά, 日本語, emoji 📦.\n"),
    "conformance-2": ("On replies that arrive twice", 2021, "A second short text.\n" * 20),
}


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``PORT`` 0 picks a free one).

    Raises:
        ConfigurationError: not ``HOST:PORT`` with a port 0 to 65535.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigurationError(f"--api-listen {text!r} is not HOST:PORT, e.g. 127.0.0.1:8790")
    return host.strip("[]"), int(port)


class DocsetApi:
    """The stand-in API, served from a background thread while the kit runs.

    Args:
        host: the address to listen on.
        port: the port (0: any free one).
        public_url: the base URL the packager reaches it at (default ``http://host:port``).

    Raises:
        ConfigurationError: the address cannot be listened on.
    """

    def __init__(self, host: str, port: int, *, public_url: str | None = None) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api._answer(self)

            def log_message(self, format: str, *args: object) -> None:
                api.requests.append(self.requestline)

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot listen on {host}:{port} for the stand-in docset API: {exc.strerror or exc}; "
                "pick another --api-listen HOST:PORT"
            ) from exc
        self._server.daemon_threads = True
        bound_host, bound_port = str(self._server.server_address[0]), int(self._server.server_address[1])
        self.base_url = (public_url or f"http://{bound_host}:{bound_port}").rstrip("/")
        self.requests: list[str] = []
        self._thread = threading.Thread(target=self._server.serve_forever, name="conformance-api", daemon=True)

    def docset_url(self, docset_id: str) -> str:
        """The URL a package request for ``docset_id`` names."""
        return f"{self.base_url}/api/docsets/{docset_id}?fmt=meta,txt"

    def __enter__(self) -> DocsetApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        segments = [unquote(s) for s in parts.path.strip("/").split("/")]
        if len(segments) == 3 and segments[:2] == ["api", "docsets"] and not segments[2].endswith(MISSING_SUFFIX):
            formats = parse_qs(parts.query).get("fmt", ["meta,txt"])[0].split(",")
            self._send_json(handler, self._listing(segments[2], formats))
        elif len(segments) == 4 and segments[:2] == ["api", "documents"] and segments[3] == "text":
            document = _DOCUMENTS.get(segments[2])
            if document is None:
                self._send(handler, 404, b'{"error": "no such document"}', "application/json")
            else:
                self._send(handler, 200, document[2].encode(), "text/plain; charset=utf-8")
        else:
            self._send(handler, 404, b'{"error": "not found"}', "application/json")

    def _listing(self, docset_id: str, formats: list[str]) -> dict[str, object]:
        members = []
        for doc_id, (title, year, _text) in _DOCUMENTS.items():
            links = {
                "self": f"{self.base_url}/api/documents/{doc_id}",
                "text": f"{self.base_url}/api/documents/{doc_id}/text",
            }
            members.append({"id": doc_id, "title": title, "year": year, "links": links})
        return {
            "docset": {"id": docset_id, "name": "conformance", "member_count": len(members)},
            "formats": formats,
            "members": members,
            "next": None,
        }

    @staticmethod
    def _send_json(handler: BaseHTTPRequestHandler, body: object) -> None:
        DocsetApi._send(handler, 200, json.dumps(body, ensure_ascii=False).encode(), "application/json")

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
