"""`make demo` as a user runs it: exit 0 with a valid archive, one clear error line on failure, Ctrl-C cleans up."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from examples.harness import REPO_ROOT

pytestmark = [pytest.mark.timeout(120)]


def demo_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TDM_")}
    env.update(overrides)
    return env


def alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    return b"examples." in cmdline  # the pid was not reused by something else


def child_pids(output: str) -> list[int]:
    return [int(p) for p in re.findall(r"pid (\d+)", output)]


def test_demo_runs_the_whole_flow_and_exits_0(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.demo", "--work-dir", str(tmp_path / "demo"), "--documents", "12"],
        cwd=REPO_ROOT,
        env=demo_env(),
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "bag valid" in done.stdout
    archive = Path(re.search(r"^archive +(\S+)$", done.stdout, re.MULTILINE)[1])  # type: ignore[index]
    assert archive.is_file() and archive.is_relative_to(tmp_path / "demo")
    assert "] 100% complete" in done.stdout
    pids = child_pids(done.stdout)
    assert len(pids) == 2
    assert not any(alive(pid) for pid in pids), "the demo left a process running"
    assert (tmp_path / "demo" / "logs" / "server.log").is_file()


def test_demo_failure_is_one_error_line_with_the_log_tail(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.demo", "--work-dir", str(tmp_path / "demo")],
        cwd=REPO_ROOT,
        env=demo_env(TDM_BROKER_URL="nosuch://broker"),
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 1
    assert "error: the server exited with status 2 before listening" in done.stderr
    assert "unknown broker URL scheme 'nosuch'" in done.stderr  # from the server's log tail
    assert "Traceback" not in done.stderr


def test_ctrl_c_stops_everything_the_demo_started(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "examples.demo", "--work-dir", str(tmp_path / "demo"), "--documents", "12"],
        cwd=REPO_ROOT,
        env=demo_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    seen = ""
    try:
        for line in process.stdout:
            seen += line
            if line.startswith("packager "):
                break
        process.send_signal(signal.SIGINT)
        rest, errors = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    pids = child_pids(seen)
    assert len(pids) == 2, seen
    if "bag valid" in rest:  # the demo won the race and finished first: still nothing left behind
        assert process.returncode == 0
    else:
        assert process.returncode == 130, errors
        assert "interrupted" in errors
        assert "Traceback" not in errors
    assert not any(alive(pid) for pid in pids), "Ctrl-C left a process running"
