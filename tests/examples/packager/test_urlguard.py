"""Tests for examples.packager.urlguard: the SSRF corpus is refused, the API base's own URLs pass."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from examples.packager.errors import UnsafeUrlError
from examples.packager.urlguard import UrlGuard
from tdm_messaging.errors import ConfigurationError, MessagingError

BASE = "http://127.0.0.1:8080"

SSRF_CORPUS = [
    # other hosts and ports
    "http://evil.example/api/docsets/5",
    "http://127.0.0.1:8081/api/docsets/5",
    "http://127.0.0.1/api/docsets/5",
    "http://localhost:8080/api/docsets/5",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:8080/api/docsets/5",
    # other spellings of 127.0.0.1
    "http://2130706433:8080/api/docsets/5",
    "http://0x7f000001:8080/api/docsets/5",
    "http://0x7f.0.0.1:8080/api/docsets/5",
    "http://0177.0.0.1:8080/api/docsets/5",
    "http://017700000001:8080/api/docsets/5",
    "http://127.1:8080/api/docsets/5",
    "http://127.0.0.1.:8080/api/docsets/5",
    "http://[::ffff:127.0.0.1]:8080/api/docsets/5",
    "http://[::ffff:7f00:1]:8080/api/docsets/5",
    "http://[0:0:0:0:0:ffff:127.0.0.1]:8080/api/docsets/5",
    # user-info tricks
    "http://127.0.0.1:8080@evil.example/api/docsets/5",
    "http://user:pass@127.0.0.1:8080/api/docsets/5",
    "http://evil.example@127.0.0.1:8080/api/docsets/5",
    "http://127.0.0.1:8080%40evil.example/api",
    "http://127.0.0.1:8080\\@evil.example/api",
    # scheme tricks
    "https://127.0.0.1:8080/api/docsets/5",
    "file:///etc/passwd",
    "file://127.0.0.1:8080/etc/passwd",
    "ftp://127.0.0.1:8080/x",
    "gopher://127.0.0.1:8080/_GET",
    "dict://127.0.0.1:8080/",
    "data:text/plain,hello",
    "javascript:alert(1)",
    "//evil.example/api/docsets/5",
    "\\\\evil.example\\share",
    # parser confusion
    "http://127.0.0.1:8080 /api",
    "http://127.0.0.1:8080/api\n/x",
    "http://127.0.0.1:8080/api\x00",
    "http://127.0.0.1:8080\t/api",
    "http://\uff45vil.example/api",  # a full-width e
    "http://127.0.0.1:8080:80/api",
    "",
]


@pytest.fixture
def guard() -> UrlGuard:
    return UrlGuard(BASE)


@pytest.mark.parametrize("url", SSRF_CORPUS)
def test_ssrf_corpus_is_refused(guard: UrlGuard, url: str) -> None:
    with pytest.raises(UnsafeUrlError) as info:
        guard.check(url)
    assert isinstance(info.value, MessagingError)
    assert "refused URL" in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/api/docsets/5?fmt=meta,txt",
        "HTTP://127.0.0.1:8080/api/documents/1/text",
        "/api/documents/1/text",
        "api/documents/1/text",
        "?page=2",
    ],
)
def test_urls_on_the_base_pass(guard: UrlGuard, url: str) -> None:
    result = guard.check(url, relative_to="http://127.0.0.1:8080/api/docsets/5?fmt=meta,txt")
    assert result.lower().startswith("http://127.0.0.1:8080/api/")


def test_relative_link_resolves_against_its_page(guard: UrlGuard) -> None:
    page = "http://127.0.0.1:8080/api/docsets/5?fmt=meta,txt"
    assert (
        guard.check("?fmt=meta,txt&page=2", relative_to=page)
        == "http://127.0.0.1:8080/api/docsets/5?fmt=meta,txt&page=2"
    )


def test_default_port_spellings_are_the_same_origin() -> None:
    guard = UrlGuard("https://tdm.example")
    assert guard.check("https://tdm.example:443/api/x") == "https://tdm.example:443/api/x"
    assert guard.check("https://TDM.example/api/x") == "https://TDM.example/api/x"
    with pytest.raises(UnsafeUrlError):
        guard.check("http://tdm.example/api/x")


@pytest.mark.parametrize(
    "url",
    [
        "https://tdm.example/other/api/x",
        "https://tdm.example/root/../admin",
        "https://tdm.example/root/%2e%2e/admin",
        "https://tdm.example/root/%2E%2E%2Fadmin",
        "https://tdm.example/rootless/x",
        "../admin",
    ],
)
def test_a_base_path_confines_urls_under_it(url: str) -> None:
    guard = UrlGuard("https://tdm.example/root/")
    with pytest.raises(UnsafeUrlError):
        guard.check(url, relative_to="https://tdm.example/root/api/docsets/5")


def test_a_base_path_accepts_its_own_urls() -> None:
    guard = UrlGuard("https://tdm.example/root")
    assert guard.check("api/docsets/5") == "https://tdm.example/root/api/docsets/5"
    assert guard.check("https://tdm.example/root/api/x") == "https://tdm.example/root/api/x"


@pytest.mark.parametrize(
    "base",
    ["ftp://x", "http://", "127.0.0.1:8080", "http://u:p@host", "http://host/?q=1", "http://host:99999", "http://a b"],
)
def test_bad_api_base_is_a_configuration_error(base: str) -> None:
    with pytest.raises(ConfigurationError):
        UrlGuard(base)


_URL_PIECES = st.sampled_from(
    ["/", "a", "api", "docsets", "5", ".", "..", "%2e", "%2E%2e", "?", "#", ";", "@", ":", "//", "text", "x=1", "&"]
)


@settings(max_examples=500)
@given(
    st.sampled_from(
        ["http://127.0.0.1:8080", "http://tdm.example/root/", "https://tdm.example:443", "http://h:08080/"]
    ),
    st.lists(_URL_PIECES, max_size=12),
    st.sampled_from(["", "HTTP://", "http://other/", "//"]),
)
def test_the_fast_path_answers_as_the_full_check(base: str, pieces: list[str], spelling: str) -> None:
    guard = UrlGuard(base)
    origin = spelling or guard.base
    url = origin + "".join(pieces)

    def answer(check: Callable[[], str]) -> str:
        try:
            return check()
        except UnsafeUrlError:
            return "refused"

    assert answer(lambda: guard.check(url)) == answer(lambda: guard._check(url, None))


def test_the_fast_path_still_refuses_dot_segments_and_takes_plain_urls(guard: UrlGuard) -> None:
    for url in (f"{BASE}/api/../admin", f"{BASE}/api/./x", f"{BASE}/..", f"{BASE}/api/%2e%2e/admin"):
        with pytest.raises(UnsafeUrlError, match="dot segments"):
            guard.check(url)
    assert guard.check(f"{BASE}/api/docsets/5/1/text") == f"{BASE}/api/docsets/5/1/text"
