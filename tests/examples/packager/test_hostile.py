"""Issue 10 against the packager core: unguessable archive names, checked deletes, and every job limit."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from examples.packager.api import ApiClient
from examples.packager.errors import DeleteRefusedError, LimitError
from examples.packager.limits import JobInterrupted, Limits
from examples.packager.packaging import LAYOUT_VERSION, Packager
from examples.packager.secret import SECRET_NAME, check_secret, load_secret
from examples.packager.storage import LocalStorage, archive_name, parse_archive_name
from tdm_messaging.errors import ConfigurationError
from tests.bagit_check import bagit_validate
from tests.examples.packager.stub_api import StubApi, StubDoc, sample_docs, validate_bag


class Sink:
    def __init__(self) -> None:
        self.estimates: list[float | None] = []

    def accepted(self, estimate_seconds: float | None) -> None:
        self.estimates.append(estimate_seconds)

    def progress(self, items_done: int, items_total: int, *, eta_seconds: float | None = None) -> None:
        pass


def _packager(client: ApiClient, archives: LocalStorage, work: Path, **kwargs: Any) -> Packager:
    return Packager(api=client, storage=archives, work_dir=work, **kwargs)


def _public_fingerprint(stub: StubApi, docset_id: str) -> str:
    """What anyone could compute before: SHA-256 of the layout, formats and listing (the old archive name)."""
    digest = hashlib.sha256(json.dumps([LAYOUT_VERSION, ("meta", "txt")]).encode())
    for doc_id in stub.docsets[docset_id]:
        doc = stub.docs[doc_id]
        text_url = f"{stub.base}/api/documents/{doc_id}/text"
        line = json.dumps([doc_id, doc.metadata, text_url], sort_keys=True, separators=(",", ":")).encode()
        digest.update(line + b"\n")
    return digest.hexdigest()


# --- archive names (item 4) -----------------------------------------------------------------


def test_bob_with_alices_members_does_not_learn_alices_archive_name(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path
) -> None:
    docs = sample_docs(3)
    stub.add_docset("5", docs)  # alice's
    stub.add_docset("6", docs)  # bob's: the very same members
    packager = _packager(client, archives, work)
    alice = packager.package(docset_id="5", docset_url=f"{stub.base}/api/docsets/5", sink=Sink())
    bob = packager.package(docset_id="6", docset_url=f"{stub.base}/api/docsets/6", sink=Sink())
    alice_parts, bob_parts = parse_archive_name(alice.name), parse_archive_name(bob.name)
    assert alice_parts is not None and bob_parts is not None
    # Bob's own name does not give alice's by swapping the docset id ...
    assert bob_parts[1] != alice_parts[1]
    assert archives.find(archive_name("5", bob_parts[1])) is None
    # ... and the public data no longer gives it either (it did: the name was a SHA-256 of it).
    assert alice.name != archive_name("5", _public_fingerprint(stub, "5"))
    assert archives.find(archive_name("5", _public_fingerprint(stub, "5"))) is None


def test_an_unchanged_docset_reuses_its_archive_after_a_restart(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path
) -> None:
    stub.add_docset("7", sample_docs(2))
    first = _packager(client, archives, work).package(
        docset_id="7", docset_url=f"{stub.base}/api/docsets/7", sink=Sink()
    )
    secret_file = archives.directory / SECRET_NAME
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    texts = stub.text_requests()
    restarted = LocalStorage(archives.directory, archives.public_base_url)  # a new process on the same storage
    again = _packager(client, restarted, work).package(
        docset_id="7", docset_url=f"{stub.base}/api/docsets/7", sink=Sink()
    )
    assert again.name == first.name
    assert stub.text_requests() == texts


def test_another_secret_names_every_archive_differently(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path
) -> None:
    stub.add_docset("8", sample_docs(1))
    url = f"{stub.base}/api/docsets/8"
    one = _packager(client, archives, work, secret=b"a" * 32).package(docset_id="8", docset_url=url, sink=Sink())
    two = _packager(client, archives, work, secret=b"b" * 32).package(docset_id="8", docset_url=url, sink=Sink())
    assert one.name != two.name
    assert archives.names("8") == [two.name]  # the docset's older archive went


@pytest.mark.parametrize("bad", ["short", "x" * 31, "é" * 40, "a b" * 20, "x" * 1025])
def test_a_weak_or_odd_secret_is_a_configuration_error(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="archive secret"):
        check_secret(bad, where="TDM_ARCHIVE_SECRET")


def test_a_given_secret_wins_and_the_kept_one_is_made_once(archives: LocalStorage) -> None:
    assert load_secret(archives, "k" * 40) == b"k" * 40
    assert not (archives.directory / SECRET_NAME).exists()  # a given secret leaves storage alone
    made = load_secret(archives)
    assert len(made) == 64 and load_secret(archives) == made
    # Two packagers racing: the first write wins, the second gets it back.
    assert archives.create_secret(b"z" * 64) == made


def test_a_secret_readable_by_others_is_made_private(archives: LocalStorage) -> None:
    made = load_secret(archives)
    path = archives.directory / SECRET_NAME
    path.chmod(0o644)
    assert load_secret(archives) == made
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# --- deletes (item 4) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://evil.example/archives/{name}",  # another host
        "http://127.0.0.1:10/archives/{name}",  # another port
        "https://127.0.0.1:9/archives/{name}",  # another scheme
        "http://127.0.0.1:9/other/{name}",  # another directory
        "http://127.0.0.1:9/archives/sub/{name}",
        "http://127.0.0.1:9/archives/{name}?x=1",
        "http://127.0.0.1:9/archives/..%2F{name}",
        "http://127.0.0.1:9/archives/not-an-archive.zip",
        "http://127.0.0.1:9/archives/{other}",  # ours, but another docset's
    ],
)
def test_a_delete_naming_an_archive_that_is_not_ours_deletes_nothing(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path, url: str
) -> None:
    stub.add_docset("9", sample_docs(1))
    stub.add_docset("10", sample_docs(1))
    packager = _packager(client, archives, work)
    mine = packager.package(docset_id="9", docset_url=f"{stub.base}/api/docsets/9", sink=Sink())
    other = packager.package(docset_id="10", docset_url=f"{stub.base}/api/docsets/10", sink=Sink())
    with pytest.raises(DeleteRefusedError, match="nothing was deleted"):
        packager.delete("9", url.format(name=mine.name, other=other.name))
    assert archives.names("9") == [mine.name]
    assert archives.names("10") == [other.name]


def test_a_delete_naming_our_archive_or_none_deletes_the_docsets_archives(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path
) -> None:
    stub.add_docset("11", sample_docs(1))
    packager = _packager(client, archives, work)
    stored = packager.package(docset_id="11", docset_url=f"{stub.base}/api/docsets/11", sink=Sink())
    assert packager.delete("11", stored.url.replace("http://127.0.0.1:9", "HTTP://127.0.0.1:9")) == [stored.name]
    assert archives.names("11") == []
    stored = packager.package(docset_id="11", docset_url=f"{stub.base}/api/docsets/11", sink=Sink())
    assert packager.delete("11", None) == [stored.name]  # a deleted docset: every archive of it


# --- limits (item 6) ------------------------------------------------------------------------


def test_a_docset_over_the_byte_limit_fails_naming_it_and_leaves_nothing(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path
) -> None:
    stub.add_docset("12", [StubDoc(str(i), {"title": "t"}, size=600_000) for i in range(2)])
    packager = _packager(client, archives, work, limits=Limits(max_docset_bytes=1_000_000))
    with pytest.raises(LimitError, match=r"1000000 bytes .*TDM_MAX_DOCSET_BYTES") as info:
        packager.package(docset_id="12", docset_url=f"{stub.base}/api/docsets/12", sink=Sink())
    assert not info.value.retryable
    assert archives.names("12") == []
    assert os.listdir(work) == []


def test_a_text_trickled_past_the_deadline_fails_within_moments(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path
) -> None:
    stub.add_docset("13", [StubDoc("slow", {"title": "slow"}, text=b"x" * 100, trickle_seconds=20.0)])
    packager = _packager(client, archives, work, limits=Limits(deadline_seconds=1.0))
    started = time.monotonic()
    with pytest.raises(LimitError, match=r"deadline of 1 s .*TDM_JOB_DEADLINE"):
        packager.package(docset_id="13", docset_url=f"{stub.base}/api/docsets/13", sink=Sink())
    assert time.monotonic() - started < 6.0  # not the 20 s of one byte, nor the 60 s read timeout
    assert archives.names("13") == []
    assert os.listdir(work) == []


def test_an_endless_chain_of_next_links_ends_at_the_page_cap(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path
) -> None:
    stub.add_docset("14", sample_docs(1))
    pages = itertools.count(2)
    stub.listing_hook = lambda body: {**body, "next": f"/api/docsets/14?fmt=meta,txt&page={next(pages)}"}
    packager = _packager(client, archives, work, limits=Limits(max_pages=25))
    with pytest.raises(LimitError, match=r"more than 25 pages.*TDM_MAX_PAGES"):
        packager.package(docset_id="14", docset_url=f"{stub.base}/api/docsets/14", sink=Sink())
    assert len(stub.seen) == 25
    assert archives.names("14") == []


@pytest.mark.parametrize("total", [10**400, 10**6 + 1, 2**63])
def test_an_absurd_member_count_is_a_clean_limit_error(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path, total: int
) -> None:
    stub.add_docset("15", sample_docs(1))
    stub.listing_hook = lambda body: {**body, "total": None, "docset": {"member_count": total}}
    packager = _packager(client, archives, work, limits=Limits(max_members=10**6))
    sink = Sink()
    with pytest.raises(LimitError, match="TDM_MAX_MEMBERS") as info:
        packager.package(docset_id="15", docset_url=f"{stub.base}/api/docsets/15", sink=sink)
    assert len(str(info.value)) < 400  # a 401-digit number is described, not printed
    assert sink.estimates == []
    assert stub.text_requests() == 0


def test_more_members_than_the_limit_fail_even_when_no_count_is_announced(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path
) -> None:
    stub.add_docset("16", sample_docs(5))
    stub.listing_hook = lambda body: {key: value for key, value in body.items() if key != "total"}
    packager = _packager(client, archives, work, limits=Limits(max_members=4))
    with pytest.raises(LimitError, match="more than 4 members"):
        packager.package(docset_id="16", docset_url=f"{stub.base}/api/docsets/16", sink=Sink())
    assert stub.text_requests() == 0


def test_a_listing_that_repeats_members_gives_a_valid_bag_with_each_once(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path
) -> None:
    docs = sample_docs(2)
    stub.add_docset("17", docs)
    stub.docsets["17"] = ["1", "1", "0", "1"]  # spread over two pages

    def as_number(body: dict[str, Any]) -> dict[str, Any]:
        members = [dict(m) for m in body["members"]]
        if members:
            members[-1]["id"] = int(members[-1]["id"])  # 1 and "1" are one document
        return {**body, "members": members}

    stub.listing_hook = as_number
    stored = _packager(client, archives, work).package(
        docset_id="17", docset_url=f"{stub.base}/api/docsets/17", sink=Sink()
    )
    path = archives.directory / stored.name
    assert validate_bag(str(path))["payload"] == [
        "data/0/meta.json",
        "data/0/text.txt",
        "data/1/meta.json",
        "data/1/text.txt",
    ]
    assert bagit_validate(path) == 4


def test_interrupt_cuts_a_trickled_text_short_and_stores_nothing(
    stub: StubApi, client: ApiClient, archives: LocalStorage, work: Path
) -> None:
    stub.add_docset("18", [StubDoc("slow", {"title": "slow"}, text=b"x" * 100, trickle_seconds=20.0)])
    packager = _packager(client, archives, work)
    outcome: list[BaseException] = []

    def job() -> None:
        try:
            packager.package(docset_id="18", docset_url=f"{stub.base}/api/docsets/18", sink=Sink())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=job)
    thread.start()
    deadline = time.monotonic() + 30
    while stub.text_requests() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stub.text_requests() == 1, "the text was never asked for"
    started = time.monotonic()
    packager.interrupt()
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - started < 3.0
    assert len(outcome) == 1 and isinstance(outcome[0], JobInterrupted)
    assert archives.names("18") == []
    assert os.listdir(work) == []
    with pytest.raises(JobInterrupted):  # a stopping packager takes no new job
        packager.package(docset_id="18", docset_url=f"{stub.base}/api/docsets/18", sink=Sink())


@pytest.mark.parametrize(
    "bad",
    [
        {"max_pages": 0},
        {"max_members": 0},
        {"max_docset_bytes": -1},
        {"deadline_seconds": 0},
        {"deadline_seconds": float("inf")},
        {"deadline_seconds": float("nan")},
    ],
)
def test_limits_refuse_values_that_would_disable_them(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Limits(**bad)
