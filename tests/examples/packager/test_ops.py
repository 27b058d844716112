"""The packager's operator surface: /healthz, /readyz, /metrics on TDM_METRICS_PORT, and TDM_LOG_FORMAT=json."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from examples.packager.app import PackagerConfig, parse_config, run
from examples.packager.storage import LocalStorage
from tdm_messaging.errors import ConfigurationError
from tdm_messaging.server import PackagingClient
from tdm_messaging.status import State
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport, wait_until
from tdm_messaging.transport import open_transport
from tests.examples.packager.stub_api import API_KEY, StubApi, StubDoc

ENV = {"TDM_BROKER_URL": "sqlite:///x.db", "TDM_API_BASE": "http://127.0.0.1:8080", "TDM_PACKAGER_API_KEY": API_KEY}
ROOT = Path(__file__).resolve().parents[3]


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_the_options_default_off_and_are_read_from_the_environment() -> None:
    default = parse_config([], ENV)
    assert (default.metrics_port, default.log_format, default.max_job_seconds) == (None, "text", None)
    config = parse_config(
        [], {**ENV, "TDM_METRICS_PORT": "9109", "TDM_METRICS_HOST": "0.0.0.0", "TDM_LOG_FORMAT": "JSON"}
    )
    assert (config.metrics_port, config.metrics_host, config.log_format) == (9109, "0.0.0.0", "json")
    assert parse_config(["--max-job-seconds", "600"], ENV).max_job_seconds == 600


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"TDM_METRICS_PORT": "70000"}, "^TDM_METRICS_PORT must be a whole number from 0 to 65535, got '70000'$"),
        ({"TDM_METRICS_PORT": "http"}, "^TDM_METRICS_PORT must be a whole number from 0 to 65535, got 'http'$"),
        ({"TDM_LOG_FORMAT": "xml"}, "^TDM_LOG_FORMAT must be one of text, json, got 'xml'$"),
        ({"TDM_MAX_JOB_SECONDS": "0"}, "^TDM_MAX_JOB_SECONDS must be a whole number from 1 to "),
    ],
)
def test_bad_values_name_the_option(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        parse_config([], {**ENV, **env})


def test_a_taken_port_is_a_configuration_error_naming_it(stub: StubApi, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = PackagerConfig(
            broker_url="inmemory://x", api_base=stub.base, api_key=API_KEY, work_dir=str(tmp_path), metrics_port=port
        )
        with pytest.raises(ConfigurationError, match=f"cannot listen on 127.0.0.1:{port}.*TDM_METRICS_PORT"):
            storage = LocalStorage(tmp_path / "archives", f"{stub.base}/archives")
            run(config, threading.Event(), transport=InMemoryTransport(InMemoryBroker()), storage=storage)


def test_health_readiness_and_metrics_while_the_worker_runs(
    stub: StubApi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    broker = InMemoryBroker()
    config = PackagerConfig(
        broker_url="inmemory://x", api_base=stub.base, api_key=API_KEY, work_dir=str(tmp_path), metrics_port=0
    )
    stop = threading.Event()
    archives = LocalStorage(tmp_path / "archives", f"{stub.base}/archives")
    kwargs = {"transport": InMemoryTransport(broker), "storage": archives}
    thread = threading.Thread(target=run, args=(config, stop), kwargs=kwargs, daemon=True)
    thread.start()
    try:
        found: list[str] = []

        def listening() -> bool:
            found[:] = re.findall(r"ops listener on (http://[\d.]+:\d+)", caplog.text)
            return bool(found)

        wait_until(listening, what="the ops listener's log line")
        base = found[0]
        wait_until(lambda: get(base + "/readyz")[0] == 200, what="readiness")
        status, content_type, body = get(base + "/healthz")
        assert status == 200 and content_type == "application/json"
        assert json.loads(body)["state"] == "consuming" and json.loads(body)["live"] is True
        stub.add_docset("41", [StubDoc("1", {"title": "One"}, size=100)])
        client = PackagingClient(InMemoryTransport(broker))
        client.request_package("41", f"{stub.base}/api/docsets/41?fmt=meta,txt")
        wait_until(lambda: client.status("41").state is State.COMPLETE, timeout=60, what="the Complete")
        status, content_type, body = get(base + "/metrics")
        assert status == 200 and content_type.startswith("text/plain")
        assert b'tdm_worker_jobs_completed_total{kind="package"} 1.0' in body
        assert b'tdm_worker_state{state="consuming"} 1.0' in body
        assert json.loads(get(base + "/healthz")[2])["jobs_ended"] == 1
        assert get(base + "/nothing")[0] == 404
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    with pytest.raises(OSError):  # the listener is closed with the worker
        urllib.request.urlopen(base + "/healthz", timeout=2)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_process_logs_json_with_ids_as_fields_and_answers_probes(stub: StubApi, tmp_path: Path) -> None:
    broker_url = f"sqlite:///{tmp_path}/broker.db"
    port = _free_port()
    env = {
        **os.environ,
        "TDM_BROKER_URL": broker_url,
        "TDM_API_BASE": stub.base,
        "TDM_PACKAGER_API_KEY": API_KEY,
        "TDM_STORAGE": f"local:{tmp_path}/archives",
        "TDM_WORK_DIR": str(tmp_path),
        "TDM_LOG_FORMAT": "json",
        "TDM_METRICS_PORT": str(port),
    }
    stub.add_docset("51", [StubDoc("1", {"title": "One"}, size=100)])
    transport = open_transport(broker_url)
    process = subprocess.Popen(
        [sys.executable, "-m", "examples.packager"], env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while get_or_none(f"http://127.0.0.1:{port}/readyz") != 200:
            assert process.poll() is None and time.monotonic() < deadline, "the packager never became ready"
            time.sleep(0.05)
        client = PackagingClient(transport)
        request = client.request_package("51", f"{stub.base}/api/docsets/51?fmt=meta,txt").request
        wait_until(lambda: client.status("51").state is State.COMPLETE, timeout=60, what="the Complete")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        transport.close()
    assert process.returncode == 0, stderr
    entries = [json.loads(line) for line in stderr.splitlines()]  # every line is one JSON object
    jobs = [e for e in entries if e["logger"] == "tdm_messaging.worker" and e.get("docset_id") == "51"]
    assert jobs, entries
    assert all(e["request_id"] == request.request_id and e["attempt"] == 1 for e in jobs)
    assert any("complete" in e["message"] for e in jobs)


def get_or_none(url: str) -> int | None:
    try:
        return get(url)[0]
    except OSError:
        return None


def test_without_the_optional_libraries_there_are_no_metrics_and_no_tracer(monkeypatch: pytest.MonkeyPatch) -> None:
    from examples.packager.ops_http import prometheus_or_none, tracer_or_none

    assert prometheus_or_none() is not None and tracer_or_none() is not None
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.setitem(sys.modules, "opentelemetry.trace", None)
    assert prometheus_or_none() is None and tracer_or_none() is None
