"""The harness's one error: which step of the end-to-end flow went wrong, with the relevant log's end."""

from __future__ import annotations

from tdm_messaging.errors import MessagingError

__all__ = ["DemoError"]


class DemoError(MessagingError):
    """The end-to-end flow went wrong; the message says where, and ``log_tail`` holds the relevant log's end.

    Args:
        message: what went wrong, naming the step.
        log_name: the log file that says more, if any.
        log_tail: the last lines of that log.
    """

    def __init__(self, message: str, *, log_name: str | None = None, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_name = log_name
        self.log_tail = log_tail
