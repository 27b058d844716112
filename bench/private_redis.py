"""A private redis-server for the Celery + Redis-results peer: its own port, its own directory, an append-only file.

The machine's shared Redis (the one the tests use) runs with no persistence at all, so a Celery
result stored there would not survive a Redis restart, and a peer measured on it would not be at
the durability of ours (persistent messages, publisher confirms after the broker's fsync). The
bench therefore starts its own redis-server with ``--appendonly yes --appendfsync always``: every
write is in the append-only file and fsynced before Redis answers it, the equal of a confirmed
persistent message. ``everysec`` (Redis' common production setting: up to a second of writes lost
on a crash) is offered as a second, cheaper peer; the goals are held against ``always``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["FSYNC_MODES", "PrivateRedis", "redis_server_binary"]

FSYNC_MODES = ("always", "everysec")
"""``appendfsync`` values the private Redis can run with."""
_START_TIMEOUT = 20.0
_STOP_TIMEOUT = 10.0


def redis_server_binary() -> str:
    """The path of ``redis-server``.

    Raises:
        SystemExit: it is not installed (a setup mistake, said without a traceback).
    """
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if found is None:
        raise SystemExit(
            "bench: redis-server is not installed; the Celery + Redis-results peer runs a private one. "
            "Install it (Debian/Ubuntu: `sudo apt-get install redis-server`, or `sudo bash scripts/brokers.sh up`)."
        )
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A redis-server of the bench's own, with an append-only file fsynced per ``fsync`` (``always``).

    ``start()`` picks a free port and a fresh temp directory and waits until the server answers
    PING; ``stop()`` ends it (by its own pid) and removes the directory; ``kill()`` and
    ``start()`` again restart it on the same directory and port (the durability test). Use it as a
    context manager so it is stopped and removed on error too.
    """

    def __init__(self, fsync: str = "always") -> None:
        if fsync not in FSYNC_MODES:
            raise ValueError(f"appendfsync {fsync!r}: choose one of {', '.join(FSYNC_MODES)}")
        self.fsync = fsync
        self.binary = redis_server_binary()
        self.directory = Path(tempfile.mkdtemp(prefix=f"tdm-bench-redis-{fsync}-"))
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL of db 0 on this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        """The server's command line: loopback only, no RDB snapshots, AOF with ``appendfsync`` as chosen."""
        return [
            self.binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            self.fsync,
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--logfile",
            str(self.directory / "redis.log"),
        ]

    def start(self) -> PrivateRedis:
        """Start the server (again, after ``kill()``, on the same directory and port); wait for PING.

        Raises:
            RuntimeError: it exited or did not answer within 20 s (with the end of its log).
        """
        import redis

        self.process = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + _START_TIMEOUT
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1, socket_timeout=1)
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"private redis-server exited ({self.process.returncode}): {self.log_tail()}")
                try:
                    if client.ping():
                        return self
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"private redis-server did not answer PING in {_START_TIMEOUT:g} s: {self.log_tail()}"
                    )
                time.sleep(0.05)
        finally:
            client.close()

    def log_tail(self, chars: int = 1500) -> str:
        """The end of the server's log."""
        log = self.directory / "redis.log"
        return log.read_text(errors="replace")[-chars:].strip() if log.exists() else "(no log)"

    def kill(self) -> None:
        """SIGKILL the server (a crash: nothing flushed on the way out) and reap it; the directory stays."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=_STOP_TIMEOUT)

    def stop(self) -> None:
        """Terminate the server (kill it if it lingers) and remove its directory."""
        try:
            if self.process is not None and self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=_STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.kill()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PrivateRedis:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
