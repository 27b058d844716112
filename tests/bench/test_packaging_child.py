"""Tests of bench.packaging_child and bench.worker_peer: both packaging runs build real archives."""

from __future__ import annotations

import threading
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.docset_stub import serve
from bench.packaging_child import _ours, _zipfile_loop, peak_rss_kib
from bench.worker_peer import ARCHIVE_SIZE, noop_job
from tdm_messaging.models import PackageRequest
from tdm_messaging.worker import Job


@pytest.fixture
def stub() -> Iterator[str]:
    server = serve()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_zipfile_loop_archives_every_text(stub: str, tmp_path: Path) -> None:
    size, text_bytes = _zipfile_loop(stub, "z-4x5000", str(tmp_path))
    assert text_bytes == 4 * 5000
    assert size > 0


def test_zipfile_loop_reads_every_page(stub: str, tmp_path: Path) -> None:
    size, text_bytes = _zipfile_loop(stub, "z-1001x3", str(tmp_path))  # pages of 1,000: two of them
    assert text_bytes == 1001 * 3
    assert size > 0


def test_ours_stores_a_bag_with_every_text(stub: str, tmp_path: Path) -> None:
    size, _ = _ours(stub, "o-4x5000", str(tmp_path))
    archives = list((tmp_path / "archives").glob("*.zip"))
    assert len(archives) == 1
    assert archives[0].stat().st_size == size
    with zipfile.ZipFile(archives[0]) as archive:
        texts = [i for i in archive.infolist() if i.filename.endswith("text.txt")]
    assert len(texts) == 4
    assert all(i.file_size == 5000 for i in texts)


def test_peak_rss_is_positive() -> None:
    assert peak_rss_kib() > 1000


def test_noop_job_returns_a_result_of_the_celery_task_shape() -> None:
    now = datetime.now(UTC)
    request = PackageRequest(
        docset_id="7",
        request_id="019a6f2e-8c1b-7d3e-9f40-1a2b3c4d5e6f",
        sequence=0,
        timestamp=now,
        docset_url="http://server/api/docsets/7?fmt=meta,txt",
        reply_to="package/7",
        requested_at=now,
    )
    result = noop_job(Job(request))
    assert result.size_bytes == ARCHIVE_SIZE
    assert result.archive_url.endswith("/package/7.zip")
