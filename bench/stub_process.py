"""The docset stub server (``bench.docset_stub``) in a process of its own.

Its own process, so that it shares neither the packager's core time nor its GIL; the stub prints
the port it listens on as its first line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__all__ = ["StubProcess"]

_ROOT = Path(__file__).resolve().parent.parent


class StubProcess:
    """Start ``python -m <module> 0`` and learn its port; :meth:`stop` ends it.

    Raises:
        RuntimeError: the stub did not print a port (its first line says what it said instead).
    """

    def __init__(self, module: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, "0"], cwd=_ROOT, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError(f"the stub {module} did not start (said {line!r})")
        self.base = f"http://127.0.0.1:{line}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
