"""The miner: an HTTP client of the TDM API that creates a docset, polls its dump and downloads the archive."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import requests

from examples.harness.errors import DemoError

__all__ = ["DumpProgress", "DumpResult", "Miner"]

_READ_CHUNK: Final = 1024 * 1024


@dataclass(frozen=True)
class DumpProgress:
    """One poll's answer while the dump is not ready: what the progress bar shows."""

    state: str
    percent: float | None
    items_done: int | None
    items_total: int | None
    eta_seconds: float | None
    retry_after: float


@dataclass(frozen=True)
class DumpResult:
    """The dump's final answer: the 303's archive location and what the server said of it."""

    archive_url: str
    size_bytes: int | None
    sha256: str | None
    polls: int
    body: Mapping[str, Any]


class Miner:
    """A TDM API client with one key, as a text miner would use the API (``requests`` over real HTTP).

    Args:
        base_url: the server's base URL, e.g. ``http://127.0.0.1:41234``.
        api_key: the miner's key (sent as ``X-API-Key``).
        timeout: per-request timeout, seconds.
    """

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["X-API-Key"] = api_key

    def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send ``method path`` (relative to the base URL, or absolute); redirects are not followed.

        Raises:
            DemoError: the server could not be reached.
        """
        url = path if path.startswith("http") else self.base_url + path
        try:
            return self.session.request(method, url, timeout=self.timeout, allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            raise DemoError(f"{method} {url} failed: {exc}") from exc

    def create_docset(self, name: str, **query: Any) -> dict[str, Any]:
        """Create a docset from a query (``query``, ``year_from``, ``year_to``, ``department``) or ``document_ids``.

        Raises:
            DemoError: the server refused it (its JSON error is quoted).
        """
        response = self.request("POST", "/api/docsets", json={"name": name, **query})
        if response.status_code != 201:
            raise DemoError(f"creating the docset failed: HTTP {response.status_code} {response.text[:300]}")
        body: dict[str, Any] = response.json()
        return body

    def wait_for_dump(
        self,
        docset_id: int | str,
        *,
        timeout: float = 60.0,
        max_interval: float = 2.0,
        min_interval: float = 0.1,
        on_progress: Callable[[DumpProgress], None] | None = None,
    ) -> DumpResult:
        """Request the docset's dump (the first ``GET .../dump``) and poll until it is ready.

        Each wait honours ``Retry-After``, capped to [``min_interval``, ``max_interval``].

        Returns:
            The 303's archive URL and details.

        Raises:
            DemoError: packaging failed (502), the package is gone (410), any other unexpected
                answer, or no 303 within ``timeout`` seconds.
        """
        path = f"/api/docsets/{docset_id}/dump"
        deadline = time.monotonic() + timeout
        polls = 0
        while True:
            response = self.request("GET", path)
            polls += 1
            body = _json(response)
            if response.status_code == 303:
                location = response.headers.get("Location")
                if not location:
                    raise DemoError(f"GET {path} answered 303 without a Location header")
                return DumpResult(
                    archive_url=location,
                    size_bytes=body.get("size_bytes"),
                    sha256=body.get("sha256"),
                    polls=polls,
                    body=body,
                )
            if response.status_code != 202:
                message = body.get("error", {}).get("message") if isinstance(body.get("error"), dict) else None
                raise DemoError(f"GET {path}: HTTP {response.status_code}: {message or response.text[:300]}")
            retry_after = _retry_after(response, default=1.0)
            if on_progress is not None:
                on_progress(
                    DumpProgress(
                        state=str(body.get("state", "?")),
                        percent=body.get("percent"),
                        items_done=body.get("items_done"),
                        items_total=body.get("items_total"),
                        eta_seconds=body.get("eta_seconds"),
                        retry_after=retry_after,
                    )
                )
            if time.monotonic() > deadline:
                raise DemoError(f"the dump of docset {docset_id} was not ready within {timeout:.0f} s ({polls} polls)")
            time.sleep(min(max(retry_after, min_interval), max_interval))

    def download(self, url: str, target: Path) -> str:
        """Download ``url`` (without the API key if it is not on the API's host) to ``target``; return its SHA-256.

        Raises:
            DemoError: the download failed.
        """
        # A presigned S3 URL is its own credential: never send our key to another host.
        same_host = url.startswith(self.base_url + "/")
        getter = self.session.get if same_host else requests.get
        digest = hashlib.sha256()
        try:
            with getter(url, stream=True, timeout=self.timeout) as response:
                if response.status_code != 200:
                    raise DemoError(f"downloading {url} failed: HTTP {response.status_code} {response.text[:200]}")
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("wb") as out:
                    for chunk in response.iter_content(_READ_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        except requests.RequestException as exc:
            raise DemoError(f"downloading {url} failed: {exc}") from exc
        return digest.hexdigest()


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(response: requests.Response, *, default: float) -> float:
    raw = response.headers.get("Retry-After", "")
    try:
        return max(float(raw), 0.0)
    except ValueError:
        return default  # an HTTP date, or nothing: our server sends seconds, so just poll again soon
