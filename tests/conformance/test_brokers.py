"""The kit through its command line on real brokers: the reference packager and server as processes, a server
on PackagingClient made to act by shell triggers, and broken peers that must fail named cases."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from examples.harness import StackConfig, start_stack, unique_namespace
from examples.harness.namespaces import with_namespace
from examples.harness.processes import REPO_ROOT, start_packager
from tdm_messaging.cli import main
from tdm_messaging.transport.registry import open_transport
from tests.conformance.peers import BROKEN_PACKAGERS, broken_packager
from tests.conftest import broker_url, in_ci

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]


@pytest.fixture(params=["rabbitmq-stomp", "activemq-stomp", "rabbitmq-amqp"])
def broker(request: pytest.FixtureRequest) -> str:
    """The broker's URL with a namespace of this test's own: no other run's queue is ever touched."""
    return with_namespace(broker_url(request.param), unique_namespace("conformance"))


def run_kit(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[int, str], dict[str, Any]]:
    """Run ``tdm-messaging conformance ... --json``; return the exit status, each case's outcome, the report."""
    code = main(["conformance", *args, "--json"])
    captured = capsys.readouterr()
    assert captured.out, captured.err
    report = json.loads(captured.out)
    return code, {c["number"]: c["outcome"] for c in report["cases"]}, report


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_reference_packager_process_passes(
    broker: str, tmp_path: Path, archive_dir: Path, archive_base: str, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    packager = start_packager(
        log_dir=tmp_path / "logs",
        broker_url=broker,
        api_base=f"http://127.0.0.1:{port}",
        api_key="conformance",
        storage=f"local:{archive_dir}",
        work_dir=tmp_path / "work",
        extra_env={"TDM_PUBLIC_BASE_URL": archive_base},
    )
    try:
        code, outcomes, report = run_kit(
            capsys,
            "--role",
            "packager",
            "--broker",
            broker,
            "--api-listen",
            f"127.0.0.1:{port}",
            "--fetch-archives",
            "--timeout",
            "30",
        )
    finally:
        packager.stop()
    assert set(outcomes.values()) == {"pass"}, json.dumps(report, indent=2) + packager.log_tail(40)
    assert code == 0


def test_a_broken_packager_fails(broker: str, capsys: pytest.CaptureFixture[str]) -> None:
    with open_transport(broker) as transport, broken_packager(transport, "wrong-request-id"):
        code, outcomes, report = run_kit(
            capsys,
            "--role",
            "packager",
            "--broker",
            broker,
            "--api-listen",
            f"127.0.0.1:{free_port()}",
            "--timeout",
            "2",
        )
    failed = {n for n, o in outcomes.items() if o == "fail"}
    assert BROKEN_PACKAGERS["wrong-request-id"] <= failed, json.dumps(report, indent=2)
    assert code == 1


def server_triggers(broker: str, monkeypatch: pytest.MonkeyPatch, *, poll: bool = True) -> list[str]:
    """Shell triggers of a server built on PackagingClient: the ``tdm-messaging`` CLI, one process per action."""
    monkeypatch.setenv("TDM_BROKER_URL", broker)  # the triggers' broker, namespace included
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    python = shlex.quote(sys.executable)
    return [
        *(
            "--trigger-request",
            f"{python} -m tdm_messaging request http://server.invalid/api/docsets/{{docset}} >/dev/null",
        ),
        *("--trigger-poll", f"{python} -m tdm_messaging status {{docset}} >/dev/null" if poll else "true"),
        *("--trigger-delete", f"{python} -m tests.conformance.delete_trigger {{docset}}"),
    ]


def test_a_server_on_packaging_client_passes(
    broker: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    triggers = server_triggers(broker, monkeypatch)
    code, outcomes, report = run_kit(
        capsys, "--role", "server", "--broker", broker, "--docset", "7", "--timeout", "20", *triggers
    )
    assert set(outcomes.values()) == {"pass"}, json.dumps(report, indent=2)
    assert code == 0


def test_a_server_that_never_polls_fails(
    broker: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    triggers = server_triggers(broker, monkeypatch, poll=False)
    code, outcomes, report = run_kit(
        capsys, "--role", "server", "--broker", broker, "--docset", "7", "--timeout", "5", *triggers
    )
    assert outcomes[8] == "fail", json.dumps(report, indent=2)
    assert code == 1


def test_the_reference_server_passes_with_the_documented_curl_triggers(
    broker: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if shutil.which("curl") is None:
        why = "the documented triggers use curl, which is not installed (apt-get install curl)"
        if in_ci():
            pytest.fail(why)
        pytest.skip(why)
    config = StackConfig(work_dir=tmp_path, broker_url=broker, packagers=0, documents=3, min_kb=1, max_kb=2)
    with start_stack(config) as stack:
        docset = stack.miner().create_docset("conformance", year_from=1900)["id"]
        dump = f"-H 'X-API-Key: {stack.miner_key}' {stack.base_url}/api/docsets/{{docset}}/dump"
        code, outcomes, report = run_kit(
            capsys,
            *("--role", "server", "--broker", broker, "--docset", str(docset), "--timeout", "20"),
            *("--trigger-request", f"curl -fsS -o /dev/null -X POST {dump}"),
            *("--trigger-poll", f"curl -sS -o /dev/null {dump}"),
            *("--trigger-delete", f"curl -fsS -o /dev/null -X DELETE {dump}"),
        )
        assert set(outcomes.values()) == {"pass"}, json.dumps(report, indent=2) + stack.server.log_tail(30)
    assert code == 0
