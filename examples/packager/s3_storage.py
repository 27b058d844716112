"""Archives in S3 (or any S3-compatible service): boto3's managed upload, presigned URLs, errors translated once."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote, urlsplit

from examples.packager.errors import InvalidArchiveNameError, StorageError
from examples.packager.faults import maybe_die
from examples.packager.secret import SECRET_NAME
from examples.packager.storage import ARCHIVE_CONTENT_TYPE, Storage, StoredPackage, parse_archive_name
from tdm_messaging import ConfigurationError

if TYPE_CHECKING:
    from boto3.s3.transfer import TransferConfig
    from mypy_boto3_s3 import S3Client

__all__ = ["MAX_URL_TTL", "MIN_PART_SIZE", "S3Storage"]

log = logging.getLogger(__name__)

MAX_URL_TTL: Final = 7 * 24 * 3600
"""The longest lifetime of a presigned URL (S3 signature version 4 allows no more)."""
MIN_PART_SIZE: Final = 5 * 1024 * 1024
"""S3's smallest part, except the last."""


class S3Storage(Storage):
    """Archives in an S3 bucket (or any S3-compatible service), uploaded in parts, handed out as presigned URLs.

    The upload is boto3's managed transfer (``upload_file`` with a ``TransferConfig``): a
    multipart upload of ``part_size`` parts, ``max_concurrency`` at a time (so memory holds
    that many parts). On any failure the upload is aborted, and an upload of the same key left
    open by a killed packager is aborted before the next one starts, so no multipart upload is
    left open and nothing partial is visible. The archive's SHA-256 is kept in the object's
    metadata (``x-amz-meta-sha256``).

    Args:
        bucket: the bucket (must exist).
        prefix: key prefix, e.g. ``tdm/packages`` (no leading slash).
        endpoint_url: the S3 endpoint for S3-compatible services (MinIO, moto); ``None`` for AWS.
        region: the bucket's region.
        url_ttl: lifetime of presigned URLs in seconds, 1 to :data:`MAX_URL_TTL`.
        part_size: bytes per part, at least :data:`MIN_PART_SIZE`.
        max_concurrency: parts uploaded at once (1: no threads).
        client: a boto3 S3 client to use instead of building one (credentials come from
            boto3's usual chain: environment, profile, instance role).
        now: the clock for ``url_expires_at``.

    Raises:
        ConfigurationError: a bad bucket, prefix, TTL or part size, or boto3 is not installed.
    """

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        url_ttl: int = 3600,
        part_size: int = 8 * 1024 * 1024,
        max_concurrency: int = 4,
        client: S3Client | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
            raise ConfigurationError(f"S3 bucket name {bucket!r} is not valid (3-63 of a-z 0-9 . -)")
        if prefix.startswith("/") or ".." in prefix.split("/"):
            raise ConfigurationError(f"S3 prefix {prefix!r} must be relative, without '..'")
        if not 1 <= url_ttl <= MAX_URL_TTL:
            raise ConfigurationError(f"URL lifetime {url_ttl} s is out of range; give 1 to {MAX_URL_TTL} seconds")
        if part_size < MIN_PART_SIZE:
            raise ConfigurationError(f"part size {part_size} is below S3's minimum of {MIN_PART_SIZE} bytes")
        if not 1 <= max_concurrency <= 64:
            raise ConfigurationError(f"max_concurrency {max_concurrency} is out of range; give 1 to 64")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url_ttl = url_ttl
        self.part_size = part_size
        self.max_concurrency = max_concurrency
        self._now: Callable[[], datetime] = now or (lambda: datetime.now(UTC))
        self._client = client if client is not None else self._make_client(endpoint_url, region)
        # The test hook (off by default) kills the process once a part is sent, the upload still open.
        self._client.meta.events.register(
            "after-call.s3.UploadPart", _die_after_a_part, unique_id="tdm-packager-fault-upload"
        )

    @staticmethod
    def _make_client(endpoint_url: str | None, region: str | None) -> S3Client:
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:
            raise ConfigurationError("S3 storage needs boto3: pip install -r examples/requirements-s3.txt") from exc
        config = Config(
            signature_version="s3v4",
            retries={"max_attempts": 5, "mode": "standard"},
            s3={"addressing_style": "path" if endpoint_url else "auto"},
        )
        return boto3.client("s3", endpoint_url=endpoint_url, region_name=region or "us-east-1", config=config)

    def key(self, name: str) -> str:
        """The object key of archive ``name``."""
        if parse_archive_name(name) is None:
            raise InvalidArchiveNameError(f"{name!r} is not an archive name of the form docset-<id>--<sha256>.zip")
        return self.prefix + name

    def _presign(self, key: str) -> tuple[str, datetime]:
        expires_at = self._now() + timedelta(seconds=self.url_ttl)
        url = self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.url_ttl
        )
        return url, expires_at

    def find(self, name: str) -> StoredPackage | None:
        """See :meth:`Storage.find`."""
        key = self.key(name)
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=key)
            url, expires_at = self._presign(key)
        except Exception as exc:
            if _is_not_found(exc):
                return None
            raise _storage_error(f"cannot look up s3://{self.bucket}/{key}", exc) from exc
        sha256 = head.get("Metadata", {}).get("sha256")
        return StoredPackage(
            name=name,
            url=url,
            size_bytes=head["ContentLength"],
            sha256=sha256 if sha256 and re.fullmatch(r"[0-9a-f]{64}", sha256) else None,
            url_expires_at=expires_at,
        )

    def put(self, name: str, path: Path, *, sha256: str) -> StoredPackage:
        """See :meth:`Storage.put`."""
        key = self.key(name)
        self._abort_open_uploads(key, why="left open by an earlier attempt")
        size = path.stat().st_size
        try:
            # boto3's managed transfer: the parts, their retries, the completion, and the abort of
            # this upload when a part fails (s3transfer's failure cleanup).
            self._client.upload_file(
                str(path),
                self.bucket,
                key,
                ExtraArgs={"ContentType": ARCHIVE_CONTENT_TYPE, "Metadata": {"sha256": sha256}},
                Config=self._transfer_config(),
            )
        except BaseException as exc:
            # A stop (KeyboardInterrupt, SIGTERM's JobInterrupted) or an error s3transfer did not
            # clean up after: whatever upload of this key is still open goes, so nothing is left.
            self._abort_open_uploads(key, why="after a failed upload")
            if not isinstance(exc, Exception):
                raise
            raise _storage_error(f"cannot upload s3://{self.bucket}/{key}", exc) from exc
        parts = max(1, -(-size // self.part_size))
        log.info("stored archive %s (%d bytes, %d parts) in s3://%s/%s", name, size, parts, self.bucket, key)
        url, expires_at = self._presign(key)
        return StoredPackage(name=name, url=url, size_bytes=size, sha256=sha256, url_expires_at=expires_at)

    def _transfer_config(self) -> TransferConfig:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(
            # Every archive (but an empty file) is a multipart upload, as it always was here: one
            # path for all sizes, so a kill mid-upload leaves an open upload that the next attempt
            # aborts (_abort_open_uploads), never a half-written object.
            multipart_threshold=1,
            multipart_chunksize=self.part_size,
            max_concurrency=self.max_concurrency,  # memory holds up to this many parts
            use_threads=self.max_concurrency > 1,
        )

    def _abort_open_uploads(self, key: str, *, why: str) -> None:
        """Abort open multipart uploads of ``key``: one left by a packager killed mid-upload (SIGKILL), or ours.

        A killed packager's ``except`` never ran, so nothing aborted its upload. The key is
        content-addressed, so an upload of it still running elsewhere (a duplicate delivery) would
        store the very same bytes: aborting it only makes that job retry and find this archive.
        """
        try:
            listing = self._client.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
        except Exception as exc:
            log.warning("could not list open uploads of s3://%s/%s: %s", self.bucket, key, exc)
            return
        for upload in listing.get("Uploads", []):
            if upload.get("Key") == key and upload.get("UploadId"):
                log.info("aborting multipart upload %s of s3://%s/%s %s", upload["UploadId"], self.bucket, key, why)
                self._abort(key, upload["UploadId"])

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception as exc:
            # Log and go on: the original failure is the one to report. A bucket lifecycle rule
            # (AbortIncompleteMultipartUpload) is the backstop for this case.
            log.error("could not abort multipart upload %s of s3://%s/%s: %s", upload_id, self.bucket, key, exc)

    def names(self, docset_id: str) -> list[str]:
        """See :meth:`Storage.names`."""
        found: list[str] = []
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}docset-{docset_id}--"):
                for item in page.get("Contents", []):
                    name = item["Key"][len(self.prefix) :]
                    parsed = parse_archive_name(name)
                    if parsed and parsed[0] == docset_id:
                        found.append(name)
        except Exception as exc:
            raise _storage_error(f"cannot list s3://{self.bucket}/{self.prefix}", exc) from exc
        return sorted(found)

    def remove(self, name: str) -> None:
        """See :meth:`Storage.remove`."""
        key = self.key(name)
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise _storage_error(f"cannot delete s3://{self.bucket}/{key}", exc) from exc
        log.info("deleted archive s3://%s/%s", self.bucket, key)

    def name_of_url(self, url: str) -> str | None:
        """See :meth:`Storage.name_of_url`: the endpoint, bucket and key of a URL we would hand out (query ignored)."""
        theirs = urlsplit(url)
        name = unquote(theirs.path.rsplit("/", 1)[-1])
        if parse_archive_name(name) is None:
            return None
        ours = urlsplit(self._presign(self.key(name))[0])  # signed locally: no request is made
        same = (theirs.scheme.lower(), theirs.netloc.lower(), theirs.path) == (
            ours.scheme.lower(),
            ours.netloc.lower(),
            ours.path,
        )
        return name if same else None

    def describe(self) -> str:
        """See :meth:`Storage.describe`."""
        return f"s3://{self.bucket}/{self.prefix}"

    def secret_location(self) -> str:
        """See :meth:`Storage.secret_location`."""
        return f"s3://{self.bucket}/{self.prefix}{SECRET_NAME}"

    def read_secret(self) -> bytes | None:
        """See :meth:`Storage.read_secret`."""
        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=self.prefix + SECRET_NAME)
            return answer["Body"].read(4096)
        except Exception as exc:
            if _is_not_found(exc):
                return None
            raise _storage_error(f"cannot read the archive secret {self.secret_location()}", exc) from exc

    def create_secret(self, value: bytes) -> bytes:
        """See :meth:`Storage.create_secret`: a private object written only if absent (``If-None-Match: *``)."""
        key = self.prefix + SECRET_NAME
        try:
            self._client.put_object(Bucket=self.bucket, Key=key, Body=value, IfNoneMatch="*")
        except Exception as exc:
            code = _error_code(exc)
            if code in {"NotImplemented", "501"}:
                # A server without conditional writes: a race between two first starts may then
                # leave the later secret; the earlier one's few archives are just not reused.
                self._put_plain(key, value)
            elif code not in {"PreconditionFailed", "412", "ConditionalRequestConflict"}:
                raise _storage_error(f"cannot write the archive secret {self.secret_location()}", exc) from exc
        kept = self.read_secret()
        if kept is None:
            raise StorageError(
                f"the archive secret {self.secret_location()} vanished as it was written", retryable=True
            )
        return kept

    def _put_plain(self, key: str, value: bytes) -> None:
        try:
            self._client.put_object(Bucket=self.bucket, Key=key, Body=value)
        except Exception as exc:
            raise _storage_error(f"cannot write the archive secret {self.secret_location()}", exc) from exc


def _die_after_a_part(**_: object) -> None:
    maybe_die("upload")


def _error_code(exc: BaseException) -> str:
    # boto3's managed transfer raises S3UploadFailedError while handling the ClientError: look down the chain.
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            return str(response.get("Error", {}).get("Code", ""))
        seen = seen.__cause__ or seen.__context__
    return ""


def _is_not_found(exc: BaseException) -> bool:
    return _error_code(exc) in {"404", "NoSuchKey", "NotFound"}


def _storage_error(what: str, exc: Exception) -> StorageError:
    code = _error_code(exc)
    if code == "NoSuchBucket":
        return StorageError(f"{what}: the bucket does not exist; create it or fix TDM_STORAGE")
    if code in {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
        return StorageError(f"{what}: access refused ({code}); check the S3 credentials and the bucket policy")
    return StorageError(f"{what}: {type(exc).__name__}: {exc}", retryable=True)
