"""Tests for examples.packager.app: configuration, and the worker wiring end to end over the in-memory broker."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from examples.packager.app import PackagerConfig, build_packager, build_storage, main, parse_config, run
from examples.packager.s3_storage import S3Storage
from examples.packager.storage import LocalStorage
from tdm_messaging.errors import ConfigurationError
from tdm_messaging.server import PackagingClient
from tdm_messaging.status import DocsetStatus, State
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport
from tests.bagit_check import bagit_validate
from tests.examples.packager.stub_api import API_KEY, StubApi, StubDoc, validate_bag

ENV = {
    "TDM_BROKER_URL": "amqp://guest:s3cret-broker-pw@127.0.0.1:5672//",
    "TDM_API_BASE": "http://127.0.0.1:8080",
    "TDM_PACKAGER_API_KEY": API_KEY,
}

# --- configuration --------------------------------------------------------------------------


def test_config_from_the_environment() -> None:
    config = parse_config([], {**ENV, "TDM_STORAGE": "s3://bucket/pre/fix", "TDM_URL_TTL": "600"})
    assert config.broker_url == ENV["TDM_BROKER_URL"]
    assert config.api_key == API_KEY
    assert config.storage == "s3://bucket/pre/fix"
    assert config.url_ttl == 600
    assert API_KEY not in repr(config)


def test_flags_win_over_the_environment() -> None:
    config = parse_config(["--api-base", "http://10.0.0.1:9000", "--max-attempts", "5"], ENV)
    assert config.api_base == "http://10.0.0.1:9000"
    assert config.max_attempts == 5
    assert config.storage == "local:archives"


def test_fetch_concurrency_from_the_environment_or_a_flag(tmp_path: Path) -> None:
    assert parse_config([], ENV).fetch_concurrency == 8
    config = parse_config([], {**ENV, "TDM_FETCH_CONCURRENCY": "3", "TDM_STORAGE": f"local:{tmp_path}"})
    packager = build_packager(config)
    try:
        assert packager.fetch_concurrency == 3
    finally:
        packager.api.close()
    assert parse_config(["--fetch-concurrency", "12"], ENV).fetch_concurrency == 12


def test_missing_settings_are_named() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_config([], {"TDM_API_BASE": "http://x"})
    assert "TDM_BROKER_URL" in str(info.value) and "TDM_PACKAGER_API_KEY" in str(info.value)
    assert "TDM_API_BASE" not in str(info.value)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--url-ttl", "0"], "url-ttl"),
        (["--url-ttl", "999999999"], "url-ttl"),
        (["--url-ttl", "ten"], "whole number"),
        (["--fetch-concurrency", "0"], "fetch-concurrency"),
        (["--fetch-concurrency", "65"], "fetch-concurrency"),
        (["--log-level", "LOUD"], "^--log-level must be one of DEBUG, INFO, WARNING, ERROR, got 'LOUD'$"),
        (["--bogus"], "--help"),
    ],
)
def test_bad_values_are_configuration_errors(argv: list[str], needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        parse_config(argv, ENV)


def test_storage_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = build_storage(parse_config([], {**ENV, "TDM_STORAGE": f"local:{tmp_path}"}))
    assert isinstance(local, LocalStorage)
    assert local.public_base_url == "http://127.0.0.1:8080/archives"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    s3 = build_storage(parse_config(["--url-ttl", "120"], {**ENV, "TDM_STORAGE": "s3://tdm-bucket/a/b/"}))
    assert isinstance(s3, S3Storage)
    assert (s3.bucket, s3.prefix, s3.url_ttl) == ("tdm-bucket", "a/b/", 120)
    for bad in ["local:", "s3://", "ftp://x", "/plain/path"]:
        with pytest.raises(ConfigurationError):
            build_storage(parse_config([], {**ENV, "TDM_STORAGE": bad}))


def test_main_reports_bad_configuration_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], {"TDM_PACKAGER_API_KEY": API_KEY}) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: missing setting(s)")
    assert "Traceback" not in err and API_KEY not in err


# --- the worker, wired ----------------------------------------------------------------------


@dataclass
class Running:
    client: PackagingClient
    stub: StubApi
    archives: LocalStorage
    broker: InMemoryBroker | None = None
    stop: threading.Event | None = None
    thread: threading.Thread | None = None

    def wait(self, docset_id: str, states: set[State], *, timeout: float = 60.0) -> DocsetStatus:
        """Poll as the server would until the status is one of ``states`` (a deadline, not a timing assertion)."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.client.status(docset_id)
            if status.state in states or time.monotonic() > deadline:
                return status
            time.sleep(0.02)


@contextmanager
def packager_thread(
    stub: StubApi, tmp_path: Path, broker: InMemoryBroker | None = None, **overrides: Any
) -> Iterator[Running]:
    """``run()`` in a thread over an in-memory broker, with ``overrides`` of the test configuration."""
    broker = broker if broker is not None else InMemoryBroker()
    server_side = InMemoryTransport(broker)
    worker_side = InMemoryTransport(broker)
    archives = LocalStorage(tmp_path / "archives", f"{stub.base}/archives")
    settings: dict[str, Any] = {
        "broker_url": ENV["TDM_BROKER_URL"],  # not opened (a transport is given); its password must not be logged
        "api_base": stub.base,
        "api_key": API_KEY,
        "work_dir": str(tmp_path),
        "max_attempts": 2,
        "http_backoff_seconds": 0.01,
        "retry_backoff_seconds": 0.01,
        **overrides,
    }
    stop = threading.Event()
    thread = threading.Thread(
        target=run, args=(PackagerConfig(**settings), stop), kwargs={"transport": worker_side, "storage": archives}
    )
    thread.start()
    try:
        yield Running(PackagingClient(server_side), stub, archives, broker, stop, thread)
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the worker did not stop when asked"
        server_side.close()
        worker_side.close()


@pytest.fixture
def running(stub: StubApi, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[Running]:
    caplog.set_level(logging.DEBUG)
    with packager_thread(stub, tmp_path) as started:
        yield started
    logged = "\n".join(r.getMessage() for when in ("setup", "call", "teardown") for r in caplog.get_records(when))
    assert "packager up: broker amqp://guest:***@127.0.0.1" in logged
    assert API_KEY not in logged
    assert "s3cret-broker-pw" not in logged


def _docs(n: int) -> list[StubDoc]:
    return [StubDoc(str(i), {"title": f"Thesis {i}"}, size=20_000 + i) for i in range(n)]


def test_a_request_is_packaged_and_reported_complete(running: Running) -> None:
    running.stub.add_docset("21", _docs(4))
    running.client.request_package("21", f"{running.stub.base}/api/docsets/21?fmt=meta,txt")
    status = running.wait("21", {State.COMPLETE, State.FAILED})
    assert status.state is State.COMPLETE, status
    assert status.result is not None
    name = status.result.archive_url.rsplit("/", 1)[1]
    path = running.archives.directory / name
    assert status.result.size_bytes == path.stat().st_size
    assert status.result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert len(validate_bag(str(path))["payload"]) == 8
    assert bagit_validate(path) == 8


def test_a_repeated_request_reuses_the_package(running: Running) -> None:
    running.stub.add_docset("22", _docs(3))
    url = f"{running.stub.base}/api/docsets/22"
    running.client.request_package("22", url)
    first = running.wait("22", {State.COMPLETE, State.FAILED})
    texts = running.stub.text_requests()
    second_request = running.client.request_package("22", url).request
    second = running.wait("22", {State.COMPLETE, State.FAILED})
    assert second.request_id == second_request.request_id
    assert first.result is not None and second.result is not None
    assert second.result.archive_url == first.result.archive_url
    assert running.stub.text_requests() == texts


def test_an_unsafe_request_fails_for_good(running: Running) -> None:
    running.client.request_package("23", "http://169.254.169.254/api/docsets/23")
    status = running.wait("23", {State.COMPLETE, State.FAILED})
    assert status.state is State.FAILED and status.failure is not None
    assert not status.failure.retryable
    assert "refused URL" in status.failure.reason
    assert running.stub.seen == []


def test_a_delete_request_removes_the_package(running: Running) -> None:
    running.stub.add_docset("24", _docs(2))
    running.client.request_package("24", f"{running.stub.base}/api/docsets/24")
    done = running.wait("24", {State.COMPLETE, State.FAILED})
    assert done.result is not None
    running.client.request_delete("24", archive_url=done.result.archive_url)
    status = running.wait("24", {State.DELETED})
    assert status.state is State.DELETED
    assert running.archives.names("24") == []


# --- the process ----------------------------------------------------------------------------


@pytest.mark.slow
def test_the_process_packages_over_sqlite_and_stops_on_sigterm(stub: StubApi, tmp_path: Path) -> None:
    """``python -m examples.packager`` on the embedded default (the native ``sqlite://`` file), stopped by SIGTERM."""
    import os
    import signal
    import subprocess
    import sys

    from tdm_messaging.transport import open_transport

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
    stub.add_docset("31", _docs(3))
    transport = open_transport(broker_url)
    process = subprocess.Popen(
        [sys.executable, "-m", "examples.packager"],
        env=env,
        cwd=Path(__file__).resolve().parents[3],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        running = Running(PackagingClient(transport), stub, LocalStorage(tmp_path / "archives", stub.base))
        running.client.request_package("31", f"{stub.base}/api/docsets/31?fmt=meta,txt")
        status = running.wait("31", {State.COMPLETE, State.FAILED}, timeout=120)
        assert status.state is State.COMPLETE, status
        assert status.result is not None
        assert status.result.archive_url.startswith(f"{stub.base}/archives/docset-31--")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        transport.close()
    assert process.returncode == 0, stderr
    assert "stopping; a job under way goes back to the queue" in stderr
    assert "Traceback" not in stderr
    assert API_KEY not in stderr


def test_transient_failures_are_retried_then_reported(running: Running) -> None:
    running.stub.add_docset("25", _docs(1))
    running.stub.fail_next = 10  # > retries of the HTTP client, on both attempts (max_attempts=2)
    running.client.request_package("25", f"{running.stub.base}/api/docsets/25")
    status = running.wait("25", {State.COMPLETE, State.FAILED})
    assert status.state is State.FAILED and status.failure is not None
    assert status.failure.retryable
    assert "503" in status.failure.reason
    # Two attempts, each trying the listing 1 + 3 times.
    assert len(running.stub.seen) == 8


def test_a_transient_failure_heals_on_the_next_attempt(running: Running) -> None:
    running.stub.add_docset("26", _docs(1))
    running.stub.fail_next = 4  # the whole first attempt (1 + 3 retries), then all is well
    running.client.request_package("26", f"{running.stub.base}/api/docsets/26")
    status = running.wait("26", {State.COMPLETE, State.FAILED})
    assert status.state is State.COMPLETE, status
