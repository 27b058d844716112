"""A job's bounds (bytes, members, pages, time) and its cancellation: by a deadline or by a stopping process."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

from urllib3 import BaseHTTPResponse

from tdm_messaging import ConfigurationError

__all__ = ["Cancel", "JobInterrupted", "Limits", "describe_count"]

log = logging.getLogger(__name__)

_GIB: Final = 1 << 30


class JobInterrupted(BaseException):
    """The process is stopping: the job is given up unfinished and its request left unacknowledged.

    A ``BaseException``, like ``KeyboardInterrupt``: it is not a failure of the job, so neither the
    packager's handlers nor the worker's retry catch it. It leaves the worker's handler, the
    transport gives the delivery back (not acknowledged), and another packager does the job.
    """


@dataclass(frozen=True)
class Limits:
    """What one job may take; going over one fails the job with a reason naming the limit.

    Attributes:
        max_docset_bytes: payload bytes of one archive (texts and ``meta.json`` files).
        max_members: documents in one docset (after duplicates are dropped), and the most a
            listing may announce.
        max_pages: pages of one listing (``next`` links followed, the first page included).
        deadline_seconds: wall time of one job, listing to stored archive; the fetch under way
            is cut off when it passes.
    """

    max_docset_bytes: int = 8 * _GIB
    max_members: int = 100_000
    max_pages: int = 2_000
    deadline_seconds: float = 7200.0

    def __post_init__(self) -> None:
        for name in ("max_docset_bytes", "max_members", "max_pages"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.deadline_seconds < float("inf"):
            raise ConfigurationError(f"job deadline must be a positive number of seconds, got {self.deadline_seconds}")


def describe_count(value: int) -> str:
    """``value`` for a message: the number itself, or how large it is when it is absurdly long."""
    return str(value) if value.bit_length() <= 64 else f"a number of {value.bit_length()} bits (over 2**64)"


class Cancel:
    """One job's cancellation: set once, with the error the job ends with; it aborts the HTTP reads under way.

    A read blocked on a socket (a text trickled a byte at a time) does not look at flags, so
    :meth:`cancel` shuts the sockets of the responses being read (:meth:`watching`): the blocked
    ``recv`` returns at once, from any thread, and from a signal handler in the reading thread too.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()  # re-entrant: a signal handler may run in the thread holding it
        self._error: BaseException | None = None
        self._event = threading.Event()
        self._responses: list[BaseHTTPResponse] = []
        self._timer: threading.Timer | None = None

    @property
    def cancelled(self) -> bool:
        """Whether the job was cancelled."""
        return self._error is not None

    def cancel(self, error: BaseException) -> None:
        """End the job with ``error`` (the first cancel wins); abort the reads under way."""
        with self._lock:
            if self._error is None:
                self._error = error
                self._event.set()
            responses = list(self._responses)
        for response in responses:
            _abort(response)

    def check(self) -> None:
        """Raise the cancelling error if the job was cancelled."""
        if self._error is not None:
            raise self._error

    def wait(self, seconds: float) -> None:
        """Pause ``seconds`` (a retry's back-off), or less if cancelled; then :meth:`check`."""
        self._event.wait(seconds)
        self.check()

    def start_deadline(self, seconds: float, error: BaseException) -> None:
        """Cancel with ``error`` after ``seconds`` unless :meth:`finish` comes first."""
        self._timer = threading.Timer(seconds, self.cancel, args=(error,))
        self._timer.daemon = True
        self._timer.start()

    def finish(self) -> None:
        """The job is over: stop its deadline timer."""
        if self._timer is not None:
            self._timer.cancel()

    @contextmanager
    def watching(self, response: BaseHTTPResponse) -> Iterator[BaseHTTPResponse]:
        """Register ``response`` to be aborted on :meth:`cancel` while the block runs (aborted at once if cancelled)."""
        with self._lock:
            self._responses.append(response)
            already = self._error is not None
        if already:
            _abort(response)
        try:
            yield response
        finally:
            with self._lock:
                self._responses.remove(response)


def _abort(response: BaseHTTPResponse) -> None:
    """Shut the socket a streamed response is read from, so a blocked read returns now."""
    sock = getattr(response.connection, "sock", None)
    if isinstance(sock, socket.socket):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError as exc:  # already closed
            log.debug("aborting a response: %s", exc)
