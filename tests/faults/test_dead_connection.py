"""Issue 5, item 3: a dead connection (traffic black-holed) is noticed within two heart-beats; no call hangs."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid

import pytest

from tdm_messaging.errors import TransportError
from tdm_messaging.server import PackagingClient
from tdm_messaging.status import State
from tdm_messaging.transport import open_transport
from tdm_messaging.worker import Job, PackageResult, PackagerWorker
from tests.faults.conftest import PrivateRabbit
from tests.faults.helpers import drain, run_worker, wait_until
from tests.faults.proxy import TcpProxy
from tests.faults.reliability import Row, record

HEARTBEAT_S = 2.0


class _Clock(logging.Handler):
    """Notes when the library first logs a warning after ``armed`` is set (the moment it noticed)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.armed_at: float | None = None
        self.noticed_at: float | None = None
        self.message = ""

    def emit(self, record: logging.LogRecord) -> None:
        if self.armed_at is not None and self.noticed_at is None and record.name.startswith("tdm_messaging"):
            self.noticed_at = time.monotonic()
            self.message = record.getMessage()


@pytest.mark.broker
@pytest.mark.parametrize(
    "protocol",
    ["stomp", "amqp"],
)
def test_a_black_holed_connection_is_noticed_and_nothing_hangs(
    private_rabbit: PrivateRabbit, protocol: str, request: pytest.FixtureRequest
) -> None:
    port = private_rabbit.stomp_port if protocol == "stomp" else private_rabbit.amqp_port
    proxy = TcpProxy("127.0.0.1", port)
    hb = int(HEARTBEAT_S)
    if protocol == "stomp":
        direct = private_rabbit.stomp_url()
        proxied = private_rabbit.stomp_url(
            port=proxy.port, heartbeat_ms=str(hb * 1000), confirm_timeout="3", connect_timeout="3"
        )
    else:
        direct = private_rabbit.amqp_url()
        proxied = private_rabbit.amqp_url(port=proxy.port, heartbeat=str(hb), confirm_timeout="3", connect_timeout="3")
    clock = _Clock()
    logging.getLogger("tdm_messaging").addHandler(clock)
    transport = open_transport(direct)
    worker_transport = open_transport(proxied)
    sender = open_transport(proxied)
    runs: list[str] = []

    def handler(job: Job) -> PackageResult:
        runs.append(job.request.docset_id)
        return PackageResult(archive_url=f"https://archives.test/{job.request.docset_id}.zip", size_bytes=1)

    try:
        drain(transport)
        client = PackagingClient(transport)
        with run_worker(PackagerWorker(worker_transport, on_package=handler, retry_backoff_seconds=0)):
            before = f"dead-a-{uuid.uuid4().hex[:10]}"
            client.request_package(before, f"http://api.test/api/docsets/{before}")
            wait_until(lambda: client.status(before).state is State.COMPLETE, timeout=60, what="the first job")

            # stomp.py grants a new connection one extra receive interval of grace (1.5 x heart-beat),
            # so the bound holds for established connections: let them settle first.
            time.sleep(3 * HEARTBEAT_S)
            proxy.blackhole()
            clock.armed_at = time.monotonic()
            # A confirmed send over the dead path must come back (raise or be confirmed), not hang.
            outcome: list[str] = []

            def send_during() -> None:
                try:
                    PackagingClient(sender).request_package(before + "-x", "http://api.test/api/docsets/x")
                    outcome.append("confirmed")
                except TransportError as exc:
                    outcome.append(f"raised {type(exc).__name__}")

            started = time.monotonic()
            thread = threading.Thread(target=send_during, daemon=True)
            thread.start()
            thread.join(timeout=60)
            send_took = time.monotonic() - started
            assert not thread.is_alive(), "a confirmed send over a dead connection blocked for 60 s"
            wait_until(lambda: clock.noticed_at is not None, timeout=6 * HEARTBEAT_S, what="the dead connection")
            proxy.heal()
            after = f"dead-b-{uuid.uuid4().hex[:10]}"
            client.request_package(after, f"http://api.test/api/docsets/{after}")
            wait_until(lambda: client.status(after).state is State.COMPLETE, timeout=90, what="a job after healing")
        assert clock.noticed_at is not None and clock.armed_at is not None
        noticed = clock.noticed_at - clock.armed_at
    finally:
        logging.getLogger("tdm_messaging").removeHandler(clock)
        for t in (sender, worker_transport, transport):
            with contextlib.suppress(Exception):
                t.close()
        proxy.close()
    assert outcome and outcome[0].startswith(("raised", "confirmed"))
    assert noticed <= 2 * HEARTBEAT_S + 1.0, f"noticed after {noticed:.1f} s: {clock.message}"
    record(
        Row(
            id=f"dead-connection-{protocol}",
            item="3 dead connection",
            done=f"rabbitmq-{protocol}, heart-beat {hb} s: a proxy between worker/sender and broker stops "
            "moving bytes (connections left open); a confirmed send is made meanwhile; then traffic flows again",
            expected=f"noticed within 2 x heart-beat ({2 * hb} s); the send raises or is confirmed; the worker "
            "resumes by itself",
            happened=f"noticed after {noticed:.1f} s ('{clock.message[:80]}'); the send {outcome[0]} after "
            f"{send_took:.1f} s; the job sent after healing completed ({len(runs)} jobs run)",
            lost=0,
            duplicates=0,
            test=request.node.nodeid,
        )
    )
