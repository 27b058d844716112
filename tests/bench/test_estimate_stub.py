"""Tests of bench.estimate_stub and bench.estimate's pieces: shapes, the reference server's paging, sizes, texts."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from bench.estimate import CASES, Shape, _median, _Result
from bench.estimate_stub import _Handler, _Server, shape_of
from examples.packager.api import ApiClient


def test_shapes_name_members_size_and_delay() -> None:
    assert shape_of("a-1000x20480d20") == (1000, 20480, 0.02)
    assert shape_of("a-1000x20480") is None
    assert shape_of("../x-1x1d0") is None
    for shape, warmup in CASES:
        assert shape_of(shape.docset_id("m1")) == (shape.members, shape.text_bytes, shape.delay_ms / 1000)
        assert (warmup.members, warmup.text_bytes) != (shape.members, shape.text_bytes)  # another shape


@pytest.fixture
def stub() -> Iterator[str]:
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_listing_pages_like_the_reference_server_with_sizes(stub: str) -> None:
    client = ApiClient(api_base=stub, api_key="k")
    pages = list(client.docset_pages(f"{stub}/api/docsets/a-2345x300d0?fmt=meta,txt"))
    assert [len(p.members) for p in pages] == [1000, 1000, 345]
    assert pages[0].total == 2345
    members = [m for p in pages for m in p.members]
    assert len({m.doc_id for m in members}) == 2345
    assert {m.metadata["text_bytes"] for m in members} == {300}
    with client.stream(members[-1].text_url) as chunks:
        assert len(b"".join(chunks)) == 300


def test_an_over_large_page_is_refused_as_the_reference_server_does(stub: str) -> None:
    client = ApiClient(api_base=stub, api_key="k", listing_page_size=5000)
    pages = list(client.docset_pages(f"{stub}/api/docsets/a-250x1d0?fmt=meta,txt"))
    assert [len(p.members) for p in pages] == [100, 100, 50]  # read again at the default


def test_the_row_is_the_round_of_median_error() -> None:
    shape = Shape(10, 10)
    rounds = [_Result(shape, shape, estimate=e, real=10.0, cold=1.0, latency_ms=0.0) for e in (14.0, 8.0, 10.5)]
    assert _median(rounds).estimate == 10.5
