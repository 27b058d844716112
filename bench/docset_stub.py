"""``python -m bench.docset_stub PORT``: a TDM API stand-in paging like the reference server, texts made on the fly.

The one docset stub of the bench (the packaging, estimate and scaling groups). A docset id says
its shape: ``<tag>-<members>x<bytes>`` (e.g. ``big-2048x1048576``) is a docset of ``members``
documents of ``bytes`` bytes of text each; ``<tag>-<members>x<bytes>d<ms>`` (e.g.
``lat-1000x20480d20``) also answers every request of the docset (listing pages and texts) ``ms``
milliseconds late, as a remote API does.

The listing is the reference server's (``docs/server.md``): ``limit`` members a page (default
100, at most 1000; more is refused with 400) from ``after``, a ``next`` link while members are
left, ``docset.member_count``, and each member's fields inline with its ``text_bytes`` and an
absolute ``links.text`` (``/api/docsets/<id>/<n>/text``). Texts are slices of one pseudo-random
block of words, so the stub spends almost nothing to serve gigabytes. Sockets are TCP_NODELAY: a
small answer is not held back by Nagle's algorithm waiting for the client's delayed ACK (~40 ms).
"""

from __future__ import annotations

import json
import random
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "docset_delay_ms", "docset_shape", "main", "serve", "text_block"]

_BLOCK_BYTES = 1 << 20
_CHUNK = 64 * 1024
_SHAPE = re.compile(r"[A-Za-z0-9._~-]*?-?(\d+)x(\d+)(?:d(\d+))?")
DEFAULT_LIMIT = 100
"""Members a listing page holds when the request names no ``limit`` (the reference server's default)."""
MAX_LIMIT = 1000
"""The largest ``limit`` answered (the reference server's); a larger one is refused with 400."""


def text_block(size: int = _BLOCK_BYTES, seed: int = 5) -> bytes:
    """``size`` bytes of English-looking words (deflate compresses it about as much as real theses)."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("etaoinshrdlucmfwypvbgkqjxz") for _ in range(rng.randint(2, 11))) for _ in range(5000)]
    out = bytearray()
    while len(out) < size:
        out += " ".join(rng.choice(words) for _ in range(12)).encode() + b".\n"
    return bytes(out[:size])


def docset_shape(docset_id: str) -> tuple[int, int] | None:
    """``(members, bytes per text)`` of a docset id ``<tag>-<members>x<bytes>[d<ms>]``, or ``None``."""
    match = _SHAPE.fullmatch(docset_id)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def docset_delay_ms(docset_id: str) -> int:
    """The per-response delay a docset id asks for (``...d<ms>``), 0 when none."""
    match = _SHAPE.fullmatch(docset_id)
    return int(match.group(3)) if match is not None and match.group(3) else 0


def _number(query: dict[str, list[str]], name: str, default: int) -> int | None:
    """A non-negative integer query parameter, ``default`` when absent, ``None`` when it is not one."""
    value = query.get(name, [str(default)])[0]
    return int(value) if value.isdigit() else None


class _Handler(BaseHTTPRequestHandler):
    block = text_block()
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # TCP_NODELAY on every connection (socketserver.StreamRequestHandler)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        segments = [s for s in parts.path.split("/") if s]
        shape = docset_shape(segments[2]) if len(segments) >= 3 and segments[:2] == ["api", "docsets"] else None
        if shape is None:
            self.send_error(404)
        elif len(segments) == 3:
            self._listing(segments[2], shape[0], shape[1], parse_qs(parts.query))
        elif len(segments) == 5 and segments[4] == "text" and segments[3].isdigit():
            self._text(segments[2], int(segments[3]), shape[0], shape[1])
        else:
            self.send_error(404)

    @staticmethod
    def _pause(docset_id: str) -> None:
        delay_ms = docset_delay_ms(docset_id)
        if delay_ms > 0:
            time.sleep(delay_ms / 1000)  # each connection has its own thread: concurrent requests wait together

    def _listing(self, docset_id: str, members: int, size: int, query: dict[str, list[str]]) -> None:
        limit, after = _number(query, "limit", DEFAULT_LIMIT), _number(query, "after", 0)
        if limit is None or after is None or not 1 <= limit <= MAX_LIMIT:
            self.send_error(400)
            return
        last = min(after + limit, members)
        base = f"http://{self.headers['Host']}/api/docsets/{docset_id}"
        body = json.dumps(
            {
                "docset": {"id": docset_id, "member_count": members},
                "members": [
                    {
                        "id": f"{docset_id}-doc{i}",
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
        self._pause(docset_id)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _text(self, docset_id: str, number: int, members: int, size: int) -> None:
        if not 1 <= number <= members:
            self.send_error(404)
            return
        self._pause(docset_id)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        block = self.block
        offset = hash((docset_id, number)) % (len(block) - _CHUNK)
        sent = 0
        while sent < size:
            n = min(_CHUNK, size - sent)
            start = (offset + sent) % (len(block) - n)
            self.wfile.write(block[start : start + n])
            sent += n


def serve(port: int = 0) -> ThreadingHTTPServer:
    """The stub bound to 127.0.0.1:``port`` (0: any free port), not yet serving (call ``serve_forever``)."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    """Serve on 127.0.0.1:PORT (0: any free port; the port is printed on the first line) until killed."""
    args = sys.argv[1:] if argv is None else argv
    server = serve(int(args[0]) if args else 0)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
