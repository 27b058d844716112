"""The packager process: configuration from flags and environment, the worker wiring, signals, main()."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from urllib.parse import urlsplit

from examples.options import AppSettings, BrokerUrl, broker_option, option, whole_number
from examples.packager.api import ApiClient
from examples.packager.errors import DeleteRefusedError, PackagerError
from examples.packager.faults import FAULT_ENV, BeforeAckKiller
from examples.packager.limits import JobInterrupted, Limits
from examples.packager.ops_http import OpsListener, prometheus_or_none, tracer_or_none
from examples.packager.packaging import FETCH_CONCURRENCY, Estimator, Packager
from examples.packager.s3_storage import MAX_URL_TTL, S3Storage
from examples.packager.secret import load_secret
from examples.packager.storage import LocalStorage, Storage
from examples.packager.workdir import open_work_dir
from tdm_messaging import (
    ConfigurationError,
    DeleteRequest,
    Job,
    JobFailed,
    MessagingError,
    Observer,
    Observers,
    PackageResult,
    PackagerWorker,
    Transport,
    WorkerHealth,
    configure_logging,
    open_transport,
    redact_url,
)

__all__ = ["PackagerConfig", "build_packager", "build_storage", "main", "make_handlers", "parse_config", "run"]

log = logging.getLogger(__name__)


class PackagerConfig(AppSettings):
    """Everything the packager process needs; ``docs/packager.md`` lists the options and variables.

    Attributes:
        broker_url: the broker (``TDM_BROKER_URL``).
        api_base: the TDM API's base URL, the only place fetched from (``TDM_API_BASE``).
        api_key: the packager's API key (``TDM_PACKAGER_API_KEY``); never logged or shown.
        storage: ``local:<dir>`` or ``s3://<bucket>/<prefix>`` (``TDM_STORAGE``).
        s3_endpoint, s3_region: for S3-compatible services (``TDM_S3_ENDPOINT``, ``TDM_S3_REGION``).
        public_base_url: URL local archives are served under (``TDM_PUBLIC_BASE_URL``;
            default ``<api_base>/archives``).
        url_ttl: presigned URL lifetime in seconds (``TDM_URL_TTL``).
        work_dir: where archives are built (``TDM_WORK_DIR``; default: the temp directory).
        max_attempts: deliveries of one request before it is dead-lettered (``TDM_MAX_ATTEMPTS``).
        metrics_port, metrics_host: the ``/healthz``, ``/readyz``, ``/metrics`` listener
            (``TDM_METRICS_PORT``, ``None``: none; ``TDM_METRICS_HOST``).
        max_job_seconds: a job running longer makes ``/healthz`` answer 503 (``TDM_MAX_JOB_SECONDS``).
        http_retries: extra tries of a transient HTTP failure, within one attempt.
        http_backoff_seconds: urllib3 Retry's backoff_factor (the first retry at once, then doubling).
        retry_backoff_seconds: the worker's pause before re-sending a failed request.
        archive_secret: the key of archive names (``TDM_ARCHIVE_SECRET``); ``None``: the one the
            storage keeps, made on first use. Never logged or shown.
        max_docset_bytes, max_members, max_pages, job_deadline: what one job may take, as :attr:`limits`.
        fetch_concurrency: documents fetched and deflated at once (``TDM_FETCH_CONCURRENCY``).
        log_level, log_format, queue_prefix: shared with the server (``examples.options``).
    """

    broker_url: BrokerUrl = broker_option()
    api_base: str = option(env="TDM_API_BASE", flag="--api-base", help="the TDM API base URL; nothing else is fetched")
    api_key: str = option(
        env="TDM_PACKAGER_API_KEY", flag="--api-key", help="the packager's API key (prefer the variable)", secret=True
    )
    storage: str = option(
        "local:archives", env="TDM_STORAGE", flag="--storage", help="local:/dir or s3://bucket/prefix"
    )
    s3_endpoint: str | None = option(
        None, env="TDM_S3_ENDPOINT", flag="--s3-endpoint", help="S3-compatible endpoint URL"
    )
    s3_region: str | None = option(None, env="TDM_S3_REGION", flag="--s3-region", help="S3 region (us-east-1 if unset)")
    public_base_url: str | None = option(
        None, env="TDM_PUBLIC_BASE_URL", flag="--public-base-url", help="URL local archives are served under"
    )
    url_ttl: whole_number(1, MAX_URL_TTL) = option(  # type: ignore[valid-type]
        3600, env="TDM_URL_TTL", flag="--url-ttl", help=f"S3 presigned URL lifetime, 1 to {MAX_URL_TTL} seconds"
    )
    work_dir: str | None = option(None, env="TDM_WORK_DIR", flag="--work-dir", help="where archives are built")
    max_attempts: whole_number(1, 100) = option(  # type: ignore[valid-type]
        3, env="TDM_MAX_ATTEMPTS", flag="--max-attempts", help="deliveries of a request before it is dead-lettered"
    )
    archive_secret: str | None = option(
        None,
        env="TDM_ARCHIVE_SECRET",
        flag="--archive-secret",
        help="key of archive names, 32+ characters",
        secret=True,
    )
    max_docset_bytes: whole_number(1, 1 << 50) = option(  # type: ignore[valid-type]
        Limits.max_docset_bytes,
        env="TDM_MAX_DOCSET_BYTES",
        flag="--max-docset-bytes",
        help="payload bytes of one archive",
    )
    max_members: whole_number(1, 100_000_000) = option(  # type: ignore[valid-type]
        Limits.max_members, env="TDM_MAX_MEMBERS", flag="--max-members", help="documents in one docset"
    )
    max_pages: whole_number(1, 10_000_000) = option(  # type: ignore[valid-type]
        Limits.max_pages, env="TDM_MAX_PAGES", flag="--max-pages", help="pages of one docset listing"
    )
    job_deadline: whole_number(1, 30 * 86400) = option(  # type: ignore[valid-type]
        int(Limits.deadline_seconds), env="TDM_JOB_DEADLINE", flag="--job-deadline", help="seconds one job may take"
    )
    fetch_concurrency: whole_number(1, 64) = option(  # type: ignore[valid-type]
        FETCH_CONCURRENCY,
        env="TDM_FETCH_CONCURRENCY",
        flag="--fetch-concurrency",
        help="documents fetched and deflated at once",
    )
    metrics_port: whole_number(0, 65535) | None = option(  # type: ignore[valid-type]
        None,
        env="TDM_METRICS_PORT",
        flag="--metrics-port",
        help="serve /healthz, /readyz, /metrics here (off if unset)",
    )
    metrics_host: str = option(
        "127.0.0.1", env="TDM_METRICS_HOST", flag="--metrics-host", help="that listener's address"
    )
    max_job_seconds: whole_number(1, 7 * 86400) | None = option(  # type: ignore[valid-type]
        None, env="TDM_MAX_JOB_SECONDS", flag="--max-job-seconds", help="a job running longer fails /healthz"
    )
    http_retries: int = 3
    http_backoff_seconds: float = 0.5
    retry_backoff_seconds: float = 1.0

    @property
    def limits(self) -> Limits:
        """What one job may take."""
        return Limits(
            max_docset_bytes=self.max_docset_bytes,
            max_members=self.max_members,
            max_pages=self.max_pages,
            deadline_seconds=self.job_deadline,
        )


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigurationError(f"{message}; see --help")


def parse_config(argv: Sequence[str], environ: Mapping[str, str]) -> PackagerConfig:
    """Read the configuration: flags first, then environment variables, then defaults.

    Raises:
        ConfigurationError: a required setting is missing or a value is invalid (the message names it).
    """
    parser = _ArgumentParser(prog="python -m examples.packager", description="The TDM reference packager.")
    PackagerConfig.add_arguments(parser)
    return PackagerConfig.load(vars(parser.parse_args(list(argv))), environ)


def build_storage(config: PackagerConfig) -> Storage:
    """The storage ``config.storage`` names.

    Raises:
        ConfigurationError: the storage spec is neither ``local:<dir>`` nor ``s3://<bucket>[/<prefix>]``.
    """
    spec = config.storage
    if spec.startswith("local:"):
        directory = spec[len("local:") :]
        if not directory:
            raise ConfigurationError("storage 'local:' needs a directory, e.g. local:/var/lib/tdm/archives")
        base = config.public_base_url or config.api_base.rstrip("/") + "/archives"
        return LocalStorage(directory, base)
    if spec.startswith("s3://"):
        parts = urlsplit(spec)
        if not parts.netloc or parts.query or parts.fragment:
            raise ConfigurationError(f"storage {spec!r} must look like s3://bucket/prefix")
        return S3Storage(
            bucket=parts.netloc,
            prefix=parts.path.strip("/"),
            endpoint_url=config.s3_endpoint,
            region=config.s3_region,
            url_ttl=config.url_ttl,
        )
    raise ConfigurationError(f"storage {spec!r} is not understood; use local:/path/dir or s3://bucket/prefix")


def build_packager(config: PackagerConfig, *, storage: Storage | None = None) -> Packager:
    """The packaging core for ``config`` (``storage`` overrides the configured one, e.g. in tests).

    The work directory is created if missing, checked, and swept of the temporary archives of
    packagers that died (``examples.packager.workdir``).

    Raises:
        ConfigurationError: a bad API base, storage or work directory.
    """
    work_dir = open_work_dir(config.work_dir)
    storage = storage if storage is not None else build_storage(config)
    api = ApiClient(
        api_base=config.api_base,
        api_key=config.api_key,
        retries=config.http_retries,
        backoff=config.http_backoff_seconds,
        pool_size=config.fetch_concurrency,
    )
    return Packager(
        api=api,
        storage=storage,
        work_dir=work_dir,
        estimator=Estimator(),
        queue_prefix=config.queue_prefix,
        limits=config.limits,
        secret=load_secret(storage, config.archive_secret),
        fetch_concurrency=config.fetch_concurrency,
    )


def make_handlers(
    packager: Packager, *, max_attempts: int = 3
) -> tuple[Callable[[Job], PackageResult], Callable[[DeleteRequest], None]]:
    """The worker's package and delete handlers over ``packager``.

    A permanent :class:`PackagerError` (unsafe URL, API refusal, missing bucket, a limit passed)
    becomes ``JobFailed(retryable=False)`` at once. A transient one (network, HTTP 5xx, storage
    hiccup) is left to the worker, which re-sends the request, until the last of
    ``max_attempts``, where it becomes ``JobFailed(retryable=True)``. Any other exception
    is left to the worker too (retried, then dead-lettered). A delete naming an archive that is
    not this packager's becomes ``JobFailed``: the worker dead-letters it with the reason at once.
    ``JobInterrupted`` (the process is stopping) is caught by nobody here: the worker leaves the
    request unacknowledged for another packager.
    """

    def on_package(job: Job) -> PackageResult:
        request = job.request
        try:
            stored = packager.package(
                docset_id=request.docset_id, docset_url=request.docset_url, sink=job, formats=request.formats
            )
        except PackagerError as exc:
            if exc.retryable and job.attempt < max_attempts:
                raise  # the worker re-sends the request and tries again after a pause
            log.warning("docset %s: %s", request.docset_id, exc)
            raise JobFailed(str(exc), retryable=exc.retryable) from exc
        return PackageResult(
            archive_url=stored.url,
            size_bytes=stored.size_bytes,
            sha256=stored.sha256,
            content_type=stored.content_type,
            url_expires_at=stored.url_expires_at,
        )

    def on_delete(request: DeleteRequest) -> None:
        try:
            deleted = packager.delete(request.docset_id, request.archive_url)
        except DeleteRefusedError as exc:
            log.warning("%s", exc)
            raise JobFailed(str(exc)) from exc
        log.info("docset %s: deleted %d archive(s)", request.docset_id, len(deleted))

    return on_package, on_delete


def run(
    config: PackagerConfig,
    stop: threading.Event,
    *,
    transport: Transport | None = None,
    storage: Storage | None = None,
) -> None:
    """Serve package and delete requests until ``stop`` is set.

    Setting ``stop`` also cuts the job under way short (within moments, even in the middle of a
    slow read): its request is left unacknowledged, so the broker gives it to another packager.

    Args:
        config: the configuration.
        stop: set it to stop (the signal handlers of :func:`main` do).
        transport: an open transport to use instead of opening ``config.broker_url`` (tests).
        storage: a storage to use instead of the configured one (tests).

    Raises:
        ConfigurationError: bad settings.
        TransportError: the broker could not be reached at start.
    """
    packager = build_packager(config, storage=storage)
    packager.estimator.calibrate_now()  # a few tens of ms, logged; before any job, so none waits for it
    own_transport = transport is None
    transport = transport if transport is not None else open_transport(config.broker_url)
    on_package, on_delete = make_handlers(packager, max_attempts=config.max_attempts)
    health = WorkerHealth(max_job_seconds=config.max_job_seconds)
    metrics = prometheus_or_none()
    observers: list[Observer] = [health] if metrics is None else [health, metrics]
    worker = PackagerWorker(
        transport,
        on_package=on_package,
        on_delete=on_delete,
        max_attempts=config.max_attempts,
        retry_backoff_seconds=config.retry_backoff_seconds,
        observer=Observers(observers),
        tracer=tracer_or_none(),
    )
    if os.environ.get(FAULT_ENV):
        log.warning(
            "fault injection on: %s=%s (a test hook; never set it in production)", FAULT_ENV, os.environ[FAULT_ENV]
        )
        logging.getLogger("tdm_messaging.worker").addFilter(BeforeAckKiller())
    listener = None
    if config.metrics_port is not None:
        try:
            listener = OpsListener(host=config.metrics_host, port=config.metrics_port, health=health, metrics=metrics)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot listen on {config.metrics_host}:{config.metrics_port} for /healthz and /metrics: {exc}; "
                "choose another TDM_METRICS_PORT"
            ) from exc
        listener.start()
        log.info("ops listener on http://%s:%d (/healthz, /readyz, /metrics)", config.metrics_host, listener.port)
    log.info(
        "packager up: broker %s, API %s, storage %s", redact_url(config.broker_url), config.api_base, config.storage
    )
    done = threading.Event()
    watcher = threading.Thread(target=_interrupt_on_stop, args=(packager, stop, done), name="stop-watcher", daemon=True)
    watcher.start()
    try:
        worker.run(stop)
    except JobInterrupted as exc:
        log.warning("%s; its request goes back to the queue unacknowledged", exc)
    finally:
        done.set()
        if listener is not None:
            listener.close()
        packager.api.close()
        if own_transport:
            transport.close()


def _interrupt_on_stop(packager: Packager, stop: threading.Event, done: threading.Event) -> None:
    """Cut the job under way short once ``stop`` is set (a signal handler only sets the event)."""
    while not done.is_set():
        if stop.wait(0.2):
            packager.interrupt()
            return


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the packager; return the exit status (0 stopped by a signal, 2 bad configuration, 1 broker down)."""
    try:
        config = parse_config(sys.argv[1:] if argv is None else argv, os.environ if environ is None else environ)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level, config.log_format)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping; a job under way goes back to the queue", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        run(config, stop)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except MessagingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
