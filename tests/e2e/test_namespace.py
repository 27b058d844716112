"""Runs sharing a broker are isolated by their queue namespace: the same docset id never crosses over."""

from __future__ import annotations

import re

import pytest

from examples.harness import unique_namespace
from tests.e2e.conftest import MakeStack

pytestmark = [pytest.mark.timeout(150)]


@pytest.mark.broker
def test_two_runs_on_one_broker_with_the_same_docset_id_stay_apart(make_stack: MakeStack) -> None:
    # Two fresh databases both number their first docset 1, so both reply queues are package/1:
    # only the namespace keeps run B from reading run A's Complete (a 303 to A's archive).
    first = make_stack("rabbitmq-amqp", namespace=unique_namespace("e2e"), documents=4, min_kb=1, max_kb=4)
    second = make_stack("rabbitmq-amqp", namespace=unique_namespace("e2e"), documents=4, min_kb=1, max_kb=4)
    assert first.config.namespace != second.config.namespace

    miner_a = first.miner()
    docset_a = miner_a.create_docset("run a", year_from=1900)["id"]
    result_a = miner_a.wait_for_dump(docset_a, timeout=60, max_interval=0.5)
    assert result_a.archive_url.startswith(first.base_url)
    miner_a.close()

    miner_b = second.miner()
    docset_b = miner_b.create_docset("run b", year_from=1900)["id"]
    assert docset_b == docset_a
    answer = miner_b.request("GET", f"/api/docsets/{docset_b}/dump")
    assert answer.status_code == 202, f"run b saw run a's reply queue: {answer.status_code} {answer.text}"
    # (the packager of run b may already have answered Accepted before the server read back)
    assert answer.json()["state"] in {"requested", "accepted", "in_progress"}, answer.text
    result_b = miner_b.wait_for_dump(docset_b, timeout=60, max_interval=0.5)
    assert result_b.archive_url.startswith(second.base_url)
    miner_b.close()

    # Each run's packager took its own run's request only: the request queue is namespaced too.
    for stack in (first, second):
        jobs = re.findall(r"package job for docset \S+ \(", stack.packagers[0].log_text())
        assert len(jobs) == 1, (stack.config.namespace, jobs)
