"""Issue 5, item 1: kill -9 of the packager at four points of a job, on every broker; another one finishes it."""

from __future__ import annotations

import re
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from examples.harness import StackConfig, start_packager, start_stack, unique_namespace, validate_bag
from examples.packager.faults import FAULT_ENV
from examples.packager.secret import SECRET_NAME
from tdm_messaging.codec import decode
from tdm_messaging.destinations import reply_queue
from tdm_messaging.models import Complete, Failed
from tdm_messaging.transport import open_transport
from tests.conftest import AWS_TEST_ENV, broker_url
from tests.faults.conftest import PrivateRabbit
from tests.faults.helpers import read_all, wait_until
from tests.faults.reliability import Row, record

pytestmark = [pytest.mark.broker, pytest.mark.timeout(240)]

DOCUMENTS = 12
WHERE = {
    "fetch": "while listing the docset (after Accepted was sent)",
    "zip": "while zipping (after the first member was written to the bag)",
    "upload": "while uploading (first part of the S3 multipart upload sent, upload not completed)",
    "before_ack": "after the upload and the Complete reply, before acknowledging the request",
}
BROKERS = {
    "rabbitmq-amqp": "rabbitmq-amqp (private node)",
    "rabbitmq-stomp": "rabbitmq-stomp (private node)",
    "activemq-stomp": "activemq-stomp (the shared broker, a namespace of its own; the broker is not touched)",
    "sqlite": "the embedded default broker (sqlite://, visibility_timeout=3 s)",
}
VISIBILITY_TIMEOUT = 3
"""Seconds: on the embedded default, a killed packager's lease on its request outlives it by at most this much."""


def _broker_url(request: pytest.FixtureRequest, broker: str, work: Path) -> str:
    """The private RabbitMQ node over AMQP or STOMP, the shared ActiveMQ (unreachable: a failure in CI), or the
    embedded default (what StackConfig uses with no broker URL) with a short visibility timeout."""
    if broker == "sqlite":
        return f"sqlite:///{(work / 'broker.db').resolve()}?visibility_timeout={VISIBILITY_TIMEOUT}"
    if broker == "activemq-stomp":
        return broker_url("activemq-stomp")
    node: PrivateRabbit = request.getfixturevalue("private_rabbit")
    return node.stomp_url() if broker == "rabbitmq-stomp" else node.amqp_url()


def _s3(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=AWS_TEST_ENV["AWS_DEFAULT_REGION"],
        aws_access_key_id=AWS_TEST_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=AWS_TEST_ENV["AWS_SESSION_TOKEN"],
    )


def _objects(s3: Any, bucket: str) -> list[str]:
    """The archives in the bucket (not the secret that keys their names, which the packager keeps there)."""
    keys = (o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))
    return sorted(key for key in keys if not key.endswith("/" + SECRET_NAME))


def _open_uploads(s3: Any, bucket: str) -> list[str]:
    return sorted(u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def _attempts(log_text: str, docset: str) -> list[int]:
    """The attempt number of every package job the log shows for ``docset``."""
    return [
        int(n)
        for n in re.findall(rf"package job for docset {re.escape(docset)} \(request \S+, attempt (\d+)/", log_text)
    ]


def _lease_takeovers(log_text: str) -> list[int]:
    """The delivery numbers of messages the SQLite transport took over from a holder whose lease ran out."""
    return [int(n) for n in re.findall(r"ran out unacknowledged .*?delivering it again \(delivery (\d+)\)", log_text)]


@pytest.mark.parametrize("broker", list(BROKERS))
@pytest.mark.parametrize("point", list(WHERE))
def test_packager_killed_mid_job_is_redelivered_and_completed(
    moto_endpoint: str, point: str, broker: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = _broker_url(request, broker, tmp_path)
    s3 = _s3(moto_endpoint)
    bucket = f"tdm-kill-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    prefix = f"kill{uuid.uuid4().hex[:10]}-"
    s3_env = {**AWS_TEST_ENV, "TDM_S3_ENDPOINT": moto_endpoint}
    config = StackConfig(
        work_dir=tmp_path / "stack",
        broker_url=url,
        storage=f"s3://{bucket}/packages",
        # Every queue of the run, docsets/package included, lives under a namespace of its own:
        # a request left by another run (or another engineer) on the same broker is never taken.
        namespace=unique_namespace("kill"),
        queue_prefix=prefix,
        documents=DOCUMENTS,
        min_kb=2,
        max_kb=12,
        packager_env={**s3_env, FAULT_ENV: point},
    )
    with start_stack(config) as stack:
        victim = stack.packagers[0]
        miner = stack.miner()
        docset_id = miner.create_docset("kill -9", year_from=1900)["id"]
        docset = f"{prefix}{docset_id}"
        path = f"/api/docsets/{docset_id}/dump"
        assert miner.request("GET", path).status_code == 202

        victim.process.wait(timeout=60)
        killed_at = time.monotonic()
        assert victim.process.returncode == -signal.SIGKILL, victim.log_tail()
        assert f"SIGKILL at {point}" in victim.log_text()
        objects_at_crash = _objects(s3, bucket)
        open_at_crash = _open_uploads(s3, bucket)
        temp_left = sorted(p.name for p in (config.work_dir / "build-1").glob(".building-*"))
        poll_at_crash = miner.request("GET", path)
        state_at_crash = poll_at_crash.json().get("state", poll_at_crash.status_code)
        if point == "before_ack":
            assert poll_at_crash.status_code == 303  # the Complete went out before the kill
        else:
            assert poll_at_crash.status_code == 202, poll_at_crash.text
            assert objects_at_crash == []  # no partial archive visible

        rescuer = start_packager(
            log_dir=stack.log_dir,
            broker_url=config.effective_broker_url,
            api_base=stack.base_url,
            api_key=stack.packager_key,
            storage=config.effective_storage,
            queue_prefix=prefix,
            work_dir=config.work_dir / "build-1",  # the killed one's, as a restart under systemd would
            name="packager-rescue",
            extra_env=s3_env,
        )
        stack.packagers.append(rescuer)  # stopped with the stack
        result = miner.wait_for_dump(docset_id, timeout=90, max_interval=0.5)
        # Wait for the redelivered job to end too (for before_ack the 303 came before it ran).
        wait_until(
            lambda: f"package job for docset {docset} complete" in rescuer.log_text(),
            timeout=60,
            what="the rescuing packager to complete the redelivered job",
        )
        rescued_after = time.monotonic() - killed_at
        final = miner.request("GET", path)  # this poll compacts the reply queue again
        assert final.status_code == 303, final.text
        archive = tmp_path / "archive.zip"
        assert miner.download(final.headers["Location"], archive) == result.sha256
        bag = validate_bag(archive)
        miner.close()
        temp_after = sorted(p.name for p in (config.work_dir / "build-1").glob(".building-*"))
        victim_attempts = _attempts(victim.log_text(), docset)
        rescuer_attempts = _attempts(rescuer.log_text(), docset)
        takeovers = _lease_takeovers(rescuer.log_text())

        transport = open_transport(config.effective_broker_url)  # the same broker and namespace
        try:
            replies = [decode(e) for e in read_all(transport, reply_queue(docset), ack=False)]
        finally:
            transport.close()
        objects_after = _objects(s3, bucket)
        open_after = _open_uploads(s3, bucket)

    completes = [m for m in replies if isinstance(m, Complete)]
    failures = [m for m in replies if isinstance(m, Failed)]
    jobs = len(victim_attempts) + len(rescuer_attempts)
    assert bag.documents == DOCUMENTS
    assert len(completes) == 1 and not failures, replies
    assert completes[0].sha256 == result.sha256
    assert len(objects_after) == 1 and objects_after[0].startswith(f"packages/docset-{docset}--")
    assert open_after == []
    assert temp_after == []  # the restarted packager swept what the killed one left in their work dir
    # One run in each process, and the rescuer's is the broker's redelivery of the request the
    # victim held (attempt 1 again), not a retry the victim re-sent: it died before it could.
    assert victim_attempts == [1] and rescuer_attempts == [1], (victim_attempts, rescuer_attempts)
    # On the embedded default no connection closes: the request comes back when the dead holder's lease
    # runs out (the file's second delivery); the brokers give it back with the connection instead.
    assert takeovers == ([2] if broker == "sqlite" else []), takeovers
    if point == "upload":
        assert len(open_at_crash) == 1  # left by the kill; the rescuer aborted it before its own upload
    record(
        Row(
            id=f"kill-packager-{point.replace('_', '-')}-{broker}",
            item="1 kill -9 packager",
            done=f"{BROKERS[broker]}, S3 on moto: the packager process got SIGKILL {WHERE[point]} "
            "(TDM_PACKAGER_FAULT hook); then a second packager was started",
            expected="the request is redelivered and completed; exactly one final status; no partial archive "
            "visible; no multipart upload left open",
            happened=f"killed (exit {victim.process.returncode}); at the crash: {len(objects_at_crash)} object(s) "
            f"in the bucket, {len(open_at_crash)} open multipart upload(s), {len(temp_left)} temp file(s) in the "
            f"killed packager's work dir, poll said {state_at_crash}; the second packager took the redelivery "
            + (f"from the dead holder's lease (delivery {takeovers[0]}, " if takeovers else "(")
            + f"attempt {rescuer_attempts[0]}) and completed it {rescued_after:.1f} s after the kill: "
            f"{jobs} job runs in all, dump 303 after {result.polls} poll(s) with "
            f"a valid bag of {bag.documents} documents; afterwards the reply queue held {len(replies)} message(s) "
            f"({', '.join(m.type for m in replies)}): {len(completes)} Complete, {len(failures)} Failed; "
            f"{len(objects_after)} object, {len(open_after)} open upload(s), {len(temp_after)} temp file(s) left "
            "in the work dir (the second packager ran on the killed one's and swept it)",
            lost=0,
            duplicates=jobs - 1,
            test=request.node.nodeid,
        )
    )
