"""The packager fetching and deflating several members at once: same bytes, bounded, guarded, limited, cancellable."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from examples.packager.api import ApiClient
from examples.packager.errors import FetchError, LimitError, UnsafeUrlError
from examples.packager.limits import JobInterrupted, Limits
from examples.packager.packaging import FETCH_CONCURRENCY, Packager
from examples.packager.storage import LocalStorage
from tdm_messaging import ConfigurationError
from tests.bagit_check import bagit_validate
from tests.examples.packager.stub_api import API_KEY, StubApi, StubDoc, sample_docs, validate_bag


class Sink:
    def __init__(self) -> None:
        self.reports: list[int] = []

    def accepted(self, estimate_seconds: float | None) -> None:
        pass

    def progress(self, items_done: int, items_total: int, *, eta_seconds: float | None = None) -> None:
        self.reports.append(items_done)


def _packager(client: ApiClient, storage: LocalStorage, work: Path, **kwargs: object) -> Packager:
    return Packager(api=client, storage=storage, work_dir=work, secret=b"s" * 32, **kwargs)  # type: ignore[arg-type]


def _fetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("packager-fetch")]


def _mixed_docs() -> list[StubDoc]:
    """Texts of very different sizes (some past the in-memory spool), so fetches end out of order."""
    sizes = [3, 1_300_000, 0, 70_000, 1, 250_000, 9, 1_100_000, 5_000, 40] * 3
    return [StubDoc(f"m{i}", {"title": f"Thesis {i}", "n": i}, size=size) for i, size in enumerate(sizes)]


def test_archives_are_byte_identical_whatever_the_concurrency(
    stub: StubApi, client: ApiClient, tmp_path: Path, work: Path
) -> None:
    stub.add_docset("30", _mixed_docs())
    stub.page_size = 7
    stub.text_delay = 0.002
    built: dict[int, bytes] = {}
    for workers in (1, 3, 8, 16):
        storage = LocalStorage(tmp_path / f"archives-{workers}", "http://127.0.0.1:9/archives")
        sink = Sink()
        stored = _packager(client, storage, work, fetch_concurrency=workers).package(
            docset_id="30", docset_url=f"{stub.base}/api/docsets/30", sink=sink
        )
        path = storage.directory / stored.name
        built[workers] = path.read_bytes()
        assert sink.reports[-1] == 30
        assert validate_bag(str(path))["payload"][:2] == ["data/m0/meta.json", "data/m0/text.txt"]
        assert bagit_validate(path) == 60
    assert built[3] == built[1]
    assert built[8] == built[1]
    assert built[16] == built[1]
    assert os.listdir(work) == []
    assert _fetch_threads() == []


def test_the_members_fetched_at_once_never_pass_the_concurrency(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path
) -> None:
    stub.add_docset("31", sample_docs(24))
    stub.page_size = 100
    stub.text_delay = 0.05
    _packager(client, archives, work, fetch_concurrency=4).package(
        docset_id="31", docset_url=f"{stub.base}/api/docsets/31", sink=Sink()
    )
    assert 2 <= stub.max_in_flight <= 4
    assert stub.text_requests() == 24  # each text fetched once


def test_the_default_concurrency_is_bounded(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path
) -> None:
    stub.add_docset("32", sample_docs(40))
    stub.page_size = 100
    stub.text_delay = 0.03
    _packager(client, archives, work).package(docset_id="32", docset_url=f"{stub.base}/api/docsets/32", sink=Sink())
    assert 1 < stub.max_in_flight <= FETCH_CONCURRENCY


def test_a_concurrency_below_one_is_a_configuration_error(client: ApiClient, archives: LocalStorage) -> None:
    with pytest.raises(ConfigurationError, match="at least 1"):
        Packager(api=client, storage=archives, secret=b"s" * 32, fetch_concurrency=0)


def test_the_byte_limit_holds_for_members_fetched_at_once(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path
) -> None:
    # 20 texts of 10,000 bytes: under the limit one by one, over it together.
    stub.add_docset("33", [StubDoc(f"b{i}", {"i": i}, size=10_000) for i in range(20)])
    stub.page_size = 100
    packager = _packager(
        client, archives, work, fetch_concurrency=8, limits=Limits(max_docset_bytes=150_000, deadline_seconds=60)
    )
    with pytest.raises(LimitError, match="TDM_MAX_DOCSET_BYTES"):
        packager.package(docset_id="33", docset_url=f"{stub.base}/api/docsets/33", sink=Sink())
    assert archives.names("33") == []
    assert os.listdir(work) == []
    assert _fetch_threads() == []


def test_a_redirect_off_the_api_fails_the_job_while_others_are_fetched(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path
) -> None:
    docs = sample_docs(30)
    docs[17].text_link = "/api/documents/jump/text"
    stub.routes["/api/documents/jump/text"] = (302, {"Location": "http://169.254.169.254/latest/meta-data/"})
    stub.add_docset("34", docs)
    stub.page_size = 100
    with pytest.raises(UnsafeUrlError, match="redirect"):
        _packager(client, archives, work, fetch_concurrency=8).package(
            docset_id="34", docset_url=f"{stub.base}/api/docsets/34", sink=Sink()
        )
    assert not [path for path in stub.seen if "169.254" in path]
    assert archives.names("34") == []
    assert os.listdir(work) == []
    assert _fetch_threads() == []


def test_a_failing_member_ends_the_job_and_cuts_the_others(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path
) -> None:
    docs = [StubDoc(f"s{i}", {"i": i}, text=b"x" * 50, trickle_seconds=20.0) for i in range(6)]
    docs.insert(3, StubDoc("gone", {"i": "gone"}, text=b"", text_link="/api/documents/missing/text"))
    stub.add_docset("35", docs)
    stub.page_size = 100
    with pytest.raises(FetchError, match="404"):
        _packager(client, archives, work, fetch_concurrency=8).package(
            docset_id="35", docset_url=f"{stub.base}/api/docsets/35", sink=Sink()
        )
    # The trickled texts (20 s a byte) were cut, not read to their end: the job is over, threads and all.
    assert _fetch_threads() == []
    assert archives.names("35") == []
    assert os.listdir(work) == []


def test_interrupt_cuts_every_fetch_under_way(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path
) -> None:
    stub.add_docset("36", [StubDoc(f"t{i}", {"i": i}, text=b"y" * 100, trickle_seconds=20.0) for i in range(10)])
    stub.page_size = 100
    packager = _packager(client, archives, work, fetch_concurrency=4)
    outcome: list[BaseException] = []

    def job() -> None:
        try:
            packager.package(docset_id="36", docset_url=f"{stub.base}/api/docsets/36", sink=Sink())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=job)
    thread.start()
    deadline = time.monotonic() + 30
    while stub.text_requests() < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stub.text_requests() == 4, "four texts should be under way, and no more"
    packager.interrupt()
    thread.join(15)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], JobInterrupted)
    assert _fetch_threads() == []
    assert stub.text_requests() == 4  # nothing queued was started after the cut
    assert archives.names("36") == []
    assert os.listdir(work) == []


def test_the_job_deadline_cuts_members_fetched_at_once(stub: StubApi, archives: LocalStorage, work: Path) -> None:
    stub.add_docset("37", [StubDoc(f"d{i}", {"i": i}, text=b"z" * 100, trickle_seconds=20.0) for i in range(5)])
    client = ApiClient(api_base=stub.base, api_key=API_KEY, retries=0)
    try:
        packager = _packager(client, archives, work, fetch_concurrency=5, limits=Limits(deadline_seconds=1))
        with pytest.raises(LimitError, match="TDM_JOB_DEADLINE"):
            packager.package(docset_id="37", docset_url=f"{stub.base}/api/docsets/37", sink=Sink())
    finally:
        client.close()
    assert _fetch_threads() == []
    assert os.listdir(work) == []


def test_connections_are_kept_alive_and_reused(stub: StubApi, archives: LocalStorage, work: Path) -> None:
    stub.add_docset("38", sample_docs(60))
    stub.page_size = 100
    client = ApiClient(api_base=stub.base, api_key=API_KEY, pool_size=4)
    try:
        _packager(client, archives, work, fetch_concurrency=4).package(
            docset_id="38", docset_url=f"{stub.base}/api/docsets/38", sink=Sink()
        )
    finally:
        client.close()
    assert stub.text_requests() == 60  # (the listing adds its pages and the estimate's latency probes)
    assert 1 <= len(stub.peers) <= 4  # at most one connection per fetching thread, each kept alive


def test_cookies_from_the_api_are_never_sent_back(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path
) -> None:
    docs = sample_docs(6)
    docs[2].text_link = "/api/documents/cookie/text"
    stub.routes["/api/documents/cookie/text"] = (200, {"Set-Cookie": "session=abc; Path=/"})
    stub.add_docset("39", docs)
    _packager(client, archives, work).package(docset_id="39", docset_url=f"{stub.base}/api/docsets/39", sink=Sink())
    cookie_set_at = stub.seen.index("/api/documents/cookie/text")
    assert cookie_set_at < len(stub.seen) - 1  # requests followed the one that set it
    assert stub.seen_cookies == [None] * len(stub.seen)  # no jar: nothing set is sent back, on any thread
