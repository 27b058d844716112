"""``python -m bench.worker_peer URL [PREFETCH]``: one PackagerWorker with a no-op job, as a Celery worker."""

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
    """Run the worker on the broker URL (and prefetch, 1 if not given) until SIGTERM or SIGINT; returns 0."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in {1, 2} or (len(args) == 2 and not args[1].isdigit()):
        print("usage: python -m bench.worker_peer BROKER_URL [PREFETCH]", file=sys.stderr)
        return 2
    prefetch = int(args[1]) if len(args) == 2 else 1
    logging.basicConfig(level=logging.WARNING)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with open_transport(args[0]) as transport:
        worker = PackagerWorker(transport, on_package=noop_job, retry_backoff_seconds=0, prefetch=prefetch)
        print("ready", flush=True)
        worker.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
