"""Tests for examples.packager.deflate: entries deflated elsewhere are the bytes zipfile writes, and the buffer."""

from __future__ import annotations

import hashlib
import io
import random
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from examples.packager.bag import ZIP_EPOCH
from examples.packager.deflate import ArchiveBuffer, Deflater, write_deflated
from tests.examples.packager.stub_api import generated_text

# Empty, small, several chunks, and past the in-memory spool (so the bytes come from a temporary file).
_SIZES = [0, 1, 5000, 300_000, 1_500_000]


def _info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
    info.create_system = 3
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def _with_zipfile(contents: list[bytes], level: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        for i, content in enumerate(contents):
            info = _info(f"bag/data/{i}/text.txt")
            info._compresslevel = level  # type: ignore[attr-defined]
            with archive.open(info, "w", force_zip64=True) as entry:
                for start in range(0, len(content), 65536):
                    entry.write(content[start : start + 65536])
        archive.writestr(_info("bag/tag.txt"), b"a tag\n")
    return out.getvalue()


def _with_deflater(contents: list[bytes], level: int, spool_dir: Path, chunk: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(ArchiveBuffer(out), "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        for i, content in enumerate(contents):
            deflater = Deflater(level=level, spool_dir=str(spool_dir))
            for start in range(0, len(content), chunk):
                deflater.update(content[start : start + chunk])
            member = deflater.finish()
            try:
                write_deflated(archive, _info(f"bag/data/{i}/text.txt"), member)
            finally:
                member.close()
        archive.writestr(_info("bag/tag.txt"), b"a tag\n")  # zipfile's own writer after ours, seeking back
    return out.getvalue()


@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_deflated_entries_are_the_bytes_zipfile_writes(level: int, tmp_path: Path) -> None:
    contents = [b"".join(generated_text(f"doc{size}", size)) for size in _SIZES]
    expected = _with_zipfile(contents, level)
    # However the fetch happened to cut the body (level 0's stored blocks follow the cuts: zlib's doing,
    # as with zipfile's own writer, so that level is compared for the same cuts only).
    for chunk in (1000, 65536) if level else (65536,):
        assert _with_deflater(contents, level, tmp_path, chunk) == expected
    with zipfile.ZipFile(io.BytesIO(expected)) as archive:
        assert archive.testzip() is None
        assert [archive.read(f"bag/data/{i}/text.txt") for i in range(len(contents))] == contents
    assert list(tmp_path.iterdir()) == []  # spilled members were removed when closed


def test_a_deflater_reports_crc_sizes_and_sha256(tmp_path: Path) -> None:
    content = b"".join(generated_text("x", 2_000_000))
    deflater = Deflater(level=6, spool_dir=str(tmp_path), spool_bytes=1000)
    for start in range(0, len(content), 65536):
        deflater.update(content[start : start + 65536])
    member = deflater.finish()
    try:
        assert member.size == len(content)
        assert member.crc == zlib.crc32(content)
        assert member.sha256 == hashlib.sha256(content).hexdigest()
        data = member.read()
        assert len(data) == member.compressed_size
        assert zlib.decompress(data, -15) == content
    finally:
        member.close()


def test_write_deflated_refuses_a_zip_it_cannot_write_correctly(tmp_path: Path) -> None:
    member = Deflater(level=6).finish()

    class Unseekable(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data: bytes) -> int:  # type: ignore[override]
            return len(data)

    with zipfile.ZipFile(Unseekable(), "w") as archive, pytest.raises(ValueError, match="seekable"):
        write_deflated(archive, _info("a"), member)
    with (
        zipfile.ZipFile(tmp_path / "a.zip", "w") as archive,
        archive.open("open.txt", "w"),
        pytest.raises(ValueError, match="being written"),
    ):
        write_deflated(archive, _info("b"), member)


def test_the_archive_buffer_writes_through_on_a_real_seek_and_on_flush() -> None:
    raw = io.BytesIO()
    raw.write(b"head")
    buffer = ArchiveBuffer(raw, buffer_bytes=8)
    assert buffer.tell() == 4
    buffer.write(b"abc")
    assert raw.getvalue() == b"head"  # gathered, not written yet
    assert buffer.seek(7) == 7  # where we are: nothing to do
    buffer.write(b"defgh")  # passes the buffer size: written out
    assert raw.getvalue() == b"headabcdefgh"
    buffer.write(b"ij")
    buffer.seek(4)  # a real seek writes the buffer first
    buffer.write(b"ABC")
    assert buffer.tell() == 7
    buffer.flush()
    assert raw.getvalue() == b"headABCdefghij"
    assert buffer.seek(0, 2) == 14
    buffer.write(b"x" * 20)  # a large write goes straight through
    assert raw.getvalue() == b"headABCdefghij" + b"x" * 20
    buffer.close()
    assert not raw.closed


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.binary(max_size=40)),
        st.tuples(st.just("seek"), st.integers(min_value=0, max_value=60)),
        st.tuples(st.just("end"), st.just(b"")),
        st.tuples(st.just("flush"), st.just(b"")),
    ),
    max_size=30,
)


@given(ops=_OPS, buffer_bytes=st.integers(min_value=1, max_value=24))
def test_the_archive_buffer_gives_the_bytes_of_a_plain_file(ops: list[tuple[str, object]], buffer_bytes: int) -> None:
    """Any writes and seeks through the buffer give the file (and positions) the same writes give a plain file."""
    plain, raw = io.BytesIO(b"start"), io.BytesIO(b"start")
    plain.seek(0, 2)
    raw.seek(0, 2)
    buffer = ArchiveBuffer(raw, buffer_bytes=buffer_bytes)
    for op, arg in ops:
        if op == "write":
            assert isinstance(arg, bytes)
            assert buffer.write(arg) == plain.write(arg)
        elif op == "seek":
            assert isinstance(arg, int)
            target = min(arg, len(plain.getvalue()))  # zipfile only seeks where it has written
            assert buffer.seek(target) == plain.seek(target)
        elif op == "end":
            assert buffer.seek(0, 2) == plain.seek(0, 2)
        else:
            buffer.flush()
            assert raw.getvalue() == plain.getvalue()
        assert buffer.tell() == plain.tell()
    buffer.close()
    assert raw.getvalue() == plain.getvalue()
    assert not raw.closed
    assert buffer.sha256() is None  # the file did not start empty: its first bytes were never seen


@given(ops=_OPS, buffer_bytes=st.integers(min_value=1, max_value=24))
def test_the_archive_buffer_hashes_the_file_or_says_it_cannot(ops: list[tuple[str, object]], buffer_bytes: int) -> None:
    """Whatever the writes and seeks, a checksum it gives is the file's; none only after a rewrite on disk."""
    raw = io.BytesIO()
    buffer = ArchiveBuffer(raw, buffer_bytes=buffer_bytes)
    for op, arg in ops:
        if op == "write":
            assert isinstance(arg, bytes)
            buffer.write(arg)
        elif op == "seek":
            assert isinstance(arg, int)
            buffer.seek(min(arg, max(len(raw.getvalue()), buffer.tell())))
        elif op == "end":
            buffer.seek(0, 2)
        else:
            buffer.flush()
    buffer.flush()
    digest = buffer.sha256()
    assert digest is None or digest == hashlib.sha256(raw.getvalue()).hexdigest()
    if all(op in ("write", "flush") for op, _ in ops):
        assert digest == hashlib.sha256(raw.getvalue()).hexdigest()  # written in order: always known


def test_a_small_entry_rewritten_in_the_buffer_keeps_the_checksum(tmp_path: Path) -> None:
    """zipfile going back to a small entry's header (bagit.txt, the tag files) does not cost a re-read."""
    path = tmp_path / "a.zip"
    with path.open("w+b") as handle:
        buffer = ArchiveBuffer(handle)
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(_info("bag/bagit.txt"), b"BagIt-Version: 1.0\n")
            with archive.open(_info("bag/tag.txt"), "w") as entry:  # header rewritten when it closes
                entry.write(b"a tag\n" * 100)
        digest = buffer.sha256()
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None


def test_a_rewrite_of_bytes_already_written_out_gives_no_checksum() -> None:
    raw = io.BytesIO()
    buffer = ArchiveBuffer(raw, buffer_bytes=4)
    buffer.write(b"abcdefgh")  # written out (and hashed)
    buffer.seek(2)
    buffer.write(b"XY")
    buffer.seek(8)
    buffer.flush()
    assert raw.getvalue() == b"abXYefgh"
    assert buffer.sha256() is None


def test_a_member_past_the_spool_size_goes_to_a_file_and_reads_back_whole(tmp_path: Path) -> None:
    content = b"".join(generated_text("big", 300_000)) + random.Random(7).randbytes(200_000)  # ~200 KB deflated
    deflater = Deflater(level=1, spool_dir=str(tmp_path), spool_bytes=50_000)
    for start in range(0, len(content), 65536):
        deflater.update(content[start : start + 65536])
    member = deflater.finish()
    try:
        assert member.spill is not None and member.pieces == []
        assert len(list(tmp_path.iterdir())) <= 1  # an unnamed temporary file where the platform allows
        assert zlib.decompress(member.read(), -15) == content
        assert member.read() == b"".join(member.chunks())  # read again from the start
    finally:
        member.close()
    assert list(tmp_path.iterdir()) == []
