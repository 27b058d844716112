"""The HTTP view of a docset status: status code, headers and JSON body of the asynchronous request-reply pattern."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from tdm_messaging.errors import LocalProtocolError
from tdm_messaging.models import format_moment
from tdm_messaging.status import DocsetStatus, State

__all__ = [
    "DEFAULT_RETRY_AFTER_SECONDS",
    "MAX_RETRY_AFTER_SECONDS",
    "MIN_RETRY_AFTER_SECONDS",
    "HttpView",
    "http_view",
]

MIN_RETRY_AFTER_SECONDS: Final = 1
"""The shortest ``Retry-After`` given: a job about to finish is polled again after one second."""
MAX_RETRY_AFTER_SECONDS: Final = 120
"""The longest ``Retry-After`` given, so a long job's miner still sees progress (and an early finish)."""
DEFAULT_RETRY_AFTER_SECONDS: Final = 5
"""``Retry-After`` when no estimate or ETA is known, or when it has already run out."""

# Rules: the status code of each state (COMPLETE turns into 410 once the archive URL expired).
_STATUS_CODE: Final[dict[State, int]] = {
    State.UNKNOWN: 404,
    State.REQUESTED: 202,
    State.ACCEPTED: 202,
    State.IN_PROGRESS: 202,
    State.COMPLETE: 303,
    State.FAILED: 502,
    State.DELETED: 410,
}
_NO_STORE: Final = ("Cache-Control", "no-store")


@dataclass(frozen=True)
class HttpView:
    """What the server answers to a poll of a dump's status.

    Attributes:
        status_code: the HTTP status (202, 303, 404, 410 or 502; see ``docs/status.md``).
        headers: header pairs, e.g. ``("Retry-After", "45")`` or ``("Location", url)``; the app
            adds ``Content-Type: application/json`` when it serialises ``body``.
        body: a JSON-serialisable mapping; ``state`` and ``detail`` are always present.
    """

    status_code: int
    headers: tuple[tuple[str, str], ...]
    body: Mapping[str, object]

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive), or ``None``."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)


def http_view(status: DocsetStatus, *, now: datetime) -> HttpView:
    """Map a dump's status to the HTTP answer of the asynchronous request-reply pattern.

    REQUESTED, ACCEPTED and IN_PROGRESS give 202 with ``Retry-After``; COMPLETE gives 303 with
    ``Location`` set to the archive URL (410 once that URL expired); FAILED gives 502 with the
    reason and whether a new request may succeed; DELETED gives 410; UNKNOWN gives 404 saying
    that no dump was requested. Pure: ``now`` is the only notion of time.

    Args:
        status: the folded status (see :func:`tdm_messaging.status.fold`).
        now: the current time, timezone-aware; used for the time left and URL expiry.

    Returns:
        The status code, headers and JSON body to send.

    Raises:
        LocalProtocolError: ``now`` has no timezone, or a hand-built COMPLETE/FAILED status lacks
            its result/failure.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise LocalProtocolError(
            f"http_view needs a timezone-aware 'now', got naive {now.isoformat()}; pass e.g. datetime.now(UTC)"
        )
    body: dict[str, object] = {
        "docset_id": status.docset_id,
        "state": status.state.value,
        "request_id": status.request_id,
        "requested_at": _iso(status.requested_at),
        "updated_at": _iso(status.updated_at),
    }
    if status.state is State.UNKNOWN:
        body["detail"] = (
            f"no dump was requested for docset {status.docset_id!r} (or its status expired); request a dump first"
        )
        return HttpView(404, (_NO_STORE,), body)
    if status.state.is_pending:
        return _pending(status, now, body)
    if status.state is State.COMPLETE and status.result is not None:
        return _complete(status, now, body)
    if status.state is State.FAILED and status.failure is not None:
        failure = status.failure
        how = (
            "the failure may be temporary: request a new dump to try again"
            if failure.retryable
            else "asking again will fail the same way: change the docset or contact the service"
        )
        body.update(
            reason=failure.reason, retryable=failure.retryable, detail=f"the dump failed: {failure.reason}; {how}"
        )
        return HttpView(_STATUS_CODE[State.FAILED], (_NO_STORE,), body)
    if status.state is State.DELETED:
        body.update(
            gone_because="deleted",
            detail="the archive of this dump was deleted and its URL no longer works; request a new dump",
        )
        return HttpView(_STATUS_CODE[State.DELETED], (_NO_STORE,), body)
    raise LocalProtocolError(
        f"a {status.state.value} status must carry its {'result' if status.state is State.COMPLETE else 'failure'}; "
        "build statuses with tdm_messaging.status.fold"
    )


def _pending(status: DocsetStatus, now: datetime, body: dict[str, object]) -> HttpView:
    remaining = _remaining_seconds(status, now)
    if remaining is not None and not math.isfinite(remaining):
        remaining = None  # the models refuse infinite estimates; a hand-built status gets no 500 either
    if remaining is None or remaining <= 0:
        retry_after = DEFAULT_RETRY_AFTER_SECONDS
    else:
        retry_after = min(MAX_RETRY_AFTER_SECONDS, max(MIN_RETRY_AFTER_SECONDS, math.ceil(remaining)))
    progress = status.progress
    body.update(
        percent=progress.percent if progress is not None else 0.0,
        items_done=progress.items_done if progress is not None else None,
        items_total=progress.items_total if progress is not None else None,
        estimate_seconds=status.estimate_seconds,
        eta_seconds=round(remaining, 1) if remaining is not None else None,
        retry_after_seconds=retry_after,
        detail={
            State.REQUESTED: "the dump was requested and waits for the packager",
            State.ACCEPTED: "the packager accepted the request",
            State.IN_PROGRESS: "the packager is building the archive",
        }[status.state]
        + f"; poll again in {retry_after} s",
    )
    return HttpView(202, (("Retry-After", str(retry_after)), _NO_STORE), body)


def _complete(status: DocsetStatus, now: datetime, body: dict[str, object]) -> HttpView:
    result = status.result
    assert result is not None
    body.update(
        archive_url=result.archive_url,
        size_bytes=result.size_bytes,
        sha256=result.sha256,
        content_type=result.content_type,
        url_expires_at=_iso(result.url_expires_at),
    )
    if result.url_expires_at is not None and result.url_expires_at <= now:
        body.update(
            gone_because="url_expired",
            detail=f"the archive URL expired at {format_moment(result.url_expires_at)}; request a new dump",
        )
        return HttpView(410, (_NO_STORE,), body)
    body["detail"] = "the archive is ready; follow Location to download it"
    return HttpView(_STATUS_CODE[State.COMPLETE], (("Location", result.archive_url), _NO_STORE), body)


def _remaining_seconds(status: DocsetStatus, now: datetime) -> float | None:
    """Seconds until the job should end, from the progress ETA or else the Accepted estimate; ``None`` if unknown."""
    progress = status.progress
    if progress is not None and progress.eta_seconds is not None:
        return max(0.0, progress.eta_seconds - _elapsed(progress.timestamp, now))
    if status.estimate_seconds is None or status.updated_at is None:
        return None
    if progress is not None:
        # No ETA: scale the estimate by what is left, counted from the progress report.
        left = status.estimate_seconds * (1 - progress.percent / 100)
        return max(0.0, left - _elapsed(progress.timestamp, now))
    # ACCEPTED: updated_at is the Accepted's time (or its request's, if that is later).
    return max(0.0, status.estimate_seconds - _elapsed(status.updated_at, now))


def _elapsed(since: datetime, now: datetime) -> float:
    # A sender's clock ahead of ours must not stretch the wait: time never runs backwards here.
    return max(0.0, (now - since).total_seconds())


def _iso(moment: datetime | None) -> str | None:
    return format_moment(moment) if moment is not None else None
