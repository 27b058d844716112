"""Tests of bench.docset_stub: docset shapes, generated text, the reference server's paging, sizes and delays."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from bench.docset_stub import MAX_LIMIT, _Handler, docset_delay_ms, docset_shape, serve, text_block
from examples.packager.api import ApiClient


def test_docset_shape() -> None:
    assert docset_shape("big-2048x1048576") == (2048, 1048576)
    assert docset_shape("t3-1x100") == (1, 100)
    assert docset_shape("a-1000x20480d20") == (1000, 20480)
    assert docset_shape("5") is None
    assert docset_shape("x-axb") is None
    assert docset_shape("../x-1x1d0") is None


def test_a_delay_in_the_docset_id() -> None:
    assert docset_delay_ms("lat-1000x20480d20") == 20
    assert docset_delay_ms("lat-1000x20480") == 0
    assert docset_delay_ms("5") == 0


def test_text_block_is_deterministic_text() -> None:
    block = text_block(4096)
    assert len(block) == 4096
    assert block == text_block(4096)
    assert block.decode("ascii").count(" ") > 300


@pytest.fixture
def stub() -> Iterator[str]:
    server = serve()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url) as response:
        body: dict[str, object] = json.load(response)
    return body


def test_the_listing_pages_like_the_reference_server_with_sizes(stub: str) -> None:
    client = ApiClient(api_base=stub, api_key="k")
    pages = list(client.docset_pages(f"{stub}/api/docsets/a-2345x300d0?fmt=meta,txt"))
    assert [len(p.members) for p in pages] == [MAX_LIMIT, MAX_LIMIT, 345]  # the packager asks for the largest
    assert pages[0].total == 2345
    members = [m for p in pages for m in p.members]
    assert len({m.doc_id for m in members}) == 2345
    assert {m.metadata["text_bytes"] for m in members} == {300}
    with client.stream(members[-1].text_url) as chunks:
        assert len(b"".join(chunks)) == 300


def test_a_listing_without_limit_gives_the_default_page_and_a_next_link(stub: str) -> None:
    first = get_json(f"{stub}/api/docsets/t-150x70000")
    assert first["docset"] == {"id": "t-150x70000", "member_count": 150}
    members = first["members"]
    assert isinstance(members, list) and len(members) == 100
    assert members[0]["id"] == "t-150x70000-doc1"
    assert isinstance(first["next"], str)
    rest = get_json(first["next"])
    assert [m["id"] for m in rest["members"]] == [f"t-150x70000-doc{i}" for i in range(101, 151)]  # type: ignore[union-attr]
    assert rest["next"] is None
    with urllib.request.urlopen(members[1]["links"]["text"]) as response:
        assert len(response.read()) == 70000


def test_an_over_large_page_is_refused_as_the_reference_server_does(stub: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{stub}/api/docsets/a-250x1?limit={MAX_LIMIT + 1}")
    assert info.value.code == 400
    client = ApiClient(api_base=stub, api_key="k", listing_page_size=5000)
    pages = list(client.docset_pages(f"{stub}/api/docsets/a-250x1d0?fmt=meta,txt"))
    assert [len(p.members) for p in pages] == [100, 100, 50]  # read again at the default


@pytest.mark.parametrize(
    "path",
    ["/api/docsets/5", "/api/docsets/t-3x10/4/text", "/api/docsets/t-3x10/0/text", "/api/docsets/t-3x10/x/text", "/x"],
)
def test_unknown_paths_and_members_are_404(stub: str, path: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(stub + path)
    assert info.value.code == 404


def test_a_delayed_docset_still_answers_in_full(stub: str) -> None:
    listing = get_json(f"{stub}/api/docsets/lat-2x10d1")
    link = listing["members"][0]["links"]["text"]  # type: ignore[index]
    with urllib.request.urlopen(link) as response:
        assert len(response.read()) == 10


def test_answers_are_not_held_back_by_nagle() -> None:
    assert _Handler.disable_nagle_algorithm is True  # socketserver sets TCP_NODELAY on each connection
