"""Issue 5, item 4: the API server is killed mid-job and restarted; its e2e test re-run here on the private node."""

from __future__ import annotations

import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from examples.harness import Stack, StackConfig, start_stack
from tests.e2e.test_reliability import test_server_crash_mid_job_loses_nothing as server_crash_scenario
from tests.faults.conftest import PrivateRabbit
from tests.faults.reliability import Row, record

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]


@pytest.mark.parametrize("protocol", ["stomp", "amqp"])
def test_server_killed_mid_job_loses_nothing(
    private_rabbit: PrivateRabbit, protocol: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = private_rabbit.stomp_url() if protocol == "stomp" else private_rabbit.amqp_url()
    with ExitStack() as cleanup:

        def make_stack(_broker: str, **overrides: Any) -> Stack:
            fields: dict[str, Any] = {
                "work_dir": tmp_path / "stack",
                "broker_url": url,
                "queue_prefix": f"srv{uuid.uuid4().hex[:10]}-",
            }
            fields.update(overrides)
            return cleanup.enter_context(start_stack(StackConfig(**fields)))

        # The very scenario of tests/e2e/test_reliability.py (not a copy): it asserts what the row says.
        server_crash_scenario(make_stack, f"rabbitmq-{protocol}", tmp_path)
    record(
        Row(
            id=f"server-restart-{protocol}",
            item="4 server restart",
            done=f"rabbitmq-{protocol} (private node), real processes: a miner requests a 30-document dump; once "
            "the packager has taken the job it is frozen (SIGSTOP), the API server gets SIGKILL and a new server "
            "starts on the same database and port; the packager is thawed",
            expected="nothing lost: the server holds no job state, the status lives on the broker",
            happened="the miner's polls to the new server ended in a 303; the archive's SHA-256 matched and the "
            "bag held all 30 documents; the new server sent no new package request; the packager ran the job once",
            lost=0,
            duplicates=0,
            test=request.node.nodeid,
        )
    )
