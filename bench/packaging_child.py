"""``python -m bench.packaging_child MODE ...``: one packaging run (ours or a plain zipfile loop) or a packager worker.

Modes:
  ``ours API_BASE DOCSET_ID WORK_DIR``     the reference packager's core packages the docset once
  ``zipfile API_BASE DOCSET_ID WORK_DIR``  a plain ``zipfile`` loop over the same members
  ``worker API_BASE BROKER_URL WORK_DIR``  a PackagerWorker over the reference packager, until SIGTERM
The two first print one JSON line: seconds, text bytes, archive bytes and peak RSS (VmHWM) in KiB;
:func:`run_child` runs one of them from the packaging and scaling groups.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from types import FrameType

import requests

# Imported here, before any timing starts: ours' timed region is the packaging, not Python's imports.
from examples.packager.api import ApiClient
from examples.packager.packaging import FETCH_CONCURRENCY, Packager
from examples.packager.storage import LocalStorage

__all__ = ["main", "peak_rss_kib", "run_child"]

_ROOT = Path(__file__).resolve().parent.parent

_LARGEST_PAGE = 1000
"""Members a listing page may hold (the reference server's largest ``limit``): the zipfile loop asks for it."""


def peak_rss_kib() -> int:
    """This process's peak resident set size (``VmHWM`` of /proc/self/status), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


class _NullSink:
    def accepted(self, estimate_seconds: float | None) -> None:
        pass

    def progress(self, items_done: int, items_total: int, *, eta_seconds: float | None = None) -> None:
        pass


def _concurrency() -> int:
    """TDM_FETCH_CONCURRENCY as the app reads it, so the bench can run a packager at another concurrency."""
    return int(os.environ.get("TDM_FETCH_CONCURRENCY", FETCH_CONCURRENCY))


def _ours(api_base: str, docset_id: str, work_dir: str) -> tuple[int, int]:
    concurrency = _concurrency()
    api = ApiClient(api_base=api_base, api_key="bench-key", pool_size=concurrency)
    storage = LocalStorage(Path(work_dir) / "archives", api_base.rstrip("/") + "/archives")
    packager = Packager(api=api, storage=storage, work_dir=work_dir, fetch_concurrency=concurrency)
    stored = packager.package(docset_id=docset_id, docset_url=f"{api_base}/api/docsets/{docset_id}", sink=_NullSink())
    api.close()
    return stored.size_bytes, 0


def _zipfile_loop(api_base: str, docset_id: str, work_dir: str) -> tuple[int, int]:
    """What a packager written without our library does: list (page by page), then stream each text into a zip."""
    session = requests.Session()
    session.trust_env = False
    headers = {"X-API-Key": "bench-key"}
    page_url: str | None = f"{api_base}/api/docsets/{docset_id}?limit={_LARGEST_PAGE}"
    text_bytes = 0
    with tempfile.NamedTemporaryFile(dir=work_dir, suffix=".zip") as handle:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
            while page_url is not None:
                page = session.get(page_url, headers=headers, timeout=60).json()
                for member in page["members"]:
                    folder = f"docset-{docset_id}/data/{member['id']}"
                    metadata = {k: v for k, v in member.items() if k != "links"}
                    archive.writestr(f"{folder}/meta.json", json.dumps(metadata, indent=2, sort_keys=True))
                    with (
                        session.get(member["links"]["text"], headers=headers, stream=True, timeout=60) as response,
                        archive.open(f"{folder}/text.txt", "w", force_zip64=True) as out,
                    ):
                        for chunk in response.iter_content(64 * 1024):
                            out.write(chunk)
                            text_bytes += len(chunk)
                page_url = page["next"]
        size = Path(handle.name).stat().st_size
    return size, text_bytes


def _worker(api_base: str, broker_url: str, work_dir: str) -> int:
    # Imported here: the packaging runs' peak RSS is the packager's, not the broker clients'.
    from examples.packager.app import make_handlers
    from tdm_messaging.transport import open_transport
    from tdm_messaging.worker import PackagerWorker

    logging.basicConfig(level=logging.WARNING)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    concurrency = _concurrency()  # the two-vs-one row runs its packagers at 1
    api = ApiClient(api_base=api_base, api_key="bench-key", pool_size=concurrency)
    storage = LocalStorage(Path(work_dir) / "archives", api_base.rstrip("/") + "/archives")
    packager = Packager(api=api, storage=storage, work_dir=work_dir, fetch_concurrency=concurrency)
    on_package, on_delete = make_handlers(packager)
    with open_transport(broker_url) as transport:
        print("ready", flush=True)
        PackagerWorker(transport, on_package=on_package, on_delete=on_delete).run(stop)
    return 0


def run_child(mode: str, api_base: str, docset_id: str, work_dir: Path, *, timeout: float) -> dict[str, float]:
    """Package ``docset_id`` once in a fresh ``python -m bench.packaging_child MODE`` process; return its JSON line.

    ``mode`` is ``ours`` or ``zipfile``; the archives the run stored under ``work_dir`` are removed
    afterwards. The one launcher of the packaging and scaling groups' packaging runs.

    Raises:
        RuntimeError: the run failed or outlived ``timeout`` seconds (the end of its stderr says why).
    """
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.packaging_child", mode, api_base, docset_id, str(work_dir)],
            cwd=_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"packaging child {mode} {docset_id} took more than {timeout:g} s") from exc
    finally:
        shutil.rmtree(work_dir / "archives", ignore_errors=True)
    if done.returncode != 0:
        raise RuntimeError(f"packaging child {mode} {docset_id} failed: {done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    """Run one mode (see the module docstring); returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 4 or args[0] not in {"ours", "zipfile", "worker"}:
        print(__doc__, file=sys.stderr)
        return 2
    mode, api_base, target, work_dir = args
    if mode == "worker":
        return _worker(api_base, target, work_dir)
    start = time.perf_counter()
    archive_bytes, _text = (
        _ours(api_base, target, work_dir) if mode == "ours" else _zipfile_loop(api_base, target, work_dir)
    )
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "archive_bytes": archive_bytes, "peak_rss_kib": peak_rss_kib()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
