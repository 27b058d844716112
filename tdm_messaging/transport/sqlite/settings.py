"""Settings of the native SQLite backend: parsed from a ``sqlite://`` URL, frozen, with clear errors."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from tdm_messaging.errors import ConfigurationError
from tdm_messaging.transport.namespace import NAMESPACE_PARAM

__all__ = [
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_REPLY_TTL",
    "DEFAULT_VISIBILITY_TIMEOUT",
    "SqliteSettings",
    "parse_sqlite_url",
]

DEFAULT_REPLY_TTL = 86_400.0
"""Seconds an idle reply queue lives (one day), the same default as the STOMP and kombu backends."""
DEFAULT_VISIBILITY_TIMEOUT = 30.0
"""Seconds a taken, unacknowledged message stays invisible once its holder stops renewing the lease."""
DEFAULT_POLL_INTERVAL = 0.1
"""Most seconds an idle consumer sleeps between looks at its queues (a same-process send wakes it at once)."""
MAX_POLL_INTERVAL = 0.5
"""The contract checks ``stop`` at least every 0.5 s while idle, so no idle sleep may be longer."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SqliteSettings:
    """Settings of one :class:`~tdm_messaging.transport.sqlite.backend.SqliteTransport`.

    Attributes:
        path: the database file, as the URL names it (relative paths are taken from the
            working directory when the transport opens).
        display_url: the URL as given, for messages and logs (it holds no secret).
        reply_ttl: seconds a reply queue may stay unused (no send, read, declare or consumer)
            before it is removed with its messages.
        visibility_timeout: seconds a taken message stays invisible after its holder last
            renewed the lease; a live transport renews every ``visibility_timeout / 3``.
        poll_interval: most seconds an idle consumer sleeps between looks (at most 0.5).
        busy_timeout: seconds to wait for another process's write lock before giving up.
    """

    path: str
    display_url: str
    reply_ttl: float = DEFAULT_REPLY_TTL
    visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT
    poll_interval: float = DEFAULT_POLL_INTERVAL
    busy_timeout: float = 10.0

    @property
    def reply_ttl_ms(self) -> int:
        """``reply_ttl`` in whole milliseconds (at least 1)."""
        return max(1, round(self.reply_ttl * 1000))

    @property
    def visibility_timeout_ms(self) -> int:
        """``visibility_timeout`` in whole milliseconds."""
        return round(self.visibility_timeout * 1000)

    def resolved_path(self) -> Path:
        """The database file as an absolute path (relative ones against the working directory now)."""
        return Path(self.path).expanduser().resolve()


# name -> (lowest value, highest value, what it means, an example)
_FLOATS: dict[str, tuple[float, float, str]] = {
    "reply_ttl": (0.001, math.inf, "seconds an unused reply queue lives, e.g. reply_ttl=86400"),
    "visibility_timeout": (
        1.0,
        math.inf,
        "seconds a taken message stays invisible once its holder stops renewing, e.g. visibility_timeout=30",
    ),
    "poll_interval": (0.001, MAX_POLL_INTERVAL, "most seconds an idle consumer sleeps, e.g. poll_interval=0.1"),
    "busy_timeout": (0.001, math.inf, "seconds to wait for another process's write lock, e.g. busy_timeout=10"),
}
_VALID = sorted([*_FLOATS, "dialect", NAMESPACE_PARAM])  # namespace is taken off by open_transport


def parse_sqlite_url(url: str) -> SqliteSettings:
    """Parse ``sqlite:///relative.db`` or ``sqlite:////absolute/path.db`` and its query parameters.

    Parameters: ``reply_ttl``, ``visibility_timeout``, ``poll_interval``, ``busy_timeout``
    (seconds each) and ``dialect=plain`` (accepted for symmetry with the other URLs).

    Raises:
        ConfigurationError: another scheme, a host in the URL, no file name, an in-memory
            database, an unknown parameter (the message lists the valid ones), or a value
            that is not a number in range.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(f"broker URL {url!r} has no scheme; expected e.g. 'sqlite:///tdm-broker.db'")
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise ConfigurationError(
            f"{url}: scheme {parts.scheme!r} is not the native SQLite transport; use sqlite:///relative.db or "
            "sqlite:////absolute/path.db (kombu's SQLAlchemy transport is sqla+sqlite://)"
        )
    if parts.netloc:
        raise ConfigurationError(
            f"{url}: a SQLite URL names a file, not a host ({parts.netloc!r}); use three slashes for a relative "
            "path (sqlite:///tdm-broker.db) or four for an absolute one (sqlite:////var/lib/tdm/broker.db)"
        )
    path = unquote(parts.path[1:]) if parts.path.startswith("/") else unquote(parts.path)
    if not path or path.endswith("/"):
        raise ConfigurationError(
            f"{url}: no database file named; give one, e.g. sqlite:///tdm-broker.db or sqlite:////var/lib/tdm/broker.db"
        )
    if path == ":memory:" or path.startswith("file:"):
        raise ConfigurationError(
            f"{url}: the SQLite transport needs a file that every process can open, not {path!r}; "
            "give a path such as sqlite:///tdm-broker.db (use memory:// for an in-process broker)"
        )
    values: dict[str, float] = {}
    for name, raw in parse_qsl(parts.query, keep_blank_values=True):
        if name in _FLOATS:
            if name in values:
                raise ConfigurationError(f"{url}: parameter {name!r} is given twice; give it once")
            values[name] = _parse_float(name, raw, url)
        elif name == "dialect":
            if raw.lower() != "plain":
                raise ConfigurationError(
                    f"{url}: dialect={raw!r} is not valid for a SQLite URL; queues are stored under their "
                    "logical names (dialect=plain), or leave the parameter out"
                )
        else:
            raise ConfigurationError(f"{url}: unknown parameter {name!r}; valid parameters are " + ", ".join(_VALID))
    return SqliteSettings(path=path, display_url=url, **values)


def _parse_float(name: str, raw: str, url: str) -> float:
    low, high, hint = _FLOATS[name]
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (low <= value <= high) or math.isinf(value):
        bound = f"from {low:g} to {high:g}" if high != math.inf else f"at least {low:g}"
        raise ConfigurationError(f"{url}: {name}={raw!r} is not valid; give {hint} ({bound})")
    return value
