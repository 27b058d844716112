"""Operating the real processes: probes, metrics, JSON logs with ids as fields, and a traceparent from POST /dump
carried across brokers (STOMP frame headers on RabbitMQ and ActiveMQ, AMQP headers, SQLite) to the Complete."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import requests

from examples.harness import read_log
from tdm_messaging import open_transport, reply_queue
from tdm_messaging.tracing import trace_of
from tests.e2e.conftest import EMBEDDED, MakeStack

pytestmark = [pytest.mark.timeout(120)]

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _json_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in read_log(path).splitlines() if line.strip()]


@pytest.mark.broker
@pytest.mark.parametrize("broker", [EMBEDDED, "rabbitmq-stomp", "activemq-stomp", "rabbitmq-amqp"])
def test_probes_metrics_json_logs_and_one_trace_through_the_real_processes(
    make_stack: MakeStack, broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TDM_LOG_FORMAT", "json")  # both processes inherit it
    ops_port = _free_port()
    stack = make_stack(broker, packager_env={"TDM_METRICS_PORT": str(ops_port)})
    ops = f"http://127.0.0.1:{ops_port}"
    miner = stack.miner()
    assert requests.get(f"{stack.base_url}/healthz", timeout=10).status_code == 200
    ready = requests.get(f"{stack.base_url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert requests.get(f"{ops}/healthz", timeout=10).json()["live"] is True

    docset_id = miner.create_docset("observed", year_from=1900)["id"]
    posted = miner.request("POST", f"/api/docsets/{docset_id}/dump", headers={"traceparent": TRACEPARENT})
    assert posted.status_code == 202, posted.text
    deadline = time.monotonic() + 60
    while (answer := miner.request("GET", f"/api/docsets/{docset_id}/dump")).status_code != 303:
        assert answer.status_code == 202 and time.monotonic() < deadline, answer.text
        time.sleep(0.2)

    # The Complete, kept in the reply queue by the polls, still carries the trace the caller started.
    messaging_id = f"{stack.config.queue_prefix}{docset_id}"
    with (
        open_transport(stack.config.effective_broker_url) as transport,
        transport.read(reply_queue(messaging_id)) as batch,
    ):
        complete = [e for e in batch.envelopes if e.header("tdm-type") == "complete"]
        assert complete and all(e.header("tdm-type") != "complete" or trace_of(e.headers) for e in batch.envelopes)
        batch.release()
    trace = trace_of(complete[0].headers)
    assert trace is not None and trace.trace_id == TRACE_ID

    server_metrics = requests.get(f"{stack.base_url}/metrics", timeout=10).text
    assert 'tdm_client_polls_total{state="complete"}' in server_metrics
    assert 'tdm_client_requests_total{kind="package"} 1.0' in server_metrics
    packager_metrics = requests.get(f"{ops}/metrics", timeout=10).text
    assert 'tdm_worker_jobs_completed_total{kind="package"} 1.0' in packager_metrics

    packager_log = _json_lines(stack.packagers[0].log_path)  # every line one JSON object
    job_lines = [e for e in packager_log if e.get("docset_id") == messaging_id and "attempt" in e]
    assert job_lines and {e["attempt"] for e in job_lines} == {1}
    server_log = _json_lines(stack.server.log_path)
    assert any(e.get("docset_id") == messaging_id and e.get("request_id") for e in server_log)
