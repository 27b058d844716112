"""Tests for examples.packager.api over real HTTP: redirects, retries, errors, paging, and the key never leaks."""

from __future__ import annotations

import logging

import pytest

from examples.packager.api import ApiClient
from examples.packager.errors import FetchError, UnsafeUrlError
from tests.examples.packager.stub_api import API_KEY, StubApi, StubDoc


def _docs(n: int) -> list[StubDoc]:
    return [StubDoc(str(i), {"title": f"Thesis {i}", "year": 2000 + i}, text=f"text {i}".encode()) for i in range(n)]


def test_pages_are_followed_and_links_resolved(stub: StubApi, client: ApiClient) -> None:
    stub.add_docset("5", _docs(5))
    pages = list(client.docset_pages(f"{stub.base}/api/docsets/5?fmt=meta,txt"))
    assert [len(p.members) for p in pages] == [2, 2, 1]
    assert all(p.total == 5 for p in pages)
    members = [m for p in pages for m in p.members]
    assert [m.doc_id for m in members] == ["0", "1", "2", "3", "4"]
    assert members[3].metadata == {"title": "Thesis 3", "year": 2003}
    assert members[3].text_url == f"{stub.base}/api/documents/3/text"
    assert stub.seen_keys == [API_KEY] * 3


def test_text_is_streamed_in_bounded_chunks(stub: StubApi) -> None:
    stub.add_docset("5", [StubDoc("big", {}, size=300_000)])
    client = ApiClient(api_base=stub.base, api_key=API_KEY, chunk_size=4096)
    with client.stream("/api/documents/big/text") as chunks:
        sizes = [len(c) for c in chunks]
    assert sum(sizes) == 300_000
    assert max(sizes) <= 4096


def test_transient_errors_are_retried(stub: StubApi, client: ApiClient) -> None:
    stub.add_docset("5", _docs(1))
    stub.fail_next = 2
    pages = list(client.docset_pages(f"{stub.base}/api/docsets/5"))
    assert pages[0].members[0].doc_id == "0"
    assert len(stub.seen) == 3


def test_persistent_5xx_is_a_retryable_fetch_error(stub: StubApi, client: ApiClient) -> None:
    stub.fail_next = 10
    with pytest.raises(FetchError) as info:
        client.get_json("/api/docsets/5")
    assert info.value.retryable
    assert "503" in str(info.value)
    assert len(stub.seen) == 3  # one try + two retries


def test_a_refused_key_is_not_retryable_and_says_what_to_check(stub: StubApi) -> None:
    stub.add_docset("5", _docs(1))
    client = ApiClient(api_base=stub.base, api_key="wrong-key")
    with pytest.raises(FetchError) as info:
        client.get_json("/api/docsets/5")
    assert not info.value.retryable
    assert "TDM_PACKAGER_API_KEY" in str(info.value)
    assert "wrong-key" not in str(info.value)


def test_unknown_docset_is_a_permanent_failure(stub: StubApi, client: ApiClient) -> None:
    with pytest.raises(FetchError) as info:
        client.get_json("/api/docsets/nope")
    assert not info.value.retryable and "404" in str(info.value)


def test_same_origin_redirect_is_followed(stub: StubApi, client: ApiClient) -> None:
    stub.add_docset("5", _docs(1))
    stub.routes["/old/5"] = (301, {"Location": "/api/docsets/5"})
    final_url, body = client.get_json("/old/5")
    assert final_url == f"{stub.base}/api/docsets/5"
    assert body["members"][0]["id"] == "0"


@pytest.mark.parametrize(
    "location",
    [
        "http://evil.example/api/docsets/5",
        "http://127.0.0.1:1/api/docsets/5",
        "http://localhost/api/docsets/5",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]/x",
        "http://2130706433/x",
        "//evil.example/x",
        "file:///etc/passwd",
        "gopher://127.0.0.1/_x",
    ],
)
def test_redirect_elsewhere_is_refused_before_any_request(stub: StubApi, client: ApiClient, location: str) -> None:
    stub.routes["/hop"] = (302, {"Location": location})
    with pytest.raises(UnsafeUrlError) as info:
        client.get_json("/hop")
    assert "redirect" in str(info.value)
    assert stub.seen == ["/hop"]


def test_redirect_loops_end(stub: StubApi, client: ApiClient) -> None:
    stub.routes["/a"] = (302, {"Location": "/b"})
    stub.routes["/b"] = (302, {"Location": "/a"})
    with pytest.raises(FetchError, match="redirects"):
        client.get_json("/a")


def test_offsite_links_in_a_listing_are_refused(stub: StubApi, client: ApiClient) -> None:
    docs = _docs(1)
    docs[0].text_link = "http://evil.example/steal"
    stub.add_docset("5", docs)
    with pytest.raises(UnsafeUrlError):
        list(client.docset_pages("/api/docsets/5"))


def test_offsite_next_page_is_refused(stub: StubApi, client: ApiClient) -> None:
    stub.add_docset("5", _docs(1))
    stub.listing_hook = lambda body: {**body, "next": "http://2130706433:8080/api/docsets/5?page=2"}
    with pytest.raises(UnsafeUrlError):
        list(client.docset_pages("/api/docsets/5"))


def test_a_next_loop_is_refused(stub: StubApi, client: ApiClient) -> None:
    stub.add_docset("5", _docs(1))
    stub.listing_hook = lambda body: {**body, "next": "/api/docsets/5"}
    with pytest.raises(FetchError, match="loops"):
        list(client.docset_pages(f"{stub.base}/api/docsets/5"))


def test_oversize_bodies_are_refused(stub: StubApi) -> None:
    stub.add_docset("5", [StubDoc("big", {}, size=200_000)])
    client = ApiClient(api_base=stub.base, api_key=API_KEY, max_text_bytes=100_000)
    with pytest.raises(FetchError, match="limit"), client.stream("/api/documents/big/text") as chunks:
        for _ in chunks:
            pass


@pytest.mark.parametrize(
    "body",
    [[], {"members": "x"}, {"members": [1]}, {"members": [{"title": "no id"}]}, {"members": [{"id": True}]}],
)
def test_malformed_pages_are_fetch_errors(client: ApiClient, body: object) -> None:
    with pytest.raises(FetchError):
        client.parse_page(body, page_url=client.guard.base)


def test_tolerant_page_shapes(client: ApiClient) -> None:
    page = client.parse_page(
        {"documents": [{"id": 7, "title": "T"}], "pagination": {"total": 9, "next": "/api/docsets/1?page=2"}},
        page_url=f"{client.guard.base}api/docsets/1",
    )
    assert page.total == 9
    assert page.next_url == f"{client.guard.base}api/docsets/1?page=2"
    assert page.members[0].doc_id == "7"
    assert page.members[0].metadata == {"id": 7, "title": "T"}
    assert page.members[0].text_url == f"{client.guard.base}api/documents/7/text"


def test_the_reference_server_page_shape(client: ApiClient) -> None:
    base = client.guard.base.rstrip("/")
    body = {
        "docset": {"id": 5, "member_count": 2, "links": {"self": f"{base}/api/docsets/5"}},
        "formats": ["meta", "txt"],
        "members": [
            {
                "id": 12,
                "title": "A thesis",
                "year": 2020,
                "text_bytes": 1234,
                "links": {"self": f"{base}/api/documents/12", "text": f"{base}/api/documents/12/text"},
            }
        ],
        "next": f"{base}/api/docsets/5?fmt=meta%2Ctxt&after=12&limit=1",
    }
    page = client.parse_page(body, page_url=f"{base}/api/docsets/5?fmt=meta,txt")
    assert page.total == 2
    assert page.next_url == f"{base}/api/docsets/5?fmt=meta%2Ctxt&after=12&limit=1"
    member = page.members[0]
    assert member.doc_id == "12"
    assert member.metadata == {"id": 12, "title": "A thesis", "year": 2020, "text_bytes": 1234}
    assert member.text_url == f"{base}/api/documents/12/text"


def test_the_key_never_appears_in_logs(stub: StubApi, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    stub.add_docset("5", _docs(3))
    stub.fail_next = 1
    stub.routes["/hop"] = (302, {"Location": "/api/docsets/5"})
    client = ApiClient(api_base=stub.base, api_key=API_KEY, backoff=0.0, sleep=lambda _: None)
    client.get_json("/hop")
    list(client.docset_pages("/api/docsets/5"))
    assert caplog.records, "expected some log lines (the retry warning at least)"
    assert API_KEY not in caplog.text
