"""The packaging core, free of the broker: list the docset, fingerprint it, reuse or build the bag, store it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Final
from urllib.parse import unquote, urlsplit

from examples.packager.api import ApiClient, DocsetPage, Member
from examples.packager.bag import BagWriter
from examples.packager.deflate import Deflated, Deflater
from examples.packager.errors import DeleteRefusedError, FetchError, LimitError, UnsafeUrlError
from examples.packager.estimate import Build, Estimator, Workload, usable_cores
from examples.packager.faults import maybe_die
from examples.packager.limits import Cancel, JobInterrupted, Limits, describe_count
from examples.packager.listing_meter import ListingMeter
from examples.packager.ordered import OrderedPool
from examples.packager.progress import ProgressSink, ProgressThrottle
from examples.packager.sanitize import safe_component
from examples.packager.secret import archive_fingerprint, load_secret
from examples.packager.storage import Storage, StoredPackage, archive_name, parse_archive_name
from examples.packager.workdir import building_file, sweep
from examples.packager.writeback import EarlyWriteback
from tdm_messaging import ConfigurationError, validate_docset_id

__all__ = ["FETCH_CONCURRENCY", "LAYOUT_VERSION", "Estimator", "Packager", "ProgressSink", "ProgressThrottle"]

log = logging.getLogger(__name__)

LAYOUT_VERSION: Final = "tdm-bag-1"
"""Part of every fingerprint: changing the archive layout must not reuse archives of the old one."""
_COPY_CHUNK: Final = 1024 * 1024
FETCH_CONCURRENCY: Final = 8
"""Members fetched and deflated at once by default (``TDM_FETCH_CONCURRENCY``)."""


class Packager:
    """Builds and stores the archive of a docset; knows nothing of brokers (see ``app.py`` for the wiring).

    A package is keyed by docset id and a fingerprint: an HMAC, keyed by the deployment's
    secret, of the docset id and a SHA-256 of the layout version, the formats, and every
    member's id, metadata and text link, in listing order. If storage already holds that
    archive, it is reused without fetching a text; without the secret nobody can compute a name.

    It runs one job at a time (as the worker calls it); :meth:`interrupt` cuts that job short.

    Args:
        api: the guarded API client.
        storage: where archives go.
        work_dir: where the archive and spools are written before storing (default: the
            system's temporary directory; best on the same file system as a LocalStorage).
            The archive is built in a locked ``.building-*.zip`` file; before each build, such
            files whose packager died are removed (``examples.packager.workdir``), so
            packagers may share the directory.
        estimator: the Accepted estimate; its prior is calibrated to this machine before the
            first estimate, then it learns this packager's speed from its builds
            (``examples.packager.estimate``; ``Estimator(calibrate=False)`` for the fixed prior).
        compresslevel: deflate level, 0 to 9.
        progress_every_seconds: report progress at most once every this many seconds ...
        progress_every_percent: ... and at most once per this many percent of the members
            (the last report, all members done, is always sent).
        clock: monotonic clock for the progress throttle and the estimate's timings.
        source_organization: the bag's ``Source-Organization``.
        queue_prefix: the server's prefix of docset ids on the broker (``TDM_QUEUE_PREFIX``): a
            request for docset ``<prefix><id>`` must carry the URL ``.../docsets/<id>``.
        limits: what one job may take (bytes, members, pages, time).
        secret: the key of archive names (default: the one ``storage`` keeps, made on first use;
            see ``examples.packager.secret``).
        fetch_concurrency: members fetched and deflated at once, on as many threads, over the API
            client's pooled keep-alive connections (give its ``pool_size`` at least as many). At
            most twice as many members are in flight or waiting to be written, and they are written
            in listing order, so the archive is the same bytes whatever the concurrency.

    Raises:
        ConfigurationError: the secret kept in storage is not a valid one, or ``fetch_concurrency`` < 1.
        StorageError: the storage could not be asked for its secret.
    """

    def __init__(
        self,
        *,
        api: ApiClient,
        storage: Storage,
        work_dir: str | os.PathLike[str] | None = None,
        estimator: Estimator | None = None,
        compresslevel: int = 6,
        progress_every_seconds: float = 1.0,
        progress_every_percent: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        source_organization: str = "MIT Libraries TDM (tdm-messaging reference packager)",
        queue_prefix: str = "",
        limits: Limits | None = None,
        secret: bytes | None = None,
        fetch_concurrency: int = FETCH_CONCURRENCY,
    ) -> None:
        self.api = api
        self.storage = storage
        self.work_dir = str(work_dir) if work_dir is not None else None
        self.estimator = estimator or Estimator()
        self._compresslevel = compresslevel
        self._every_seconds = progress_every_seconds
        self._every_percent = progress_every_percent
        self._clock = clock
        self._source_organization = source_organization
        self._queue_prefix = queue_prefix
        self.limits = limits or Limits()
        if fetch_concurrency < 1:
            raise ConfigurationError(f"fetch concurrency must be at least 1, got {fetch_concurrency}")
        self._secret = secret if secret is not None else load_secret(storage)
        self.fetch_concurrency = fetch_concurrency
        """Texts fetched at once (the estimate's ``W``)."""
        self.cores = usable_cores()
        """Cores this process may use (the estimate spreads the per-byte work over ``min(W, cores)``)."""
        self._current: Cancel | None = None
        self._stopping = False
        self._meter = ListingMeter(clock)
        self._built_payload = 0

    def interrupt(self) -> None:
        """The process is stopping: cut the job under way short with :class:`JobInterrupted`, and any later one.

        Safe to call from a signal handler: the blocked read returns within moments.
        """
        self._stopping = True
        current = self._current
        if current is not None:
            current.cancel(JobInterrupted("the packager is stopping: the job is left for another packager"))

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
            LimitError: the job went over a limit of ``limits`` (the message names it).
            InvalidDestinationError: the docset id is not valid.
            JobInterrupted: :meth:`interrupt` was called; nothing was stored.
        """
        validate_docset_id(docset_id)
        cancel = Cancel()
        deadline = self.limits.deadline_seconds
        cancel.start_deadline(
            deadline,
            LimitError(
                f"packaging docset {docset_id} took longer than the job deadline of {deadline:g} s "
                "(TDM_JOB_DEADLINE); the API may be slow, or the docset too large for the deadline"
            ),
        )
        self._current = cancel
        try:
            if self._stopping:
                self.interrupt()
            cancel.check()
            return self._package(docset_id=docset_id, docset_url=docset_url, sink=sink, formats=formats, cancel=cancel)
        except Exception:
            if cancel.cancelled:
                cancel.check()  # the cut is the reason, whatever it broke on the way
            raise
        finally:
            self._current = None
            cancel.finish()

    def _package(
        self, *, docset_id: str, docset_url: str, sink: ProgressSink, formats: Sequence[str], cancel: Cancel
    ) -> StoredPackage:
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
            count, content = self._list(docset_url, wanted, spool, sink, cancel)
            fingerprint = archive_fingerprint(self._secret, docset_id, content)
            name = archive_name(docset_id, fingerprint)
            existing = self.storage.find(name)
            if existing is not None:
                log.info("docset %s unchanged (%s): reusing %s", docset_id, fingerprint[:12], name)
                sink.progress(count, count, eta_seconds=0.0)
                return existing
            spool.seek(0)
            started = self._clock()
            stored = self._build(
                docset_id=docset_id,
                docset_url=docset_url,
                formats=wanted,
                name=name,
                fingerprint=content,
                count=count,
                members=_read_spool(spool),
                sink=sink,
                cancel=cancel,
            )
            self._learn(count, self._clock() - started)
        stale = self.storage.delete_docset(docset_id, keep=name)
        if stale:
            log.info("docset %s changed: deleted %d older archive(s)", docset_id, len(stale))
        return stored

    def delete(self, docset_id: str, archive_url: str | None = None) -> list[str]:
        """Delete every stored archive of ``docset_id``; return their names.

        A delete request may name the archive (``archive_url``): it must then be a URL of this
        packager's storage (same host, bucket and prefix, or directory) of an archive of
        ``docset_id``, or nothing is deleted.

        Raises:
            DeleteRefusedError: ``archive_url`` is not one of this storage's archives of the docset.
            StorageError: one could not be listed or deleted.
        """
        validate_docset_id(docset_id)
        if archive_url is not None:
            name = self.storage.name_of_url(archive_url)
            if name is None:
                raise DeleteRefusedError(
                    f"delete of docset {docset_id} refused: {archive_url[:300]!r} is not a URL of this packager's "
                    f"storage ({self.storage.describe()}); nothing was deleted"
                )
            parsed = parse_archive_name(name)
            if parsed is None or parsed[0] != docset_id:
                raise DeleteRefusedError(
                    f"delete of docset {docset_id} refused: {archive_url[:300]!r} is an archive of another docset; "
                    "nothing was deleted"
                )
        return self.storage.delete_docset(docset_id)

    def _list(
        self, docset_url: str, formats: tuple[str, ...], spool: IO[bytes], sink: ProgressSink, cancel: Cancel
    ) -> tuple[int, str]:
        """Spool the listing (one snapshot for fingerprint and build), each member once; Accepted once counted.

        Returns the member count and the content digest (SHA-256 of public data: not a name by itself).
        """
        digest = hashlib.sha256(json.dumps([LAYOUT_VERSION, formats]).encode())
        count = 0
        announced = False
        # A member listed twice would be two entries of one name in the zip, an invalid bag: the
        # first listing wins. The set grows with the docset, as the zip's own directory does.
        seen: set[str] = set()
        repeats = 0
        most = self.limits.max_members
        pages = self.api.docset_pages(docset_url, max_pages=self.limits.max_pages, cancel=cancel)
        for page in self._meter.timed(pages):
            if page.total is not None and page.total > most:
                raise LimitError(
                    f"the docset listing at {docset_url} announces {describe_count(page.total)} members, more "
                    f"than the packager's limit of {most} (TDM_MAX_MEMBERS)"
                )
            if not announced and page.total is not None:
                sink.accepted(self._estimate(page.total, docset_url, cancel))
                announced = True
            for member in page.members:
                if member.doc_id in seen:
                    repeats += 1
                    continue
                seen.add(member.doc_id)
                if count >= most:
                    raise LimitError(
                        f"the docset listing at {docset_url} has more than {most} members, the packager's "
                        "limit (TDM_MAX_MEMBERS)"
                    )
                line = json.dumps(
                    [member.doc_id, member.metadata, member.text_url], sort_keys=True, separators=(",", ":")
                ).encode()
                digest.update(line + b"\n")
                spool.write(line + b"\n")
                count += 1
            maybe_die("fetch")  # test hook, off by default (docs/packager.md)
            cancel.check()
        if repeats:
            log.warning("docset listing %s repeats %d member(s): each is packaged once", docset_url, repeats)
        if not announced:
            sink.accepted(self._estimate(count, docset_url, cancel))
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
        cancel: Cancel,
    ) -> StoredPackage:
        # A packager sharing the work dir may have died since we last looked: its locks are gone.
        sweep(self.work_dir)
        with building_file(self.work_dir) as (handle, path):
            # The writeback thread is joined before the handle closes (no sync of a reused descriptor).
            writeback = EarlyWriteback(handle.fileno()) if self.storage.syncs_the_built_file else None
            with handle, writeback or contextlib.nullcontext():
                bag = BagWriter(
                    handle,
                    bag_name=safe_component(f"docset-{docset_id}"),
                    compresslevel=self._compresslevel,
                    spool_dir=self.work_dir,
                    written=writeback.written if writeback is not None else None,
                )
                try:
                    throttle = ProgressThrottle(
                        sink,
                        count,
                        every_seconds=self._every_seconds,
                        every_percent=self._every_percent,
                        clock=self._clock,
                    )
                    budget = _Budget(self.limits.max_docset_bytes)
                    with OrderedPool(
                        lambda member: self._fetch_member(member, formats, budget, cancel),
                        members,
                        workers=self.fetch_concurrency,
                        cancel=cancel,
                        discard=_close_files,
                    ) as fetched:
                        for done, files in enumerate(fetched, start=1):
                            try:
                                cancel.check()
                                for member_path, deflated in files:
                                    bag.add_deflated(member_path, deflated)
                            finally:
                                _close_files(files)
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
                    self._built_payload = bag.payload_octets  # for the estimate (hook)
                    sha256 = bag.archive_sha256 or _file_sha256(path)
                finally:
                    bag.abort()
            log.info("built %s: %d members, %d bytes", name, count, path.stat().st_size)
            # Stored while the file is still locked: a sweep must not take it between close and store.
            return self.storage.put(name, path, sha256=sha256)

    # --- the estimate (hooks: _list calls _estimate, _package calls _learn) ------------------------

    def _estimate(self, members: int, docset_url: str, cancel: Cancel) -> float:
        """The Accepted estimate for ``members``, from what the listing measured so far."""
        latency = self._meter.latency_seconds(lambda: self._probe(docset_url, cancel))
        return self.estimator.estimate(
            Workload(
                members=members,
                text_bytes=self._meter.text_bytes(members),
                latency_seconds=latency,
                concurrency=self.fetch_concurrency,
                listing_seconds_left=self._meter.seconds_left(members),
                cores=self.cores,
            )
        )

    def _probe(self, docset_url: str, cancel: Cancel) -> DocsetPage:
        """A one-member page of the listing: its round trip is the API's latency, free of a big page's work."""
        final_url, body = self.api.get_json(self.api.listing_url(docset_url, page_size=1), cancel=cancel)
        return self.api.parse_page(body, page_url=final_url)

    def _learn(self, members: int, seconds: float) -> None:
        self.estimator.learn(
            Build(
                members=members,
                text_bytes=self._built_payload,
                seconds=seconds,
                latency_seconds=self._meter.last_latency,
                concurrency=self.fetch_concurrency,
                cores=self.cores,
            )
        )

    def _fetch_member(
        self, member: Member, formats: tuple[str, ...], budget: _Budget, cancel: Cancel
    ) -> list[tuple[str, Deflated]]:
        """Fetch and deflate one member's files (on a pool thread); the bag writes them later, in listing order."""
        folder = safe_component(member.doc_id)
        files: list[tuple[str, Deflated]] = []
        try:
            if "meta" in formats:
                meta = json.dumps(member.metadata, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n"
                files.append((f"{folder}/meta.json", self._deflate([meta], budget)))
            if "txt" in formats:
                with self.api.stream(member.text_url, cancel=cancel) as chunks:
                    files.append((f"{folder}/text.txt", self._deflate(chunks, budget)))
        except BaseException:
            _close_files(files)
            raise
        return files

    def _deflate(self, chunks: Iterable[bytes], budget: _Budget) -> Deflated:
        deflater = Deflater(level=self._compresslevel, spool_dir=self.work_dir)
        try:
            for chunk in chunks:
                budget.take(len(chunk))
                deflater.update(chunk)
        except BaseException:
            deflater.abort()
            raise
        return deflater.finish()


class _Budget:
    """The payload bytes a job may still take (``limits.max_docset_bytes``), shared by the fetching threads."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._left = limit
        self._lock = threading.Lock()

    def take(self, size: int) -> None:
        """Count ``size`` more payload bytes.

        Raises:
            LimitError: the payload passes the limit.
        """
        with self._lock:
            self._left -= size
            over = self._left < 0
        if over:
            raise LimitError(
                f"the docset is larger than the packager's limit of {self._limit} bytes "
                "(TDM_MAX_DOCSET_BYTES); make the docset smaller or raise the limit"
            )


def _close_files(files: list[tuple[str, Deflated]]) -> None:
    for _path, deflated in files:
        deflated.close()


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
