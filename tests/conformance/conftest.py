"""Fixtures of the kit's tests: the stand-in API, a static file server for archives."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tdm_messaging.conformance.fixture_api import DocsetApi


@pytest.fixture
def api() -> Iterator[DocsetApi]:
    """The stand-in docset API on a free loopback port."""
    with DocsetApi("127.0.0.1", 0) as running:
        yield running


@pytest.fixture
def archive_dir(tmp_path: Path) -> Path:
    """Where the reference packager stores archives (served by :func:`archive_base`)."""
    path = tmp_path / "archives"
    path.mkdir()
    return path


@pytest.fixture
def archive_base(archive_dir: Path) -> Iterator[str]:
    """A static HTTP server over :func:`archive_dir`: the packager's public base URL for archives."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(archive_dir)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
