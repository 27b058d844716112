"""Issue 5, item 3: a dead connection (traffic black-holed, or the broker frozen) is noticed within two heart-beats."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tdm_messaging.errors import TransportError
from tdm_messaging.server import PackagingClient
from tdm_messaging.status import State
from tdm_messaging.transport import open_transport
from tdm_messaging.worker import Job, PackageResult, PackagerWorker
from tests.faults.conftest import PrivateActiveMQ, PrivateRabbit
from tests.faults.helpers import drain, run_worker, wait_until
from tests.faults.proxy import TcpProxy
from tests.faults.reliability import Row, record

pytestmark = pytest.mark.broker

HEARTBEAT_S = 2.0
_BOUND_S = 60
"""How long a call may take over a dead connection before the test calls it blocked (a hang guard)."""


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


@dataclass(frozen=True)
class _Setup:
    """Where the scenario's transports connect, and how the fault is made and undone."""

    backend: str
    direct: str  # the client's polls: outside the fault, unless the broker itself is frozen
    faulty: str  # the worker and the sender: through the fault
    start: Callable[[], object]
    end: Callable[[], object]


def _bounded(call: Callable[[], object]) -> tuple[str, float]:
    """Run ``call`` in a thread; its outcome ('confirmed' or 'raised X') and how long it took; fail if it blocks."""
    outcome: list[str] = []

    def target() -> None:
        try:
            call()
            outcome.append("confirmed")
        except TransportError as exc:
            outcome.append(f"raised {type(exc).__name__}")

    started = time.monotonic()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=_BOUND_S)
    took = time.monotonic() - started
    assert not thread.is_alive(), f"a call over a dead connection blocked for {_BOUND_S} s"
    assert outcome, "the call died with an error that is not a TransportError (see the thread's traceback)"
    return outcome[0], took


def _run_scenario(setup: _Setup, *, poll_during: bool) -> dict[str, object]:
    """A job; the fault (after the connections settled); a confirmed send (and a poll) meanwhile; heal; a job."""
    clock = _Clock()
    logging.getLogger("tdm_messaging").addHandler(clock)
    transport = open_transport(setup.direct)
    worker_transport = open_transport(setup.faulty)
    sender = open_transport(setup.faulty)
    runs: list[str] = []
    poll = ("not tried", 0.0)

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
            setup.start()
            clock.armed_at = time.monotonic()
            try:
                # A confirmed send over the dead path must come back (raise or be confirmed), not hang.
                sent = _bounded(
                    lambda: PackagingClient(sender).request_package(before + "-x", "http://api.test/api/docsets/x")
                )
                if poll_during:
                    poll = _bounded(lambda: client.status(before))
                wait_until(lambda: clock.noticed_at is not None, timeout=6 * HEARTBEAT_S, what="the dead connection")
            finally:
                setup.end()
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
    assert sent[0].startswith(("raised", "confirmed"))
    assert noticed <= 2 * HEARTBEAT_S + 1.0, f"noticed after {noticed:.1f} s: {clock.message}"
    return {"noticed": noticed, "message": clock.message, "sent": sent, "poll": poll, "runs": len(runs)}


def _proxied(request: pytest.FixtureRequest, backend: str, proxy_for: Callable[[int], TcpProxy]) -> _Setup:
    hb = int(HEARTBEAT_S)
    if backend == "activemq-stomp":
        amq: PrivateActiveMQ = request.getfixturevalue("private_activemq")
        proxy = proxy_for(amq.stomp_port)
        faulty = amq.stomp_url(port=proxy.port, heartbeat_ms=str(hb * 1000), confirm_timeout="3", connect_timeout="3")
        return _Setup(backend, amq.stomp_url(), faulty, proxy.blackhole, proxy.heal)
    rabbit: PrivateRabbit = request.getfixturevalue("private_rabbit")
    if backend == "rabbitmq-stomp":
        proxy = proxy_for(rabbit.stomp_port)
        faulty = rabbit.stomp_url(
            port=proxy.port, heartbeat_ms=str(hb * 1000), confirm_timeout="3", connect_timeout="3"
        )
        return _Setup(backend, rabbit.stomp_url(), faulty, proxy.blackhole, proxy.heal)
    proxy = proxy_for(rabbit.amqp_port)
    faulty = rabbit.amqp_url(port=proxy.port, heartbeat=str(hb), confirm_timeout="3", connect_timeout="3")
    return _Setup(backend, rabbit.amqp_url(), faulty, proxy.blackhole, proxy.heal)


def _row_id(backend: str) -> str:
    # The RabbitMQ rows keep the ids they were first measured under.
    return f"dead-connection-{backend[9:]}" if backend.startswith("rabbitmq-") else f"dead-connection-{backend}"


@pytest.mark.parametrize("backend", ["rabbitmq-stomp", "rabbitmq-amqp", "activemq-stomp"])
def test_a_black_holed_connection_is_noticed_and_nothing_hangs(backend: str, request: pytest.FixtureRequest) -> None:
    proxies: list[TcpProxy] = []

    def proxy_for(port: int) -> TcpProxy:
        proxies.append(TcpProxy("127.0.0.1", port))
        return proxies[-1]

    try:
        seen = _run_scenario(_proxied(request, backend, proxy_for), poll_during=False)
    finally:
        for proxy in proxies:
            proxy.close()
    hb = int(HEARTBEAT_S)
    sent = seen["sent"]
    assert isinstance(sent, tuple)
    where = "activemq-stomp (private ActiveMQ)" if backend == "activemq-stomp" else backend
    record(
        Row(
            id=_row_id(backend),
            item="3 dead connection",
            done=f"{where}, heart-beat {hb} s: a proxy between worker/sender and broker stops "
            "moving bytes (connections left open); a confirmed send is made meanwhile; then traffic flows again",
            expected=f"noticed within 2 x heart-beat ({2 * hb} s); the send raises or is confirmed; the worker "
            "resumes by itself",
            happened=f"noticed after {seen['noticed']:.1f} s ('{str(seen['message'])[:80]}'); the send {sent[0]} "
            f"after {sent[1]:.1f} s; the job sent after healing completed ({seen['runs']} jobs run)",
            lost=0,
            duplicates=0,
            test=request.node.nodeid,
        )
    )


def test_a_frozen_activemq_is_noticed_and_nothing_hangs(
    private_activemq: PrivateActiveMQ, request: pytest.FixtureRequest
) -> None:
    hb = int(HEARTBEAT_S)
    url = private_activemq.stomp_url(heartbeat_ms=str(hb * 1000), confirm_timeout="3", connect_timeout="3")
    setup = _Setup(
        "activemq-stomp",
        url,
        url,
        lambda: private_activemq.run("freeze"),
        lambda: private_activemq.run("thaw"),
    )
    seen = _run_scenario(setup, poll_during=True)
    sent, poll = seen["sent"], seen["poll"]
    assert isinstance(sent, tuple) and isinstance(poll, tuple)
    assert poll[0].startswith("raised"), "a poll of a frozen broker cannot have read the queue"
    record(
        Row(
            id="dead-connection-sigstop-activemq-stomp",
            item="3 dead connection",
            done=f"activemq-stomp (private ActiveMQ), heart-beat {hb} s: the broker's JVM is frozen (SIGSTOP: its "
            "sockets stay open, the kernel still accepts new connections, nothing answers) while a worker "
            "consumes; a confirmed send and a status poll are made meanwhile; then it is thawed (SIGCONT)",
            expected=f"noticed within 2 x heart-beat ({2 * hb} s); the send raises or is confirmed; the poll raises "
            "within its bounds (nothing is acknowledged, so nothing lost); the worker resumes by itself",
            happened=f"noticed after {seen['noticed']:.1f} s ('{str(seen['message'])[:80]}'); the send {sent[0]} "
            f"after {sent[1]:.1f} s; the poll {poll[0]} after {poll[1]:.1f} s; the job sent after the thaw "
            f"completed ({seen['runs']} jobs run)",
            lost=0,
            duplicates=0,
            test=request.node.nodeid,
        )
    )
