"""``python -m bench.worker_peer URL [PREFETCH [LINGER]]``: one PackagerWorker with a no-op job, as a Celery worker."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from tdm_messaging.transport import open_transport
from tdm_messaging.worker import Job, PackageResult, PackagerWorker

__all__ = ["main", "noop_job"]

ARCHIVE_SIZE = 345345


def noop_job(job: Job) -> PackageResult:
    """The job of the Celery task's shape: one progress report, then a URL and a size; nothing packaged."""
    job.progress(1, 1)
    return PackageResult(
        archive_url=f"https://tdm-packages.example.org/package/{job.request.docset_id}.zip",
        size_bytes=ARCHIVE_SIZE,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the worker on the broker URL (prefetch 1 and no progress linger if not given) until SIGTERM or SIGINT.

    Returns 0 (2 for a bad command line).
    """
    args = sys.argv[1:] if argv is None else argv
    try:
        if not 1 <= len(args) <= 3:
            raise ValueError(args)
        prefetch = int(args[1]) if len(args) >= 2 else 1
        linger = float(args[2]) if len(args) == 3 else 0.0
    except ValueError:
        print("usage: python -m bench.worker_peer BROKER_URL [PREFETCH [LINGER_SECONDS]]", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with open_transport(args[0]) as transport:
        worker = PackagerWorker(
            transport, on_package=noop_job, retry_backoff_seconds=0, prefetch=prefetch, progress_linger_seconds=linger
        )
        print("ready", flush=True)
        worker.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
