"""Issue 5, item 1: kill -9 of the packager process at four points of a job; another packager finishes it."""

from __future__ import annotations

import re
import signal
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from examples.orchestrate import StackConfig, start_packager, start_stack, validate_bag
from examples.packager.faults import FAULT_ENV
from tdm_messaging.codec import decode
from tdm_messaging.destinations import reply_queue
from tdm_messaging.errors import MessagingError
from tdm_messaging.models import Complete, Failed
from tdm_messaging.transport import open_transport
from tests.faults.conftest import AWS_TEST_ENV, PrivateRabbit
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
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def _open_uploads(s3: Any, bucket: str) -> list[str]:
    return sorted(u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def _jobs(log_text: str, docset: str) -> int:
    return len(re.findall(rf"package job for docset {re.escape(docset)} \(", log_text))


@pytest.mark.parametrize("point", list(WHERE))
def test_packager_killed_mid_job_is_redelivered_and_completed(
    private_rabbit: PrivateRabbit, moto_s3: str, point: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    s3 = _s3(moto_s3)
    bucket = f"tdm-kill-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    prefix = f"kill{uuid.uuid4().hex[:10]}-"
    s3_env = {**AWS_TEST_ENV, "TDM_S3_ENDPOINT": moto_s3}
    config = StackConfig(
        work_dir=tmp_path / "stack",
        broker_url=private_rabbit.amqp_url(),
        storage=f"s3://{bucket}/packages",
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
        assert victim.process.returncode == -signal.SIGKILL, victim.log_tail()
        assert f"SIGKILL at {point}" in victim.log_text()
        objects_at_crash = _objects(s3, bucket)
        open_at_crash = _open_uploads(s3, bucket)
        temp_left = sorted(p.name for p in (config.work_dir / "build-1").glob("*"))
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
            work_dir=config.work_dir / "build-rescue",
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
        final = miner.request("GET", path)  # this poll compacts the reply queue again
        assert final.status_code == 303, final.text
        archive = tmp_path / "archive.zip"
        assert miner.download(final.headers["Location"], archive) == result.sha256
        bag = validate_bag(archive)
        miner.close()
        jobs = _jobs(victim.log_text(), docset) + _jobs(rescuer.log_text(), docset)

        transport = open_transport(private_rabbit.amqp_url())
        try:
            replies = [decode(e) for e in read_all(transport, reply_queue(docset), ack=False)]
        finally:
            transport.close()
        objects_after = _objects(s3, bucket)
        open_after = _open_uploads(s3, bucket)

    completes = [m for m in replies if isinstance(m, Complete)]
    failures = [m for m in replies if isinstance(m, Failed)]
    assert bag.documents == DOCUMENTS
    assert len(completes) == 1 and not failures, replies
    assert len(objects_after) == 1 and objects_after[0].startswith(f"packages/docset-{docset}--")
    assert open_after == []
    assert jobs == 2
    if point == "upload":
        assert len(open_at_crash) == 1  # left by the kill; the rescuer aborted it before its own upload
    record(
        Row(
            id=f"kill-packager-{point.replace('_', '-')}",
            item="1 kill -9 packager",
            done=f"rabbitmq-amqp (private node), S3 on moto: the packager process got SIGKILL {WHERE[point]} "
            "(TDM_PACKAGER_FAULT hook); then a second packager was started",
            expected="the request is redelivered and completed; exactly one final status; no partial archive "
            "visible; no multipart upload left open",
            happened=f"killed (exit -9); at the crash: {len(objects_at_crash)} object(s) in the bucket, "
            f"{len(open_at_crash)} open multipart upload(s), {len(temp_left)} temp file(s) in the killed "
            f"packager's work dir, poll said {state_at_crash}; the second packager took the redelivery: "
            f"{jobs} job runs in all, dump 303 with a valid bag of {bag.documents} documents; afterwards "
            f"{len(completes)} Complete and {len(failures)} Failed on the reply queue, {len(objects_after)} "
            f"object, {len(open_after)} open upload(s)",
            lost=0,
            duplicates=jobs - 1,
            test=request.node.nodeid,
        )
    )


def test_packager_killed_on_the_embedded_sqlite_broker(
    moto_s3: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The same kill (at ``fetch``) on kombu's SQLite transport, the embedded default: is the request given back?"""
    s3 = _s3(moto_s3)
    bucket = f"tdm-kill-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3_env = {**AWS_TEST_ENV, "TDM_S3_ENDPOINT": moto_s3}
    config = StackConfig(
        work_dir=tmp_path / "stack",
        broker_url=None,  # sqla+sqlite in the work directory
        storage=f"s3://{bucket}/packages",
        documents=DOCUMENTS,
        min_kb=2,
        max_kb=12,
        packager_env={**s3_env, FAULT_ENV: "fetch"},
    )
    with start_stack(config) as stack:
        victim = stack.packagers[0]
        miner = stack.miner()
        docset_id = miner.create_docset("kill -9 on sqlite", year_from=1900)["id"]
        assert miner.request("GET", f"/api/docsets/{docset_id}/dump").status_code == 202
        victim.process.wait(timeout=60)
        assert victim.process.returncode == -signal.SIGKILL, victim.log_tail()
        rescuer = start_packager(
            log_dir=stack.log_dir,
            broker_url=config.effective_broker_url,
            api_base=stack.base_url,
            api_key=stack.packager_key,
            storage=config.effective_storage,
            work_dir=config.work_dir / "build-rescue",
            name="packager-rescue",
            extra_env=s3_env,
        )
        stack.packagers.append(rescuer)
        try:
            result = miner.wait_for_dump(docset_id, timeout=20, max_interval=0.5)
        except MessagingError as exc:
            state = miner.request("GET", f"/api/docsets/{docset_id}/dump").json().get("state")
            jobs = _jobs(rescuer.log_text(), str(docset_id))
            pytest.xfail(
                "kombu's SQLite transport (the embedded default) did not give the request back after kill -9: after "
                f"20 s the rescuer ran {jobs} job(s), status {state!r} ({exc}); see docs/reliability.md"
            )
        miner.close()
    record(
        Row(
            id="kill-packager-fetch-sqlite",
            item="1 kill -9 packager",
            done="embedded kombu SQLite broker, S3 on moto: SIGKILL of the packager while listing the docset; "
            "a second packager started",
            expected="the request is redelivered and completed",
            happened=f"dump 303 ({result.archive_url.split('?')[0].rsplit('/', 1)[-1]})",
            lost=0,
            duplicates=1,
            test=request.node.nodeid,
        )
    )
