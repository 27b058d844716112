"""Zip members deflated away from the archive: compressed, CRC'd and hashed on any thread, written later in order."""

from __future__ import annotations

import hashlib
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Final

__all__ = ["SPOOL_BYTES", "ArchiveBuffer", "Deflated", "Deflater", "write_deflated"]

SPOOL_BYTES: Final = 1 << 20
"""Compressed bytes of one member kept in memory; beyond, they go to a temporary file (memory stays bounded)."""
_COPY_CHUNK: Final = 256 * 1024
_BUFFER_BYTES: Final = 1 << 20


@dataclass
class Deflated:
    """One member's deflated bytes and what its zip entry and bag manifest need.

    Attributes:
        pieces: the raw deflate stream (no zlib header) as zlib gave it, while it is small enough
            to stay in memory (see :data:`SPOOL_BYTES`); empty when ``spill`` holds it.
        spill: a temporary file holding the stream when it outgrew memory, positioned anywhere.
        crc: CRC-32 of the uncompressed bytes.
        size: uncompressed bytes.
        compressed_size: bytes of the deflate stream.
        sha256: SHA-256 of the uncompressed bytes (hex).
    """

    pieces: list[bytes]
    spill: IO[bytes] | None
    crc: int
    size: int
    compressed_size: int
    sha256: str

    def chunks(self) -> Iterator[bytes]:
        """The deflate stream, from its start, in pieces of at most a few hundred KiB."""
        if self.spill is None:
            yield from self.pieces
            return
        self.spill.seek(0)
        while chunk := self.spill.read(_COPY_CHUNK):
            yield chunk

    def read(self) -> bytes:
        """The whole deflate stream (tests; the archive is written from :meth:`chunks`)."""
        return b"".join(self.chunks())

    def close(self) -> None:
        """Free the bytes (removes the temporary file, if any). Idempotent."""
        self.pieces = []
        if self.spill is not None:
            self.spill.close()


class Deflater:
    """Deflates one member as ``zipfile`` does (raw deflate, ``level``), with its CRC, size and SHA-256.

    ``zlib`` and ``hashlib`` release the GIL on large buffers, so several deflaters run on
    several cores. The output is the same bytes ``zipfile`` writes for the same input and level.
    It is kept as the list of pieces zlib returned (no copy, no file object per member) until it
    passes ``spool_bytes``; then it goes to a temporary file, so memory stays bounded.

    Args:
        level: deflate level, 0 to 9.
        spool_dir: where compressed bytes beyond ``spool_bytes`` are spooled (default: the system's).
        spool_bytes: compressed bytes kept in memory.
    """

    def __init__(self, *, level: int, spool_dir: str | None = None, spool_bytes: int = SPOOL_BYTES) -> None:
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
        self._spool_dir = spool_dir
        self._spool_bytes = spool_bytes
        self._pieces: list[bytes] = []
        self._spill: IO[bytes] | None = None
        self._crc = 0
        self._size = 0
        self._compressed = 0
        self._digest = hashlib.sha256()

    def update(self, chunk: bytes) -> None:
        """Add ``chunk`` of the member's bytes."""
        self._crc = zlib.crc32(chunk, self._crc)
        self._digest.update(chunk)
        self._size += len(chunk)
        self._keep(self._compressor.compress(chunk))

    def finish(self) -> Deflated:
        """The member is complete: flush the compressor and hand over its bytes (the caller closes them)."""
        self._keep(self._compressor.flush())
        return Deflated(
            pieces=self._pieces,
            spill=self._spill,
            crc=self._crc,
            size=self._size,
            compressed_size=self._compressed,
            sha256=self._digest.hexdigest(),
        )

    def abort(self) -> None:
        """Drop what was deflated so far."""
        self._pieces = []
        if self._spill is not None:
            self._spill.close()

    def _keep(self, data: bytes) -> None:
        if not data:
            return
        self._compressed += len(data)
        if self._spill is None and self._compressed <= self._spool_bytes:
            self._pieces.append(data)
            return
        if self._spill is None:
            self._spill = tempfile.TemporaryFile(dir=self._spool_dir)  # noqa: SIM115 - closed by Deflated.close
            for piece in self._pieces:
                self._spill.write(piece)
            self._pieces = []
        self._spill.write(data)


def write_deflated(archive: zipfile.ZipFile, info: zipfile.ZipInfo, member: Deflated) -> None:
    """Append ``member``, already deflated, as entry ``info`` of ``archive`` (opened ``"w"`` on a seekable file).

    The entry is byte for byte what ``archive.open(info, "w", force_zip64=True)`` writes for
    the uncompressed bytes: a local header with a zip64 extra field carrying the final CRC and
    sizes (no data descriptor), the data, and the same central directory record. ``zipfile``
    has no public way to take pre-compressed data, so this mirrors its ``_open_to_write`` and
    ``_ZipWriteFile.close`` (Python 3.11-3.13); ``tests/examples/packager/test_deflate.py`` pins
    the bytes against the stdlib path.

    Raises:
        ValueError: the archive is not open for writing on a seekable file, or another entry is being written.
    """
    zf: Any = archive  # its private state, as its own writer uses it
    if zf.mode != "w" or not zf._seekable:
        raise ValueError("write_deflated needs a zip opened with mode 'w' on a seekable file")
    if zf._writing:
        raise ValueError("another entry of the zip is being written")
    info.compress_type = zipfile.ZIP_DEFLATED
    info.flag_bits = 0x00
    info.CRC = member.crc
    info.file_size = member.size
    info.compress_size = member.compressed_size
    zf.fp.seek(zf.start_dir)
    info.header_offset = zf.fp.tell()
    zf._writecheck(info)
    zf._didModify = True
    zf.fp.write(info.FileHeader(True))
    for chunk in member.chunks():
        zf.fp.write(chunk)
    zf.start_dir = zf.fp.tell()
    zf.filelist.append(info)
    zf.NameToInfo[info.filename] = info


class ArchiveBuffer:
    """A write buffer of ``buffer_bytes`` in front of a seekable file, that knows its position and hashes the file.

    ``zipfile`` calls ``tell``, ``seek`` and ``write`` several times per entry; on a plain file
    each is a system call that lets go of the GIL, and getting it back behind busy fetching
    threads costs up to the interpreter's switch interval (5 ms). Here writes gather in
    memory and go out a mebibyte at a time, ``tell`` is a counter, and a seek within the bytes
    still gathered (``zipfile`` going back a few hundred bytes to rewrite a small entry's header)
    only moves a cursor; a seek anywhere else writes the buffer out first. The buffer is
    allocated once and filled in place (a ``bytearray`` grown and cleared per mebibyte would be
    reallocated, and its fresh pages faulted in, on the writing thread every time).

    Each mebibyte written out in file order also goes through a SHA-256, so the archive's checksum
    is known when the last byte is written, without reading the file again (:meth:`sha256`).
    ``close`` leaves the file open (its owner closes it); ``flush`` writes everything out.

    Args:
        raw: the archive file, open for writing, seekable.
        buffer_bytes: bytes gathered before a write.
        written: called with the file's end after each write out (e.g. to start its writeback early:
            :class:`examples.packager.writeback.EarlyWriteback`).
    """

    def __init__(
        self, raw: IO[bytes], *, buffer_bytes: int = _BUFFER_BYTES, written: Callable[[int], None] | None = None
    ) -> None:
        self._raw = raw
        self._written = written
        self._base = raw.tell()  # where the buffer's first byte goes in the file
        self._raw_position = self._base
        self._buffer = bytearray(buffer_bytes)
        self._fill = 0  # bytes of the buffer holding data
        self._cursor = 0  # the current position, relative to _base (at most _fill)
        self._limit = buffer_bytes
        self._end = self._base  # the file's end as far as the writes through us made it
        self._digest = hashlib.sha256()
        self._hashed = 0  # the file's first _hashed bytes went through the digest, in order
        # The checksum is the file's only if the file was empty: its end is looked at once, here.
        self._hash_valid = self._base == 0 and raw.seek(0, 2) == 0
        raw.seek(self._base)

    def write(self, data: bytes, /) -> int:
        """Write ``data`` at the current position."""
        size = len(data)
        if size >= self._limit:
            self._drain()
            self._write_out(self._base, data)
            self._base += size
            return size
        if self._cursor + size > self._limit:
            self._drain()
        end = self._cursor + size
        self._buffer[self._cursor : end] = data
        self._cursor = end
        if end > self._fill:
            self._fill = end
            if end == self._limit:
                self._drain()
        return size

    def tell(self) -> int:
        """The current position."""
        return self._base + self._cursor

    def seek(self, offset: int, whence: int = 0, /) -> int:
        """Move to ``offset`` (from the start, the current position, or the end); return the new position."""
        if whence == 2:
            self._drain()
            self._base = self._raw_position = self._raw.seek(offset, 2)
            self._end = max(self._end, self._base)
            return self._base
        if whence == 1:
            offset += self.tell()
        if offset < 0:
            raise ValueError(f"negative seek position {offset}")
        if self._base <= offset <= self._base + self._fill:
            self._cursor = offset - self._base
        else:
            self._drain()
            self._base = offset
        return offset

    def flush(self) -> None:
        """Write the buffer out and flush the file."""
        self._drain()
        self._raw.flush()

    def close(self) -> None:
        """Write the buffer out; the file stays open."""
        self.flush()

    def sha256(self) -> str | None:
        """The SHA-256 (hex) of the whole file as written so far, after :meth:`flush`.

        ``None`` when it cannot be told without reading the file: the file did not start empty,
        or a write went back over bytes that had already been written out (and hashed).
        """
        if self._fill or not self._hash_valid or self._hashed != self._end:
            return None
        return self._digest.copy().hexdigest()

    def _drain(self) -> None:
        """Write the gathered bytes out; the position stays where it was."""
        position = self._base + self._cursor
        if self._fill:
            self._write_out(self._base, memoryview(self._buffer)[: self._fill])
        self._base, self._fill, self._cursor = position, 0, 0

    def _write_out(self, offset: int, data: bytes | memoryview) -> None:
        if self._raw_position != offset:
            self._raw.seek(offset)
        self._raw.write(data)
        self._raw_position = offset + len(data)
        if offset == self._hashed and self._hash_valid:
            self._digest.update(data)  # lets go of the GIL for large buffers, as zlib does
            self._hashed += len(data)
        else:
            self._hash_valid = False  # a rewrite of hashed bytes, or a gap: read the file instead
        self._end = max(self._end, offset + len(data))
        if self._written is not None:
            self._written(self._end)
