"""The stand-in API a packager under test fetches from: the reference server's shapes, UTF-8 texts, 404s."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tdm_messaging.conformance.fixture_api import DocsetApi, parse_listen
from tdm_messaging.errors import ConfigurationError


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_a_docset_lists_two_members_with_text_links(api: DocsetApi) -> None:
    status, content_type, body = get(api.docset_url("conf-1-json"))
    assert (status, content_type) == (200, "application/json")
    listing = json.loads(body)
    assert listing["docset"]["id"] == "conf-1-json" and listing["next"] is None
    assert [m["id"] for m in listing["members"]] == ["conformance-1", "conformance-2"]
    status, content_type, text = get(listing["members"][0]["links"]["text"])
    assert (status, content_type) == (200, "text/plain; charset=utf-8")
    assert "日本語" in text.decode()
    assert any("/api/docsets/conf-1-json" in line for line in api.requests)


@pytest.mark.parametrize("path", ["/api/docsets/conf-1-missing?fmt=meta,txt", "/api/documents/nope/text", "/other"])
def test_what_it_does_not_have_is_404(api: DocsetApi, path: str) -> None:
    assert get(api.base_url + path)[0] == 404


def test_listen_addresses_are_checked() -> None:
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:8790") == ("::1", 8790)
    for bad in ("8790", "host:", "host:99999", ":80"):
        with pytest.raises(ConfigurationError, match="is not HOST:PORT"):
            parse_listen(bad)


def test_a_port_in_use_is_a_clear_error(api: DocsetApi) -> None:
    port = int(api.base_url.rsplit(":", 1)[1])
    with pytest.raises(ConfigurationError, match=f"cannot listen on 127.0.0.1:{port}"):
        DocsetApi("127.0.0.1", port)


def test_the_public_url_is_what_requests_point_at() -> None:
    with DocsetApi("127.0.0.1", 0, public_url="http://api.example:8080/") as api:
        assert api.docset_url("7") == "http://api.example:8080/api/docsets/7?fmt=meta,txt"
