"""The whole flow through HTTP on every broker: docset by query, dump, 303, download, valid bag, delete."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from examples.harness import DumpProgress, Miner, read_log, validate_bag
from tests.bagit_check import bagit_validate
from tests.e2e.conftest import FLOW_BROKERS, MakeStack

pytestmark = [pytest.mark.timeout(120)]


def wait_for_status(
    miner: Miner, path: str, status: int, *, passing: tuple[int, ...] = (202, 303), timeout: float = 30.0
) -> dict[str, object]:
    """Poll ``GET path`` until it answers ``status`` (anything but ``passing`` on the way fails); return the body."""
    deadline = time.monotonic() + timeout
    while True:
        response = miner.request("GET", path)
        if response.status_code == status:
            body: dict[str, object] = response.json()
            return body
        assert response.status_code in passing, f"GET {path}: unexpected {response.status_code} {response.text}"
        assert time.monotonic() < deadline, f"GET {path} never answered {status}; last: {response.text}"
        time.sleep(0.2)


@pytest.mark.broker
@pytest.mark.parametrize("broker", FLOW_BROKERS)
def test_dump_flow_end_to_end(make_stack: MakeStack, broker: str, tmp_path: Path) -> None:
    stack = make_stack(broker)
    miner = stack.miner()
    docset = miner.create_docset("e2e", year_from=1900)
    assert docset["member_count"] == stack.config.documents
    docset_id = docset["id"]

    seen: list[DumpProgress] = []
    result = miner.wait_for_dump(docset_id, timeout=60, max_interval=0.5, on_progress=seen.append)
    # The first GET requested the package, so it waited at least once (unless the packager beat the server).
    assert all(p.state in {"requested", "accepted", "in_progress"} and p.retry_after >= 0 for p in seen)

    # The archive is served by the server (local storage) under a name nobody can guess.
    assert result.archive_url.startswith(f"{stack.base_url}/archives/docset-{stack.config.queue_prefix}{docset_id}--")
    target = tmp_path / "download.zip"
    digest = miner.download(result.archive_url, target)
    assert digest == result.sha256
    assert target.stat().st_size == result.size_bytes
    report = validate_bag(target)
    assert report.documents == stack.config.documents
    assert report.payload_files == 2 * stack.config.documents  # meta.json + text.txt each
    assert report.bag_info["TDM-Docset-Id"] == f"{stack.config.queue_prefix}{docset_id}"
    assert bagit_validate(target) == report.payload_files  # an independent judge agrees

    # A later poll still answers 303 to the same archive: the status survives being read.
    again = miner.request("GET", f"/api/docsets/{docset_id}/dump")
    assert again.status_code == 303
    assert again.headers["Location"] == result.archive_url

    # Deleting the dump: 202, the packager removes the archive, the dump answers 410 Gone.
    deleted = miner.request("DELETE", f"/api/docsets/{docset_id}/dump")
    assert deleted.status_code == 202, deleted.text
    gone = wait_for_status(miner, f"/api/docsets/{docset_id}/dump", 410)
    assert "retry" in gone["links"]  # type: ignore[operator]
    archive_file = stack.config.archive_dir / Path(urlsplit(result.archive_url).path).name
    assert not archive_file.exists()
    assert miner.request("GET", result.archive_url).status_code == 404
    packager_log = read_log(stack.packagers[0].log_path)
    assert f"delete job for docset {stack.config.queue_prefix}{docset_id}" in packager_log
    miner.close()
