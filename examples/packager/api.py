"""The packager's HTTP client for the TDM API: guarded URLs, manual redirects, retries, streamed bodies."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlsplit, urlunsplit

import certifi
import urllib3
from urllib3 import BaseHTTPResponse
from urllib3.exceptions import HTTPError, InvalidHeader, MaxRetryError
from urllib3.util import Retry

from examples.packager.errors import FetchError, LimitError, UnsafeUrlError
from examples.packager.limits import Cancel
from examples.packager.urlguard import UrlGuard

__all__ = ["CHUNK_SIZE", "LISTING_PAGE_SIZE", "ApiClient", "DocsetPage", "Member"]

log = logging.getLogger(__name__)

_TRANSIENT_STATUS: Final = frozenset({429, 500, 502, 503, 504})
_REDIRECT_STATUS: Final = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS: Final = 5
LISTING_PAGE_SIZE: Final = 1000
CHUNK_SIZE: Final = 256 * 1024
"""Bytes read at a time from a body: each chunk is one pass of Python (read, count, CRC, hash, deflate,
spool) on a fetching thread, so larger chunks leave more of the cores to zlib; a few fetching threads
hold one each."""
"""Members asked for per listing page (``limit``): the reference server's largest (docs/server.md).
A server that allows fewer either caps the page (its ``next`` links go on) or refuses the request;
then the listing is read at the server's own default page size."""


@dataclass(frozen=True)
class Member:
    """One document of a docset, as the docset listing describes it.

    Attributes:
        doc_id: the document's id, as the API gives it (untrusted: sanitise before using it in a path).
        metadata: the document's metadata (a JSON object), written as ``meta.json``.
        text_url: the absolute, already-checked URL of its full text.
    """

    doc_id: str
    metadata: Mapping[str, Any]
    text_url: str


@dataclass(frozen=True)
class DocsetPage:
    """One page of ``GET /api/docsets/<id>?fmt=meta,txt``.

    Attributes:
        members: the page's documents.
        total: the docset's member count, if the page says it.
        next_url: the absolute, already-checked URL of the next page, or ``None`` on the last.
    """

    members: tuple[Member, ...]
    total: int | None = None
    next_url: str | None = None


class ApiClient:
    """Reads the TDM API with the packager's key, only from the API base (see :class:`UrlGuard`).

    Redirects are followed by hand, each hop checked by the guard; transient failures
    (connection errors, timeouts, HTTP 429/5xx) are retried as urllib3's ``Retry`` says
    (its status list, counts and exponential back-off, or the answer's ``Retry-After``),
    before any body byte is used; bodies are streamed in bounded chunks.

    It talks to urllib3 directly (one pool manager, keep-alive connections): no proxy or
    ``.netrc`` settings from the environment (they would send the key elsewhere), no cookie jar
    (the key authenticates), and none of ``requests``' per-request layers, whose Python held the
    GIL for about a third of a millisecond per document while the fetching threads deflate.

    Args:
        api_base: the API's base URL.
        api_key: the packager's key, sent as ``X-API-Key`` (never logged).
        connect_timeout: seconds to wait for a connection.
        read_timeout: seconds to wait between two reads of a response.
        retries: extra attempts after a transient failure.
        backoff: urllib3's ``backoff_factor``: the first retry at once, then ``backoff * 2``,
            ``backoff * 4``, ... seconds (at most 120), unless the answer says ``Retry-After``.
        max_retry_after: the longest ``Retry-After`` honoured, in seconds (a longer one is cut to it).
        chunk_size: bytes read at a time from a streamed body.
        max_page_bytes: largest accepted JSON page.
        max_text_bytes: largest accepted document text.
        listing_page_size: members asked for per listing page (``limit``); ``None`` asks for
            the server's default.
        pool_size: keep-alive connections kept to the API (urllib3's pool); at least the packager's
            fetch concurrency, as every fetching thread holds one.
        sleep: how to wait between retries when the fetch has no cancellation (tests pass a no-op).

    Raises:
        ConfigurationError: the API base is not a plain http(s) URL.
    """

    def __init__(
        self,
        *,
        api_base: str,
        api_key: str,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_retry_after: float = 60.0,
        chunk_size: int = CHUNK_SIZE,
        max_page_bytes: int = 16 * 1024 * 1024,
        max_text_bytes: int = 1 << 30,
        listing_page_size: int | None = LISTING_PAGE_SIZE,
        sleep: Callable[[float], None] = time.sleep,
        pool_size: int = 16,
    ) -> None:
        self.guard = UrlGuard(api_base)
        self._key = api_key
        self._retries = retries
        self._max_retry_after = max_retry_after
        self._retry = Retry(
            total=retries,
            status_forcelist=_TRANSIENT_STATUS,
            allowed_methods={"GET"},
            backoff_factor=backoff,
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        self._chunk_size = chunk_size
        self._max_page_bytes = max_page_bytes
        self._max_text_bytes = max_text_bytes
        self._listing_page_size = listing_page_size
        self._sleep = sleep
        self._headers = {
            "X-API-Key": api_key,
            "Accept": "application/json, text/plain;q=0.9, */*;q=0.1",
            "Accept-Encoding": "gzip, deflate",  # as requests asked: a remote API may compress in transit
            "User-Agent": "tdm-messaging-packager",
        }
        # One pool for the one API host (its redirects stay on it: the guard); every fetching
        # thread reuses a connection. Retries and redirects are ours (above and in _open).
        self._pool = urllib3.PoolManager(
            num_pools=2,
            maxsize=max(pool_size, 1),
            retries=False,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            ca_certs=certifi.where(),  # the CAs requests trusted: an HTTPS API stays trusted as before
        )

    def close(self) -> None:
        """Close the connections to the API."""
        self._pool.clear()

    # --- bodies ---------------------------------------------------------------------------

    @contextmanager
    def stream(
        self, url: str, *, relative_to: str | None = None, limit: int | None = None, cancel: Cancel | None = None
    ) -> Iterator[Iterator[bytes]]:
        """Open ``url`` and give its body as an iterator of chunks of at most ``chunk_size`` bytes.

        Args:
            url: what to fetch; checked by the guard (relative URLs resolve against ``relative_to``).
            limit: largest accepted body (default: ``max_text_bytes``).
            cancel: the job's cancellation: it aborts the read (its error is raised instead).

        Raises:
            UnsafeUrlError: the URL, or a redirect, leaves the API base.
            FetchError: an HTTP or network error (``retryable`` when asking later may help),
                or a body larger than ``limit``.
        """
        limit = self._max_text_bytes if limit is None else limit
        final_url, response = self._open(self.guard.check(url, relative_to=relative_to), cancel)
        try:
            if cancel is None:
                yield self._chunks(response, final_url, limit, None)
            else:
                with cancel.watching(response):
                    yield self._chunks(response, final_url, limit, cancel)
        finally:
            _release(response)

    def get_json(self, url: str, *, relative_to: str | None = None, cancel: Cancel | None = None) -> tuple[str, Any]:
        """Fetch a JSON document; return the URL it was finally read from (after redirects) and its value.

        Raises:
            UnsafeUrlError: as :meth:`stream`.
            FetchError: as :meth:`stream`, or the body is not JSON.
        """
        final_url, response = self._open(self.guard.check(url, relative_to=relative_to), cancel)
        try:
            if cancel is None:
                body = b"".join(self._chunks(response, final_url, self._max_page_bytes, None))
            else:
                with cancel.watching(response):
                    body = b"".join(self._chunks(response, final_url, self._max_page_bytes, cancel))
        finally:
            _release(response)
        try:
            return final_url, json.loads(body)
        except ValueError as exc:
            raise FetchError(f"{final_url} did not answer JSON: {exc}") from exc

    def _chunks(self, response: BaseHTTPResponse, url: str, limit: int, cancel: Cancel | None) -> Iterator[bytes]:
        # An identity body is read as it comes (urllib3's decoding buffer would copy every chunk once more).
        encoding = response.headers.get("Content-Encoding", "").strip().lower()
        decode = encoding not in ("", "identity")
        seen = 0
        try:
            while chunk := response.read(self._chunk_size, decode_content=decode):
                seen += len(chunk)
                if seen > limit:
                    raise FetchError(f"{url} is larger than the {limit}-byte limit; raise the limit")
                yield chunk
        except (HTTPError, OSError) as exc:
            if cancel is not None:
                cancel.check()  # the read was aborted on purpose: end with the reason, not the symptom
            raise FetchError(f"reading {url} failed: {type(exc).__name__}: {exc}", retryable=True) from exc
        if cancel is not None:
            cancel.check()  # an aborted read may also look like the end of the body

    # --- requests, redirects, retries -----------------------------------------------------

    def _open(self, url: str, cancel: Cancel | None = None) -> tuple[str, BaseHTTPResponse]:
        """GET ``url``, following redirects the guard allows; return the URL answered and its (unread) response."""
        for _hop in range(_MAX_REDIRECTS + 1):
            response = self._get_with_retries(url, cancel)
            if response.status not in _REDIRECT_STATUS:
                return url, self._checked(response, url)
            location = response.headers.get("Location", "")
            _release(response)
            try:
                url = self.guard.check(location, relative_to=url)
            except UnsafeUrlError as exc:
                raise UnsafeUrlError(f"redirect from {url} refused: {exc}") from exc
            log.debug("following redirect to %s", url)
        raise FetchError(f"more than {_MAX_REDIRECTS} redirects from {url}")

    def _get_with_retries(self, url: str, cancel: Cancel | None) -> BaseHTTPResponse:
        # urllib3's Retry decides (status list, counts, back-off, Retry-After); the pause is ours,
        # so that a stop or the job's deadline ends it at once (urllib3 would time.sleep through it).
        retry = self._retry
        while True:
            if cancel is not None:
                cancel.check()
            answer: BaseHTTPResponse | None = None
            cause: Exception | None = None
            try:
                response = self._pool.request(
                    "GET", url, headers=self._headers, preload_content=False, redirect=False, retries=False
                )
            except HTTPError as exc:
                failure = f"GET {url} failed: {type(exc).__name__}: {exc}"
                cause = exc
            else:
                if not retry.is_retry("GET", response.status, "Retry-After" in response.headers):
                    return response
                failure, answer = f"GET {url} answered HTTP {response.status}", response
                _release(response)
            try:
                retry = retry.increment("GET", url, response=answer, error=cause)
            except MaxRetryError:
                raise FetchError(f"{failure} (after {len(retry.history) + 1} attempts)", retryable=True) from cause
            delay = self._pause(retry, answer)
            log.warning("%s; retry %d of %d in %.1f s", failure, len(retry.history), self._retries, delay)
            if cancel is None:
                self._sleep(delay)
            else:
                cancel.wait(delay)

    def _pause(self, retry: Retry, raw: BaseHTTPResponse | None) -> float:
        """Seconds before the next try: the answer's ``Retry-After`` (capped), else Retry's back-off."""
        if raw is not None and retry.respect_retry_after_header:
            try:
                after = retry.get_retry_after(raw)
            except InvalidHeader:
                log.debug("ignoring an unreadable Retry-After: %r", raw.headers.get("Retry-After"))
                after = None
            if after:  # as Retry.sleep(): a Retry-After of 0 falls back to the back-off
                return min(after, self._max_retry_after)
        return retry.get_backoff_time()

    @staticmethod
    def _checked(response: BaseHTTPResponse, url: str) -> BaseHTTPResponse:
        status = response.status
        if status < 400:
            return response
        _release(response)
        if status in (401, 403):
            raise FetchError(
                f"GET {url} was refused (HTTP {status}): check the packager's API key "
                "(TDM_PACKAGER_API_KEY) and that the server gives it the packager role"
            )
        if status == 404:
            raise FetchError(f"GET {url}: not found (HTTP 404); the docset or document may have been deleted")
        raise FetchError(f"GET {url} answered HTTP {status}", retryable=status >= 500)

    # --- the docset listing ---------------------------------------------------------------

    def docset_pages(
        self, docset_url: str, *, max_pages: int = 2_000, cancel: Cancel | None = None
    ) -> Iterator[DocsetPage]:
        """Walk the pages of a docset listing (``GET /api/docsets/<id>?fmt=meta,txt``), following ``next``.

        The first page is asked for with ``limit=<listing_page_size>`` (the largest page the
        server allows); the server's ``next`` links are followed as they are. If the server
        refuses that first request outright (an HTTP error that is not transient), the listing
        is asked for once more as given, at the server's default page size.

        Raises:
            UnsafeUrlError: the docset URL, a ``next`` link or a text link leaves the API base.
            FetchError: as :meth:`get_json`, a page we cannot read, or a ``next`` loop.
            LimitError: the listing goes on past ``max_pages`` pages.
        """
        given = self.guard.check(docset_url)
        url: str | None = given
        if self._listing_page_size is not None:
            url = self.listing_url(given, page_size=self._listing_page_size)
        seen: set[str] = set()
        while url is not None:
            if url in seen:
                raise FetchError(f"the docset listing at {docset_url} loops back to {url}")
            if len(seen) >= max_pages:
                raise LimitError(
                    f"the docset listing at {docset_url} has more than {max_pages} pages, the packager's page "
                    "limit (TDM_MAX_PAGES); ask for more members per page, or raise the limit"
                )
            seen.add(url)
            try:
                final_url, body = self.get_json(url, cancel=cancel)
            except FetchError as exc:
                if len(seen) > 1 or url == given or exc.retryable:
                    raise
                log.warning("%s; reading the listing at the server's own page size instead", exc)
                seen, url = {given}, given
                final_url, body = self.get_json(url, cancel=cancel)
            page = self.parse_page(body, page_url=final_url)
            yield page
            url = page.next_url

    def listing_url(self, docset_url: str, *, page_size: int) -> str:
        """``docset_url`` (checked by the guard) asking for ``page_size`` members per page (its ``limit`` replaced).

        Raises:
            UnsafeUrlError: the URL leaves the API base.
        """
        parts = urlsplit(self.guard.check(docset_url))
        query = [p for p in parts.query.split("&") if p and p.split("=", 1)[0] != "limit"]
        query.append(f"limit={max(int(page_size), 1)}")
        return urlunsplit(parts._replace(query="&".join(query)))

    def parse_page(self, body: Any, *, page_url: str) -> DocsetPage:
        """Read one listing page; tolerant of the usual spellings (``members``/``documents``/``items``,
        ``next`` or ``links.next``, ``total``/``count`` or ``docset.member_count``). Every link is checked.

        Raises:
            FetchError: the page is not a JSON object with a list of members, each with an id.
            UnsafeUrlError: a link leaves the API base.
        """
        if not isinstance(body, dict):
            raise FetchError(f"{page_url} is not a JSON object")
        raw = _first(body, "members", "documents", "items", "results")
        if not isinstance(raw, list):
            raise FetchError(f"{page_url} has no list of members (expected a 'members' array)")
        members = tuple(self._member(item, page_url) for item in raw)
        links = _object(body, "links")
        pagination = _object(body, "pagination")
        next_link = _first(body, "next") or _first(links, "next") or _first(pagination, "next")
        if next_link is not None and not isinstance(next_link, str):
            raise FetchError(f"{page_url}: 'next' must be a URL string")
        total = (
            _first(body, "total", "count", "member_count")
            or _first(pagination, "total", "count")
            or _first(_object(body, "docset"), "member_count")
        )
        return DocsetPage(
            members=members,
            total=total if isinstance(total, int) and not isinstance(total, bool) and total >= 0 else None,
            next_url=self.guard.check(next_link, relative_to=page_url) if next_link else None,
        )

    def _member(self, item: Any, page_url: str) -> Member:
        if not isinstance(item, dict):
            raise FetchError(f"{page_url}: a member is not a JSON object")
        doc_id = _first(item, "id", "document_id")
        if isinstance(doc_id, bool) or not isinstance(doc_id, str | int) or doc_id == "":
            raise FetchError(f"{page_url}: a member has no 'id'")
        doc_id = str(doc_id)
        # Either {"id", "metadata": {...}, "links"} or the document's fields inline (the reference server).
        metadata = _object(item, "metadata") or {k: v for k, v in item.items() if k != "links"}
        links = _object(item, "links")
        text = _first(item, "text_url") or _first(links, "text")
        if text is None and isinstance(item.get("text"), str):
            text = item["text"]
        if text is not None and not isinstance(text, str):
            raise FetchError(f"{page_url}: the text link of member {doc_id!r} is not a string")
        # With no link, the API's documented route for a document's text.
        text_url = self.guard.check(
            text or f"api/documents/{quote(doc_id, safe='')}/text", relative_to=page_url if text else None
        )
        return Member(doc_id=doc_id, metadata=metadata, text_url=text_url)


def _release(response: BaseHTTPResponse) -> None:
    """Give the response's connection back to the pool: kept alive if its body was read to the end, else closed."""
    if not response.closed:
        response.close()  # a body left unread would be read by the next request on the connection
    response.release_conn()


def _first(mapping: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = mapping.get(key)
        if value is not None:
            return value
    return None


def _object(mapping: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = mapping.get(key)
    return value if isinstance(value, dict) else {}
