"""Tests for examples.packager.workdir: locked temporary archives, and the sweep of those a dead packager left."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from examples.harness import Service, start_packager
from examples.packager.api import ApiClient
from examples.packager.faults import FAULT_ENV
from examples.packager.packaging import Packager
from examples.packager.storage import LocalStorage
from examples.packager.workdir import building_file, is_building_name, open_work_dir, sweep
from tdm_messaging.errors import ConfigurationError
from tdm_messaging.server import PackagingClient
from tdm_messaging.status import State
from tdm_messaging.transport import open_transport
from tests.bagit_check import bagit_validate
from tests.examples.packager.stub_api import API_KEY, StubApi, StubDoc, validate_bag

REPO = Path(__file__).resolve().parents[3]

# A packager's building step in a child process: create the locked file, write, report its path, then
# either die by SIGKILL (no cleanup runs) or hold the file until stdin closes.
_CHILD = """
import os, signal, sys
from examples.packager.workdir import building_file
with building_file(sys.argv[1]) as (handle, path):
    handle.write(b"z" * int(sys.argv[3]))
    handle.flush()
    print(path, flush=True)
    if sys.argv[2] == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    sys.stdin.read()
"""


@contextmanager
def _child(work: Path, mode: str, size: int) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    process = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(work), mode, str(size)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        path = Path(process.stdout.readline().strip())
        yield process, path
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


def _building(work: Path) -> list[str]:
    return sorted(p.name for p in work.iterdir() if p.name.startswith(".building-"))


def test_a_dead_packagers_file_is_removed_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="examples.packager.workdir")
    with _child(tmp_path, "die", 12_345) as (process, path):
        assert process.wait(timeout=30) == -signal.SIGKILL
    assert _building(tmp_path) == [path.name]  # what a kill -9 leaves behind
    assert is_building_name(path.name)

    assert open_work_dir(tmp_path) == tmp_path

    assert _building(tmp_path) == []
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any(str(path) in m and "12345 bytes" in m and "packager is gone" in m for m in logged), logged
    assert any("swept 1 temporary archive(s), 12345 bytes" in m for m in logged), logged


def test_a_live_packagers_file_is_kept(tmp_path: Path) -> None:
    with _child(tmp_path, "hold", 1000) as (process, path):
        assert open_work_dir(tmp_path) == tmp_path
        assert sweep(tmp_path) == []
        assert path.exists() and path.stat().st_size == 1000
        assert process.stdin is not None
        process.stdin.close()  # the owner finishes: it removes its own file
        assert process.wait(timeout=30) == 0
    assert _building(tmp_path) == []


def test_a_file_locked_in_this_process_is_kept_until_its_block_ends(tmp_path: Path) -> None:
    with building_file(tmp_path) as (handle, path):
        handle.write(b"partial zip")
        handle.close()  # the lock is on a descriptor of its own: closing the handle keeps it
        assert sweep(tmp_path) == []
        assert path.exists()
    assert not path.exists()
    assert _building(tmp_path) == []


def test_only_unlocked_regular_building_files_are_swept(tmp_path: Path) -> None:
    dead = tmp_path / ".building-abc123_x.zip"  # e.g. left by a packager of an older version
    dead.write_bytes(b"old")
    kept = {
        ".building-notes.txt": "not a zip",
        "building-abc12345.zip": "no dot",
        ".building-ab.zip": "too short for mkstemp",
    }
    for name, body in kept.items():
        (tmp_path / name).write_text(body)
    (tmp_path / ".building-dir00000.zip").mkdir()
    target = tmp_path / "precious"
    target.write_text("keep me")
    (tmp_path / ".building-link0000.zip").symlink_to(target)

    swept = sweep(tmp_path)

    assert [(s.path, s.size_bytes) for s in swept] == [(dead, 3)]
    assert not dead.exists()
    assert _building(tmp_path) == [
        ".building-ab.zip",
        ".building-dir00000.zip",
        ".building-link0000.zip",
        ".building-notes.txt",
    ]
    assert target.read_text() == "keep me"


def test_a_sweep_between_create_and_lock_makes_the_owner_start_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one window where the owner's file is not locked yet: a sweep there removes it; the owner notices."""
    real_flock = fcntl.flock
    raced: list[Path] = []

    def flock_after_a_sweep(fd: int, operation: int) -> None:
        if operation == fcntl.LOCK_EX and not raced:  # the owner's first, blocking lock
            raced.extend(s.path for s in sweep(tmp_path))
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock_after_a_sweep)
    with building_file(tmp_path) as (handle, path):
        assert len(raced) == 1 and raced[0] != path and not raced[0].exists()
        handle.write(b"kept")
        handle.flush()
        monkeypatch.setattr(fcntl, "flock", real_flock)
        assert sweep(tmp_path) == []
        assert path.read_bytes() == b"kept"


def test_an_unusable_work_dir_is_a_configuration_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigurationError) as info:
        open_work_dir(blocker / "work")
    assert str(blocker / "work") in str(info.value)
    assert "TDM_WORK_DIR" in str(info.value)


def test_a_missing_work_dir_is_created(tmp_path: Path) -> None:
    work = tmp_path / "new" / "work"
    assert open_work_dir(work) == work
    assert work.is_dir() and _building(work) == []


def test_each_build_sweeps_first(stub: StubApi, client: ApiClient, tmp_path: Path) -> None:
    """A packager sharing the directory died while this one lives: its next build removes the leftover."""
    work = tmp_path / "work"
    work.mkdir()
    with _child(work, "die", 777) as (process, left):
        assert process.wait(timeout=30) == -signal.SIGKILL
    assert left.exists()
    stub.add_docset("8", [StubDoc("1", {"title": "One"}, text=b"text\n")])
    archives = LocalStorage(tmp_path / "archives", "http://127.0.0.1:9/archives")

    class Sink:
        def accepted(self, estimate_seconds: float | None) -> None:
            pass

        def progress(self, items_done: int, items_total: int, *, eta_seconds: float | None = None) -> None:
            pass

    stored = Packager(api=client, storage=archives, work_dir=work).package(
        docset_id="8", docset_url=f"{stub.base}/api/docsets/8", sink=Sink()
    )
    assert (archives.directory / stored.name).exists()
    assert _building(work) == []


@pytest.mark.slow
def test_a_packager_killed_mid_zip_leaves_nothing_once_restarted(stub: StubApi, tmp_path: Path) -> None:
    """kill -9 of a real packager process while zipping, then a restart on the same work dir (systemd would)."""
    stub.add_docset("41", [StubDoc(str(i), {"title": f"Thesis {i}"}, size=50_000) for i in range(4)])
    broker_url = f"sqlite:///{tmp_path}/broker.db?visibility_timeout=3"
    work = tmp_path / "work"

    def start(name: str, extra_env: dict[str, str] | None = None) -> Service:
        return start_packager(
            log_dir=tmp_path / "logs",
            broker_url=broker_url,
            api_base=stub.base,
            api_key=API_KEY,
            storage=f"local:{tmp_path}/archives",
            work_dir=work,
            name=name,
            extra_env=extra_env,
        )

    transport = open_transport(broker_url)
    try:
        client = PackagingClient(transport)
        victim = start("victim", {FAULT_ENV: "zip"})
        try:
            client.request_package("41", f"{stub.base}/api/docsets/41?fmt=meta,txt")
            victim.process.wait(timeout=60)
        finally:
            victim.kill()
        assert victim.process.returncode == -signal.SIGKILL, victim.log_tail()
        assert "SIGKILL at zip" in victim.log_text()
        left = _building(work)
        assert len(left) == 1, left  # the half-written zip the kill left (maybe still empty: the
        # archive goes to disk a mebibyte at a time, and the kill came after the first member)

        restarted = start("restarted")
        try:
            # Swept before it came up: "packager up" is logged after the work dir is opened.
            assert _building(work) == []
            assert f"removed {work / left[0]} (" in restarted.log_text()
            deadline = time.monotonic() + 90
            status = client.status("41")
            while status.state not in {State.COMPLETE, State.FAILED} and time.monotonic() < deadline:
                time.sleep(0.1)
                status = client.status("41")
            assert status.state is State.COMPLETE, (status, restarted.log_tail())
            assert status.result is not None
            archive = tmp_path / "archives" / status.result.archive_url.rsplit("/", 1)[1]
            assert validate_bag(str(archive))["info"]["TDM-Docset-Id"] == "41"
            assert bagit_validate(archive) > 0
        finally:
            exit_status = restarted.stop(timeout=30)
    finally:
        transport.close()
    assert exit_status == 0, restarted.log_tail()
    assert sorted(p.name for p in work.iterdir()) == []  # no temporary archive, no spool: nothing at all
