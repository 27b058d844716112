"""A private 3-node RabbitMQ cluster (scripts/cluster.sh) for the cluster fault tests, and a jepsen-style checker."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import in_ci

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "cluster.sh"
NODES = (1, 2, 3)

__all__ = ["NODES", "History", "PrivateCluster", "private_cluster_for_session"]


def _ports_free(base: int) -> bool:
    for port in [base + o for o in (1, 2, 3, 11, 12, 13, 21, 22, 23)]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _session_settings() -> dict[str, str]:
    """Node names, ports and directory of this pytest session's cluster (so two sessions never share one)."""
    if os.environ.get("TDM_CLUSTER_PORTS"):
        return {
            "TDM_CLUSTER_PORTS": os.environ["TDM_CLUSTER_PORTS"],
            "TDM_CLUSTER_NODE": os.environ.get("TDM_CLUSTER_NODE", "tdmc"),
            "TDM_CLUSTER_DIR": os.environ.get("TDM_CLUSTER_DIR", str(ROOT / ".work" / "cluster")),
        }
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 60000, 100)
        if _ports_free(base):
            break
    else:  # pragma: no cover - a machine with no free port range at all
        raise RuntimeError("no free range of ports for the private cluster")
    name = f"tdmc{os.getpid()}x"
    return {
        "TDM_CLUSTER_PORTS": str(base),
        "TDM_CLUSTER_NODE": name,
        "TDM_CLUSTER_DIR": str(ROOT / ".work" / "cluster" / name),
    }


@dataclass
class PrivateCluster:
    """Three RabbitMQ nodes of our own, joined into one cluster, AMQP and STOMP on each; never the shared node."""

    settings: dict[str, str]

    @property
    def base(self) -> int:
        return int(self.settings["TDM_CLUSTER_PORTS"])

    def amqp_port(self, node: int) -> int:
        return self.base + node

    def stomp_port(self, node: int) -> int:
        return self.base + 10 + node

    def url(self, backend: str, order: tuple[int, ...], **params: str) -> str:
        """A failover URL over the nodes in ``order`` (the first is tried first), with extra parameters."""
        if backend == "amqp":
            hosts = ";".join(f"amqp://guest:guest@127.0.0.1:{self.amqp_port(n)}//" for n in order)
            query = "&".join(f"{k}={v}" for k, v in params.items())
            return hosts + (f"?{query}" if query else "")
        nodes = ",".join(f"127.0.0.1:{self.stomp_port(n)}" for n in order)
        query = "&".join(f"{k}={v}" for k, v in {"dialect": "rabbitmq", **params}.items())
        return f"stomp://guest:guest@{nodes}/?{query}"

    def run(self, *args: str, timeout: float = 180) -> str:
        """Run ``scripts/cluster.sh ARGS`` for this cluster and return its output."""
        done = subprocess.run(
            ["bash", str(SCRIPT), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **self.settings},
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"cluster.sh {' '.join(args)} failed: {done.stdout}{done.stderr}")
        return done.stdout

    def node_of(self, name: str) -> int:
        """The node number of ``tdmc...N@localhost``."""
        return int(name.split("@", 1)[0][-1])

    def leader_of(self, queue: str) -> int:
        """The node that leads quorum queue ``queue`` (asked of any live node)."""
        for node in NODES:
            try:
                out = self.run(
                    "ctl", str(node), "list_queues", "-q", "--no-table-headers", "name", "leader", timeout=30
                )
            except RuntimeError:
                continue
            for line in out.splitlines():
                name, _, leader = line.partition("\t")
                if name == queue and leader.strip():
                    return self.node_of(leader.strip())
        raise AssertionError(f"no live node knows the leader of {queue!r}")

    def home_of(self, queue: str) -> int:
        """The node a classic queue ``queue`` lives on (its pid's node)."""
        for node in NODES:
            try:
                out = self.run("ctl", str(node), "list_queues", "-q", "--no-table-headers", "name", "pid", timeout=30)
            except RuntimeError:
                continue
            for line in out.splitlines():
                name, _, pid = line.partition("\t")
                if name == queue and "@" in pid:
                    return self.node_of(pid.strip().strip("<>").split(".", 1)[0])
        raise AssertionError(f"no live node knows queue {queue!r}")


def private_cluster_for_session() -> Iterator[PrivateCluster]:
    """Start the cluster (fail in CI, skip elsewhere, when it cannot start), yield it, stop it."""
    if not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists():
        why = "the private RabbitMQ cluster needs rabbitmq-server installed"
        if in_ci():
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    cluster = PrivateCluster(_session_settings())
    try:
        cluster.run("up", timeout=300)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        cluster.run("down")
        if in_ci():
            pytest.fail(f"the private RabbitMQ cluster did not start: {exc}", pytrace=False)
        pytest.skip(f"the private RabbitMQ cluster did not start: {exc}")
    try:
        yield cluster
    finally:
        cluster.run("down")
        directory = Path(cluster.settings["TDM_CLUSTER_DIR"])
        if directory.parent.name == "cluster" and directory.name == cluster.settings["TDM_CLUSTER_NODE"]:
            shutil.rmtree(directory, ignore_errors=True)  # this session's own cluster: nothing to keep


@dataclass
class History:
    """What a run did and saw, checked the way rabbitmq/jepsen checks a queue: nothing lost, nothing unexpected.

    Attributes:
        issued: docset -> request id of every request_package that returned (the broker confirmed it).
        indeterminate: docsets whose request_package raised (it may or may not have been stored).
        final: docset -> (state, request id) the folded status ended with.
        completes: docset -> Complete replies found in its reply queue at the end.
        runs: request id -> handler runs.
    """

    issued: dict[str, str] = field(default_factory=dict)
    indeterminate: list[str] = field(default_factory=list)
    final: dict[str, tuple[str, str]] = field(default_factory=dict)
    completes: Counter[str] = field(default_factory=Counter)
    runs: Counter[str] = field(default_factory=Counter)

    @property
    def lost(self) -> list[str]:
        """Confirmed requests whose status never reached COMPLETE or FAILED."""
        return [d for d in self.issued if self.final.get(d, ("", ""))[0] not in {"complete", "failed"}]

    @property
    def unexpected(self) -> list[str]:
        """Final statuses that belong to no request issued for that docset (an old request's, or none)."""
        return [
            d for d, (state, rid) in self.final.items() if state in {"complete", "failed"} and rid != self.issued.get(d)
        ]

    @property
    def duplicated(self) -> int:
        """Complete replies beyond one per docset (harmless: the fold keeps one), plus job re-runs."""
        extra_completes = sum(max(0, n - 1) for n in self.completes.values())
        return extra_completes + sum(max(0, n - 1) for n in self.runs.values())

    def summary(self) -> str:
        ok = sum(1 for d in self.issued if d not in self.lost)
        return (
            f"{len(self.issued)} confirmed request(s), {len(self.indeterminate)} raised at the send (indeterminate); "
            f"{ok} ended COMPLETE or FAILED exactly once in the folded status; lost {len(self.lost)}, "
            f"unexpected {len(self.unexpected)}, duplicated {self.duplicated} "
            f"({sum(self.runs.values())} job runs, {sum(self.completes.values())} Complete replies stored)"
        )
