"""The flow with the packager storing archives on S3 (moto's server over real HTTP) and a presigned 303."""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from examples.harness import validate_bag
from examples.packager.secret import SECRET_NAME
from tests.bagit_check import bagit_validate
from tests.conftest import AWS_TEST_ENV
from tests.e2e.conftest import EMBEDDED, MakeStack

pytestmark = [pytest.mark.timeout(120)]


def test_dump_flow_with_s3_storage(make_stack: MakeStack, moto_endpoint: str, tmp_path: Path) -> None:
    bucket = f"tdm-e2e-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket=bucket)
    stack = make_stack(
        EMBEDDED,
        storage=f"s3://{bucket}/packages",
        packager_env={**AWS_TEST_ENV, "TDM_S3_ENDPOINT": moto_endpoint, "TDM_URL_TTL": "600"},
    )
    miner = stack.miner()
    docset_id = miner.create_docset("s3", year_from=1900)["id"]
    result = miner.wait_for_dump(docset_id, timeout=60, max_interval=0.5)

    # The 303 points at the S3 endpoint with a presigned, expiring URL; the download needs no API key.
    location = urlsplit(result.archive_url)
    assert f"{location.scheme}://{location.netloc}" == moto_endpoint
    assert location.path.startswith(f"/{bucket}/packages/docset-{stack.config.queue_prefix}{docset_id}--")
    query = parse_qs(location.query)
    assert query.get("X-Amz-Expires") == ["600"] or "Expires" in query
    assert result.body.get("url_expires_at")
    target = tmp_path / "from-s3.zip"
    assert miner.download(result.archive_url, target) == result.sha256
    assert validate_bag(target).documents == stack.config.documents
    assert bagit_validate(target) == 2 * stack.config.documents
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    # The archive, and the secret that keys archive names (made by the packager on first use).
    assert sorted(keys) == sorted([location.path.removeprefix(f"/{bucket}/"), f"packages/{SECRET_NAME}"])
    assert not any(stack.config.archive_dir.iterdir())  # nothing went to the local directory
    miner.close()
