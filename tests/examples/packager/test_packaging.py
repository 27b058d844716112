"""Tests for examples.packager.packaging: the whole fetch -> bag -> zip -> store path against a stub API."""

from __future__ import annotations

import hashlib
import json
import os
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from examples.packager.api import ApiClient
from examples.packager.errors import FetchError, UnsafeUrlError
from examples.packager.packaging import Packager
from examples.packager.sanitize import safe_component
from examples.packager.storage import LocalStorage, parse_archive_name
from tdm_messaging.testing import wait_until
from tests.bagit_check import bagit_validate
from tests.examples.packager.stub_api import StubApi, StubDoc, sample_docs, validate_bag


class ListSink:
    def __init__(self) -> None:
        self.estimates: list[float | None] = []
        self.reports: list[tuple[int, int, float | None]] = []

    def accepted(self, estimate_seconds: float | None) -> None:
        self.estimates.append(estimate_seconds)

    def progress(self, items_done: int, items_total: int, *, eta_seconds: float | None = None) -> None:
        self.reports.append((items_done, items_total, eta_seconds))


def _packager(client: ApiClient, archives: LocalStorage, work: Path, **kwargs: object) -> Packager:
    return Packager(api=client, storage=archives, work_dir=work, **kwargs)  # type: ignore[arg-type]


def test_a_docset_becomes_a_valid_bag_in_storage(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path
) -> None:
    docs = sample_docs(5)
    # A hostile id (its text link is a plain one: the guard refuses dot segments even percent-encoded).
    docs[2] = StubDoc("../../etc/passwd", {"title": "evil"}, text=b"x", text_link="/api/documents/2/text")
    stub.add_docset("5", docs)
    stub.docs["2"] = StubDoc("2", {}, text=b"x")
    sink = ListSink()
    stored = _packager(client, archives, work, progress_every_seconds=0.0, progress_every_percent=40).package(
        docset_id="5", docset_url=f"{stub.base}/api/docsets/5?fmt=meta,txt", sink=sink
    )
    assert stored.url.startswith("http://127.0.0.1:9/archives/docset-5--")
    assert parse_archive_name(stored.name) is not None
    path = archives.directory / stored.name
    assert stored.size_bytes == path.stat().st_size
    found = validate_bag(str(path))
    assert len(found["payload"]) == 10
    assert bagit_validate(path) == 10
    assert "data/0/meta.json" in found["payload"]
    hostile = safe_component("../../etc/passwd")
    assert hostile.startswith("___.._etc_passwd~")
    assert f"data/{hostile}/text.txt" in found["payload"]
    assert found["info"]["TDM-Docset-Id"] == "5"
    assert found["info"]["External-Identifier"] == f"{stub.base}/api/docsets/5?fmt=meta,txt"
    with zipfile.ZipFile(path) as zf:
        assert json.loads(zf.read("docset-5/data/1/meta.json")) == {"title": "Thesis 1"}
        assert zf.read("docset-5/data/1/text.txt") == b"full text of 1\n"
    [estimate] = sink.estimates  # its figure depends on the measured latency: tests/examples/packager/test_estimate.py
    assert estimate is not None and 0 < estimate < 60
    assert [r[0] for r in sink.reports] == [2, 4, 5]
    assert all(total == 5 for _, total, _ in sink.reports)
    assert os.listdir(work) == []  # no temp file left behind


def test_an_unchanged_docset_reuses_the_archive(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path
) -> None:
    stub.add_docset("6", sample_docs(3))
    packager = _packager(client, archives, work)
    first = packager.package(docset_id="6", docset_url=f"{stub.base}/api/docsets/6", sink=ListSink())
    texts_before = stub.text_requests()
    sink = ListSink()
    second = packager.package(docset_id="6", docset_url=f"{stub.base}/api/docsets/6", sink=sink)
    assert second == first
    assert stub.text_requests() == texts_before  # nothing fetched but the listing
    assert sink.estimates and sink.reports[-1][:2] == (3, 3)
    assert archives.names("6") == [first.name]


def test_a_changed_docset_gets_a_new_archive_and_the_old_one_goes(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path
) -> None:
    stub.add_docset("7", sample_docs(3))
    packager = _packager(client, archives, work)
    first = packager.package(docset_id="7", docset_url=f"{stub.base}/api/docsets/7", sink=ListSink())
    stub.docs["1"].metadata = {"title": "Thesis 1, revised", "updated_at": "2024-06-01T00:00:00Z"}
    second = packager.package(docset_id="7", docset_url=f"{stub.base}/api/docsets/7", sink=ListSink())
    assert second.name != first.name
    assert archives.names("7") == [second.name]
    assert not (archives.directory / first.name).exists()


def test_a_rebuilt_archive_has_the_same_bytes_as_the_first_build(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path
) -> None:
    # The name is keyed by content, so a rebuild after a delete must serve the same bytes:
    # a cache keyed on the URL would otherwise hand out a stale copy.
    stub.add_docset("17", sample_docs(4))
    packager = _packager(client, archives, work)
    first = packager.package(docset_id="17", docset_url=f"{stub.base}/api/docsets/17", sink=ListSink())
    first_bytes = (archives.directory / first.name).read_bytes()
    assert packager.delete("17") == [first.name]
    # Zip timestamps tick every 2 s: rebuild after a tick, so a build-time stamp would show.
    tick = time.time() // 2
    wait_until(lambda: time.time() // 2 != tick, timeout=5, what="the zip clock to tick")
    second = packager.package(docset_id="17", docset_url=f"{stub.base}/api/docsets/17", sink=ListSink())
    assert second.name == first.name
    assert (archives.directory / second.name).read_bytes() == first_bytes
    assert second.sha256 == first.sha256
    # Hashed as it was written, never read back: still the stored file's checksum.
    assert first.sha256 == hashlib.sha256(first_bytes).hexdigest()


def test_formats_choose_the_files(stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path) -> None:
    stub.add_docset("8", sample_docs(2))
    packager = _packager(client, archives, work)
    meta_only = packager.package(
        docset_id="8", docset_url=f"{stub.base}/api/docsets/8", sink=ListSink(), formats=["meta"]
    )
    assert validate_bag(str(archives.directory / meta_only.name))["payload"] == ["data/0/meta.json", "data/1/meta.json"]
    assert bagit_validate(archives.directory / meta_only.name) == 2
    assert stub.text_requests() == 0
    with pytest.raises(FetchError, match="formats"):
        packager.package(docset_id="8", docset_url=f"{stub.base}/api/docsets/8", sink=ListSink(), formats=["pdf"])


def test_delete_removes_every_archive_of_the_docset_only(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path
) -> None:
    stub.add_docset("9", sample_docs(1))
    stub.add_docset("99", sample_docs(1))
    packager = _packager(client, archives, work)
    kept = packager.package(docset_id="99", docset_url=f"{stub.base}/api/docsets/99", sink=ListSink())
    gone = packager.package(docset_id="9", docset_url=f"{stub.base}/api/docsets/9", sink=ListSink())
    assert packager.delete("9") == [gone.name]
    assert archives.find(gone.name) is None
    assert archives.find(kept.name) is not None
    assert packager.delete("9") == []


@pytest.mark.parametrize(
    "url",
    [
        "http://evil.example/api/docsets/10",
        "http://2130706433/api/docsets/10",
        "file:///etc/passwd",
        "{base}/api/docsets/11",  # another docset than the request's
        "{base}/api/docsets/10/../11",
    ],
)
def test_unsafe_docset_urls_are_refused_before_fetching(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path, url: str
) -> None:
    stub.add_docset("10", sample_docs(1))
    stub.add_docset("11", sample_docs(1))
    with pytest.raises(UnsafeUrlError):
        _packager(client, archives, work).package(
            docset_id="10", docset_url=url.format(base=stub.base), sink=ListSink()
        )
    assert stub.seen == []


def test_an_offsite_text_link_fails_the_job_and_leaves_nothing(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path
) -> None:
    docs = sample_docs(2)
    docs[1].text_link = "http://[::ffff:127.0.0.1]:1/steal"
    stub.add_docset("12", docs)
    with pytest.raises(UnsafeUrlError):
        _packager(client, archives, work).package(
            docset_id="12", docset_url=f"{stub.base}/api/docsets/12", sink=ListSink()
        )
    assert archives.names("12") == []
    assert os.listdir(work) == []


def test_a_text_failing_midway_leaves_no_archive_and_no_temp_file(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path
) -> None:
    docs = sample_docs(3)
    docs[2].text_link = "/api/documents/missing/text"  # answers 404 after two texts were bagged
    stub.add_docset("13", docs)
    with pytest.raises(FetchError, match="404"):
        _packager(client, archives, work).package(
            docset_id="13", docset_url=f"{stub.base}/api/docsets/13", sink=ListSink()
        )
    assert archives.names("13") == []
    assert os.listdir(work) == []
    assert [p for p in os.listdir(archives.directory) if p.startswith(".partial-")] == []


@pytest.mark.slow
def test_memory_stays_bounded_for_a_large_docset(stub: StubApi, archives: LocalStorage, work: Path) -> None:
    """100 documents of 300 KB plus one of 24 MB: the peak of traced allocations stays far below one text."""
    stub.page_size = 25
    docs = [*sample_docs(100, size=300_000), StubDoc("huge", {"title": "Huge"}, size=24_000_000)]
    stub.add_docset("big", docs)
    client = ApiClient(api_base=stub.base, api_key=stub.key)
    packager = _packager(client, archives, work, compresslevel=1)
    tracemalloc.start()
    try:
        stored = packager.package(docset_id="big", docset_url=f"{stub.base}/api/docsets/big", sink=ListSink())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    client.close()
    assert validate_bag(str(archives.directory / stored.name))["octets"] == 100 * 300_000 + 24_000_000 + sum(
        len(json.dumps(d.metadata, indent=2, sort_keys=True).encode()) + 1 for d in stub.docs.values()
    )
    assert bagit_validate(archives.directory / stored.name) == 2 * len(docs)  # meta.json + text.txt each
    # The stub server runs in this process too, so its buffers count; still ~1/6 of the text at most.
    assert peak < 8 * 1024 * 1024, f"peak traced memory {peak} bytes"


def test_a_queue_prefix_maps_request_ids_to_api_ids(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path
) -> None:
    stub.add_docset("14", sample_docs(1))
    packager = _packager(client, archives, work, queue_prefix="run7-")
    stored = packager.package(docset_id="run7-14", docset_url=f"{stub.base}/api/docsets/14", sink=ListSink())
    assert stored.name.startswith("docset-run7-14--")
    for wrong in ["14", "run7-15", "run8-14"]:
        with pytest.raises(UnsafeUrlError, match="does not name docset"):
            packager.package(docset_id=wrong, docset_url=f"{stub.base}/api/docsets/14", sink=ListSink())


def test_the_archive_is_synced_as_it_is_built_only_for_a_storage_that_keeps_the_file(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from examples.packager.writeback import EarlyWriteback

    told: list[int] = []  # what the build told a writeback (its syncs themselves: test_writeback.py)
    real = EarlyWriteback.written
    monkeypatch.setattr(EarlyWriteback, "written", lambda self, end: (told.append(end), real(self, end))[1])
    for syncs in (True, False):
        told.clear()
        monkeypatch.setattr(type(archives), "syncs_the_built_file", syncs)
        docs = [StubDoc(f"d{i}", {"title": f"Thesis {i}"}, text=os.urandom(400_000)) for i in range(6)]
        stub.add_docset(f"w{syncs}", docs)  # ~2.4 MB that deflate cannot shrink: written out in several MiB
        stored = _packager(client, archives, work).package(
            docset_id=f"w{syncs}", docset_url=f"{stub.base}/api/docsets/w{syncs}", sink=ListSink()
        )
        path = archives.directory / stored.name
        assert bagit_validate(path) == 12
        if syncs:  # told of every write out, up to the whole file
            assert len(told) >= 2 and told == sorted(told) and told[-1] == path.stat().st_size
        else:
            assert told == []
