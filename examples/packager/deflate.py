"""Zip members deflated away from the archive: compressed, CRC'd and hashed on any thread, written later in order."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import zipfile
import zlib
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
        data: the raw deflate stream (no zlib header), positioned at its start.
        crc: CRC-32 of the uncompressed bytes.
        size: uncompressed bytes.
        compressed_size: bytes of ``data``.
        sha256: SHA-256 of the uncompressed bytes (hex).
    """

    data: IO[bytes]
    crc: int
    size: int
    compressed_size: int
    sha256: str

    def close(self) -> None:
        """Free the spooled bytes (removes the temporary file, if any). Idempotent."""
        self.data.close()


class Deflater:
    """Deflates one member as ``zipfile`` does (raw deflate, ``level``), with its CRC, size and SHA-256.

    ``zlib`` and ``hashlib`` release the GIL on large buffers, so several deflaters run on
    several cores. The output is the same bytes ``zipfile`` writes for the same input and level.

    Args:
        level: deflate level, 0 to 9.
        spool_dir: where compressed bytes beyond ``spool_bytes`` are spooled (default: the system's).
        spool_bytes: compressed bytes kept in memory.
    """

    def __init__(self, *, level: int, spool_dir: str | None = None, spool_bytes: int = SPOOL_BYTES) -> None:
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
        self._out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=spool_bytes, dir=spool_dir)  # noqa: SIM115
        self._crc = 0
        self._size = 0
        self._compressed = 0
        self._digest = hashlib.sha256()

    def update(self, chunk: bytes) -> None:
        """Add ``chunk`` of the member's bytes."""
        self._crc = zlib.crc32(chunk, self._crc)
        self._digest.update(chunk)
        self._size += len(chunk)
        self._write(self._compressor.compress(chunk))

    def finish(self) -> Deflated:
        """The member is complete: flush the compressor and hand over its bytes (the caller closes them)."""
        self._write(self._compressor.flush())
        self._out.seek(0)
        return Deflated(
            data=self._out,
            crc=self._crc,
            size=self._size,
            compressed_size=self._compressed,
            sha256=self._digest.hexdigest(),
        )

    def abort(self) -> None:
        """Drop what was deflated so far."""
        self._out.close()

    def _write(self, data: bytes) -> None:
        if data:
            self._compressed += len(data)
            self._out.write(data)


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
    member.data.seek(0)
    shutil.copyfileobj(member.data, zf.fp, _COPY_CHUNK)
    zf.start_dir = zf.fp.tell()
    zf.filelist.append(info)
    zf.NameToInfo[info.filename] = info


class ArchiveBuffer:
    """A write buffer of ``buffer_bytes`` in front of a seekable file, that knows its position without asking the OS.

    ``zipfile`` calls ``tell``, ``seek`` and ``write`` several times per entry; on a plain file
    each is a system call that lets go of the GIL, and getting it back behind busy fetching
    threads costs up to the interpreter's switch interval (5 ms). Here writes gather in
    memory and go out a mebibyte at a time, ``tell`` is a counter and a ``seek`` to where we
    are is free; a real seek (``zipfile`` rewriting a header) writes the buffer out first.
    The buffer is allocated once and filled in place (a ``bytearray`` grown and cleared per
    mebibyte would be reallocated, and its fresh pages faulted in, on the writing thread every time).
    ``close`` leaves the file open (its owner closes it); ``flush`` writes everything out.

    Args:
        raw: the archive file, open for writing, seekable.
        buffer_bytes: bytes gathered before a write.
    """

    def __init__(self, raw: IO[bytes], *, buffer_bytes: int = _BUFFER_BYTES) -> None:
        self._raw = raw
        self._position = raw.tell()
        self._buffer = bytearray(buffer_bytes)
        self._fill = 0
        self._limit = buffer_bytes

    def write(self, data: bytes, /) -> int:
        """Append ``data`` at the current position."""
        size = len(data)
        if self._fill + size > self._limit:
            self._drain()
        if size >= self._limit:
            self._raw.write(data)
        else:
            end = self._fill + size
            self._buffer[self._fill : end] = data
            self._fill = end
            if end == self._limit:
                self._drain()
        self._position += size
        return size

    def tell(self) -> int:
        """The current position."""
        return self._position

    def seek(self, offset: int, whence: int = 0, /) -> int:
        """Move to ``offset`` (from the start, the current position, or the end); return the new position."""
        if whence == 1:
            offset += self._position
        if whence == 2 or offset != self._position:
            self._drain()
            self._position = self._raw.seek(offset, whence)
        return self._position

    def flush(self) -> None:
        """Write the buffer out and flush the file."""
        self._drain()
        self._raw.flush()

    def close(self) -> None:
        """Write the buffer out; the file stays open."""
        self.flush()

    def _drain(self) -> None:
        if self._fill:
            self._raw.write(memoryview(self._buffer)[: self._fill])
            self._fill = 0
