"""The archive download route of the local-directory storage: ``/archives/<name>``, confined to one directory."""

from __future__ import annotations

import re
from typing import Final

import bottle

from examples.server import repo
from examples.server.routes.access import MAX_SQLITE_INT
from examples.server.routes.context import AppContext
from examples.server.routes.table import Route
from examples.server.web import ApiError

__all__ = ["ROUTES"]

_SAFE_SEGMENT: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
# The packager's archive names: docset-<messaging id>--<64 hex fingerprint>.zip.
_ARCHIVE_NAME: Final = re.compile(r"docset-(?P<docset>.+)--[0-9a-f]{64}\.zip")


def _docset_deleted(ctx: AppContext, filename: str) -> bool:
    """Whether ``filename`` is an archive of one of this server's docsets that no longer exists.

    Deleting a docset asks the packager to delete its archives, but that is asynchronous and
    may fail; refusing them here makes the deletion take effect at once.
    """
    found = _ARCHIVE_NAME.fullmatch(filename)
    prefix = ctx.settings.queue_prefix
    if found is None or not found["docset"].startswith(prefix):
        return False
    number = found["docset"][len(prefix) :]
    if not number.isascii() or not number.isdigit() or int(number) > MAX_SQLITE_INT:
        return False
    with ctx.connection() as conn:
        return repo.get_docset(conn, int(number)) is None


def archive(ctx: AppContext, name: str) -> bottle.HTTPResponse:
    """``GET /archives/<name>``: an archive file under ``ctx.archive_root`` (ranges honoured).

    Raises:
        ApiError: 404 for a name that is not plain segments, names no file inside the root, or
            is an archive of a docset since deleted;
            the status Bottle gives when the file is unreadable or the range is bad.
    """
    root = ctx.archive_root
    segments = name.split("/")
    if not all(_SAFE_SEGMENT.fullmatch(s) for s in segments):
        raise ApiError(404, "archive_not_found", "no such archive")
    path = root.joinpath(*segments).resolve()
    if not path.is_relative_to(root) or not path.is_file() or _docset_deleted(ctx, path.name):
        raise ApiError(404, "archive_not_found", f"no archive named {name!r}")
    mimetype = "application/zip" if path.suffix == ".zip" else "application/octet-stream"
    response = bottle.static_file(str(path.relative_to(root)), root=str(root), mimetype=mimetype, download=path.name)
    if isinstance(response, bottle.HTTPError):  # unreadable, or a bad Range: answer as JSON
        raise ApiError(int(response.status_code), "archive_unavailable", str(response.body))
    return response


ROUTES = (Route("GET", "/archives/<name:path>", archive),)
