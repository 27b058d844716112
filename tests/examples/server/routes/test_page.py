"""The miner's page: its three files under a strict CSP with no inline code, and ``?redirect=false`` on the dump."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from examples.server.routes.page import CONTENT_SECURITY_POLICY, STATIC_DIR
from tdm_messaging.testing import InMemoryBroker
from tests.examples.server.conftest import Client, FakePackager, accepted, complete, make_docset
from tests.examples.server.openapi_check import check_answer


class _Inline(HTMLParser):
    """Collects what a CSP without 'unsafe-inline' would block: inline scripts, styles and handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script":
            self._in_script = True
            if "src" not in names:
                self.problems.append("a script without src")
            self.scripts.append(dict(attrs).get("src") or "")
        if tag == "style" or "style" in names:
            self.problems.append(f"inline style on <{tag}>")
        self.problems += [f"handler {name} on <{tag}>" for name in names if name.startswith("on")]

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False if tag == "script" else self._in_script

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.problems.append("inline script text")


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/miner", "text/html; charset=utf-8"),
        ("/miner/miner.js", "text/javascript; charset=utf-8"),
        ("/miner/miner.css", "text/css; charset=utf-8"),
    ],
)
def test_the_page_files_need_no_key_and_carry_a_strict_csp(client: Client, path: str, content_type: str) -> None:
    response = client.get(path, key=None)
    assert response.status == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.body


def test_the_csp_allows_nothing_inline_and_nothing_from_elsewhere() -> None:
    directives = dict(part.strip().split(" ", 1) for part in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["default-src"] == "'none'"
    for name in ("script-src", "style-src", "connect-src"):
        assert directives[name] == "'self'", name
    assert "unsafe" not in CONTENT_SECURITY_POLICY


def test_the_page_has_no_inline_code_and_loads_its_script(client: Client) -> None:
    parser = _Inline()
    parser.feed(client.get("/miner", key=None).body.decode("utf-8"))
    assert parser.problems == []
    assert parser.scripts == ["/miner/miner.js"]


def test_the_script_never_writes_html() -> None:
    text = (STATIC_DIR / "miner.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in text, sink


def test_redirect_false_answers_complete_as_200_with_the_303s_body(client: Client, broker: InMemoryBroker) -> None:
    docset_id = make_docset(client)
    packager = FakePackager(broker, [accepted, complete]).start()
    try:
        first = client.post(f"/api/docsets/{docset_id}/dump?redirect=false")
        assert first.status == 202
        packager.step()
        packager.step()
        path = f"/api/docsets/{docset_id}/dump"
        plain = client.get(path)
        as_200 = client.get(f"{path}?redirect=FALSE")
    finally:
        packager.stop()
    assert plain.status == 303 and "location" in plain.headers
    assert as_200.status == 200 and "location" not in as_200.headers
    body = as_200.json()
    check_answer("/api/docsets/{docset_id}/dump", "GET", 200, as_200.headers["content-type"], body)
    assert body == plain.json()
    assert body["archive_url"] == plain.headers["location"]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_redirect_is_true_or_false_only(client: Client, method: str) -> None:
    response = client.request(method, f"/api/docsets/{make_docset(client)}/dump?redirect=no")
    assert response.status == 400
    assert "'redirect' must be true or false" in response.json()["error"]["message"]
