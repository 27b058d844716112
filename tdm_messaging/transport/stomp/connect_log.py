"""Hold back stomp.py's own "could not connect" warning during a connect: the error we raise says it once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["ConnectFailures", "held_back_connect_warnings"]

_STOMP_LOGGER = "stomp.py"
_COULD_NOT_CONNECT = "could not connect to host"


class ConnectFailures(logging.Filter):
    """Drops the "could not connect" records logged by one thread, keeping their text in :attr:`reasons`."""

    def __init__(self, thread: int) -> None:
        super().__init__()
        self._thread = thread
        self.reasons: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self._thread or not isinstance(record.msg, str):
            return True
        if not record.msg.startswith(_COULD_NOT_CONNECT):
            return True
        # stomp.py logs ("could not connect to host %s, port %s: %s", host, port, exc): the cause is last.
        args = record.args if isinstance(record.args, tuple) else ()
        self.reasons.append(str(args[-1]) if args else record.getMessage())
        return False


@contextmanager
def held_back_connect_warnings() -> Iterator[ConnectFailures]:
    """For the ``with`` block, stomp.py's connect-failure warnings from this thread are not printed;
    the yielded filter's ``reasons`` hold their causes (e.g. ``[Errno 111] Connection refused``)."""
    logger = logging.getLogger(_STOMP_LOGGER)
    failures = ConnectFailures(threading.get_ident())
    logger.addFilter(failures)
    try:
        yield failures
    finally:
        logger.removeFilter(failures)
