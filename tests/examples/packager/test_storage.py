"""Tests for examples.packager.storage and s3_storage: a local directory, and S3 via moto's server over HTTP."""

from __future__ import annotations

import hashlib
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests

from examples.packager.errors import DeleteRefusedError, InvalidArchiveNameError, StorageError
from examples.packager.s3_storage import MAX_URL_TTL, MIN_PART_SIZE, S3Storage
from examples.packager.secret import SECRET_NAME, load_secret
from examples.packager.storage import LocalStorage, archive_name, parse_archive_name
from tdm_messaging.errors import ConfigurationError, InvalidDestinationError
from tests.bagit_check import bagit_validate

FP1 = "a" * 64
FP2 = "b" * 64


def _file(path: Path, size: int) -> tuple[Path, str]:
    block = os.urandom(1024 * 1024)
    with path.open("wb") as handle:
        left = size
        while left:
            piece = block[: min(left, len(block))]
            handle.write(piece)
            left -= len(piece)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


# --- names ----------------------------------------------------------------------------------


def test_archive_names_round_trip_even_with_dashes_in_the_id() -> None:
    for docset_id in ["5", "a--b", "x:y@z+1~"]:
        assert parse_archive_name(archive_name(docset_id, FP1)) == (docset_id, FP1)
    assert parse_archive_name("docset-5--short.zip") is None
    assert parse_archive_name(f"../docset-5--{FP1}.zip") is None
    assert parse_archive_name(f"docset-a/../../x--{FP1}.zip") is None


@pytest.mark.parametrize("docset_id", ["../x", "a/b", "", "a b"])
def test_archive_names_refuse_bad_docset_ids(docset_id: str) -> None:
    with pytest.raises(InvalidDestinationError):
        archive_name(docset_id, FP1)


def test_archive_names_refuse_bad_fingerprints() -> None:
    with pytest.raises(InvalidArchiveNameError):
        archive_name("5", "A" * 64)


# --- local ----------------------------------------------------------------------------------


@pytest.fixture
def local(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "archives", "http://127.0.0.1:8080/archives/")


def test_local_put_find_and_delete(local: LocalStorage, tmp_path: Path) -> None:
    src, digest = _file(tmp_path / "a.zip", 10_000)
    name = archive_name("5", FP1)
    assert local.find(name) is None
    stored = local.put(name, src, sha256=digest)
    assert stored.url == f"http://127.0.0.1:8080/archives/{name}"
    assert stored.size_bytes == 10_000 and stored.sha256 == digest and stored.url_expires_at is None
    assert local.find(name) == stored
    assert sorted(os.listdir(local.directory)) == [name, f"{name}.sha256"]  # no partial file left
    other = local.put(archive_name("55", FP1), _file(tmp_path / "b.zip", 10)[0], sha256=FP2)
    assert local.names("5") == [name]
    assert local.delete_docset("5") == [name]
    assert local.find(name) is None
    assert local.find(other.name) is not None


def test_local_find_recomputes_a_missing_checksum(local: LocalStorage, tmp_path: Path) -> None:
    src, digest = _file(tmp_path / "a.zip", 5000)
    name = archive_name("5", FP1)
    local.put(name, src, sha256=digest)
    (local.directory / f"{name}.sha256").unlink()
    found = local.find(name)
    assert found is not None and found.sha256 == digest


def test_local_urls_quote_the_name(local: LocalStorage, tmp_path: Path) -> None:
    stored = local.put(archive_name("a:b@c", FP1), _file(tmp_path / "a.zip", 1)[0], sha256=FP2)
    assert stored.url.endswith("/docset-a%3Ab%40c--" + FP1 + ".zip")


def test_local_refuses_foreign_names(local: LocalStorage, tmp_path: Path) -> None:
    with pytest.raises(InvalidArchiveNameError):
        local.put("../../etc/passwd", _file(tmp_path / "a.zip", 1)[0], sha256=FP1)
    with pytest.raises(InvalidArchiveNameError):
        local.find("x.zip")
    with pytest.raises(InvalidArchiveNameError):
        local.remove(f"docset-a/../../x--{FP1}.zip")


def test_local_failed_put_leaves_nothing_visible(local: LocalStorage, tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        local.put(archive_name("5", FP1), tmp_path / "does-not-exist.zip", sha256=FP1)
    assert local.names("5") == []
    assert [n for n in os.listdir(local.directory) if n.startswith(".partial-")] == []


def test_old_partial_files_are_swept(local: LocalStorage) -> None:
    old = local.directory / ".partial-old"
    new = local.directory / ".partial-new"
    old.write_bytes(b"x")
    new.write_bytes(b"y")
    os.utime(old, (1, 1))
    assert local.sweep_partials() == 1
    assert not old.exists() and new.exists()


def test_local_refuses_a_non_http_public_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        LocalStorage(tmp_path, "file:///srv")


# --- S3 via moto's server -------------------------------------------------------------------


NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def s3(moto_endpoint: str, aws_env: None) -> S3Storage:
    bucket = f"tdm-{uuid.uuid4().hex[:12]}"
    storage = S3Storage(
        bucket=bucket,
        prefix="packages/v1",
        endpoint_url=moto_endpoint,
        url_ttl=900,
        part_size=MIN_PART_SIZE,
        now=lambda: NOW,
    )
    storage._client.create_bucket(Bucket=bucket)
    return storage


def test_s3_multipart_upload_with_parts_over_5_mib(s3: S3Storage, tmp_path: Path) -> None:
    src, digest = _file(tmp_path / "a.zip", 2 * MIN_PART_SIZE + 123_456)
    name = archive_name("5", FP1)
    calls: list[str] = []
    s3._client.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))
    stored = s3.put(name, src, sha256=digest)
    assert calls.count("UploadPart") == 3
    # boto3's managed transfer, after a look for uploads a killed packager left open
    assert calls[:2] == ["ListMultipartUploads", "CreateMultipartUpload"] and calls[-1] == "CompleteMultipartUpload"
    assert stored.size_bytes == src.stat().st_size and stored.sha256 == digest
    assert stored.url_expires_at == NOW + timedelta(seconds=900)
    head = s3._client.head_object(Bucket=s3.bucket, Key=f"packages/v1/{name}")
    assert head["ContentLength"] == src.stat().st_size
    assert head["ContentType"] == "application/zip"
    # The presigned URL works over plain HTTP, and its lifetime is the configured one.
    assert parse_qs(urlsplit(stored.url).query)["X-Amz-Expires"] == ["900"]
    body = requests.get(stored.url, timeout=30).content
    assert hashlib.sha256(body).hexdigest() == digest
    assert s3._client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", []) == []


def test_s3_find_names_and_delete(s3: S3Storage, tmp_path: Path) -> None:
    src, digest = _file(tmp_path / "a.zip", 1000)
    name = archive_name("5", FP1)
    assert s3.find(name) is None
    s3.put(name, src, sha256=digest)
    s3.put(archive_name("5", FP2), _file(tmp_path / "b.zip", 10)[0], sha256=FP2)
    s3.put(archive_name("5--x", FP1), _file(tmp_path / "c.zip", 10)[0], sha256=FP2)
    found = s3.find(name)
    assert found is not None and found.sha256 == digest and found.size_bytes == 1000
    assert found.url_expires_at == NOW + timedelta(seconds=900)
    assert s3.names("5") == sorted([name, archive_name("5", FP2)])
    assert s3.delete_docset("5", keep=name) == [archive_name("5", FP2)]
    assert s3.names("5") == [name]
    s3.delete_docset("5")
    assert s3.find(name) is None
    assert s3.names("5--x") == [archive_name("5--x", FP1)]


def _fail_the_second_part(client: Any) -> list[int]:
    """Make the second UploadPart call of ``client`` fail as a dropped connection would; returns the call count."""
    calls: list[int] = []

    def fail(**_: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise ConnectionResetError("connection reset by peer (injected)")

    client.meta.events.register("before-call.s3.UploadPart", fail)
    return calls


def test_s3_failed_upload_is_aborted_and_leaves_nothing(s3: S3Storage, tmp_path: Path) -> None:
    failing = S3Storage(
        bucket=s3.bucket,
        prefix="packages/v1",
        part_size=MIN_PART_SIZE,
        max_concurrency=1,
        endpoint_url=s3._client.meta.endpoint_url,
    )
    calls = _fail_the_second_part(failing._client)
    src, digest = _file(tmp_path / "a.zip", MIN_PART_SIZE + 10)
    name = archive_name("5", FP1)
    with pytest.raises(StorageError, match="injected") as info:
        failing.put(name, src, sha256=digest)
    assert info.value.retryable and len(calls) >= 2
    assert s3._client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", []) == []
    assert s3.find(name) is None


def test_s3_an_upload_left_open_by_a_killed_packager_is_aborted_by_the_next(s3: S3Storage, tmp_path: Path) -> None:
    name = archive_name("5", FP1)
    key = f"packages/v1/{name}"
    stale = s3._client.create_multipart_upload(Bucket=s3.bucket, Key=key)["UploadId"]
    s3._client.upload_part(Bucket=s3.bucket, Key=key, UploadId=stale, PartNumber=1, Body=b"x" * 100)
    src, digest = _file(tmp_path / "a.zip", 1000)
    stored = s3.put(name, src, sha256=digest)
    assert stored.size_bytes == 1000
    assert s3._client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", []) == []
    assert s3._client.head_object(Bucket=s3.bucket, Key=key)["Metadata"] == {"sha256": digest}


def test_s3_parts_go_up_in_parallel_and_arrive_whole(s3: S3Storage, tmp_path: Path) -> None:
    parallel = S3Storage(
        bucket=s3.bucket,
        prefix="p",
        part_size=MIN_PART_SIZE,
        max_concurrency=3,
        endpoint_url=s3._client.meta.endpoint_url,
    )
    src, digest = _file(tmp_path / "a.zip", 3 * MIN_PART_SIZE + 1)
    stored = parallel.put(archive_name("6", FP2), src, sha256=digest)
    body = requests.get(stored.url, timeout=30).content
    assert hashlib.sha256(body).hexdigest() == digest and len(body) == 3 * MIN_PART_SIZE + 1


def test_s3_missing_bucket_is_a_clear_permanent_error(moto_endpoint: str, aws_env: None, tmp_path: Path) -> None:
    storage = S3Storage(bucket="no-such-bucket-here", endpoint_url=moto_endpoint)
    with pytest.raises(StorageError, match="bucket does not exist") as info:
        storage.put(archive_name("5", FP1), _file(tmp_path / "a.zip", 10)[0], sha256=FP1)
    assert not info.value.retryable


@pytest.mark.parametrize(
    "kwargs",
    [
        {"url_ttl": 0},
        {"url_ttl": MAX_URL_TTL + 1},
        {"part_size": MIN_PART_SIZE - 1},
        {"bucket": "Bad_Bucket"},
        {"prefix": "/abs"},
        {"prefix": "a/../b"},
    ],
)
def test_s3_bad_settings_are_configuration_errors(kwargs: dict[str, Any], aws_env: None) -> None:
    settings: dict[str, Any] = {"bucket": "tdm-ok", **kwargs}
    with pytest.raises(ConfigurationError):
        S3Storage(**settings)


def test_the_packager_on_s3_reuses_and_deletes(s3: S3Storage, tmp_path: Path) -> None:
    """fetch -> bag -> multipart upload to moto -> presigned URL; a repeat reuses it; delete removes it."""
    from examples.packager.api import ApiClient
    from examples.packager.packaging import Packager
    from tests.examples.packager.stub_api import API_KEY, StubApi, StubDoc, serve, validate_bag

    class Sink:
        def accepted(self, estimate_seconds: float | None) -> None:
            pass

        def progress(self, items_done: int, items_total: int, *, eta_seconds: float | None = None) -> None:
            pass

    stub = StubApi()
    stub.add_docset("40", [StubDoc(str(i), {"title": str(i)}, size=3_000_000) for i in range(4)])
    with serve(stub) as base:
        client = ApiClient(api_base=base, api_key=API_KEY)
        packager = Packager(api=client, storage=s3, work_dir=tmp_path, compresslevel=0)
        first = packager.package(docset_id="40", docset_url=f"{base}/api/docsets/40", sink=Sink())
        texts = stub.text_requests()
        second = packager.package(docset_id="40", docset_url=f"{base}/api/docsets/40", sink=Sink())
        client.close()
    assert first.size_bytes > 2 * MIN_PART_SIZE  # stored in more than two parts
    assert second.name == first.name and second.sha256 == first.sha256
    assert stub.text_requests() == texts
    download = tmp_path / "download.zip"
    download.write_bytes(requests.get(second.url, timeout=30).content)
    assert hashlib.sha256(download.read_bytes()).hexdigest() == first.sha256
    assert len(validate_bag(str(download))["payload"]) == 8
    assert bagit_validate(download) == 8
    # A delete naming an archive of another bucket, prefix or endpoint deletes nothing.
    parts = urlsplit(second.url)
    for foreign in [
        second.url.replace(f"/{s3.bucket}/", "/another-bucket/"),
        second.url.replace("/packages/v1/", "/packages/v2/"),
        parts._replace(netloc="s3.evil.example").geturl(),
        parts._replace(scheme="https").geturl(),
    ]:
        with pytest.raises(DeleteRefusedError, match="nothing was deleted"):
            packager.delete("40", foreign)
        assert s3.names("40") == [first.name]
    assert packager.delete("40", first.url) == [first.name]  # ours, even with an expired signature
    assert s3.names("40") == []
    assert s3._client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", []) == []


def test_s3_keeps_one_private_secret_for_every_packager(s3: S3Storage, moto_endpoint: str) -> None:
    assert s3.read_secret() is None
    made = load_secret(s3)
    assert len(made) == 64
    peer = S3Storage(bucket=s3.bucket, prefix="packages/v1", endpoint_url=moto_endpoint)  # another packager
    assert load_secret(peer) == made
    assert peer.create_secret(b"z" * 64) == made  # a racing second write loses (If-None-Match: *)
    key = f"packages/v1/{SECRET_NAME}"
    grants = s3._client.get_object_acl(Bucket=s3.bucket, Key=key)["Grants"]
    assert all(g["Grantee"].get("Type") == "CanonicalUser" for g in grants), grants
    assert s3.names("5") == []  # never taken for an archive
    assert requests.get(f"{moto_endpoint}/{s3.bucket}/{key}", timeout=30).status_code == 403


def test_s3_knows_its_own_urls_only(s3: S3Storage, tmp_path: Path) -> None:
    name = archive_name("5", FP1)
    stored = s3.put(name, _file(tmp_path / "a.zip", 10)[0], sha256=FP2)
    assert s3.name_of_url(stored.url) == name
    assert s3.name_of_url(stored.url.split("?", 1)[0]) == name
    parts = urlsplit(stored.url)
    assert s3.name_of_url(parts._replace(netloc="127.0.0.1:1").geturl()) is None
    assert s3.name_of_url(stored.url.replace(f"/{s3.bucket}/", "/other-bucket/")) is None
    assert s3.name_of_url(stored.url.replace("/packages/v1/", "/packages/")) is None
    assert s3.name_of_url(stored.url.replace(name, "x.zip")) is None


def test_local_knows_its_own_urls_only(local: LocalStorage) -> None:
    name = archive_name("a:b", FP1)
    url = f"http://127.0.0.1:8080/archives/{quote(name, safe='')}"
    assert local.name_of_url(url) == name
    assert local.name_of_url(url.replace("127.0.0.1:8080", "LOCALHOST:8080")) is None
    assert local.name_of_url(url.replace("/archives/", "/archives/x/")) is None
    assert local.name_of_url(url + "#frag") is None
    assert local.name_of_url("http://127.0.0.1:8080/archives/" + quote("../" + name, safe="")) is None


class _NoConditionalWrites:
    """A real client whose server knows no ``If-None-Match`` on PUT (older S3-compatible services)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_object(self, **kwargs: Any) -> Any:
        if "IfNoneMatch" in kwargs:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "NotImplemented", "Message": "no"}}, "PutObject")
        return self._client.put_object(**kwargs)


def test_s3_without_conditional_writes_still_keeps_a_secret(s3: S3Storage) -> None:
    plain = S3Storage(bucket=s3.bucket, prefix="packages/v1", client=_NoConditionalWrites(s3._client))  # type: ignore[arg-type]
    made = load_secret(plain)
    assert load_secret(s3) == made


def test_local_put_syncs_the_archive_and_then_its_directory(
    local: LocalStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stat

    synced: list[tuple[bool, list[str]]] = []  # (a directory?, what the directory held then)
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append((stat.S_ISDIR(os.fstat(fd).st_mode), sorted(os.listdir(local.directory))))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    path, digest = _file(tmp_path / "a.zip", 1000)
    name = archive_name("5", FP1)
    local.put(name, path, sha256=digest)
    kinds = [is_dir for is_dir, _ in synced]
    assert kinds == [False, False, True]  # the checksum file, the archive, then the directory
    assert name in synced[-1][1] and f"{name}.sha256" in synced[-1][1]  # synced after both renames
