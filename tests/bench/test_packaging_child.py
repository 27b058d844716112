"""Tests of bench.packaging_child and bench.worker_peer: both packaging runs build real archives."""

from __future__ import annotations

import threading
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.docset_stub import serve
from bench.packaging import _others_share
from bench.packaging_child import _concurrency, _ours, _zipfile_loop, peak_rss_kib
from bench.stub_process import StubProcess
from bench.worker_peer import ARCHIVE_SIZE, noop_job
from tdm_messaging import ConfigurationError
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


def test_ours_runs_at_the_concurrency_of_the_environment_and_writes_the_same_bytes(
    stub: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = {}
    for concurrency in ("1", "3"):
        monkeypatch.setenv("TDM_FETCH_CONCURRENCY", concurrency)
        work = tmp_path / concurrency
        work.mkdir()
        _ours(stub, "c-7x70000", str(work))
        (archive,) = (work / "archives").glob("*.zip")
        built[concurrency] = archive.read_bytes()
    assert built["1"] == built["3"]
    monkeypatch.setenv("TDM_FETCH_CONCURRENCY", "0")
    with pytest.raises(ConfigurationError):
        _ours(stub, "c-1x10", str(tmp_path))


def test_both_packaging_children_read_the_concurrency_of_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker child (the two-vs-one row's packagers) and the one-build child take the same setting."""
    from examples.packager.packaging import FETCH_CONCURRENCY

    monkeypatch.delenv("TDM_FETCH_CONCURRENCY", raising=False)
    assert _concurrency() == FETCH_CONCURRENCY
    monkeypatch.setenv("TDM_FETCH_CONCURRENCY", "1")
    assert _concurrency() == 1


def test_others_share_gives_the_run_and_a_share_of_the_machine() -> None:
    stub = StubProcess("bench.docset_stub")
    try:
        result, share = _others_share(lambda: sum(range(100_000)), stub)
    finally:
        stub.stop()
    assert result == sum(range(100_000))
    assert 0.0 <= share <= 1.0


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
