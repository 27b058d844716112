"""Where archives go: the storage contract, archive names, and a local directory (atomic rename)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar, Final
from urllib.parse import quote, unquote, urlsplit

from examples.packager.errors import InvalidArchiveNameError, StorageError
from examples.packager.faults import maybe_die
from examples.packager.secret import SECRET_NAME
from tdm_messaging import ConfigurationError, validate_docset_id

__all__ = [
    "ARCHIVE_CONTENT_TYPE",
    "LocalStorage",
    "Storage",
    "StoredPackage",
    "archive_name",
    "parse_archive_name",
]

log = logging.getLogger(__name__)

ARCHIVE_CONTENT_TYPE: Final = "application/zip"
_COPY_CHUNK: Final = 1024 * 1024
# The docset id part allows exactly what validate_docset_id allows: never a '/' (no path traversal).
_NAME: Final = re.compile(r"docset-(?P<docset>[A-Za-z0-9._~:@+-]{1,128})--(?P<fingerprint>[0-9a-f]{64})\.zip")


def archive_name(docset_id: str, fingerprint: str) -> str:
    """The archive's name: ``docset-<docset id>--<64 hex fingerprint>.zip``.

    Raises:
        InvalidDestinationError: the docset id is not valid (see ``validate_docset_id``).
        InvalidArchiveNameError: the fingerprint is not 64 lowercase hex digits.
    """
    validate_docset_id(docset_id)
    if not re.fullmatch(r"[0-9a-f]{64}", fingerprint):
        raise InvalidArchiveNameError(f"fingerprint {fingerprint!r} must be 64 lowercase hex digits (a SHA-256)")
    return f"docset-{docset_id}--{fingerprint}.zip"


def parse_archive_name(name: str) -> tuple[str, str] | None:
    """``(docset id, fingerprint)`` of an archive name, or ``None`` if ``name`` is not one.

    The fingerprint has a fixed length at the end, so the split is unambiguous even
    when the docset id itself contains ``--``.
    """
    match = _NAME.fullmatch(name)
    return (match["docset"], match["fingerprint"]) if match else None


@dataclass(frozen=True)
class StoredPackage:
    """An archive in storage.

    Attributes:
        name: its archive name.
        url: where a miner downloads it.
        size_bytes: its size.
        sha256: its SHA-256 (hex), if known.
        content_type: its media type.
        url_expires_at: when ``url`` stops working, if it does.
    """

    name: str
    url: str
    size_bytes: int
    sha256: str | None
    content_type: str = ARCHIVE_CONTENT_TYPE
    url_expires_at: datetime | None = None


class Storage(ABC):
    """Where the packager keeps archives. Archive names come from :func:`archive_name`."""

    syncs_the_built_file: ClassVar[bool] = False
    """Whether :meth:`put` fsyncs the very file it is given (moved into place): the packager then
    syncs that file as it is built (``examples.packager.writeback``), so the final fsync waits for
    little. A storage that uploads or copies the file elsewhere has no use for that."""

    @abstractmethod
    def find(self, name: str) -> StoredPackage | None:
        """The stored archive ``name`` (with a fresh URL), or ``None`` if there is none.

        Raises:
            StorageError: the storage could not be asked.
        """

    @abstractmethod
    def put(self, name: str, path: Path, *, sha256: str) -> StoredPackage:
        """Store the finished archive at ``path`` as ``name``, all or nothing; ``path`` may be moved away.

        Raises:
            StorageError: it could not be stored; nothing partial is left visible.
        """

    @abstractmethod
    def names(self, docset_id: str) -> list[str]:
        """The names of the archives stored for ``docset_id``, sorted.

        Raises:
            StorageError: the storage could not be listed.
        """

    @abstractmethod
    def remove(self, name: str) -> None:
        """Delete archive ``name``; no error if it is already gone.

        Raises:
            StorageError: it could not be deleted.
        """

    @abstractmethod
    def name_of_url(self, url: str) -> str | None:
        """The archive name ``url`` points at if it is a URL of this storage (its host, bucket and
        prefix or directory), else ``None``. Nothing is asked of the storage; the archive need not exist."""

    @abstractmethod
    def read_secret(self) -> bytes | None:
        """The archive secret this storage keeps (see ``examples.packager.secret``), or ``None`` if none yet.

        Raises:
            StorageError: the storage could not be read.
        """

    @abstractmethod
    def create_secret(self, value: bytes) -> bytes:
        """Keep ``value`` as the archive secret unless one is kept already; return the one kept.

        Only the owner can read it (mode 0600, or a private object). Two packagers racing agree:
        the first write wins and the other gets it back.

        Raises:
            StorageError: the storage could not be written.
        """

    @abstractmethod
    def secret_location(self) -> str:
        """Where the secret is kept, for messages (never the secret itself)."""

    def describe(self) -> str:
        """Where this storage is, for messages."""
        return type(self).__name__

    def delete_docset(self, docset_id: str, *, keep: str | None = None) -> list[str]:
        """Delete every archive of ``docset_id`` except ``keep``; return the names deleted.

        Raises:
            StorageError: one could not be listed or deleted.
        """
        deleted = []
        for name in self.names(docset_id):
            if name != keep:
                self.remove(name)
                deleted.append(name)
        return deleted


def _fsync_directory(directory: Path) -> None:
    """Flush ``directory``'s entries to disk (a rename is durable only then); a no-op where it cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (PermissionError, IsADirectoryError):  # Windows: a directory is not opened this way
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class LocalStorage(Storage):
    """Archives in a local directory, served by the API server at ``<public_base_url>/<name>``.

    An archive appears all at once: it is written under a hidden ``.partial-`` name, fsynced and
    renamed, and the directory is fsynced before :meth:`put` returns (the rename too survives a
    power cut); its SHA-256 sits next to it in ``<name>.sha256``, written first. URLs do not expire.

    Args:
        directory: where archives live (created if missing).
        public_base_url: the URL the directory is served under, e.g. ``http://127.0.0.1:8080/archives``.

    Raises:
        ConfigurationError: the directory cannot be created, or the URL is not http(s).
    """

    syncs_the_built_file: ClassVar[bool] = True  # moved into place (same file system) and fsynced there

    def __init__(self, directory: str | os.PathLike[str], public_base_url: str) -> None:
        self.directory = Path(directory)
        if not public_base_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"public base URL {public_base_url!r} must be an http:// or https:// URL")
        self.public_base_url = public_base_url.rstrip("/")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(f"cannot create archive directory {str(self.directory)!r}: {exc}") from exc
        self.sweep_partials()

    def sweep_partials(self, *, older_than_seconds: float = 3600.0) -> int:
        """Delete ``.partial-`` files a killed packager left behind; return how many.

        Only files older than ``older_than_seconds`` go, so a packager sharing the
        directory and writing one right now is not disturbed.
        """
        swept = 0
        cutoff = time.time() - older_than_seconds
        for entry in self.directory.glob(".partial-*"):
            try:
                if entry.stat().st_mtime < cutoff:
                    entry.unlink()
                    swept += 1
            except OSError as exc:
                log.warning("could not sweep %s: %s", entry, exc)
        if swept:
            log.info("swept %d partial file(s) from %s", swept, self.directory)
        return swept

    def _url(self, name: str) -> str:
        return f"{self.public_base_url}/{quote(name, safe='')}"

    def _path(self, name: str) -> Path:
        if parse_archive_name(name) is None:
            raise InvalidArchiveNameError(f"{name!r} is not an archive name of the form docset-<id>--<sha256>.zip")
        return self.directory / name

    def find(self, name: str) -> StoredPackage | None:
        """See :meth:`Storage.find`."""
        path = self._path(name)
        try:
            size = path.stat().st_size
            try:
                sha256: str | None = (self.directory / f"{name}.sha256").read_text("ascii").strip()
            except FileNotFoundError:
                sha256 = None
            if sha256 is None or not re.fullmatch(r"[0-9a-f]{64}", sha256):
                sha256 = _file_sha256(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read archive {str(path)!r}: {exc}", retryable=True) from exc
        return StoredPackage(name=name, url=self._url(name), size_bytes=size, sha256=sha256)

    def put(self, name: str, path: Path, *, sha256: str) -> StoredPackage:
        """See :meth:`Storage.put`."""
        final = self._path(name)
        partial = self.directory / f".partial-{uuid.uuid4().hex}"
        try:
            self._write_atomically(self.directory / f"{name}.sha256", (sha256 + "\n").encode())
            if os.stat(path).st_dev == os.stat(self.directory).st_dev:
                os.replace(path, partial)
            else:
                shutil.copyfile(path, partial)
            with partial.open("rb") as handle:
                os.fsync(handle.fileno())
            maybe_die("upload")  # test hook, off by default: leaves a .partial- file
            os.replace(partial, final)
            _fsync_directory(self.directory)  # the renames (archive and .sha256) survive a power cut
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise StorageError(f"cannot store archive {name!r} in {str(self.directory)!r}: {exc}") from exc
        log.info("stored archive %s (%d bytes) in %s", name, final.stat().st_size, self.directory)
        return StoredPackage(name=name, url=self._url(name), size_bytes=final.stat().st_size, sha256=sha256)

    def _write_atomically(self, target: Path, body: bytes) -> None:
        partial = self.directory / f".partial-{uuid.uuid4().hex}"
        try:
            with partial.open("wb") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)

    def names(self, docset_id: str) -> list[str]:
        """See :meth:`Storage.names`."""
        try:
            entries = os.listdir(self.directory)
        except OSError as exc:
            raise StorageError(f"cannot list {str(self.directory)!r}: {exc}", retryable=True) from exc
        return sorted(n for n in entries if (parsed := parse_archive_name(n)) and parsed[0] == docset_id)

    def remove(self, name: str) -> None:
        """See :meth:`Storage.remove`."""
        try:
            self._path(name).unlink(missing_ok=True)
            (self.directory / f"{name}.sha256").unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete archive {name!r}: {exc}", retryable=True) from exc
        log.info("deleted archive %s from %s", name, self.directory)

    def name_of_url(self, url: str) -> str | None:
        """See :meth:`Storage.name_of_url`: ``<public_base_url>/<quoted name>``, nothing else."""
        ours, theirs = urlsplit(self.public_base_url + "/"), urlsplit(url)
        if (theirs.scheme.lower(), theirs.netloc.lower()) != (ours.scheme.lower(), ours.netloc.lower()):
            return None
        if theirs.query or theirs.fragment or not theirs.path.startswith(ours.path):
            return None
        rest = theirs.path[len(ours.path) :]
        name = unquote(rest)
        return name if "/" not in rest and parse_archive_name(name) is not None else None

    def secret_location(self) -> str:
        """See :meth:`Storage.secret_location`."""
        return str(self.directory / SECRET_NAME)

    def describe(self) -> str:
        """See :meth:`Storage.describe`."""
        return f"{self.public_base_url}/ from {self.directory}"

    def read_secret(self) -> bytes | None:
        """See :meth:`Storage.read_secret`; a secret others could read is made private again (0600)."""
        path = self.directory / SECRET_NAME
        try:
            with path.open("rb") as handle:
                if os.fstat(handle.fileno()).st_mode & 0o077:
                    log.warning("%s was readable by others; making it private (0600)", path)
                    os.fchmod(handle.fileno(), 0o600)
                return handle.read(4096)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read the archive secret {str(path)!r}: {exc}") from exc

    def create_secret(self, value: bytes) -> bytes:
        """See :meth:`Storage.create_secret`: written whole to a private file, then linked into place."""
        final = self.directory / SECRET_NAME
        partial = self.directory / f".partial-{uuid.uuid4().hex}"
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(value)
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):  # a peer was first: keep its secret
                os.link(partial, final)  # all at once: a reader never sees half a secret
        except OSError as exc:
            raise StorageError(f"cannot write the archive secret {str(final)!r}: {exc}") from exc
        finally:
            partial.unlink(missing_ok=True)
        kept = self.read_secret()
        if kept is None:
            raise StorageError(f"the archive secret {str(final)!r} vanished as it was written", retryable=True)
        return kept
