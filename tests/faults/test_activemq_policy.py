"""The project's ActiveMQ policy (scripts/activemq/activemq.xml): which queues the broker collects once idle."""

from __future__ import annotations

import re
import time

import pytest

from tdm_messaging.destinations import DEAD_LETTER, DELETE_REQUESTS, PACKAGE_REQUESTS, reply_queue
from tdm_messaging.transport import open_transport
from tests.faults.conftest import PrivateActiveMQ
from tests.faults.helpers import read_all, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]

_REMOVED = re.compile(r"\| (\S+) Inactive for longer than \d+ ms - removing")


def _collected(amq: PrivateActiveMQ) -> set[str]:
    log = (amq.data_dir / "activemq.log").read_text(encoding="utf-8", errors="replace")
    return set(_REMOVED.findall(log))


def test_idle_reply_and_namespaced_queues_are_collected_permanent_ones_never(
    private_activemq: PrivateActiveMQ,
) -> None:
    """Reply queues, and every queue of a namespace, go once empty and unconsumed; the three permanent queues stay.

    ActiveMQ's ``>`` also matches no segment at all, so the reply-queue policy ``*.package.>``
    matches ``docsets.package``; the config pins the permanent queues with entries of their own.
    """
    tag = f"{time.time_ns() % 10**9}"
    namespaced = open_transport(private_activemq.stomp_url(namespace=f"gc{tag}"))
    plain = open_transport(private_activemq.stomp_url())
    try:
        for transport in (plain, namespaced):
            for destination in (PACKAGE_REQUESTS, DELETE_REQUESTS, DEAD_LETTER, reply_queue(f"d.{tag}")):
                read_all(transport, destination)  # a SUBSCRIBE creates the queue; the read leaves it empty
    finally:
        namespaced.close()
        plain.close()
    expected = {f"package.d.{tag}", f"gc{tag}.package.d.{tag}"} | {
        f"gc{tag}.docsets.{name}" for name in ("package", "delete", "dead-letter")
    }
    # The broker looks every 2 s for queues idle for 10 s; the wait is a hang guard only.
    wait_until(lambda: expected <= _collected(private_activemq), timeout=60, what=f"ActiveMQ to collect {expected}")
    permanent = {"docsets.package", "docsets.delete", "docsets.dead-letter"}
    assert not permanent & _collected(private_activemq), "a permanent queue was garbage-collected"
