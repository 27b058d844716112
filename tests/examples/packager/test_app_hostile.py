"""Issue 10 through the wired packager: refused deletes, limits as clean Failed replies, stopping mid-fetch."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from examples.packager.app import main, parse_config
from examples.packager.limits import Limits
from examples.packager.secret import SECRET_NAME
from examples.packager.storage import LocalStorage
from tdm_messaging.destinations import DEAD_LETTER, DELETE_REQUESTS, PACKAGE_REQUESTS
from tdm_messaging.errors import ConfigurationError
from tdm_messaging.headers import DEAD_LETTER_REASON
from tdm_messaging.server import PackagingClient
from tdm_messaging.status import State
from tdm_messaging.testing import InMemoryBroker
from tests.examples.packager.stub_api import API_KEY, StubApi, StubDoc
from tests.examples.packager.test_app import ENV, Running, packager_thread

ROOT = Path(__file__).resolve().parents[3]


def _docs(n: int) -> list[StubDoc]:
    return [StubDoc(str(i), {"title": f"Thesis {i}"}, size=2_000 + i) for i in range(n)]


def _until(predicate: object, what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


# --- configuration --------------------------------------------------------------------------


def test_limits_and_the_secret_come_from_the_environment() -> None:
    config = parse_config(
        [],
        {
            **ENV,
            "TDM_MAX_DOCSET_BYTES": "1000",
            "TDM_MAX_MEMBERS": "7",
            "TDM_MAX_PAGES": "3",
            "TDM_JOB_DEADLINE": "60",
            "TDM_ARCHIVE_SECRET": "s" * 40,
        },
    )
    assert config.limits == Limits(max_docset_bytes=1000, max_members=7, max_pages=3, deadline_seconds=60)
    assert config.archive_secret == "s" * 40
    assert "s" * 40 not in repr(config)
    assert parse_config([], ENV).limits == Limits()


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--max-pages", "0"),
        ("--max-members", "²"),
        ("--job-deadline", "1e400"),
        ("--max-docset-bytes", "9" * 5000),
        ("--max-pages", "-1"),
    ],
)
def test_bad_limits_are_configuration_errors(flag: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=flag[2:]):
        parse_config([flag, value], ENV)


def test_a_weak_archive_secret_stops_the_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    environ = {
        **ENV,
        "TDM_STORAGE": f"local:{tmp_path}/archives",
        "TDM_WORK_DIR": str(tmp_path),
        "TDM_ARCHIVE_SECRET": "too-short",
    }
    assert main([], environ) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the archive secret in TDM_ARCHIVE_SECRET has 9 characters")
    assert "too-short" not in err and "Traceback" not in err


# --- through the worker ---------------------------------------------------------------------


def test_a_delete_for_an_archive_that_is_not_ours_is_refused_and_deletes_nothing(stub: StubApi, tmp_path: Path) -> None:
    stub.add_docset("41", _docs(1))
    with packager_thread(stub, tmp_path) as running:
        running.client.request_package("41", f"{stub.base}/api/docsets/41")
        done = running.wait("41", {State.COMPLETE, State.FAILED})
        assert done.result is not None
        name = done.result.archive_url.rsplit("/", 1)[1]
        running.client.request_delete("41", archive_url=f"http://other.example/archives/{name}")
        assert running.broker is not None
        broker = running.broker
        _until(lambda: len(broker.messages(DEAD_LETTER)) == 1, "the refused delete in the dead letters")
        reason = broker.messages(DEAD_LETTER)[0].headers[DEAD_LETTER_REASON]
        assert "not a URL of this packager's storage" in reason and "nothing was deleted" in reason
        assert broker.messages(DELETE_REQUESTS) == []
        assert running.archives.names("41") == [name]
        assert running.client.status("41").state is State.COMPLETE


def test_an_absurd_member_count_is_a_clean_failed_not_a_dead_letter(stub: StubApi, tmp_path: Path) -> None:
    stub.add_docset("42", _docs(1))
    stub.listing_hook = lambda body: {**body, "total": None, "docset": {"member_count": 10**400}}
    with packager_thread(stub, tmp_path) as running:
        running.client.request_package("42", f"{stub.base}/api/docsets/42")
        status = running.wait("42", {State.COMPLETE, State.FAILED})
        assert running.broker is not None and running.broker.messages(DEAD_LETTER) == []
    assert status.state is State.FAILED and status.failure is not None
    assert not status.failure.retryable
    assert "TDM_MAX_MEMBERS" in status.failure.reason and "OverflowError" not in status.failure.reason


def test_an_endless_listing_fails_naming_the_page_cap(stub: StubApi, tmp_path: Path) -> None:
    stub.add_docset("43", _docs(1))
    pages = itertools.count(2)
    stub.listing_hook = lambda body: {**body, "next": f"/api/docsets/43?fmt=meta,txt&page={next(pages)}"}
    with packager_thread(stub, tmp_path, max_pages=30) as running:
        started = time.monotonic()
        running.client.request_package("43", f"{stub.base}/api/docsets/43")
        status = running.wait("43", {State.COMPLETE, State.FAILED})
        assert status.state is State.FAILED and status.failure is not None
        assert "more than 30 pages" in status.failure.reason and "TDM_MAX_PAGES" in status.failure.reason
        assert time.monotonic() - started < 20
        assert running.broker is not None and running.broker.messages(DEAD_LETTER) == []


def test_a_docset_over_the_byte_limit_and_a_job_past_its_deadline_are_clean_failed(
    stub: StubApi, tmp_path: Path
) -> None:
    stub.add_docset("44", [StubDoc("big", {"title": "big"}, size=50_000)])
    stub.add_docset("45", [StubDoc("slow", {"title": "slow"}, text=b"x" * 50, trickle_seconds=20.0)])
    with packager_thread(stub, tmp_path, max_docset_bytes=10_000, job_deadline=1) as running:
        running.client.request_package("44", f"{stub.base}/api/docsets/44")
        running.client.request_package("45", f"{stub.base}/api/docsets/45")
        big = running.wait("44", {State.COMPLETE, State.FAILED})
        slow = running.wait("45", {State.COMPLETE, State.FAILED})
    assert big.failure is not None and "TDM_MAX_DOCSET_BYTES" in big.failure.reason
    assert slow.failure is not None and "TDM_JOB_DEADLINE" in slow.failure.reason


def test_stopping_cuts_a_trickled_fetch_short_and_gives_the_request_back(stub: StubApi, tmp_path: Path) -> None:
    slow = StubDoc("slow", {"title": "slow"}, text=b"x" * 50, trickle_seconds=20.0)
    stub.add_docset("46", [slow])
    broker = InMemoryBroker()
    with packager_thread(stub, tmp_path, broker) as running:
        running.client.request_package("46", f"{stub.base}/api/docsets/46")
        _until(lambda: stub.text_requests() == 1, "the packager reading the slow text")
        assert running.stop is not None and running.thread is not None
        started = time.monotonic()
        running.stop.set()
        running.thread.join(10)
        assert not running.thread.is_alive()
        assert time.monotonic() - started < 5.0
        assert len(broker.messages(PACKAGE_REQUESTS)) == 1  # given back, not acknowledged, not dead-lettered
        assert broker.messages(DEAD_LETTER) == []
    slow.trickle_seconds = 0.0
    with packager_thread(stub, tmp_path, broker) as second:  # another packager does the job
        status = second.wait("46", {State.COMPLETE, State.FAILED})
        assert status.state is State.COMPLETE, status
    assert second.archives.names("46") != []


def test_stopping_ends_an_endless_listing_and_gives_the_request_back(stub: StubApi, tmp_path: Path) -> None:
    stub.add_docset("48", _docs(1))
    pages = itertools.count(2)
    stub.listing_hook = lambda body: {**body, "next": f"/api/docsets/48?fmt=meta,txt&page={next(pages)}"}
    broker = InMemoryBroker()
    with packager_thread(stub, tmp_path, broker, max_pages=10_000_000) as running:
        running.client.request_package("48", f"{stub.base}/api/docsets/48")
        _until(lambda: len(stub.seen) > 20, "the packager walking the endless listing")
        assert running.stop is not None and running.thread is not None
        started = time.monotonic()
        running.stop.set()
        running.thread.join(10)
        assert not running.thread.is_alive()
        assert time.monotonic() - started < 5.0
        assert len(broker.messages(PACKAGE_REQUESTS)) == 1
        assert broker.messages(DEAD_LETTER) == []


@pytest.mark.slow
def test_sigterm_stops_the_process_within_moments_and_another_packager_completes_the_job(
    stub: StubApi, tmp_path: Path
) -> None:
    """A text trickled at 1 byte per 20 s holds no packager past SIGTERM, and the request is not lost."""
    from tdm_messaging.transport import open_transport

    slow = StubDoc("slow", {"title": "slow"}, text=b"x" * 50, trickle_seconds=20.0)
    stub.add_docset("47", [*_docs(2), slow])
    broker_url = f"sqlite:///{tmp_path}/broker.db"
    env = {
        **os.environ,
        "TDM_BROKER_URL": broker_url,
        "TDM_API_BASE": stub.base,
        "TDM_PACKAGER_API_KEY": API_KEY,
        "TDM_STORAGE": f"local:{tmp_path}/archives",
        "TDM_WORK_DIR": str(tmp_path),
        "TDM_LOG_LEVEL": "DEBUG",
    }
    transport = open_transport(broker_url)
    client = PackagingClient(transport)

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "examples.packager"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    first = start()
    second = None
    try:
        client.request_package("47", f"{stub.base}/api/docsets/47?fmt=meta,txt")
        _until(lambda: stub.text_requests() == 3, "the packager reading the slow text", seconds=120)
        started = time.monotonic()
        first.send_signal(signal.SIGTERM)
        _, stderr = first.communicate(timeout=30)
        stopped_after = time.monotonic() - started
        assert first.returncode == 0, stderr
        assert stopped_after < 5.0, stderr
        assert "goes back to the queue unacknowledged" in stderr
        assert "Traceback" not in stderr
        slow.trickle_seconds = 0.0
        second = start()
        running = Running(client, stub, LocalStorage(tmp_path / "archives", stub.base))
        status = running.wait("47", {State.COMPLETE, State.FAILED}, timeout=120)
        assert status.state is State.COMPLETE, status
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.communicate()
        transport.close()
    assert (tmp_path / "archives" / SECRET_NAME).is_file()
