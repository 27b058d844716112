"""A BagIt bag (RFC 8493) written straight into a zip, streamed and hashed as it goes, in bounded memory."""

from __future__ import annotations

import hashlib
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import IO, Final

from examples.packager.deflate import ArchiveBuffer, Deflated, write_deflated
from examples.packager.sanitize import is_safe_member_path
from tdm_messaging import LocalProtocolError

__all__ = ["BAGIT_TXT", "ZIP_EPOCH", "BagWriter", "encode_manifest_path"]

BAGIT_TXT: Final = b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
_COPY_CHUNK: Final = 64 * 1024
ZIP_EPOCH: Final = (1980, 1, 1, 0, 0, 0)
"""Every member's timestamp: the earliest a zip can hold, so the bytes never depend on when the bag was made."""
_UNIX: Final = 3  # ZipInfo's create_system; Python picks 0 on Windows, which would change the bytes there


def encode_manifest_path(path: str) -> str:
    """Spell ``path`` for a manifest line: ``%``, CR and LF percent-encoded (RFC 8493 section 2.1.3)."""
    return path.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


class BagWriter:
    """Writes one bag, ``<bag_name>/...``, into a zip file opened for writing.

    Payload files go under ``<bag_name>/data/``; each is hashed (SHA-256) while it is
    written, and its manifest line spooled to a temporary file, so memory stays bounded
    by the chunk size whatever the number and size of the files. :meth:`finish` writes
    ``manifest-sha256.txt``, ``bag-info.txt`` (with ``Payload-Oxum`` and ``Bagging-Date``)
    and ``tagmanifest-sha256.txt``. ``bagit.txt`` is written first.

    The zip is reproducible: members in the order they are written, each stamped
    :data:`ZIP_EPOCH` with fixed permissions, so the same payload gives the same bytes
    (with the same zlib). That is why ``Bagging-Date`` is written only when ``now`` is given.

    Args:
        archive: a binary file object to write the zip to (seekable, e.g. a temporary file).
        bag_name: the bag's top directory in the zip (a safe path component).
        compresslevel: deflate level, 0 to 9.
        spool_dir: where the manifest spool lives (default: the system's temporary directory).
        now: the bagging time, written as ``Bagging-Date`` (optional in RFC 8493); default: none, so
            that two builds of the same content on different days are byte-identical.
        written: called with the archive file's end as its bytes are written out (see
            :class:`examples.packager.deflate.ArchiveBuffer`).

    Raises:
        LocalProtocolError: ``bag_name`` or a payload path is not a safe relative path.
    """

    def __init__(
        self,
        archive: IO[bytes],
        *,
        bag_name: str,
        compresslevel: int = 6,
        spool_dir: str | None = None,
        now: datetime | None = None,
        written: Callable[[int], None] | None = None,
    ) -> None:
        if "/" in bag_name or not is_safe_member_path(bag_name):
            raise LocalProtocolError(f"bag name {bag_name!r} must be one safe path component")
        self.bag_name = bag_name
        self._now = now
        self._compresslevel = compresslevel
        self._buffer = ArchiveBuffer(archive, written=written)
        self._zip = zipfile.ZipFile(self._buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel)
        self._manifest = tempfile.TemporaryFile(dir=spool_dir)  # noqa: SIM115 - closed in finish()/abort()
        self._octets = 0
        self._files = 0
        self._closed = False
        self._finished = False
        self._write_tag("bagit.txt", BAGIT_TXT)
        self._tag_digests: dict[str, str] = {"bagit.txt": hashlib.sha256(BAGIT_TXT).hexdigest()}

    @property
    def payload_octets(self) -> int:
        """Bytes of payload written so far."""
        return self._octets

    @property
    def payload_files(self) -> int:
        """Payload files written so far."""
        return self._files

    @property
    def archive_sha256(self) -> str | None:
        """The SHA-256 (hex) of the whole zip file, hashed as it was written; once :meth:`finish` returned.

        ``None`` before, or when the writes could not be hashed in file order (the archive file
        was not empty to begin with, say): then read the file to hash it.
        """
        return self._buffer.sha256() if self._finished else None

    def add_file(self, path: str, chunks: Iterable[bytes]) -> str:
        """Write payload file ``data/<path>`` from ``chunks``; return its SHA-256 (hex).

        Raises:
            LocalProtocolError: ``path`` is not a safe relative path.
        """
        if not is_safe_member_path(path):
            raise LocalProtocolError(f"payload path {path!r} is not a safe relative path")
        digest = hashlib.sha256()
        size = 0
        with self._zip.open(self._zipinfo(f"data/{path}"), "w", force_zip64=True) as entry:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                entry.write(chunk)
        self._octets += size
        self._files += 1
        hexdigest = digest.hexdigest()
        self._manifest.write(f"{hexdigest}  {encode_manifest_path('data/' + path)}\n".encode())
        return hexdigest

    def add_deflated(self, path: str, member: Deflated) -> str:
        """Write payload file ``data/<path>`` from ``member`` (deflated at the bag's level); return its SHA-256.

        The bytes are those :meth:`add_file` writes for the same content (see
        :func:`examples.packager.deflate.write_deflated`); ``member`` is not closed.

        Raises:
            LocalProtocolError: ``path`` is not a safe relative path.
        """
        if not is_safe_member_path(path):
            raise LocalProtocolError(f"payload path {path!r} is not a safe relative path")
        write_deflated(self._zip, self._zipinfo(f"data/{path}"), member)
        self._octets += member.size
        self._files += 1
        self._manifest.write(f"{member.sha256}  {encode_manifest_path('data/' + path)}\n".encode())
        return member.sha256

    def finish(self, bag_info: Mapping[str, str]) -> None:
        """Write the manifest, ``bag-info.txt`` (``bag_info`` plus Payload-Oxum, and Bagging-Date if dated) and the
        tag manifest, then close the zip.

        Raises:
            LocalProtocolError: a label or value of ``bag_info`` contains a line break or a colon in a label.
        """
        self._manifest.seek(0)
        digest = hashlib.sha256()
        with self._zip.open(self._zipinfo("manifest-sha256.txt"), "w") as entry:
            while chunk := self._manifest.read(_COPY_CHUNK):
                digest.update(chunk)
                entry.write(chunk)
        self._tag_digests["manifest-sha256.txt"] = digest.hexdigest()
        if self._files == 0:
            # RFC 8493 section 2.1.2: a bag has a data/ directory even when empty, and a zip
            # holds an empty directory only as an entry of its own.
            self._write_directory("data/")
        dated = {} if self._now is None else {"Bagging-Date": self._now.date().isoformat()}
        info = {**dated, "Payload-Oxum": f"{self._octets}.{self._files}", **bag_info}
        lines = []
        for label, value in info.items():
            if ":" in label or any(ch in label + value for ch in "\r\n"):
                raise LocalProtocolError(f"bag-info element {label!r}: {value!r} has a colon or a line break")
            lines.append(f"{label}: {value}\n")
        body = "".join(lines).encode()
        self._write_tag("bag-info.txt", body)
        self._tag_digests["bag-info.txt"] = hashlib.sha256(body).hexdigest()
        tagmanifest = "".join(f"{d}  {encode_manifest_path(name)}\n" for name, d in sorted(self._tag_digests.items()))
        self._write_tag("tagmanifest-sha256.txt", tagmanifest.encode())
        self._close()
        self._finished = True

    def abort(self) -> None:
        """Stop writing; the archive is left incomplete (the caller deletes it). Idempotent."""
        self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._manifest.close()
        self._zip.close()

    def _write_tag(self, name: str, body: bytes) -> None:
        with self._zip.open(self._zipinfo(name), "w") as entry:
            entry.write(body)

    def _write_directory(self, relative: str) -> None:
        info = zipfile.ZipInfo(f"{self.bag_name}/{relative}", date_time=ZIP_EPOCH)
        info.create_system = _UNIX
        info.external_attr = (0o40755 << 16) | 0x10  # a directory, for Unix and for MS-DOS readers
        self._zip.writestr(info, b"")

    def _zipinfo(self, relative: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(f"{self.bag_name}/{relative}", date_time=ZIP_EPOCH)
        info.create_system = _UNIX
        info.compress_type = zipfile.ZIP_DEFLATED
        # ZipFile.open() ignores the archive's level for a ZipInfo it is given; set it on the entry.
        info._compresslevel = self._compresslevel  # type: ignore[attr-defined]
        info.external_attr = 0o644 << 16
        return info
