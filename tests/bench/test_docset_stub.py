"""Tests of bench.docset_stub: docset shapes, generated text, and the listing the reference packager reads."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest

from bench.docset_stub import _Handler, docset_delay_ms, docset_shape, text_block


def test_docset_shape() -> None:
    assert docset_shape("big-2048x1048576") == (2048, 1048576)
    assert docset_shape("t3-1x100") == (1, 100)
    assert docset_shape("5") is None
    assert docset_shape("x-axb") is None


def test_text_block_is_deterministic_text() -> None:
    block = text_block(4096)
    assert len(block) == 4096
    assert block == text_block(4096)
    assert block.decode("ascii").count(" ") > 300


@pytest.fixture
def stub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_listing_and_texts_have_the_promised_sizes(stub: str) -> None:
    with urllib.request.urlopen(f"{stub}/api/docsets/t-3x70000") as response:
        listing = json.load(response)
    assert listing["total"] == 3
    assert [m["id"] for m in listing["members"]] == ["t-3x70000-doc0", "t-3x70000-doc1", "t-3x70000-doc2"]
    with urllib.request.urlopen(stub + listing["members"][1]["links"]["text"]) as response:
        assert len(response.read()) == 70000


def test_listing_pages_by_limit_and_after_as_the_server_does(stub: str) -> None:
    ids = []
    url: str | None = f"{stub}/api/docsets/p-5x10?limit=2"
    while url is not None:
        with urllib.request.urlopen(url) as response:
            page = json.load(response)
        assert page["total"] == 5
        assert len(page["members"]) <= 2
        ids += [m["id"] for m in page["members"]]
        url = stub + page["next"] if page["next"] else None
    assert ids == [f"p-5x10-doc{i}" for i in range(5)]
    with urllib.request.urlopen(f"{stub}/api/docsets/p-5x10?limit=1") as response:
        assert [m["id"] for m in json.load(response)["members"]] == ["p-5x10-doc0"]


def test_unknown_paths_are_404(stub: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{stub}/api/docsets/5")
    assert info.value.code == 404


def test_a_delay_in_the_docset_id_reaches_every_text_link(stub: str) -> None:
    assert docset_shape("lat-1000x20480d20") == (1000, 20480)
    assert docset_delay_ms("lat-1000x20480d20") == 20
    assert docset_delay_ms("lat-1000x20480") == 0
    with urllib.request.urlopen(f"{stub}/api/docsets/lat-2x10d1") as response:
        listing = json.load(response)
    link = listing["members"][0]["links"]["text"]
    assert link.endswith("?size=10&delay=1")
    with urllib.request.urlopen(stub + link) as response:
        assert len(response.read()) == 10


def test_answers_are_not_held_back_by_nagle() -> None:
    assert _Handler.disable_nagle_algorithm is True  # socketserver sets TCP_NODELAY on each connection
