"""Child processes: start the reference server and packager as real processes, wait until they are up, stop them."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from examples.harness.errors import DemoError

__all__ = ["REPO_ROOT", "Service", "log_tail", "read_log", "start_packager", "start_server"]

log = logging.getLogger(__name__)

REPO_ROOT: Final = Path(__file__).resolve().parent.parent.parent
"""The checkout the child processes run from (``python -m examples.server`` needs it on ``sys.path``)."""

# Variables a child must not inherit from the caller's shell: the harness sets each one it means.
_CHILD_SETTINGS: Final = (
    "TDM_SERVER_DB",
    "TDM_ARCHIVE_DIR",
    "TDM_PUBLIC_URL",
    "TDM_SERVER_HOST",
    "TDM_SERVER_PORT",
    "TDM_SERVER_API_KEYS",
    "TDM_PACKAGER_API_KEY",
    "TDM_QUEUE_PREFIX",
    "TDM_API_BASE",
    "TDM_PUBLIC_BASE_URL",
    "TDM_WORK_DIR",
)


@dataclass
class Service:
    """A child process started by :func:`start_server` or :func:`start_packager`, with its log files.

    Attributes:
        name: a short name for messages (``server``, ``packager-1``).
        process: the process.
        log_path: where its stderr (its logging) goes.
        stdout_path: where its stdout goes.
    """

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    stdout_path: Path

    @property
    def running(self) -> bool:
        """Whether the process is still alive."""
        return self.process.poll() is None

    def log_text(self) -> str:
        """Everything the process logged so far (its stderr)."""
        return read_log(self.log_path)

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of its log."""
        return log_tail(self.log_path, lines)

    def stop(self, *, timeout: float = 10.0) -> int:
        """Ask it to stop (SIGTERM), wait up to ``timeout`` seconds, then kill it; return its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killing it", self.name, timeout)
                self.process.kill()
                self.process.wait(timeout=timeout)
        return int(self.process.returncode)

    def kill(self) -> None:
        """Kill it at once (SIGKILL), as a crash would, and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def error(self, message: str) -> DemoError:
        """A :class:`DemoError` carrying this service's log tail."""
        return DemoError(message, log_name=str(self.log_path), log_tail=self.log_tail())


def read_log(path: Path) -> str:
    """The text of log file ``path`` (empty if it does not exist yet)."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of log file ``path``."""
    return "\n".join(read_log(path).splitlines()[-lines:])


def _child_env(settings: Mapping[str, str], extra_env: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CHILD_SETTINGS}
    env.update(extra_env or {})
    env.update(settings)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _spawn(name: str, module: str, args: Sequence[str], env: dict[str, str], log_dir: Path) -> Service:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path, stdout_path = log_dir / f"{name}.log", log_dir / f"{name}.out"
    with log_path.open("ab") as err, stdout_path.open("ab") as out:
        process = subprocess.Popen(  # our own interpreter and module, no shell
            [sys.executable, "-m", module, *args],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    log.debug("started %s (pid %d)", name, process.pid)
    return Service(name=name, process=process, log_path=log_path, stdout_path=stdout_path)


def start_server(
    *,
    log_dir: Path,
    db_url: str,
    broker_url: str,
    archive_dir: Path,
    queue_prefix: str = "",
    port: int = 0,
    name: str = "server",
    extra_env: Mapping[str, str] | None = None,
    ready_timeout: float = 20.0,
) -> tuple[Service, str]:
    """Start ``python -m examples.server`` on ``port`` (0: any free one); return it and its base URL once it listens.

    Keys are not passed: store them first with :func:`add_key` (they live in the database,
    so a restarted server on the same database knows them).

    Raises:
        DemoError: it exited or did not print ``listening on URL`` within ``ready_timeout`` seconds.
    """
    settings = {"TDM_BROKER_URL": broker_url}
    args = [
        "serve",
        *("--db", db_url, "--archive-dir", str(archive_dir), "--host", "127.0.0.1", "--port", str(port)),
        *("--queue-prefix", queue_prefix),
    ]
    service = _spawn(name, "examples.server", args, _child_env(settings, extra_env), log_dir)
    deadline = time.monotonic() + ready_timeout
    try:
        while True:
            first = service.stdout_path.read_text(encoding="utf-8", errors="replace").partition("\n")
            if first[1] and first[0].startswith("listening on "):
                return service, first[0].removeprefix("listening on ").strip()
            if not service.running:
                raise service.error(f"the server exited with status {service.process.returncode} before listening")
            if time.monotonic() > deadline:
                raise service.error(f"the server did not start listening within {ready_timeout:.0f} s")
            time.sleep(0.05)
    except BaseException:  # also Ctrl-C: never leave a half-started child behind
        service.kill()
        raise


def start_packager(
    *,
    log_dir: Path,
    broker_url: str,
    api_base: str,
    api_key: str,
    storage: str,
    queue_prefix: str = "",
    work_dir: Path | None = None,
    name: str = "packager",
    extra_env: Mapping[str, str] | None = None,
    ready_timeout: float = 20.0,
) -> Service:
    """Start ``python -m examples.packager``; return it once it logged that it is up.

    The API key goes through the environment (``TDM_PACKAGER_API_KEY``), never the command
    line, which other users can read in ``ps``. ``extra_env`` may carry ``TDM_S3_ENDPOINT``,
    ``AWS_*`` and the like.

    Raises:
        DemoError: it exited or did not come up within ``ready_timeout`` seconds.
    """
    settings = {
        "TDM_BROKER_URL": broker_url,
        "TDM_API_BASE": api_base,
        "TDM_PACKAGER_API_KEY": api_key,
        "TDM_STORAGE": storage,
        "TDM_QUEUE_PREFIX": queue_prefix,
    }
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
        settings["TDM_WORK_DIR"] = str(work_dir)
    service = _spawn(name, "examples.packager", [], _child_env(settings, extra_env), log_dir)
    deadline = time.monotonic() + ready_timeout
    try:
        while "packager up" not in service.log_text():
            if not service.running:
                raise service.error(f"{name} exited with status {service.process.returncode} before coming up")
            if time.monotonic() > deadline:
                raise service.error(f"{name} did not come up within {ready_timeout:.0f} s")
            time.sleep(0.05)
    except BaseException:  # also Ctrl-C: never leave a half-started child behind
        service.kill()
        raise
    return service
