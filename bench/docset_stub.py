"""``python -m bench.docset_stub PORT``: a TDM API stand-in serving docsets of any size, texts generated on the fly.

A docset id says its shape: ``<tag>-<members>x<bytes>`` (e.g. ``big-2048x1048576``) is a docset of
``members`` documents of ``bytes`` bytes of text each; ``<tag>-<members>x<bytes>d<ms>`` (e.g.
``lat-1000x20480d20``) also answers every request of the docset (listing and texts) ``ms``
milliseconds late, as a remote API does. Texts are slices of one pseudo-random block of words, so
the stub spends almost nothing to serve gigabytes. A listing asked with ``limit`` (and ``after``)
is paged as the server pages it, with a ``next`` link; without, it is one page. Sockets are
TCP_NODELAY: a small answer is not held back by Nagle's algorithm waiting for the client's
delayed ACK (~40 ms).
"""

from __future__ import annotations

import json
import random
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

__all__ = ["docset_delay_ms", "docset_shape", "main", "text_block"]

_BLOCK_BYTES = 1 << 20
_CHUNK = 64 * 1024
_SHAPE = re.compile(r"[A-Za-z0-9._~-]*?-?(\d+)x(\d+)(?:d(\d+))?")


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


class _Handler(BaseHTTPRequestHandler):
    block = text_block()
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # TCP_NODELAY on every connection (socketserver.StreamRequestHandler)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        segments = [s for s in parts.path.split("/") if s]
        query = parse_qs(parts.query)
        if len(segments) == 3 and segments[:2] == ["api", "docsets"]:
            self._pause(docset_delay_ms(segments[2]))
            self._listing(segments[2], int(query.get("after", ["0"])[0]), query.get("limit", [None])[0])
        elif len(segments) == 4 and segments[:2] == ["api", "documents"] and segments[3] == "text":
            self._pause(int(query.get("delay", ["0"])[0]))
            self._text(segments[2], int(query.get("size", ["0"])[0]))
        else:
            self.send_error(404)

    @staticmethod
    def _pause(delay_ms: int) -> None:
        if delay_ms > 0:
            time.sleep(delay_ms / 1000)  # each connection has its own thread: concurrent requests wait together

    def _listing(self, docset_id: str, after: int, limit: str | None) -> None:
        """One page: members ``after`` onwards, ``limit`` of them with a ``next`` link when more are left, as
        the server pages (a probe asking for one member gets one); without ``limit``, all of them."""
        shape = docset_shape(docset_id)
        if shape is None:
            self.send_error(404)
            return
        members, size = shape
        last = members if limit is None else min(after + max(int(limit), 1), members)
        delay = docset_delay_ms(docset_id)
        suffix = f"&delay={delay}" if delay else ""
        body = json.dumps(
            {
                "total": members,
                "members": [
                    {
                        "id": f"{docset_id}-doc{i}",
                        "metadata": {"title": f"Thesis {i}", "year": 2000 + i % 25, "author": f"Author {i}"},
                        "links": {"text": f"/api/documents/{docset_id}-doc{i}/text?size={size}{suffix}"},
                    }
                    for i in range(after, last)
                ],
                "next": f"/api/docsets/{docset_id}?after={last}&limit={limit}" if last < members else None,
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _text(self, doc_id: str, size: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        block = self.block
        offset = hash(doc_id) % (len(block) - _CHUNK)
        sent = 0
        while sent < size:
            n = min(_CHUNK, size - sent)
            start = (offset + sent) % (len(block) - n)
            self.wfile.write(block[start : start + n])
            sent += n


def main(argv: list[str] | None = None) -> int:
    """Serve on 127.0.0.1:PORT (0: any free port; the port is printed on the first line) until killed."""
    args = sys.argv[1:] if argv is None else argv
    port = int(args[0]) if args else 0
    server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
