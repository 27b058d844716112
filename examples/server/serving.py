"""waitress, answering its own errors (bad request line, body or headers too large) as JSON like the app does."""

from __future__ import annotations

from typing import Any, Final

import waitress.channel  # type: ignore[import-untyped,unused-ignore]
import waitress.server  # type: ignore[import-untyped,unused-ignore]
import waitress.task  # type: ignore[import-untyped,unused-ignore]

from examples.server.responses import Error, ErrorDetail

__all__ = ["create_json_server", "error_body"]

# waitress's error classes by status, as the app's stable codes.
_CODES: Final = {
    400: "bad_request",
    413: "body_too_large",
    431: "headers_too_large",
    500: "internal_error",
    501: "not_implemented",
}


def error_body(code: int, reason: str, detail: str) -> bytes:
    """The app's error JSON for a waitress error: ``{"error": {"code", "message"}}``."""
    message = f"{reason}: {detail}" if detail else reason
    if code >= 500:  # waitress may put a traceback here when told to expose them; never send one
        message = reason
    return Error(error=ErrorDetail(code=_CODES.get(code, "http_error"), message=message)).model_dump_json().encode()


class JsonErrorTask(waitress.task.ErrorTask):  # type: ignore[misc,unused-ignore]
    """waitress's error answer (it replaces ``ErrorTask.execute``, which writes text/plain) in JSON."""

    def execute(self) -> None:
        error = self.request.error
        body = error_body(int(error.code), str(error.reason), str(error.body))
        self.status = f"{error.code} {error.reason}"
        self.response_headers.extend([("Content-Type", "application/json"), ("Cache-Control", "no-store")])
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(waitress.channel.HTTPChannel):  # type: ignore[misc,unused-ignore]
    """A connection whose parse errors (and last-resort 500s) are answered by :class:`JsonErrorTask`."""

    error_task_class = JsonErrorTask


def create_json_server(app: Any, **options: Any) -> Any:
    """``waitress.server.create_server(app, **options)`` whose own error answers are JSON.

    waitress builds a channel per connection from its server's ``channel_class``; every
    listening server (one per address when ``host`` resolves to several) gets ours.
    """
    server = waitress.server.create_server(app, **options)
    for listener in (server, *getattr(server, "map", {}).values()):
        if hasattr(listener, "channel_class"):
            listener.channel_class = JsonErrorChannel
    return server
