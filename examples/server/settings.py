"""The server's settings: one frozen pydantic-settings value, from command-line options, TDM_* variables or defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError
from pydantic_settings import NoDecode

from examples.options import AppSettings, BrokerUrl, Seconds, broker_option, option, whole_number

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


def _api_keys(value: Any) -> Any:
    """``owner=key,...`` text (the variable), a list of such texts (``--api-key``, repeated) or specs."""
    items = [value] if isinstance(value, str) else list(value)
    specs: list[ApiKeySpec] = []
    for item in items:
        try:
            specs.extend(parse_api_keys(item) if isinstance(item, str) else [item])
        except ValueError as exc:  # the message names the owner, never the key
            raise PydanticCustomError("api_keys", f"must be owner=key[,owner=key...] ({exc})") from None
    return tuple(specs)


class Settings(AppSettings):
    """Everything the server needs; docs/server.md lists the options and variables.

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
        api_keys: miner keys to provision on start (``TDM_SERVER_API_KEYS``; each ``--api-key`` adds one).
        packager_key: the packager's key, provisioned with role ``packager``.
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
        log_level, log_format: as the packager's.
    """

    db_url: str = option("sqlite:///tdm-server.db", env="TDM_SERVER_DB", flag="--db", help="sqlite:///path.db")
    broker_url: BrokerUrl = broker_option("sqlite:///tdm-broker.db")
    archive_dir: Path = option(Path("archives"), env="TDM_ARCHIVE_DIR", flag="--archive-dir", help="archive directory")
    public_url: str | None = option(None, env="TDM_PUBLIC_URL", flag="--public-url", help="base URL clients see")
    host: str = option("127.0.0.1", env="TDM_SERVER_HOST", flag="--host", help="address to listen on")
    port: whole_number(0, 65535) = option(8080, env="TDM_SERVER_PORT", flag="--port", help="0: any free")  # type: ignore[valid-type]
    threads: whole_number(1, 1024) = option(4, env="TDM_SERVER_THREADS", flag="--threads", help="waitress threads")  # type: ignore[valid-type]
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    api_keys: Annotated[tuple[ApiKeySpec, ...], NoDecode, BeforeValidator(_api_keys)] = Field(
        (), validation_alias="TDM_SERVER_API_KEYS", repr=False, json_schema_extra={"flag": "--api-key"}
    )
    packager_key: str | None = option(
        None, env="TDM_PACKAGER_API_KEY", flag="--packager-key", help="the packager's key", secret=True
    )
    search_timeout_seconds: Seconds = option(
        2.0, env="TDM_SEARCH_TIMEOUT", flag="--search-timeout", help="seconds one full-text search may run"
    )
    max_concurrent_searches: int = 2
    max_dumps_in_flight: whole_number(1, 1_000_000) = option(  # type: ignore[valid-type]
        8, env="TDM_MAX_DUMPS_IN_FLIGHT", flag="--max-dumps-in-flight", help="per owner: packages being built at once"
    )
    max_stored_archives: whole_number(1, 1_000_000) = option(  # type: ignore[valid-type]
        8, env="TDM_MAX_STORED_ARCHIVES", flag="--max-stored-archives", help="per owner: archives kept"
    )
    dump_stale_after_seconds: float = 3600.0

    @property
    def keys_to_provision(self) -> tuple[ApiKeySpec, ...]:
        """The miners' keys, then the packager's (role ``packager``) if one is set."""
        packager = (ApiKeySpec("packager", self.packager_key, "packager"),) if self.packager_key else ()
        return (*self.api_keys, *packager)

    @classmethod
    def load_with_keys(cls, flags: Mapping[str, Any], environ: Mapping[str, str]) -> Self:
        """:meth:`load`, except that ``--api-key`` options add to ``TDM_SERVER_API_KEYS`` rather than replace it."""
        extra = list(flags.get("api_keys", ()))
        if extra and environ.get("TDM_SERVER_API_KEYS"):
            flags = {**flags, "api_keys": [environ["TDM_SERVER_API_KEYS"], *extra]}
        return cls.load(flags, environ)
