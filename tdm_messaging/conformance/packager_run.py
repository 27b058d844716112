"""``--role packager``: the kit plays the API server against a packager under test and records what it answers."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from tdm_messaging.codec import JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE, encode
from tdm_messaging.conformance.fixture_api import MISSING_SUFFIX, DocsetApi
from tdm_messaging.conformance.packager_checks import evaluate
from tdm_messaging.conformance.packager_seen import Fetch, Lifecycle, PackagerSeen
from tdm_messaging.conformance.report import Report
from tdm_messaging.conformance.wire import Received, drain, peek
from tdm_messaging.destinations import DEAD_LETTER, PACKAGE_REQUESTS, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import TransportError
from tdm_messaging.ids import new_request_id
from tdm_messaging.models import Complete, PackageRequest
from tdm_messaging.server import PackagingClient
from tdm_messaging.status import State
from tdm_messaging.transport.base import Transport

__all__ = ["PackagerRun", "run_packager_role"]

logger = logging.getLogger(__name__)

_POLL_INTERVAL_SECONDS = 0.2
_MAX_ARCHIVE_BYTES = 1 << 30


@dataclass(frozen=True)
class PackagerRun:
    """How to run ``--role packager``.

    Attributes:
        timeout: seconds to wait for the packager to finish each phase (the jobs, then the deletes).
        fetch_archives: download each archive to check its size and sha256 (and that it is gone after delete).
        run_id: the stem of this run's docset ids (default ``conf-<8 hex digits>``).
    """

    timeout: float = 60.0
    fetch_archives: bool = False
    run_id: str = ""


def run_packager_role(transport: Transport, api: DocsetApi, run: PackagerRun, report: Report) -> None:
    """Send the kit's requests, watch the reply queues until the packager is done (or the timeout), judge.

    Args:
        transport: an open transport on the broker (and namespace) the packager consumes from.
        api: the running stand-in API the package requests point at.
        run: the options.
        report: where the results and notes go.

    Raises:
        TransportError: the broker failed during the run.
    """
    stem = run.run_id or f"conf-{secrets.token_hex(4)}"
    lifecycles = {name: Lifecycle(f"{stem}-{name.replace('_', '-')}") for name in _SCENARIOS}
    seen = PackagerSeen(
        json=lifecycles["json"],
        text=lifecycles["text"],
        seed=lifecycles["seed"],
        polled=lifecycles["polled"],
        duplicate=lifecycles["duplicate"],
        invalid=lifecycles["invalid"],
        future_major=lifecycles["future_major"],
        after_poison=lifecycles["after_poison"],
        missing=Lifecycle(f"{stem}{MISSING_SUFFIX}"),
        fetch_archives=run.fetch_archives,
    )
    report.notes.append(f"docset ids {stem}-*; package requests point at {api.base_url}/api/docsets/<id>")
    json_client = PackagingClient(transport)
    text_client = PackagingClient(transport, content_type=TEXT_CONTENT_TYPE)
    try:
        _send_requests(transport, api, seen, json_client, text_client)
        _watch_jobs(transport, seen, json_client, run.timeout)
        _delete_archives(transport, seen, json_client, text_client, run)
        seen.dead_letters = _find_dead_letters(transport, seen.poison_bodies, min(run.timeout, 3.0))
        for lifecycle in (seen.invalid, seen.future_major):
            lifecycle.replies += _replies(transport, lifecycle)
    finally:
        _clean_up(transport, seen)
    report.add(evaluate(seen))
    report.notes.append(f"the packager made {len(api.requests)} HTTP requests to the stand-in API")


_SCENARIOS = ("json", "text", "seed", "polled", "duplicate", "invalid", "future_major", "after_poison")


def _send_requests(
    transport: Transport, api: DocsetApi, seen: PackagerSeen, json_client: PackagingClient, text_client: PackagingClient
) -> None:
    def request(client: PackagingClient, lifecycle: Lifecycle) -> PackageRequest:
        lifecycle.request = client.request_package(lifecycle.docset_id, api.docset_url(lifecycle.docset_id)).request
        return lifecycle.request

    request(json_client, seen.json)
    request(text_client, seen.text)
    # The seed's form: the docset URL alone, no tdm-* header (no request id, no copy in the reply queue).
    seed_url = api.docset_url(seen.seed.docset_id).encode()
    transport.send(PACKAGE_REQUESTS, Envelope(seed_url, TEXT_CONTENT_TYPE, {}), confirm=True)
    request(json_client, seen.polled)
    duplicate = request(json_client, seen.duplicate)
    transport.send(PACKAGE_REQUESTS, encode(duplicate), confirm=True)
    request(json_client, seen.missing)
    for body in _poison(api, seen):
        seen.poison_bodies.append(body)
        transport.send(PACKAGE_REQUESTS, Envelope(body, JSON_CONTENT_TYPE, {}), confirm=True)
    request(json_client, seen.after_poison)


def _poison(api: DocsetApi, seen: PackagerSeen) -> list[bytes]:
    """A body that is not JSON, a request with an ftp:// docset URL, and a request of protocol version 2.0."""
    not_json = b"{conformance " + seen.invalid.docset_id.encode() + b": this is not JSON"
    bodies = [not_json]
    for lifecycle, change in (
        (seen.invalid, {"docset_url": "ftp://example.org/docsets/1"}),
        (seen.future_major, {"protocol_version": "2.0"}),
    ):
        request = PackageRequest.model_validate(
            {
                "docset_id": lifecycle.docset_id,
                "request_id": new_request_id(),
                "timestamp": "2026-01-01T00:00:00Z",
                "docset_url": api.docset_url(lifecycle.docset_id),
                "reply_to": f"package/{lifecycle.docset_id}",
                "requested_at": "2026-01-01T00:00:00Z",
            }
        )
        body = json.loads(encode(request).body)
        body.update(change)
        bodies.append(json.dumps(body).encode())
    return bodies


def _replies(transport: Transport, lifecycle: Lifecycle) -> list[Received]:
    """What arrived on the docset's queue since the last look (read and acknowledged), copies left out."""
    got = drain(transport, reply_queue(lifecycle.docset_id), docset_id=lifecycle.docset_id)
    return [r for r in got if not isinstance(r.message, PackageRequest)]


def _watch_jobs(transport: Transport, seen: PackagerSeen, client: PackagingClient, timeout: float) -> None:
    watched = [seen.json, seen.text, seen.seed, seen.duplicate, seen.missing, seen.after_poison]

    def done() -> bool:
        polled = seen.polled.states[-1].state if seen.polled.states else State.UNKNOWN
        return all(w.terminal is not None for w in watched) and polled in (State.COMPLETE, State.FAILED)

    def look() -> None:
        for lifecycle in watched:
            lifecycle.replies += _replies(transport, lifecycle)
        seen.polled.states.append(client.status(seen.polled.docset_id))

    _until(done, look, timeout)


def _delete_archives(
    transport: Transport,
    seen: PackagerSeen,
    json_client: PackagingClient,
    text_client: PackagingClient,
    run: PackagerRun,
) -> None:
    to_delete = []
    for lifecycle, client in ((seen.json, json_client), (seen.text, text_client)):
        end = lifecycle.terminal
        if not isinstance(end, Complete):
            continue
        if run.fetch_archives:
            lifecycle.fetched = _fetch(end.archive_url)
        lifecycle.delete = client.request_delete(lifecycle.docset_id, archive_url=end.archive_url)
        to_delete.append(lifecycle)

    def look() -> None:
        for lifecycle in to_delete:
            lifecycle.after_delete += drain(transport, reply_queue(lifecycle.docset_id), docset_id=lifecycle.docset_id)

    _until(lambda: all(lc.deleted is not None for lc in to_delete), look, run.timeout)
    if run.fetch_archives:
        for lifecycle in to_delete:
            end = lifecycle.terminal
            if lifecycle.deleted is not None and isinstance(end, Complete):
                lifecycle.fetched_after_delete = _fetch(end.archive_url)


def _find_dead_letters(transport: Transport, bodies: list[bytes], grace: float) -> list[Envelope]:
    """The envelopes on docsets/dead-letter whose body is one of ours (looked at, and given back)."""
    found: dict[bytes, Envelope] = {}

    def look() -> None:
        for received in peek(transport, DEAD_LETTER, docset_id=None):
            if received.envelope.body in bodies:
                found[received.envelope.body] = received.envelope

    # The requests sent after them were served, so a packager that parks them has done so by now;
    # a short wait covers a packager that parks them from another thread.
    _until(lambda: len(found) == len(bodies), look, grace)
    return list(found.values())


def _until(done: Callable[[], bool], look: Callable[[], None], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        look()
        if done() or time.monotonic() >= deadline:
            return
        time.sleep(_POLL_INTERVAL_SECONDS)


def _fetch(url: str) -> Fetch:
    digest = hashlib.sha256()
    size = 0
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            while chunk := response.read(1 << 16):
                size += len(chunk)
                digest.update(chunk)
                if size > _MAX_ARCHIVE_BYTES:
                    return Fetch(200, size, error=f"larger than {_MAX_ARCHIVE_BYTES} bytes: not read to the end")
            return Fetch(int(response.status), size, digest.hexdigest())
    except urllib.error.HTTPError as exc:
        return Fetch(exc.code, error=f"HTTP {exc.code}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return Fetch(0, error=f"no answer: {exc}")


def _clean_up(transport: Transport, seen: PackagerSeen) -> None:
    """Delete the run's reply queues (where the backend can), so a run leaves nothing behind."""
    for name in (*_SCENARIOS, "missing"):
        lifecycle: Lifecycle = getattr(seen, name)
        try:
            transport.delete(reply_queue(lifecycle.docset_id))
        except TransportError as exc:
            logger.info("could not delete the reply queue of %s: %s", lifecycle.docset_id, exc)
