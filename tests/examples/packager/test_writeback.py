"""Tests for examples.packager.writeback: the archive synced as it grows, its errors kept for the end."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from examples.packager import writeback as writeback_module
from examples.packager.deflate import ArchiveBuffer
from examples.packager.errors import StorageError
from examples.packager.writeback import EarlyWriteback


def test_a_sync_follows_every_step_written_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    done = threading.Event()
    real = writeback_module._SYNC

    def sync(fd: int) -> None:
        real(fd)
        synced.append(fd)
        done.set()

    monkeypatch.setattr(writeback_module, "_SYNC", sync)
    with (tmp_path / "a.zip").open("w+b") as handle:
        with EarlyWriteback(handle.fileno(), every_bytes=100) as writeback:
            buffer = ArchiveBuffer(handle, buffer_bytes=64, written=writeback.written)
            buffer.write(b"x" * 99)  # written out (a large write) but short of a step: no sync asked
            buffer.flush()
            assert not writeback._wake.is_set() and not synced
            buffer.write(b"y" * 64)  # fills the buffer: written out, 163 bytes: a step
            assert done.wait(30)
            done.clear()
            buffer.write(b"z" * 30)
            buffer.flush()  # 193 bytes: short of the next step (263)
            assert not writeback._wake.is_set()
        # Joined on the way out: no sync runs after the block, so none on a closed descriptor.
        assert synced == [handle.fileno()]
        assert writeback.syncs == 1


def test_an_early_sync_error_fails_the_block(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "a.zip", os.O_WRONLY | os.O_CREAT)
    os.close(fd)  # a descriptor that no longer exists: the sync fails with EBADF
    with (
        pytest.raises(StorageError, match="writing the archive to disk failed") as caught,
        EarlyWriteback(fd, every_bytes=1) as writeback,
    ):
        writeback.written(1)
        writeback._thread.join(timeout=10)  # the thread ends after the failed sync
    assert caught.value.retryable
    assert isinstance(caught.value.__cause__, OSError)


def test_the_block_s_own_error_wins(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "a.zip", os.O_WRONLY | os.O_CREAT)
    os.close(fd)
    with pytest.raises(KeyError), EarlyWriteback(fd, every_bytes=1) as writeback:
        writeback.written(5)
        writeback._thread.join(timeout=10)
        raise KeyError("the build's failure")


@given(st.lists(st.binary(max_size=300), max_size=30), st.integers(min_value=1, max_value=64))
def test_the_buffer_reports_the_file_s_end_as_written(pieces: list[bytes], buffer_bytes: int) -> None:
    ends: list[int] = []
    raw = io.BytesIO()
    buffer = ArchiveBuffer(raw, buffer_bytes=buffer_bytes, written=ends.append)
    for piece in pieces:
        buffer.write(piece)
    buffer.flush()
    assert ends == sorted(ends)  # appends only: the end never goes back
    assert (ends[-1] if ends else 0) == len(raw.getvalue()) == sum(map(len, pieces))
