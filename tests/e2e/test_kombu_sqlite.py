"""One whole flow on kombu's SQLite transport (the embedded default before ``sqlite://``), so it stays covered."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.harness import StackConfig, start_stack, unique_namespace, validate_bag
from tests.bagit_check import bagit_validate


@pytest.mark.timeout(120)
def test_the_whole_flow_still_runs_on_kombus_sqlite(tmp_path: Path) -> None:
    pytest.importorskip("kombu")
    config = StackConfig(
        work_dir=tmp_path / "stack",
        broker_url=f"sqla+sqlite:///{(tmp_path / 'kombu-broker.db').resolve()}",
        namespace=unique_namespace("e2e-kombu"),
        documents=6,
        min_kb=1,
        max_kb=4,
    )
    with start_stack(config) as stack:
        miner = stack.miner()
        docset_id = miner.create_docset("kombu sqlite", year_from=1900)["id"]
        result = miner.wait_for_dump(docset_id, timeout=60, max_interval=0.5)
        archive = tmp_path / "archive.zip"
        assert miner.download(result.archive_url, archive) == result.sha256
        miner.close()
    report = validate_bag(archive)
    assert report.documents == 6
    assert bagit_validate(archive) == report.payload_files
