"""The dump routes: poll (and first request) a docset's package, request a fresh one, delete it.

The answers come from the docset's reply queue, read on each poll by
:class:`~examples.server.dumps.DumpService`; this module only turns its status into HTTP.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import bottle

from examples.server import quotas
from examples.server.dumps import Poll
from examples.server.responses import DUMP_ANSWERS, DumpDeleteRequested, DumpLinks, DumpPending
from examples.server.routes.access import owned
from examples.server.routes.context import AppContext
from examples.server.routes.table import Route
from examples.server.routes.views import PACKAGE_FORMATS
from examples.server.web import ApiError, json_response, query_bool
from tdm_messaging import DocsetStatus, MessagingError, State, TransportError, http_view

__all__ = ["ROUTES"]

log = logging.getLogger(__name__)


def dump(ctx: AppContext, docset_id: int) -> bottle.HTTPResponse:
    """``GET .../dump``: the package's status; the first call (or ``?retry=true`` after a failure) requests it."""
    retry = query_bool("retry", default=False)
    redirect = query_bool("redirect", default=True)
    caller, row = owned(ctx, docset_id)
    quota = DumpQuota(ctx, caller.owner, docset_id, int(row["version"]), explicit=retry)
    with broker_errors(), quota.undone_on_error():
        poll = ctx.dumps.poll(ctx.messaging_id(docset_id), _source(ctx, docset_id), retry=retry, admit=quota.admit)
    quota.settle(poll)
    return dump_response(ctx, docset_id, poll, redirect=redirect)


def head_dump(ctx: AppContext, docset_id: int) -> bottle.HTTPResponse:
    """``HEAD .../dump``: refused (405), touching neither the database nor the broker.

    Bottle answers HEAD with the GET route by default, and this GET may request a package:
    a HEAD (which crawlers and link checkers send freely) must start nothing.
    """
    raise ApiError(
        405,
        "method_not_allowed",
        "HEAD is not supported on a dump, whose GET may start a build; use GET",
        headers={"Allow": "GET, POST, DELETE"},
    )


def redo_dump(ctx: AppContext, docset_id: int) -> bottle.HTTPResponse:
    """``POST .../dump``: request a fresh package whatever the status (within the owner's quotas)."""
    redirect = query_bool("redirect", default=True)
    caller, row = owned(ctx, docset_id)
    quota = DumpQuota(ctx, caller.owner, docset_id, int(row["version"]), explicit=True)
    with broker_errors(), quota.undone_on_error():
        poll = ctx.dumps.request(ctx.messaging_id(docset_id), _source(ctx, docset_id), admit=quota.admit)
    quota.settle(poll)
    return dump_response(ctx, docset_id, poll, redirect=redirect)


def delete_dump(ctx: AppContext, docset_id: int) -> bottle.HTTPResponse:
    """``DELETE .../dump``: ask the packager to delete the package (202), or 404 if none was requested."""
    owned(ctx, docset_id)
    with broker_errors():
        before = ctx.dumps.delete(ctx.messaging_id(docset_id))
    if before.state is State.UNKNOWN:
        raise ApiError(404, "no_package", f"docset {docset_id} has no package to delete; none was requested")
    dump_url = f"{ctx.base_url()}/api/docsets/{docset_id}/dump"
    return json_response(
        DumpDeleteRequested(
            state="delete_requested",
            docset_id=str(docset_id),
            detail="the packager was asked to delete the package; GET this URL to see when it did",
            links=DumpLinks(self=dump_url, docset=f"{ctx.base_url()}/api/docsets/{docset_id}"),
        ),
        202,
    )


class DumpQuota:
    """The owner's dump quotas around one dump call (see :mod:`examples.server.quotas`).

    :meth:`admit` checks and notes the build in one immediate transaction, so concurrent
    requests of one owner cannot all pass; a request that then fails to be sent is un-noted.
    """

    def __init__(self, ctx: AppContext, owner: str, docset_id: int, version: int, *, explicit: bool) -> None:
        self._ctx = ctx
        self._owner = owner
        self._docset_id = docset_id
        self._version = version
        self._explicit = explicit
        self._before: quotas.Usage | None = None

    def admit(self, status: DocsetStatus) -> None:
        """Note the build about to be requested, after correcting the docset's note from ``status``.

        Raises:
            ApiError: 429 with ``Retry-After`` and the rule's code when over a quota.
        """
        settings = self._ctx.settings
        limits = quotas.DumpLimits(
            settings.max_dumps_in_flight, settings.max_stored_archives, settings.dump_stale_after_seconds
        )
        now = time.time()
        with self._ctx.connection() as conn:
            conn.execute("BEGIN IMMEDIATE")  # one owner's concurrent admissions serialise here
            quotas.record_status(conn, self._docset_id, status.state)
            usage = quotas.usage_of(conn, self._owner, self._docset_id, now=now, stale_after=limits.stale_after)
            refusal = quotas.judge_request(usage, docset_version=self._version, limits=limits, explicit=self._explicit)
            if refusal is not None:
                raise ApiError(429, refusal.code, refusal.message, headers={"Retry-After": str(refusal.retry_after)})
            quotas.reserve(conn, self._owner, self._docset_id, self._version, now=now)
        self._before = usage

    @contextmanager
    def undone_on_error(self) -> Iterator[None]:
        """Take back the note of :meth:`admit` if the block fails after it."""
        try:
            yield
        except BaseException:
            if self._before is not None:
                with self._ctx.connection() as conn:
                    quotas.restore(conn, self._owner, self._docset_id, self._before)
            raise

    def settle(self, poll: Poll) -> None:
        """Correct the docset's note from what the poll saw."""
        if not poll.requested:
            with self._ctx.connection() as conn:
                quotas.record_status(conn, self._docset_id, poll.status.state)


def _source(ctx: AppContext, docset_id: int) -> str:
    """The URL the packager reads the docset from."""
    return f"{ctx.base_url()}/api/docsets/{docset_id}?fmt={','.join(PACKAGE_FORMATS)}"


def dump_response(ctx: AppContext, docset_id: int, poll: Poll, *, redirect: bool = True) -> bottle.HTTPResponse:
    """The HTTP answer to a poll: 202 while pending, 303 to the archive, 410 or 502 with a retry link.

    With ``redirect=False`` (``?redirect=false``) the complete answer is a 200 with the same body
    and no ``Location``: a browser's ``fetch()`` either follows a 303 (sending the API key along to
    the archive's host) or, with ``redirect: "manual"``, hides its body, so a page could not read
    the archive's URL, size and sha256 otherwise.
    """
    dump_url = f"{ctx.base_url()}/api/docsets/{docset_id}/dump"
    status = poll.status
    if status.state is State.UNKNOWN:
        # The request was sent but this broker does not show it back yet: still pending.
        return json_response(
            DumpPending(
                state="requested",
                docset_id=str(docset_id),
                request_id=None,
                requested_at=None,
                updated_at=None,
                requested_now=poll.requested,
                percent=0.0,
                items_done=None,
                items_total=None,
                estimate_seconds=None,
                eta_seconds=None,
                retry_after_seconds=1,
                detail="the dump was requested and waits for the packager; poll again in 1 s",
                links=DumpLinks(self=dump_url, docset=f"{ctx.base_url()}/api/docsets/{docset_id}"),
            ),
            202,
            {"Retry-After": "1", "Location": dump_url},
        )
    view = http_view(status, now=datetime.now(UTC))
    headers = dict(view.headers)
    status_code = view.status_code
    if status_code == 303 and not redirect:
        status_code = 200
        headers.pop("Location", None)
    body: dict[str, Any] = dict(view.body)
    body["docset_id"] = str(docset_id)
    body["requested_now"] = poll.requested
    links: dict[str, str] = {"self": dump_url, "docset": f"{ctx.base_url()}/api/docsets/{docset_id}"}
    if status.state in (State.FAILED, State.DELETED):
        links["retry"] = f"{dump_url}?retry=true"
    body["links"] = links
    if status_code >= 400:
        if status.failure is not None:
            what = f"packaging docset {docset_id} failed: {status.failure.reason}"
        else:
            what = f"the package of docset {docset_id} is {status.state.name.lower()}"
        hint = f"request a new package with POST {dump_url} (or GET {dump_url}?retry=true)"
        body["error"] = {"code": f"package_{status.state.name.lower()}", "message": f"{what}; {hint}"}
    return json_response(DUMP_ANSWERS[status.state.value].model_validate(body), status_code, headers)


@contextmanager
def broker_errors() -> Iterator[None]:
    """Answer messaging failures in the block as HTTP.

    Raises:
        ApiError: 503 (with ``Retry-After``) when the broker cannot be reached; 502 for any other
            messaging error.
    """
    try:
        yield
    except TransportError as exc:
        log.warning("broker unavailable while serving %s: %s", bottle.request.path, exc)
        raise ApiError(
            503,
            "broker_unavailable",
            "the message broker cannot be reached right now; retry later",
            headers={"Retry-After": "5"},
        ) from exc
    except MessagingError as exc:
        log.warning("messaging error while serving %s: %s", bottle.request.path, exc)
        raise ApiError(502, "messaging_error", f"talking to the packager failed: {exc}") from exc


ROUTES = (
    Route("GET", "/api/docsets/<docset_id:int>/dump", dump),
    Route("HEAD", "/api/docsets/<docset_id:int>/dump", head_dump),
    Route("POST", "/api/docsets/<docset_id:int>/dump", redo_dump),
    Route("DELETE", "/api/docsets/<docset_id:int>/dump", delete_dump),
)
