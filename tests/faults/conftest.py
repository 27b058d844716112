"""Fixtures of the fault tests: a private RabbitMQ node (TLS too) and ActiveMQ they may kill or freeze, the table."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import in_ci
from tests.faults.reliability import render

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "faultbroker.sh"
AMQ_SCRIPT = ROOT / "scripts" / "faultactivemq.sh"
AMQ_JAR = Path("/usr/share/activemq/bin/activemq.jar")
_PORT_VARS = ("TDM_FAULT_AMQP_PORT", "TDM_FAULT_STOMP_PORT", "TDM_FAULT_AMQPS_PORT", "TDM_FAULT_STOMPS_PORT")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _node_settings() -> dict[str, str]:
    """The node's name, directory and ports: from TDM_FAULT_* if set, else fresh ones for this pytest session.

    Several engineers (and CI jobs) may run the fault tests at once in one checkout; a node
    per session means one session's restart or ``down`` never hits another session's node.
    """
    if all(os.environ.get(v) for v in _PORT_VARS):
        names = {v: os.environ[v] for v in _PORT_VARS}
        node = os.environ.get("TDM_FAULT_NODE", "tdmfault")
        return {
            **names,
            "TDM_FAULT_NODE": node,
            "TDM_FAULT_DIST_PORT": os.environ.get("TDM_FAULT_DIST_PORT", "25682"),
            "TDM_FAULT_DIR": os.environ.get("TDM_FAULT_DIR", str(ROOT / ".work" / "faultbroker")),
        }
    node = f"tdmfault{os.getpid()}"
    settings = {v: str(_free_port()) for v in _PORT_VARS}
    settings["TDM_FAULT_DIST_PORT"] = str(_free_port())
    settings["TDM_FAULT_NODE"] = node
    settings["TDM_FAULT_DIR"] = str(ROOT / ".work" / "faultbroker" / node)
    return settings


NODE_SETTINGS = _node_settings()
FAULT_DIR = Path(NODE_SETTINGS["TDM_FAULT_DIR"])
AMQP_PORT = int(NODE_SETTINGS["TDM_FAULT_AMQP_PORT"])
STOMP_PORT = int(NODE_SETTINGS["TDM_FAULT_STOMP_PORT"])
AMQPS_PORT = int(NODE_SETTINGS["TDM_FAULT_AMQPS_PORT"])
STOMPS_PORT = int(NODE_SETTINGS["TDM_FAULT_STOMPS_PORT"])
_AMQ_PORT_VARS = ("TDM_FAULT_AMQ_STOMP_PORT", "TDM_FAULT_AMQ_OPENWIRE_PORT")


def _activemq_settings() -> dict[str, str]:
    """The private ActiveMQ's directory and ports: from TDM_FAULT_AMQ_* if set, else fresh ones for this session."""
    if all(os.environ.get(v) for v in _AMQ_PORT_VARS):
        return {
            **{v: os.environ[v] for v in _AMQ_PORT_VARS},
            "TDM_FAULT_AMQ_DIR": os.environ.get("TDM_FAULT_AMQ_DIR", str(ROOT / ".work" / "faultactivemq")),
        }
    settings = {v: str(_free_port()) for v in _AMQ_PORT_VARS}
    settings["TDM_FAULT_AMQ_DIR"] = str(ROOT / ".work" / "faultactivemq" / f"amq{os.getpid()}")
    return settings


AMQ_SETTINGS = _activemq_settings()
AMQ_DIR = Path(AMQ_SETTINGS["TDM_FAULT_AMQ_DIR"])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Render the rows the fault and fuzz tests measured into docs/reliability.md."""
    render()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _make_test_ca(tls_dir: Path) -> None:
    """A throw-away CA and a server certificate for 127.0.0.1/localhost, made with openssl."""
    tls_dir.mkdir(parents=True, exist_ok=True)

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tls_dir, check=True, capture_output=True)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=tdm-messaging test CA")  # fmt: skip
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost")  # fmt: skip
    (tls_dir / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n", encoding="ascii")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")  # fmt: skip
    # A second CA that signed nothing: verification against it must fail.
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other-ca.key", "-out", "other-ca.pem",
        "-days", "2", "-subj", "/CN=some other CA")  # fmt: skip
    for name in ("server.key", "server.pem", "ca.pem"):
        (tls_dir / name).chmod(0o644)  # the node may run as another user


@dataclass
class PrivateRabbit:
    """A RabbitMQ node of our own (scripts/faultbroker.sh): AMQP, STOMP, and both over TLS."""

    amqp_port: int
    stomp_port: int
    amqps_port: int
    stomps_port: int
    tls_dir: Path

    def stomp_url(self, *, port: int | None = None, **params: str) -> str:
        """A STOMP URL of this node (through ``port`` if a proxy stands in front), with extra query parameters."""
        query = "&".join(f"{k}={v}" for k, v in {"dialect": "rabbitmq", **params}.items())
        return f"stomp://guest:guest@127.0.0.1:{port or self.stomp_port}/?{query}"

    def amqp_url(self, *, port: int | None = None, **params: str) -> str:
        """An AMQP URL of this node, with extra query parameters."""
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"amqp://guest:guest@127.0.0.1:{port or self.amqp_port}//" + (f"?{query}" if query else "")

    def run(self, *args: str) -> str:
        """Run ``scripts/faultbroker.sh ARGS`` and return its output."""
        done = subprocess.run(
            ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=180, env=_script_env(), check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"faultbroker.sh {' '.join(args)} failed: {done.stdout}{done.stderr}")
        return done.stdout

    def pid(self) -> int:
        """The node's process id (beam.smp)."""
        return int(self.run("pid").strip())

    def eval(self, expression: str) -> str:
        """Evaluate an Erlang expression on the node (e.g. to change ``consumer_timeout`` at run time)."""
        return self.run("ctl", "eval", expression).strip()


def _script_env() -> dict[str, str]:
    return {**os.environ, **NODE_SETTINGS}


def _run_script(script: Path, *args: str) -> str:
    done = subprocess.run(
        ["bash", str(script), *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **AMQ_SETTINGS},
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed: {done.stdout}{done.stderr}")
    return done.stdout


@dataclass
class PrivateActiveMQ:
    """An ActiveMQ Classic instance of our own (scripts/faultactivemq.sh): STOMP, KahaDB store."""

    stomp_port: int
    openwire_port: int
    data_dir: Path

    def stomp_url(self, *, port: int | None = None, **params: str) -> str:
        """A STOMP URL of this instance (through ``port`` if a proxy stands in front), with extra query parameters."""
        query = "&".join(f"{k}={v}" for k, v in {"dialect": "activemq", **params}.items())
        return f"stomp://127.0.0.1:{port or self.stomp_port}/?{query}"

    def run(self, *args: str) -> str:
        """Run ``scripts/faultactivemq.sh ARGS`` (up, down, restart, kill, freeze, thaw, pid) and return its output."""
        return _run_script(AMQ_SCRIPT, *args)

    def pid(self) -> int:
        """The broker's process id (its JVM)."""
        return int(self.run("pid").strip())


@pytest.fixture(scope="session")
def private_rabbit() -> Iterator[PrivateRabbit]:
    """Start the private RabbitMQ node for the session (with a generated test CA) and stop it afterwards."""
    if not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists() or shutil.which("openssl") is None:
        why = "the private RabbitMQ node needs rabbitmq-server and openssl installed"
        if in_ci():
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    tls_dir = FAULT_DIR / "tls"
    if not (tls_dir / "server.pem").exists():
        _make_test_ca(tls_dir)
    node = PrivateRabbit(AMQP_PORT, STOMP_PORT, AMQPS_PORT, STOMPS_PORT, tls_dir)
    if _port_open(STOMP_PORT) and not _port_open(STOMPS_PORT):
        node.run("down")  # an older node without TLS listeners
    node.run("up")
    try:
        yield node
    finally:
        node.run("down")
        if FAULT_DIR.parent.name == "faultbroker" and FAULT_DIR.name == NODE_SETTINGS["TDM_FAULT_NODE"]:
            shutil.rmtree(FAULT_DIR, ignore_errors=True)  # this session's own node: nothing to keep


@pytest.fixture(scope="session")
def private_activemq() -> Iterator[PrivateActiveMQ]:
    """Start the private ActiveMQ instance for the session and stop it afterwards (one per session)."""
    if not AMQ_JAR.exists() or shutil.which("java") is None:
        why = "the private ActiveMQ needs the Debian package activemq and java (run: sudo bash scripts/brokers.sh up)"
        if in_ci():
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    broker = PrivateActiveMQ(
        int(AMQ_SETTINGS["TDM_FAULT_AMQ_STOMP_PORT"]), int(AMQ_SETTINGS["TDM_FAULT_AMQ_OPENWIRE_PORT"]), AMQ_DIR
    )
    broker.run("up")
    try:
        yield broker
    finally:
        broker.run("down")
        if AMQ_DIR.parent.name == "faultactivemq" and AMQ_DIR.name == f"amq{os.getpid()}":
            shutil.rmtree(AMQ_DIR, ignore_errors=True)  # this session's own instance: nothing to keep
