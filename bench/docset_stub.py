"""``python -m bench.docset_stub PORT``: a TDM API stand-in serving docsets of any size, texts generated on the fly.

A docset id says its shape: ``<tag>-<members>x<bytes>`` (e.g. ``big-2048x1048576``) is a docset of
``members`` documents of ``bytes`` bytes of text each. Texts are slices of one pseudo-random block
of words, so the stub spends almost nothing to serve gigabytes.
"""

from __future__ import annotations

import json
import random
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

__all__ = ["docset_shape", "main", "text_block"]

_BLOCK_BYTES = 1 << 20
_CHUNK = 64 * 1024
_SHAPE = re.compile(r"[A-Za-z0-9._~-]*?-?(\d+)x(\d+)")


def text_block(size: int = _BLOCK_BYTES, seed: int = 5) -> bytes:
    """``size`` bytes of English-looking words (deflate compresses it about as much as real theses)."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("etaoinshrdlucmfwypvbgkqjxz") for _ in range(rng.randint(2, 11))) for _ in range(5000)]
    out = bytearray()
    while len(out) < size:
        out += " ".join(rng.choice(words) for _ in range(12)).encode() + b".\n"
    return bytes(out[:size])


def docset_shape(docset_id: str) -> tuple[int, int] | None:
    """``(members, bytes per text)`` of a docset id ``<tag>-<members>x<bytes>``, or ``None``."""
    match = _SHAPE.fullmatch(docset_id)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


class _Handler(BaseHTTPRequestHandler):
    block = text_block()
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        segments = [s for s in parts.path.split("/") if s]
        if len(segments) == 3 and segments[:2] == ["api", "docsets"]:
            self._listing(segments[2])
        elif len(segments) == 4 and segments[:2] == ["api", "documents"] and segments[3] == "text":
            size = int(parse_qs(parts.query).get("size", ["0"])[0])
            self._text(segments[2], size)
        else:
            self.send_error(404)

    def _listing(self, docset_id: str) -> None:
        shape = docset_shape(docset_id)
        if shape is None:
            self.send_error(404)
            return
        members, size = shape
        body = json.dumps(
            {
                "total": members,
                "members": [
                    {
                        "id": f"{docset_id}-doc{i}",
                        "metadata": {"title": f"Thesis {i}", "year": 2000 + i % 25, "author": f"Author {i}"},
                        "links": {"text": f"/api/documents/{docset_id}-doc{i}/text?size={size}"},
                    }
                    for i in range(members)
                ],
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
