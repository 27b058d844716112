"""The server's settings: one frozen value, built from command-line options or TDM_* environment variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ApiKeySpec", "Settings", "parse_api_keys"]

DEFAULT_MAX_BODY_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class ApiKeySpec:
    """An API key to provision on start: its ``owner`` name, the ``key`` itself, and ``role``.

    ``role`` is ``miner`` (owns docsets) or ``packager`` (may read any docset, changes none).
    The key is stored hashed; ``repr`` hides it so it never reaches a log.
    """

    owner: str
    key: str = field(repr=False)
    role: str = "miner"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server needs; see docs/server.md for the matching options and variables.

    Attributes:
        db_url: ``sqlite:///path.db`` (relative) or ``sqlite:////abs/path.db``.
        broker_url: the transport URL (``stomp://...``, ``amqp://...``, ``sqlite:///...``, ...); the
            default is the embedded SQLite file ``tdm-broker.db`` (no broker daemon, no driver).
        archive_dir: where the local-directory storage keeps archives, served under ``/archives/``.
        public_url: the base URL clients and the packager reach the server at (no trailing
            slash); ``None`` derives it from each request's Host header.
        host, port: where to listen (port 0: any free port).
        threads: waitress worker threads (also the most broker connections held at once).
        max_body_bytes: larger request bodies are refused with 413.
        api_keys: keys to provision on start.
        search_timeout_seconds: the most time one full-text search may take; SQLite is
            interrupted after it and the request answered 422 ``query_too_expensive``.
        max_concurrent_searches: full-text searches run at once; more wait up to one search
            timeout, then get 503 with ``Retry-After`` (so searches never take every thread).
        max_dumps_in_flight: per owner, docsets whose package is being built at once; one more
            request is answered 429 with ``Retry-After``.
        max_stored_archives: per owner, built archives kept (plus those being built); one more
            request is answered 429 until the owner deletes a dump or a docset.
        dump_stale_after_seconds: a build not heard of for this long no longer counts as in
            flight (a packager that died must not lock its owner out for ever).
        queue_prefix: put before a docset's id to make its messaging id (its reply queue is
            ``package/<prefix><id>``), so several servers (or test runs) can share one broker.
    """

    db_url: str = "sqlite:///tdm-server.db"
    broker_url: str = "sqlite:///tdm-broker.db"
    archive_dir: Path = Path("archives")
    public_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    threads: int = 4
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    api_keys: tuple[ApiKeySpec, ...] = ()
    queue_prefix: str = ""
    search_timeout_seconds: float = 2.0
    max_concurrent_searches: int = 2
    max_dumps_in_flight: int = 8
    max_stored_archives: int = 8
    dump_stale_after_seconds: float = 3600.0


def parse_api_keys(text: str, *, role: str = "miner") -> tuple[ApiKeySpec, ...]:
    """Parse ``owner=key[,owner=key...]`` (as in ``TDM_SERVER_API_KEYS``) into key specs.

    Raises:
        ValueError: an entry is not ``owner=key`` (the message shows the owner, never the key).
    """
    specs: list[ApiKeySpec] = []
    for entry in filter(None, (part.strip() for part in text.split(","))):
        owner, sep, key = entry.partition("=")
        if not sep or not owner.strip() or not key.strip():
            shown = owner.strip() if sep else "<entry without '='>"
            raise ValueError(f"API key entry for {shown!r} must look like owner=key")
        specs.append(ApiKeySpec(owner.strip(), key.strip(), role))
    return tuple(specs)


def env_defaults(environ: Mapping[str, str]) -> dict[str, str]:
    """The ``TDM_*`` variables the server reads, by option name (only those that are set)."""
    names = {
        "db": "TDM_SERVER_DB",
        "broker": "TDM_BROKER_URL",
        "archive_dir": "TDM_ARCHIVE_DIR",
        "public_url": "TDM_PUBLIC_URL",
        "host": "TDM_SERVER_HOST",
        "port": "TDM_SERVER_PORT",
        "threads": "TDM_SERVER_THREADS",
        "api_keys": "TDM_SERVER_API_KEYS",
        "packager_key": "TDM_PACKAGER_API_KEY",
        "queue_prefix": "TDM_QUEUE_PREFIX",
        "search_timeout": "TDM_SEARCH_TIMEOUT",
        "max_dumps_in_flight": "TDM_MAX_DUMPS_IN_FLIGHT",
        "max_stored_archives": "TDM_MAX_STORED_ARCHIVES",
        "log_level": "TDM_LOG_LEVEL",
        "log_format": "TDM_LOG_FORMAT",
    }
    return {option: environ[var] for option, var in names.items() if environ.get(var)}
