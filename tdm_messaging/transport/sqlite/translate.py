"""sqlite3 errors of the native SQLite backend translated into tdm_messaging.errors, naming the file and the fix."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tdm_messaging.errors import BrokerUnavailableError, ConfigurationError, MessagingError
from tdm_messaging.transport.sqlite.settings import SqliteSettings

__all__ = ["translate"]


def translate(exc: sqlite3.Error, what: str, *, path: Path, settings: SqliteSettings) -> MessagingError:
    """The error to raise (``from exc``) for ``exc``, met while doing ``what`` on the file ``path``.

    Returns:
        ConfigurationError for a file that is not a broker file this version can use;
        BrokerUnavailableError for everything else (cannot open, read-only, locked, other).
    """
    text = str(exc)
    where = f"{what} on {settings.display_url}"
    lowered = text.lower()
    if "not a database" in lowered or "newer tdm-messaging" in lowered:
        return ConfigurationError(
            f"{where}: {path} is not a broker file this version can use ({text}); point the URL at a new "
            "file or at one written by this transport"
        )
    if "unable to open" in lowered:
        if not path.parent.is_dir():
            return BrokerUnavailableError(
                f"{where}: cannot open the SQLite file {path}: the directory {path.parent} does not exist; "
                "create it or fix the path in the URL" + _relative_hint(settings)
            )
        return BrokerUnavailableError(
            f"{where}: cannot open the SQLite file {path} ({text}); check that this user may create and "
            f"write files in {path.parent} (the file and its -wal and -shm companions live there)"
        )
    if "readonly" in lowered or "read-only" in lowered:
        return BrokerUnavailableError(
            f"{where}: the SQLite file {path} is read-only for this user ({text}); give this user write "
            f"access to it and to {path.parent}"
        )
    if "locked" in lowered or "busy" in lowered:
        return BrokerUnavailableError(
            f"{where}: {path} stayed locked by another connection for more than busy_timeout="
            f"{settings.busy_timeout:g} s; look for a process stuck holding it, or raise busy_timeout"
        )
    return BrokerUnavailableError(f"{where}: SQLite failed on {path}: {type(exc).__name__}: {text}")


def _relative_hint(settings: SqliteSettings) -> str:
    """For ``sqlite:///var/tdm/broker.db``, which names ``var/tdm/broker.db`` under the working directory."""
    if settings.path.startswith(("/", "~")):
        return ""
    absolute = "/" + settings.path
    return (
        f"; the URL's path {settings.path!r} is relative to the working directory (three slashes): "
        f"for the absolute path {absolute} use four slashes, sqlite:///{absolute}"
    )
