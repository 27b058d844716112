"""The packager process: configuration from flags and environment, the worker wiring, signals, main()."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from urllib.parse import urlsplit

from examples.packager.api import ApiClient
from examples.packager.errors import DeleteRefusedError, PackagerError
from examples.packager.faults import FAULT_ENV, BeforeAckKiller
from examples.packager.limits import JobInterrupted, Limits
from examples.packager.ops_http import OpsListener, prometheus_or_none, tracer_or_none
from examples.packager.packaging import Estimator, Packager
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
)

__all__ = ["PackagerConfig", "build_packager", "build_storage", "main", "make_handlers", "parse_config", "run"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackagerConfig:
    """Everything the packager process needs; see ``docs/packager.md``.

    Attributes:
        broker_url: the broker (``TDM_BROKER_URL``).
        api_base: the TDM API's base URL, the only place fetched from (``TDM_API_BASE``).
        api_key: the packager's API key (``TDM_PACKAGER_API_KEY``); never logged or shown.
        storage: ``local:<dir>`` or ``s3://<bucket>/<prefix>`` (``TDM_STORAGE``).
        s3_endpoint: S3 endpoint for S3-compatible services (``TDM_S3_ENDPOINT``).
        s3_region: the bucket's region (``TDM_S3_REGION``).
        public_base_url: URL local archives are served under (``TDM_PUBLIC_BASE_URL``;
            default ``<api_base>/archives``).
        url_ttl: presigned URL lifetime in seconds (``TDM_URL_TTL``).
        work_dir: where archives are built (``TDM_WORK_DIR``; default: the temp directory).
        max_attempts: deliveries of one request before it is dead-lettered (``TDM_MAX_ATTEMPTS``).
        log_level: ``DEBUG``, ``INFO``, ... (``TDM_LOG_LEVEL``).
        log_format: ``text`` or ``json`` (``TDM_LOG_FORMAT``).
        metrics_port: the port of the ``/healthz``, ``/readyz``, ``/metrics`` listener
            (``TDM_METRICS_PORT``; ``None``: no listener).
        metrics_host: the address it listens on (``TDM_METRICS_HOST``).
        max_job_seconds: a job running longer makes ``/healthz`` answer 503 (``TDM_MAX_JOB_SECONDS``).
        queue_prefix: the server's prefix of docset ids on the broker (``TDM_QUEUE_PREFIX``);
            the same value as the server's.
        http_retries: extra tries of a transient HTTP failure, within one attempt.
        http_backoff_seconds: pause before the first HTTP retry, doubled each time.
        retry_backoff_seconds: the worker's pause before re-sending a failed request.
        archive_secret: the key of archive names (``TDM_ARCHIVE_SECRET``); ``None``: the one the
            storage keeps, made on first use. Never logged or shown.
        limits: what one job may take (``TDM_MAX_DOCSET_BYTES``, ``TDM_MAX_MEMBERS``,
            ``TDM_MAX_PAGES``, ``TDM_JOB_DEADLINE``).
    """

    broker_url: str
    api_base: str
    api_key: str = field(repr=False)
    storage: str = "local:archives"
    s3_endpoint: str | None = None
    s3_region: str | None = None
    public_base_url: str | None = None
    url_ttl: int = 3600
    work_dir: str | None = None
    max_attempts: int = 3
    log_level: str = "INFO"
    log_format: str = "text"
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    max_job_seconds: int | None = None
    queue_prefix: str = ""
    http_retries: int = 3
    http_backoff_seconds: float = 0.5
    retry_backoff_seconds: float = 1.0
    archive_secret: str | None = field(default=None, repr=False)
    limits: Limits = field(default_factory=Limits)


# flag -> (environment variable, help)
_OPTIONS: dict[str, tuple[str, str]] = {
    "--broker": ("TDM_BROKER_URL", "broker URL, e.g. stomp://guest:guest@127.0.0.1:61613/?dialect=rabbitmq"),
    "--api-base": ("TDM_API_BASE", "the TDM API base URL; nothing else is ever fetched"),
    "--api-key": ("TDM_PACKAGER_API_KEY", "the packager's API key (prefer the environment variable)"),
    "--storage": ("TDM_STORAGE", "local:/dir or s3://bucket/prefix (default local:archives)"),
    "--s3-endpoint": ("TDM_S3_ENDPOINT", "S3 endpoint URL for S3-compatible services"),
    "--s3-region": ("TDM_S3_REGION", "S3 region (default us-east-1)"),
    "--public-base-url": ("TDM_PUBLIC_BASE_URL", "URL local archives are served under (default <api-base>/archives)"),
    "--url-ttl": ("TDM_URL_TTL", f"lifetime of S3 presigned URLs in seconds, 1 to {MAX_URL_TTL} (default 3600)"),
    "--work-dir": ("TDM_WORK_DIR", "where archives are built before storing (default: the temp directory)"),
    "--max-attempts": ("TDM_MAX_ATTEMPTS", "deliveries of a request before it is dead-lettered (default 3)"),
    "--log-level": ("TDM_LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR (default INFO)"),
    "--queue-prefix": ("TDM_QUEUE_PREFIX", "the server's prefix of docset ids on the broker (default none)"),
    "--archive-secret": (
        "TDM_ARCHIVE_SECRET",
        "key of archive names, 32+ characters (prefer the variable; default: made once, kept in storage)",
    ),
    "--max-docset-bytes": ("TDM_MAX_DOCSET_BYTES", f"payload bytes of one archive (default {Limits.max_docset_bytes})"),
    "--max-members": ("TDM_MAX_MEMBERS", f"documents in one docset (default {Limits.max_members})"),
    "--max-pages": ("TDM_MAX_PAGES", f"pages of one docset listing (default {Limits.max_pages})"),
    "--job-deadline": ("TDM_JOB_DEADLINE", f"seconds one job may take (default {Limits.deadline_seconds:g})"),
    "--log-format": ("TDM_LOG_FORMAT", "text or json (one JSON object per line) (default text)"),
    "--metrics-port": ("TDM_METRICS_PORT", "serve /healthz, /readyz and /metrics on this port (default: off)"),
    "--metrics-host": ("TDM_METRICS_HOST", "the address of that listener (default 127.0.0.1)"),
    "--max-job-seconds": ("TDM_MAX_JOB_SECONDS", "a job running longer fails /healthz (default: no limit)"),
}


_REQUIRED = ("--broker", "--api-base", "--api-key")


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigurationError(f"{message}; see --help")


def parse_config(argv: Sequence[str], environ: Mapping[str, str]) -> PackagerConfig:
    """Read the configuration: flags first, then environment variables, then defaults.

    Raises:
        ConfigurationError: a required setting is missing or a value is invalid (the message names it).
    """
    parser = _ArgumentParser(prog="python -m examples.packager", description="The TDM reference packager.")
    for flag, (env, help_text) in _OPTIONS.items():
        parser.add_argument(flag, default=None, help=f"{help_text} [{env}]")
    args = vars(parser.parse_args(list(argv)))
    values: dict[str, str | None] = {}
    missing: list[str] = []
    for flag, (env, _) in _OPTIONS.items():
        key = flag[2:].replace("-", "_")
        values[key] = args[key] if args[key] is not None else (environ.get(env) or None)
        if flag in _REQUIRED and not values[key]:
            missing.append(f"{flag} / {env}")
    if missing:
        raise ConfigurationError("missing setting(s): " + ", ".join(missing))
    return PackagerConfig(
        broker_url=_str(values, "broker"),
        api_base=_str(values, "api_base"),
        api_key=_str(values, "api_key"),
        storage=values["storage"] or "local:archives",
        s3_endpoint=values["s3_endpoint"],
        s3_region=values["s3_region"],
        public_base_url=values["public_base_url"],
        url_ttl=_int(values, "url_ttl", 3600, low=1, high=MAX_URL_TTL),
        work_dir=values["work_dir"],
        max_attempts=_int(values, "max_attempts", 3, low=1, high=100),
        log_level=_log_level(values["log_level"] or "INFO"),
        log_format=_log_format(values["log_format"] or "text"),
        metrics_port=None if values["metrics_port"] is None else _int(values, "metrics_port", 0, low=0, high=65535),
        metrics_host=values["metrics_host"] or "127.0.0.1",
        max_job_seconds=None
        if values["max_job_seconds"] is None
        else _int(values, "max_job_seconds", 0, low=1, high=7 * 24 * 3600),
        queue_prefix=values["queue_prefix"] or "",
        archive_secret=values["archive_secret"],
        limits=Limits(
            max_docset_bytes=_int(values, "max_docset_bytes", Limits.max_docset_bytes, low=1, high=1 << 50),
            max_members=_int(values, "max_members", Limits.max_members, low=1, high=100_000_000),
            max_pages=_int(values, "max_pages", Limits.max_pages, low=1, high=10_000_000),
            deadline_seconds=_int(values, "job_deadline", int(Limits.deadline_seconds), low=1, high=30 * 86400),
        ),
    )


def _str(values: Mapping[str, str | None], key: str) -> str:
    value = values[key]
    assert value is not None
    return value


def _int(values: Mapping[str, str | None], key: str, default: int, *, low: int, high: int) -> int:
    raw = values[key]
    if raw is None:
        return default
    try:
        if not (raw.isascii() and raw.strip().isdigit() and len(raw.strip()) <= 20):
            raise ValueError(raw)
        value = int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{key.replace('_', '-')} must be a whole number, got {raw!r}") from exc
    if not low <= value <= high:
        raise ConfigurationError(f"{key.replace('_', '-')} must be between {low} and {high}, got {value}")
    return value


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigurationError(f"log level {raw!r} is not one of DEBUG, INFO, WARNING, ERROR")
    return level


def _log_format(raw: str) -> str:
    chosen = raw.strip().lower()
    if chosen not in {"text", "json"}:
        raise ConfigurationError(f"log format {raw!r} is not one of text, json")
    return chosen


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
    )
    return Packager(
        api=api,
        storage=storage,
        work_dir=work_dir,
        estimator=Estimator(),
        queue_prefix=config.queue_prefix,
        limits=config.limits,
        secret=load_secret(storage, config.archive_secret),
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
    log.info("packager up: broker %s, API %s, storage %s", _redact(config.broker_url), config.api_base, config.storage)
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


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the packager; return the exit status (0 stopped by a signal, 2 bad configuration, 1 broker down)."""
    try:
        config = parse_config(sys.argv[1:] if argv is None else argv, os.environ if environ is None else environ)
    except ConfigurationError as exc:
        print(f"packager: {exc}", file=sys.stderr)
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
        print(f"packager: {exc}", file=sys.stderr)
        return 2
    except MessagingError as exc:
        print(f"packager: {exc}", file=sys.stderr)
        return 1
    return 0
