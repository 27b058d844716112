"""The miner's page in a real headless Chromium against real server and packager processes: key, dump, download.

Debian's ``chromium`` (``bash scripts/browser.sh`` installs it), driven by Playwright; never a
browser Playwright downloads. Without one the test skips, and fails in CI. The finished page is
kept as a screenshot: in the test's directory and under ``.work/artefacts/`` (printed).
"""

from __future__ import annotations

import hashlib
import itertools
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from examples.harness import REPO_ROOT
from tests.conftest import in_ci
from tests.e2e.conftest import EMBEDDED, MakeStack

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTEFACTS = REPO_ROOT / ".work" / "artefacts"
# Markup in a docset name must be shown as text, never parsed.
HOSTILE_NAME = '<img src=x onerror="document.title=1">Thèses «quantum» 🧪 & </td>'
# Records, in the page, every value the progress bar and the dump's state take.
WATCH_PROGRESS = """() => {
  window.seenValues = [];
  window.seenStates = [];
  new MutationObserver((changes) => {
    for (const change of changes) {
      const value = change.target.getAttribute(change.attributeName);
      (change.attributeName === "value" ? window.seenValues : window.seenStates).push(value);
    }
  }).observe(document.querySelector("#docsets tbody"),
             {subtree: true, attributes: true, attributeFilter: ["value", "data-state"]});
}"""


def _playwright() -> Any:
    """Playwright's sync API, or skip (fail in CI) saying what to install."""
    why = None
    if not CHROMIUM.is_file():
        why = f"no browser at {CHROMIUM}: run `bash scripts/browser.sh` (apt-get install chromium)"
    try:
        from playwright import sync_api
    except ImportError:
        why = "playwright is not installed: pip install -e '.[dev]'"
    if why is None:
        return sync_api
    if in_ci():
        pytest.fail(f"the browser test cannot run in CI: {why}", pytrace=False)
    pytest.skip(why)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_miner_requests_watches_and_downloads_a_dump_in_chromium(make_stack: MakeStack, tmp_path: Path) -> None:
    sync_api = _playwright()
    # A packager that refuses docsets of more than 5 documents, so one dump fails.
    stack = make_stack(EMBEDDED, packager_env={"TDM_MAX_MEMBERS": "5"})
    miner = stack.miner()
    docset = miner.create_docset(HOSTILE_NAME, document_ids=[1, 2, 3])
    other = miner.create_docset("too large for the packager", year_from=1900)
    dump_path = f"/api/docsets/{docset['id']}/dump"
    problems: list[str] = []
    dump_calls: list[Any] = []
    other_calls: list[Any] = []
    screenshot = tmp_path / "miner-page.png"

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 640})
            page = context.new_page()
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on(
                "console",
                lambda msg: (
                    problems.append(f"{msg.text} ({msg.location.get('url')})")
                    if msg.type in ("error", "warning")
                    else None
                ),
            )
            page.on("requestfinished", lambda req: dump_calls.append(req) if dump_path in req.url else None)
            other_path = f"/api/docsets/{other['id']}/dump"
            page.on("requestfinished", lambda req: other_calls.append(req) if other_path in req.url else None)

            page.goto(f"{stack.base_url}/miner")
            page.fill("#api-key", stack.miner_key)
            page.click("#key-submit")
            row = page.locator(f'tr[data-docset-id="{docset["id"]}"]')
            sync_api.expect(row.locator("td.name")).to_have_text(HOSTILE_NAME)
            other_row = page.locator(f'tr[data-docset-id="{other["id"]}"]')
            sync_api.expect(other_row.locator("td.name")).to_have_text("too large for the packager")
            assert page.locator("img").count() == 0 and page.title() != "1"
            assert page.evaluate("sessionStorage.getItem('tdm-api-key')") == stack.miner_key

            page.reload()  # the key outlives a reload of the tab (sessionStorage), so the list comes back
            sync_api.expect(row.locator("td.name")).to_have_text(HOSTILE_NAME)
            page.evaluate(WATCH_PROGRESS)
            row.locator("button.request-dump").click()
            cell = row.locator(".dump")
            sync_api.expect(cell).to_have_attribute("data-state", "complete", timeout=45_000)
            link = row.locator("a.download")
            sync_api.expect(link).to_be_visible()
            assert row.locator("progress").evaluate("bar => bar.value") == 100
            seen_values = [float(v) for v in page.evaluate("window.seenValues")]
            seen_states = page.evaluate("window.seenStates")
            shown = cell.inner_text()
            href = link.get_attribute("href")

            # A failed dump says why (the packager's reason) and offers to ask again.
            other_row.locator("button.request-dump").click()
            sync_api.expect(other_row.locator(".dump")).to_have_attribute("data-state", "failed", timeout=45_000)
            sync_api.expect(other_row.locator(".dump-text")).to_contain_text("TDM_MAX_MEMBERS")
            sync_api.expect(other_row.locator("button.request-dump")).to_have_text("Request again")
            sync_api.expect(other_row.locator("button.request-dump")).to_be_enabled()

            with page.expect_download() as started:
                link.click()
            download = started.value
            archive = tmp_path / "downloaded.zip"
            download.save_as(archive)
            page.screenshot(path=str(screenshot), full_page=True)
            calls = [_DumpCall.of(request) for request in dump_calls]
            failed_calls = [_DumpCall.of(request) for request in other_calls]
        finally:
            browser.close()

    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    kept = ARTEFACTS / "miner-page.png"
    shutil.copyfile(screenshot, kept)
    print(f"screenshot of the finished page: {kept}")

    # What the API says of the archive: the 303's body, asked outside the browser.
    answer = miner.request("GET", dump_path)
    assert answer.status_code == 303, answer.text
    complete = answer.json()
    assert href == complete["archive_url"] == answer.headers["Location"]
    assert archive.stat().st_size == complete["size_bytes"]
    assert _sha256(archive) == complete["sha256"]
    assert complete["sha256"] in shown and f"({complete['size_bytes']} bytes)" in shown

    # The bar only ever filled, ended full, and the page saw the dump pending before complete.
    assert seen_values == sorted(seen_values) and seen_values[-1] == 100, seen_values
    assert seen_states[-1] == "complete" and {"requested", "accepted", "in_progress"} & set(seen_states), seen_states
    _assert_retry_after_honoured(calls, last_status=200)
    _assert_retry_after_honoured(failed_calls, last_status=502)
    # Chromium logs every 4xx/5xx answer to the console: the failed dump's 502 is the one expected.
    expected = f"status of 502 (Bad Gateway) ({stack.base_url}{other_path}?redirect=false)"
    assert [problem for problem in problems if not problem.endswith(expected)] == [], problems


@dataclass(frozen=True)
class _DumpCall:
    """One dump call the page made, as the browser timed it (ms since the epoch)."""

    method: str
    url: str
    started_ms: float
    answered_ms: float
    status: int
    retry_after: str | None

    @classmethod
    def of(cls, request: Any) -> _DumpCall:
        response = request.response()
        timing = request.timing
        return cls(
            method=request.method,
            url=request.url,
            started_ms=timing["startTime"],
            answered_ms=timing["startTime"] + timing["responseEnd"],
            status=response.status,
            retry_after=response.headers.get("retry-after"),
        )


def _assert_retry_after_honoured(calls: list[_DumpCall], *, last_status: int) -> None:
    """Each poll starts no sooner than the previous answer's Retry-After after that answer arrived."""
    assert calls, "the page made no dump call"
    assert calls[0].method == "POST" and all(call.method == "GET" for call in calls[1:]), calls
    assert all("redirect=false" in call.url for call in calls), calls
    for before, after in itertools.pairwise(calls):
        assert before.status == 202 and before.retry_after is not None, before
        waited_ms = after.started_ms - before.answered_ms
        asked_ms = float(before.retry_after) * 1000
        assert waited_ms >= asked_ms - 20, (waited_ms, asked_ms, before)  # 20 ms: the clocks' rounding
    assert calls[-1].status == last_status, calls[-1]
    assert len(calls) >= 2, "the page never saw the dump pending"


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_a_missing_browser_fails_in_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ci: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setattr(f"{__name__}.CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match=r"scripts/browser\.sh"):
        _playwright()
