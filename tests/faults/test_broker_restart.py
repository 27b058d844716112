"""Issue 5, item 2: the broker restarts (clean stop, or SIGKILL) mid-flow; both sides reconnect, nothing is lost."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tdm_messaging.errors import MessagingError
from tdm_messaging.server import PackagingClient
from tdm_messaging.status import State
from tdm_messaging.transport import open_transport
from tdm_messaging.worker import Job, PackageResult, PackagerWorker
from tests.faults.conftest import ROOT, PrivateActiveMQ, PrivateRabbit, _free_port
from tests.faults.helpers import drain, run_worker, wait_until
from tests.faults.reliability import Row, record

pytestmark = [pytest.mark.broker, pytest.mark.timeout(300)]

HEARTBEAT_S = 2
QUEUED_BEFORE_KILL = 5
"""Requests sent (confirmed) and waiting in the queue when the broker is SIGKILLed."""


class _Warnings(logging.Handler):
    """Counts the library's warnings (a lost connection, a reconnect) so quiet periods can be checked."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("tdm_messaging"):
            self.count += 1


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _status_or_none(client: PackagingClient, docset: str) -> State | None:
    """One poll; ``None`` while the broker is unreachable (the server would answer 503 then)."""
    try:
        return client.status(docset).state
    except MessagingError:
        return None


@dataclass(frozen=True)
class _Broker:
    """The private broker under test, as the scenario needs it: a URL, its script, its ports."""

    backend: str
    url: str
    run: Callable[..., str]
    ports: tuple[int, ...]
    rabbit: PrivateRabbit | None


def _broker(request: pytest.FixtureRequest, backend: str) -> _Broker:
    timeouts = {"connect_timeout": "3", "confirm_timeout": "5"}
    if backend == "activemq-stomp":
        amq: PrivateActiveMQ = request.getfixturevalue("private_activemq")
        url = amq.stomp_url(heartbeat_ms=str(HEARTBEAT_S * 1000), **timeouts)
        return _Broker(backend, url, amq.run, (amq.stomp_port, amq.openwire_port), None)
    rabbit: PrivateRabbit = request.getfixturevalue("private_rabbit")
    if backend == "rabbitmq-stomp":
        url = rabbit.stomp_url(heartbeat_ms=str(HEARTBEAT_S * 1000), **timeouts)
    else:
        url = rabbit.amqp_url(heartbeat=str(HEARTBEAT_S), **timeouts)
    return _Broker(backend, url, rabbit.run, (rabbit.amqp_port, rabbit.stomp_port), rabbit)


def _row_id(backend: str, how: str) -> str:
    if how == "kill9":
        return f"broker-kill9-{backend}"
    # The RabbitMQ rows keep the ids they were first measured under.
    return "broker-restart-activemq-stomp" if backend == "activemq-stomp" else f"broker-restart-{backend[9:]}"


@pytest.mark.parametrize("backend", ["rabbitmq-stomp", "rabbitmq-amqp", "activemq-stomp"])
@pytest.mark.parametrize("how", ["stop", "kill9"])
def test_broker_restart_mid_flow(backend: str, how: str, request: pytest.FixtureRequest) -> None:
    broker = _broker(request, backend)
    server_side = open_transport(broker.url)
    worker_side = open_transport(broker.url)
    client = PackagingClient(server_side)
    warnings = _Warnings()
    logging.getLogger("tdm_messaging").addHandler(warnings)
    release = threading.Event()
    started: dict[str, int] = {}
    lock = threading.Lock()

    def handler(job: Job) -> PackageResult:
        docset = job.request.docset_id
        with lock:
            started[docset] = started.get(docset, 0) + 1
        if docset.startswith("rs-a-"):
            release.wait(120)  # in flight (taken, not acknowledged) while the broker goes down
        return PackageResult(archive_url=f"https://archives.test/{docset}.zip", size_bytes=1)

    tag = uuid.uuid4().hex[:10]
    in_flight, during, after = (f"rs-{k}-{tag}" for k in "acd")
    queued = [f"rs-b{i}-{tag}" for i in range(QUEUED_BEFORE_KILL if how == "kill9" else 1)]
    connections = ""
    try:
        drain(server_side)
        with run_worker(PackagerWorker(worker_side, on_package=handler, retry_backoff_seconds=0)):
            client.request_package(in_flight, f"http://api.test/api/docsets/{in_flight}")
            wait_until(lambda: in_flight in started, timeout=30, what="the worker to take the first request")
            for docset in queued:  # confirmed (request_package sends with confirm=True); they wait behind it
                client.request_package(docset, f"http://api.test/api/docsets/{docset}")

            broker.run("down" if how == "stop" else "kill")
            assert not any(_answers(port) for port in broker.ports)
            outcome: list[str] = []
            send_started = time.monotonic()
            try:
                client.request_package(during, f"http://api.test/api/docsets/{during}")
                outcome.append("confirmed")
            except MessagingError as exc:
                outcome.append(f"raised {type(exc).__name__}")
            send_took = time.monotonic() - send_started
            release.set()  # the in-flight job ends while the broker is down: its reply and ack cannot go out
            broker.run("up")
            restarted_at = time.monotonic()

            client.request_package(after, f"http://api.test/api/docsets/{after}")
            acknowledged = [in_flight, *queued, after] + ([during] if outcome[0] == "confirmed" else [])
            for docset in acknowledged:
                wait_until(
                    lambda d=docset: _status_or_none(client, d) is State.COMPLETE,  # type: ignore[misc]
                    timeout=120,
                    every=0.5,
                    what=f"{docset} to complete after the restart",
                )
            resumed_after = time.monotonic() - restarted_at

            # Heart-beats flow: stay idle for several intervals; a connection without heart-beats
            # would be closed by the broker (or declared dead by the client) and logged.
            quiet_before = warnings.count
            time.sleep(4 * HEARTBEAT_S)
            if broker.rabbit is not None:
                # AMQP connections list their negotiated heart-beat; rabbitmqctl shows none for STOMP.
                connections = broker.rabbit.run("ctl", "list_connections", "-s", "protocol", "timeout")
            probe = f"rs-e-{tag}"
            client.request_package(probe, f"http://api.test/api/docsets/{probe}")
            wait_until(lambda: client.status(probe).state is State.COMPLETE, timeout=30, what="a job after idling")
            quiet_warnings = warnings.count - quiet_before
        states = {d: client.status(d).state for d in acknowledged}
    finally:
        release.set()
        with contextlib.suppress(Exception):  # a failure while it was down must not leave it down for the session
            broker.run("up")
        logging.getLogger("tdm_messaging").removeHandler(warnings)
        for transport in (worker_side, server_side):
            with contextlib.suppress(Exception):
                transport.close()

    lost = [d for d, s in states.items() if s is not State.COMPLETE]
    heartbeat_timeouts = sorted({line.split()[-1] for line in connections.splitlines() if "0,9,1" in line})
    assert not lost, states
    assert outcome and outcome[0].startswith(("raised", "confirmed"))
    # Its delivery was never acknowledged (the connection went first), so the broker gave it again.
    assert started[in_flight] >= 2, started
    assert all(started.get(d, 0) >= 1 for d in queued), started
    assert quiet_warnings == 0, "the connections were lost again while idle: heart-beats do not flow"
    if backend == "rabbitmq-amqp":
        assert heartbeat_timeouts == [str(HEARTBEAT_S)], connections
    duplicates = sum(n - 1 for n in started.values())
    if backend == "activemq-stomp":
        where = "activemq-stomp (private ActiveMQ 5.17, KahaDB)"
    else:
        where = f"{backend} (private node)"
    if how == "stop":
        down = "the broker is stopped (SIGTERM, a clean shutdown)"
        waiting = "one waits in the queue"
    else:
        down = "the broker is killed (SIGKILL: no shutdown, the store not closed)"
        waiting = f"{len(queued)} more were sent (each confirmed) and wait in the queue"
    record(
        Row(
            id=_row_id(backend, how),
            item="2 broker restart",
            done=f"{where}, heart-beat {HEARTBEAT_S} s: a worker holds one request (taken, not acked) and "
            f"{waiting}; {down}; a confirmed send is made while it is down; the in-flight job ends while it is "
            "down; the broker is started again; one more request",
            expected="both sides reconnect and resume without anyone acting; no acknowledged (confirmed) request "
            "lost; the in-flight one is delivered again; the send during the outage raises or is confirmed; "
            "heart-beats flow afterwards",
            happened=f"the send during the outage {outcome[0]} after {send_took:.1f} s; all {len(acknowledged)} "
            f"acknowledged requests COMPLETE {resumed_after:.1f} s after the broker was back (handler runs: "
            f"{sum(started.values())}, the in-flight request {started[in_flight]} times); after "
            f"{4 * HEARTBEAT_S} s idle no warning (a side missing heart-beats is closed by the broker or "
            "declared dead by the client, with a warning), "
            + (f"AMQP connections list heart-beat {heartbeat_timeouts} s, " if backend == "rabbitmq-amqp" else "")
            + "a further job completed",
            lost=len(lost),
            duplicates=duplicates,
            test=request.node.nodeid,
        )
    )


def _state(pid: int) -> str:
    """The process state letter from /proc (``T`` = stopped by a signal)."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    return stat.rsplit(")", 1)[1].split()[0]


@pytest.mark.parametrize("command", ["kill", "down", "freeze", "thaw"])
@pytest.mark.parametrize("script", ["faultactivemq.sh", "faultbroker.sh"])
def test_a_fault_script_never_signals_a_process_that_is_not_its_broker(
    script: str, command: str, tmp_path: Path
) -> None:
    """A pid file left by a crash may name a pid reused since: no command may signal it (kill, stop, freeze)."""
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        pid_file = tmp_path / ("activemq.pid" if script == "faultactivemq.sh" else "rabbit.pid")
        pid_file.write_text(f"{bystander.pid}\n", encoding="ascii")
        names = ("TDM_FAULT_AMQ_STOMP_PORT", "TDM_FAULT_AMQ_OPENWIRE_PORT", "TDM_FAULT_DIST_PORT")
        ports = {name: str(_free_port()) for name in names}
        env = {**os.environ, **ports, "TDM_FAULT_AMQ_DIR": str(tmp_path), "TDM_FAULT_DIR": str(tmp_path)}
        env["TDM_FAULT_NODE"] = f"tdmnobody{os.getpid()}"
        done = subprocess.run(
            ["bash", str(ROOT / "scripts" / script), command],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if command != "down":  # "down" of a broker that is not running is a success ("not running")
            assert done.returncode != 0, done.stdout
        assert bystander.poll() is None, f"{script} {command} signalled pid {bystander.pid}, not its broker"
        assert _state(bystander.pid) != "T", f"{script} {command} stopped pid {bystander.pid}, not its broker"
    finally:
        bystander.kill()
        bystander.wait()
