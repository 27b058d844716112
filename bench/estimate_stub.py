"""``python -m bench.estimate_stub``: a TDM API stand-in for the estimate bench: pages, sizes, a response delay.

A docset id says its shape and its API's latency: ``<tag>-<members>x<bytes>d<ms>`` (e.g.
``a-1000x20480d20``) is ``members`` texts of ``bytes`` bytes, every response of it (listing pages
and texts) answered ``ms`` milliseconds late, as a remote API would. The listing is the reference
server's (``docs/server.md``): ``limit`` (default 100, at most 1000) members a page by ``after``,
``next`` links, ``docset.member_count``, and each member's ``text_bytes``. Sockets set
TCP_NODELAY, so a small body never waits for a delayed ACK.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from bench.docset_stub import text_block

__all__ = ["main", "shape_of"]

_SHAPE = re.compile(r"[A-Za-z0-9]+-(\d+)x(\d+)d(\d+)")
_CHUNK = 64 * 1024
MAX_LIMIT = 1000


def shape_of(docset_id: str) -> tuple[int, int, float] | None:
    """``(members, bytes per text, delay in seconds)`` of ``<tag>-<members>x<bytes>d<ms>``, or ``None``."""
    match = _SHAPE.fullmatch(docset_id)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3)) / 1000


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().server_bind()


class _Handler(BaseHTTPRequestHandler):
    block = text_block()
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        segments = [s for s in parts.path.split("/") if s]
        if len(segments) == 3 and segments[:2] == ["api", "docsets"]:
            self._listing(segments[2], query)
        elif len(segments) == 5 and segments[:2] == ["api", "docsets"] and segments[4] == "text":
            self._text(segments[2], segments[3])
        else:
            self.send_error(404)

    def _listing(self, docset_id: str, query: dict[str, list[str]]) -> None:
        shape = shape_of(docset_id)
        limit = int(query.get("limit", ["100"])[0])
        if shape is None or not 1 <= limit <= MAX_LIMIT:
            self.send_error(404 if shape is None else 400)
            return
        members, size, delay = shape
        after = int(query.get("after", ["0"])[0])
        last = min(after + limit, members)
        base = f"http://{self.headers['Host']}/api/docsets/{docset_id}"
        body = json.dumps(
            {
                "docset": {"id": docset_id, "member_count": members},
                "members": [
                    {
                        "id": i,
                        "title": f"Thesis {i}",
                        "year": 2000 + i % 25,
                        "authors": [f"Author {i}"],
                        "text_bytes": size,
                        "links": {"text": f"{base}/{i}/text"},
                    }
                    for i in range(after + 1, last + 1)
                ],
                "next": f"{base}?fmt=meta,txt&after={last}&limit={limit}" if last < members else None,
            }
        ).encode()
        time.sleep(delay)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _text(self, docset_id: str, doc: str) -> None:
        shape = shape_of(docset_id)
        if shape is None:
            self.send_error(404)
            return
        _, size, delay = shape
        time.sleep(delay)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        block = self.block
        offset = hash(doc) % (len(block) - _CHUNK)
        sent = 0
        while sent < size:
            n = min(_CHUNK, size - sent)
            start = (offset + sent) % (len(block) - n)
            self.wfile.write(block[start : start + n])
            sent += n


def main(argv: list[str] | None = None) -> int:
    """Serve on 127.0.0.1:PORT (0: any free port; the port is printed on the first line) until killed."""
    args = sys.argv[1:] if argv is None else argv
    server = _Server(("127.0.0.1", int(args[0]) if args else 0), _Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
