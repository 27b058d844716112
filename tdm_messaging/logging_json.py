"""Log set-up shared by the apps: text or one JSON object per line (standard library only), with the records' fields."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

from tdm_messaging.errors import ConfigurationError

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "JsonFormatter", "configure_logging"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# What every LogRecord has; anything else on a record came from ``extra=`` and is a field.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line.

    Keys: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, then every field given
    with ``extra=`` (the library's records carry ``docset_id``, ``request_id`` and ``attempt``),
    then ``exception`` (the formatted traceback) when there is one. A field that JSON cannot
    hold is written as its ``repr``.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=repr)


def configure_logging(level: str = "INFO", fmt: str = "text", *, stream: TextIO | None = None) -> None:
    """Set the root logger up as both reference apps do (``TDM_LOG_LEVEL``, ``TDM_LOG_FORMAT``).

    Replaces the root logger's handlers with one writing to ``stream`` (default stderr).

    Args:
        level: ``DEBUG``, ``INFO``, ``WARNING`` or ``ERROR`` (any case).
        fmt: ``text`` (one human line per record) or ``json`` (:class:`JsonFormatter`).

    Raises:
        ConfigurationError: ``level`` or ``fmt`` is not one of those (the message lists them).
    """
    chosen_level = level.strip().upper()
    if chosen_level not in LOG_LEVELS:
        raise ConfigurationError(f"log level {level!r} is not one of {', '.join(LOG_LEVELS)}")
    chosen_format = fmt.strip().lower()
    if chosen_format not in LOG_FORMATS:
        raise ConfigurationError(f"log format {fmt!r} is not one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if chosen_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(chosen_level)
