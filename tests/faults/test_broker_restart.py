"""Issue 5, item 2: the broker restarts mid-flow; both sides reconnect by themselves, nothing acknowledged is lost."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import uuid

import pytest

from tdm_messaging.errors import MessagingError
from tdm_messaging.server import PackagingClient
from tdm_messaging.status import State
from tdm_messaging.transport import open_transport
from tdm_messaging.worker import Job, PackageResult, PackagerWorker
from tests.faults.conftest import PrivateRabbit
from tests.faults.helpers import drain, run_worker, wait_until
from tests.faults.reliability import Row, record

pytestmark = [pytest.mark.broker, pytest.mark.timeout(300)]

HEARTBEAT_S = 2


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


@pytest.mark.parametrize("protocol", ["stomp", "amqp"])
def test_broker_restart_mid_flow(private_rabbit: PrivateRabbit, protocol: str, request: pytest.FixtureRequest) -> None:
    if protocol == "stomp":
        url = private_rabbit.stomp_url(heartbeat_ms=str(HEARTBEAT_S * 1000), connect_timeout="3", confirm_timeout="5")
    else:
        url = private_rabbit.amqp_url(heartbeat=str(HEARTBEAT_S), connect_timeout="3", confirm_timeout="5")
    server_side = open_transport(url)
    worker_side = open_transport(url)
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
    in_flight, queued, during, after = (f"rs-{k}-{tag}" for k in "abcd")
    try:
        drain(server_side)
        with run_worker(PackagerWorker(worker_side, on_package=handler, retry_backoff_seconds=0)):
            client.request_package(in_flight, f"http://api.test/api/docsets/{in_flight}")
            wait_until(lambda: in_flight in started, timeout=30, what="the worker to take the first request")
            client.request_package(queued, f"http://api.test/api/docsets/{queued}")  # waits behind it

            private_rabbit.run("down")
            assert not _answers(private_rabbit.amqp_port) and not _answers(private_rabbit.stomp_port)
            outcome: list[str] = []
            send_started = time.monotonic()
            try:
                client.request_package(during, f"http://api.test/api/docsets/{during}")
                outcome.append("confirmed")
            except MessagingError as exc:
                outcome.append(f"raised {type(exc).__name__}")
            send_took = time.monotonic() - send_started
            release.set()  # the in-flight job ends while the broker is down: its reply and ack cannot go out
            private_rabbit.run("up")
            restarted_at = time.monotonic()

            client.request_package(after, f"http://api.test/api/docsets/{after}")
            acknowledged = [in_flight, queued, after] + ([during] if outcome[0] == "confirmed" else [])
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
            # AMQP connections list their negotiated heart-beat; rabbitmqctl shows none for STOMP.
            connections = private_rabbit.run("ctl", "list_connections", "-s", "protocol", "timeout")
            probe = f"rs-e-{tag}"
            client.request_package(probe, f"http://api.test/api/docsets/{probe}")
            wait_until(lambda: client.status(probe).state is State.COMPLETE, timeout=30, what="a job after idling")
            quiet_warnings = warnings.count - quiet_before
        states = {d: client.status(d).state for d in acknowledged}
    finally:
        release.set()
        logging.getLogger("tdm_messaging").removeHandler(warnings)
        for transport in (worker_side, server_side):
            with contextlib.suppress(Exception):
                transport.close()

    lost = [d for d, s in states.items() if s is not State.COMPLETE]
    heartbeat_timeouts = sorted({line.split()[-1] for line in connections.splitlines() if "0,9,1" in line})
    assert not lost, states
    assert outcome and outcome[0].startswith(("raised", "confirmed"))
    assert quiet_warnings == 0, "the connections were lost again while idle: heart-beats do not flow"
    if protocol == "amqp":
        assert heartbeat_timeouts == [str(HEARTBEAT_S)], connections
    duplicates = sum(n - 1 for n in started.values())
    record(
        Row(
            id=f"broker-restart-{protocol}",
            item="2 broker restart",
            done=f"rabbitmq-{protocol} (private node), heart-beat {HEARTBEAT_S} s: a worker holds one request "
            "(taken, not acked) and one waits in the queue; the node is stopped; a confirmed send is made while "
            "it is down; the in-flight job ends while it is down; the node is started again; one more request",
            expected="both sides reconnect and resume without anyone acting; no acknowledged request lost; the "
            "send during the outage raises or is confirmed; heart-beats flow afterwards",
            happened=f"the send during the outage {outcome[0]} after {send_took:.1f} s; all {len(acknowledged)} "
            f"acknowledged requests COMPLETE {resumed_after:.1f} s after the node was back (handler runs: "
            f"{sum(started.values())}); after {4 * HEARTBEAT_S} s idle no warning (a side missing heart-beats "
            "is closed by the broker or declared dead by the client, with a warning), "
            + (f"AMQP connections list heart-beat {heartbeat_timeouts} s, " if protocol == "amqp" else "")
            + "a further job completed",
            lost=len(lost),
            duplicates=duplicates,
            test=request.node.nodeid,
        )
    )
