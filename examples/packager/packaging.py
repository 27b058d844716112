"""The packaging core, free of the broker: list the docset, fingerprint it, reuse or build the bag, store it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, Protocol
from urllib.parse import unquote, urlsplit

from examples.packager.api import ApiClient, Member
from examples.packager.bag import BagWriter
from examples.packager.errors import FetchError, UnsafeUrlError
from examples.packager.faults import maybe_die
from examples.packager.sanitize import safe_component
from examples.packager.storage import Storage, StoredPackage, archive_name
from examples.packager.workdir import building_file, sweep
from tdm_messaging import validate_docset_id

__all__ = ["LAYOUT_VERSION", "Estimator", "Packager", "ProgressSink", "ProgressThrottle"]

log = logging.getLogger(__name__)

LAYOUT_VERSION: Final = "tdm-bag-1"
"""Part of every fingerprint: changing the archive layout must not reuse archives of the old one."""
_COPY_CHUNK: Final = 1024 * 1024


class ProgressSink(Protocol):
    """Who hears about a job's progress; the worker's ``Job`` is one."""

    def accepted(self, estimate_seconds: float | None) -> None:
        """The job was taken; it should take about ``estimate_seconds``."""

    def progress(self, items_done: int, items_total: int, *, eta_seconds: float | None = None) -> None:
        """``items_done`` of ``items_total`` members are packaged."""


@dataclass(frozen=True)
class Estimator:
    """A time estimate from the member count: ``base_seconds + seconds_per_member * members``.

    Attributes:
        base_seconds: fixed cost (listing, upload).
        seconds_per_member: cost of one document (fetch, compress, hash).
    """

    base_seconds: float = 2.0
    seconds_per_member: float = 0.05

    def estimate(self, members: int) -> float:
        """Seconds to package ``members`` documents."""
        return round(self.base_seconds + self.seconds_per_member * max(members, 0), 1)


class ProgressThrottle:
    """Passes progress on at most once every ``every_items`` members or ``every_seconds``, plus the last one.

    The ETA extrapolates the rate measured so far.

    Args:
        sink: where progress goes.
        total: the member count.
        every_items: report at least this often, in members.
        every_seconds: report at least this often, in seconds of ``clock``.
        clock: a monotonic clock (tests pass a fake one).
    """

    def __init__(
        self,
        sink: ProgressSink,
        total: int,
        *,
        every_items: int = 50,
        every_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sink = sink
        self._total = total
        self._every_items = max(every_items, 1)
        self._every_seconds = every_seconds
        self._clock = clock
        self._start = clock()
        self._last_time = self._start
        self._last_done = 0
        self.reports = 0

    def update(self, done: int) -> None:
        """Note that ``done`` members are packaged; report if it is time (always on the last one)."""
        now = self._clock()
        due = (
            done >= self._total
            or done - self._last_done >= self._every_items
            or now - self._last_time >= self._every_seconds
        )
        if not due or done == self._last_done:
            return
        elapsed = now - self._start
        eta = elapsed / done * (self._total - done) if done and elapsed > 0 else None
        self._sink.progress(done, self._total, eta_seconds=None if eta is None else round(eta, 1))
        self._last_time, self._last_done = now, done
        self.reports += 1


class Packager:
    """Builds and stores the archive of a docset; knows nothing of brokers (see ``app.py`` for the wiring).

    A package is keyed by docset id and a content fingerprint (SHA-256 of the layout
    version, the formats, and every member's id, metadata and text link, in listing
    order); if storage already holds that archive, it is reused without fetching a text.

    Args:
        api: the guarded API client.
        storage: where archives go.
        work_dir: where the archive and spools are written before storing (default: the
            system's temporary directory; best on the same file system as a LocalStorage).
            The archive is built in a locked ``.building-*.zip`` file; before each build, such
            files whose packager died are removed (``examples.packager.workdir``), so
            packagers may share the directory.
        estimator: the time estimate from the member count.
        compresslevel: deflate level, 0 to 9.
        progress_every_items: report progress at least every this many members ...
        progress_every_seconds: ... or this many seconds.
        clock: monotonic clock for the progress throttle.
        source_organization: the bag's ``Source-Organization``.
        queue_prefix: the server's prefix of docset ids on the broker (``TDM_QUEUE_PREFIX``): a
            request for docset ``<prefix><id>`` must carry the URL ``.../docsets/<id>``.
    """

    def __init__(
        self,
        *,
        api: ApiClient,
        storage: Storage,
        work_dir: str | os.PathLike[str] | None = None,
        estimator: Estimator | None = None,
        compresslevel: int = 6,
        progress_every_items: int = 50,
        progress_every_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        source_organization: str = "MIT Libraries TDM (tdm-messaging reference packager)",
        queue_prefix: str = "",
    ) -> None:
        self.api = api
        self.storage = storage
        self.work_dir = str(work_dir) if work_dir is not None else None
        self.estimator = estimator or Estimator()
        self._compresslevel = compresslevel
        self._every_items = progress_every_items
        self._every_seconds = progress_every_seconds
        self._clock = clock
        self._source_organization = source_organization
        self._queue_prefix = queue_prefix

    def package(
        self, *, docset_id: str, docset_url: str, sink: ProgressSink, formats: Sequence[str] = ("meta", "txt")
    ) -> StoredPackage:
        """Package a docset: report Accepted with an estimate, progress as members are bagged; return the archive.

        Args:
            docset_id: the docset (names the archive).
            docset_url: its listing on the API, e.g. ``http://api/api/docsets/5?fmt=meta,txt``.
            sink: gets ``accepted`` once, then ``progress``.
            formats: ``meta`` (``meta.json``) and/or ``txt`` (``text.txt``) per member.

        Returns:
            The stored (possibly reused) archive.

        Raises:
            UnsafeUrlError: the docset URL or a link in the listing leaves the API base, or the
                docset URL's path does not end with ``/docsets/<id>`` where ``docset_id`` is
                the queue prefix followed by ``<id>``.
            FetchError: the API could not be read (``retryable`` says if later may help).
            StorageError: the archive could not be stored.
            InvalidDestinationError: the docset id is not valid.
        """
        validate_docset_id(docset_id)
        docset_url = self.api.guard.check(docset_url)
        # The packager's key may read every docset: a request must not get docset 6 packaged as docset 5.
        head, _, last = unquote(urlsplit(docset_url).path).rstrip("/").rpartition("/")
        if not head.endswith("/docsets") or docset_id != self._queue_prefix + last:
            raise UnsafeUrlError(
                f"docset URL {docset_url!r} does not name docset {docset_id!r}: expected .../docsets/<id> "
                f"with the queue prefix {self._queue_prefix!r} + <id> == the request's docset id"
            )
        unknown = sorted(set(formats) - {"meta", "txt"})
        if unknown or not formats:
            raise FetchError(f"formats {list(formats)!r} are not supported; use 'meta' and/or 'txt'")
        wanted = tuple(sorted(set(formats)))
        with tempfile.TemporaryFile(dir=self.work_dir) as spool:
            count, fingerprint = self._list(docset_url, wanted, spool, sink)
            name = archive_name(docset_id, fingerprint)
            existing = self.storage.find(name)
            if existing is not None:
                log.info("docset %s unchanged (%s): reusing %s", docset_id, fingerprint[:12], name)
                sink.progress(count, count, eta_seconds=0.0)
                return existing
            spool.seek(0)
            stored = self._build(
                docset_id=docset_id,
                docset_url=docset_url,
                formats=wanted,
                name=name,
                fingerprint=fingerprint,
                count=count,
                members=_read_spool(spool),
                sink=sink,
            )
        stale = self.storage.delete_docset(docset_id, keep=name)
        if stale:
            log.info("docset %s changed: deleted %d older archive(s)", docset_id, len(stale))
        return stored

    def delete(self, docset_id: str) -> list[str]:
        """Delete every stored archive of ``docset_id``; return their names.

        Raises:
            StorageError: one could not be listed or deleted.
        """
        validate_docset_id(docset_id)
        return self.storage.delete_docset(docset_id)

    def _list(self, docset_url: str, formats: tuple[str, ...], spool: IO[bytes], sink: ProgressSink) -> tuple[int, str]:
        """Spool the listing (bounded memory; one snapshot for fingerprint and build); Accepted once counted."""
        digest = hashlib.sha256(json.dumps([LAYOUT_VERSION, formats]).encode())
        count = 0
        announced = False
        for page in self.api.docset_pages(docset_url):
            if not announced and page.total is not None:
                sink.accepted(self.estimator.estimate(page.total))
                announced = True
            for member in page.members:
                line = json.dumps(
                    [member.doc_id, member.metadata, member.text_url], sort_keys=True, separators=(",", ":")
                ).encode()
                digest.update(line + b"\n")
                spool.write(line + b"\n")
                count += 1
            maybe_die("fetch")  # test hook, off by default (docs/packager.md)
        if not announced:
            sink.accepted(self.estimator.estimate(count))
        log.info("docset listing %s: %d members", docset_url, count)
        return count, digest.hexdigest()

    def _build(
        self,
        *,
        docset_id: str,
        docset_url: str,
        formats: tuple[str, ...],
        name: str,
        fingerprint: str,
        count: int,
        members: Iterator[Member],
        sink: ProgressSink,
    ) -> StoredPackage:
        # A packager sharing the work dir may have died since we last looked: its locks are gone.
        sweep(self.work_dir)
        with building_file(self.work_dir) as (handle, path):
            with handle:
                bag = BagWriter(
                    handle,
                    bag_name=safe_component(f"docset-{docset_id}"),
                    compresslevel=self._compresslevel,
                    spool_dir=self.work_dir,
                )
                try:
                    throttle = ProgressThrottle(
                        sink, count, every_items=self._every_items, every_seconds=self._every_seconds, clock=self._clock
                    )
                    for done, member in enumerate(members, start=1):
                        self._add_member(bag, member, formats)
                        if done == 1:
                            maybe_die("zip")  # test hook, off by default
                        throttle.update(done)
                    bag.finish(
                        {
                            "Source-Organization": self._source_organization,
                            "External-Identifier": docset_url,
                            "External-Description": f"Metadata and full texts of the documents of docset {docset_id}",
                            "Bag-Software-Agent": "tdm-messaging reference packager",
                            "TDM-Docset-Id": docset_id,
                            "TDM-Content-Fingerprint": fingerprint,
                        }
                    )
                finally:
                    bag.abort()
            sha256 = _file_sha256(path)
            log.info("built %s: %d members, %d bytes", name, count, path.stat().st_size)
            # Stored while the file is still locked: a sweep must not take it between close and store.
            return self.storage.put(name, path, sha256=sha256)

    def _add_member(self, bag: BagWriter, member: Member, formats: tuple[str, ...]) -> None:
        folder = safe_component(member.doc_id)
        if "meta" in formats:
            meta = json.dumps(member.metadata, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n"
            bag.add_file(f"{folder}/meta.json", [meta])
        if "txt" in formats:
            with self.api.stream(member.text_url) as chunks:
                bag.add_file(f"{folder}/text.txt", chunks)


def _read_spool(spool: IO[bytes]) -> Iterator[Member]:
    for line in spool:
        doc_id, metadata, text_url = json.loads(line)
        yield Member(doc_id=doc_id, metadata=metadata, text_url=text_url)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
