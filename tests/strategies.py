"""Hypothesis strategies for every protocol message, ordered request ids, timestamps, edge values and job histories.

Every strategy yields *valid* messages (they pass the models' validators). Field arguments take
either a plain value (``docset_id="5"``) or a strategy (``request_id=st.sampled_from(ids)``);
``None`` means "any valid value". Typical uses::

    @given(messages(docset_id="5"))                      # one message of any type
    @given(message_lists(docset_id="5"))                 # several requests, ties, foreign docsets
    @given(job_histories(docset_id="5"))                 # one realistic job, in the order it happens
    @given(ordered_request_ids(min_size=2))              # ids in creation order (maybe starting with "")
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeAlias, TypeVar

from hypothesis import strategies as st
from hypothesis.strategies import DrawFn, SearchStrategy

from tdm_messaging.ids import request_id_from
from tdm_messaging.models import (
    LEGACY_REQUEST_ID,
    Accepted,
    Complete,
    Deleted,
    DeleteRequest,
    Failed,
    Message,
    PackageRequest,
    Progress,
)

__all__ = [
    "DOCSET_ID_ALPHABET",
    "accepteds",
    "archive_urls",
    "completes",
    "delete_requests",
    "deleteds",
    "docset_ids",
    "estimates",
    "faileds",
    "interleave",
    "job_histories",
    "message_lists",
    "messages",
    "ordered_request_ids",
    "package_requests",
    "progresses",
    "reasons",
    "request_ids",
    "sequences",
    "sha256s",
    "timestamps",
]

T = TypeVar("T")
Field: TypeAlias = T | SearchStrategy[T] | None

DOCSET_ID_ALPHABET = string.ascii_letters + string.digits + "._~:@+-"
"""Every character a docset id may hold (see ``tdm_messaging.destinations.validate_docset_id``)."""

# Offsets seen in the wild, the extremes included: the fold compares instants, codecs must keep offsets.
_ZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8)), timezone(timedelta(hours=14))]
_MIN_TIME = datetime(1970, 1, 2)
_MAX_TIME = datetime(2200, 1, 1)


def _field(value: Field[T], default: SearchStrategy[T]) -> SearchStrategy[T]:
    if value is None:
        return default
    if isinstance(value, SearchStrategy):
        return value
    return st.just(value)


def docset_ids() -> SearchStrategy[str]:
    """Valid docset ids: short numbers like the seed's ``5``, and any 1-128 characters of the allowed alphabet."""
    return st.one_of(
        st.integers(min_value=0, max_value=10**9).map(str),
        st.text(alphabet=DOCSET_ID_ALPHABET, min_size=1, max_size=128),
    )


def request_ids(*, legacy: bool = False) -> SearchStrategy[str]:
    """UUIDv7 request ids over the whole 48-bit millisecond range; with ``legacy``, also the seed's ``""``."""
    ids = st.builds(
        request_id_from,
        st.integers(min_value=0, max_value=(1 << 48) - 1),
        st.binary(min_size=10, max_size=10),
    )
    return st.one_of(st.just(LEGACY_REQUEST_ID), ids) if legacy else ids


def ordered_request_ids(
    *, min_size: int = 1, max_size: int = 4, legacy: bool | None = None
) -> SearchStrategy[list[str]]:
    """Distinct request ids in creation order (oldest first), as a server would have made them.

    Args:
        min_size: fewest ids. max_size: most ids.
        legacy: ``True`` always starts with the seed's ``""``, ``False`` never, ``None`` sometimes.
    """

    @st.composite
    def build(draw: DrawFn) -> list[str]:
        with_legacy = draw(st.booleans()) if legacy is None else legacy
        wanted = max(0, min_size - 1) if with_legacy else min_size
        rest = max(wanted, max_size - 1 if with_legacy else max_size)
        ids = draw(st.lists(request_ids(), min_size=wanted, max_size=rest, unique=True))
        return ([LEGACY_REQUEST_ID] if with_legacy else []) + sorted(ids)

    return build()


def timestamps() -> SearchStrategy[datetime]:
    """Timezone-aware datetimes from 1970-01-02 to 2200, with microseconds and offsets from -08:00 to +14:00."""
    return st.datetimes(min_value=_MIN_TIME, max_value=_MAX_TIME, timezones=st.sampled_from(_ZONES))


def sequences() -> SearchStrategy[int]:
    """Per-request sequence numbers: mostly small, up to 2**63 - 1."""
    return st.one_of(st.integers(min_value=0, max_value=20), st.integers(min_value=0, max_value=(1 << 63) - 1))


def estimates() -> SearchStrategy[float | None]:
    """Seconds estimates: ``None``, 0, fractions and large finite values (never NaN, infinity or -0.0)."""
    return st.one_of(st.none(), st.floats(min_value=0.0, max_value=1e9, allow_nan=False, allow_infinity=False))


def sha256s() -> SearchStrategy[str | None]:
    """``None`` or a lower-case hex SHA-256 digest."""
    return st.one_of(st.none(), st.binary(min_size=32, max_size=32).map(bytes.hex))


def archive_urls(docset_id: Field[str] = None) -> SearchStrategy[str]:
    """Archive URLs as a packager would report them, plain or presigned (with a query string)."""

    @st.composite
    def build(draw: DrawFn) -> str:
        docset = draw(_field(docset_id, docset_ids()))
        host = draw(st.sampled_from(["bucket.s3.amazonaws.com", "127.0.0.1:9000", "files.example.org"]))
        url = f"{draw(st.sampled_from(['https', 'http']))}://{host}/package/{docset}.zip"
        if draw(st.booleans()):
            url += f"?X-Amz-Expires={draw(st.integers(1, 604800))}&X-Amz-Signature={draw(sha256s()) or 'abc'}"
        return url

    return build()


def reasons(*, single_line: bool = True) -> SearchStrategy[str]:
    """Failure reasons. ``single_line``: printable, one line, no edge whitespace (safe in every wire form);
    otherwise any non-empty text, newlines and control characters included."""
    if not single_line:
        return st.text(min_size=1, max_size=300)
    printable = st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp"))
    return st.text(alphabet=printable, min_size=1, max_size=300).map(str.strip).filter(bool)


@st.composite
def _common(
    draw: DrawFn,
    docset_id: Field[str],
    request_id: Field[str],
    timestamp: Field[datetime],
    sequence: Field[int],
) -> dict[str, Any]:
    return {
        "docset_id": draw(_field(docset_id, docset_ids())),
        "request_id": draw(_field(request_id, request_ids(legacy=True))),
        "timestamp": draw(_field(timestamp, timestamps())),
        "sequence": draw(_field(sequence, sequences())),
    }


def package_requests(
    docset_id: Field[str] = None,
    request_id: Field[str] = None,
    *,
    timestamp: Field[datetime] = None,
    sequence: Field[int] = 0,
) -> SearchStrategy[PackageRequest]:
    """Package requests (sequence 0 unless told), with a matching ``reply_to`` and docset URL."""

    @st.composite
    def build(draw: DrawFn) -> PackageRequest:
        base = draw(_common(docset_id, request_id, timestamp, sequence))
        formats = draw(st.lists(st.sampled_from(["meta", "txt", "pdf", "xml", "full-text"]), min_size=1, unique=True))
        host = draw(st.sampled_from(["http://server", "https://tdm.example.org:8443"]))
        url = f"{host}/api/docsets/{base['docset_id']}?fmt={','.join(formats)}"
        requested_at = base["timestamp"] - timedelta(seconds=draw(st.integers(0, 3600)))
        fields = {**base, "docset_url": url, "formats": tuple(formats), "requested_at": requested_at}
        return PackageRequest.model_validate({**fields, "reply_to": f"package/{base['docset_id']}"})

    return build()


def accepteds(
    docset_id: Field[str] = None,
    request_id: Field[str] = None,
    *,
    timestamp: Field[datetime] = None,
    sequence: Field[int] = None,
    estimate_seconds: Field[float | None] = None,
) -> SearchStrategy[Accepted]:
    """Accepted replies, with or without an estimate."""
    return st.builds(
        lambda base, estimate: Accepted.model_validate({**base, "estimate_seconds": estimate}),
        _common(docset_id, request_id, timestamp, sequence),
        _field(estimate_seconds, estimates()),
    )


def progresses(
    docset_id: Field[str] = None,
    request_id: Field[str] = None,
    *,
    timestamp: Field[datetime] = None,
    sequence: Field[int] = None,
    items_total: Field[int] = None,
) -> SearchStrategy[Progress]:
    """Progress replies; ``percent`` agrees with the counts (100 when there are no items)."""

    @st.composite
    def build(draw: DrawFn) -> Progress:
        base = draw(_common(docset_id, request_id, timestamp, sequence))
        total = draw(_field(items_total, st.integers(min_value=0, max_value=10**6)))
        done = draw(st.integers(min_value=0, max_value=total))
        percent = 100.0 * done / total if total else 100.0
        eta = draw(estimates())
        fields = {"items_done": done, "items_total": total, "percent": percent, "eta_seconds": eta}
        return Progress.model_validate({**base, **fields})

    return build()


def completes(
    docset_id: Field[str] = None,
    request_id: Field[str] = None,
    *,
    timestamp: Field[datetime] = None,
    sequence: Field[int] = None,
    url_expires_at: Field[datetime | None] = None,
) -> SearchStrategy[Complete]:
    """Complete replies: plain or presigned URLs, sizes from 0 to 2**63 - 1, with or without a digest."""

    @st.composite
    def build(draw: DrawFn) -> Complete:
        base = draw(_common(docset_id, request_id, timestamp, sequence))
        fields = {
            "archive_url": draw(archive_urls(base["docset_id"])),
            "size_bytes": draw(st.one_of(st.integers(0, 10**9), st.integers(0, (1 << 63) - 1))),
            "sha256": draw(sha256s()),
            "content_type": draw(st.sampled_from(["application/zip", "application/gzip", "application/x-tar"])),
            "url_expires_at": draw(_field(url_expires_at, st.one_of(st.none(), timestamps()))),
        }
        return Complete.model_validate({**base, **fields})

    return build()


def faileds(
    docset_id: Field[str] = None,
    request_id: Field[str] = None,
    *,
    timestamp: Field[datetime] = None,
    sequence: Field[int] = None,
    reason: Field[str] = None,
    retryable: Field[bool] = None,
) -> SearchStrategy[Failed]:
    """Failed replies (single-line reasons unless ``reason`` says otherwise), retryable or not."""
    return st.builds(
        lambda base, why, again: Failed.model_validate({**base, "reason": why, "retryable": again}),
        _common(docset_id, request_id, timestamp, sequence),
        _field(reason, reasons()),
        _field(retryable, st.booleans()),
    )


def delete_requests(
    docset_id: Field[str] = None,
    request_id: Field[str] = None,
    *,
    timestamp: Field[datetime] = None,
    sequence: Field[int] = None,
) -> SearchStrategy[DeleteRequest]:
    """Delete requests, naming the archive URL or not."""

    @st.composite
    def build(draw: DrawFn) -> DeleteRequest:
        base = draw(_common(docset_id, request_id, timestamp, sequence))
        url = draw(st.one_of(st.none(), archive_urls(base["docset_id"])))
        return DeleteRequest.model_validate({**base, "archive_url": url})

    return build()


def deleteds(
    docset_id: Field[str] = None,
    request_id: Field[str] = None,
    *,
    timestamp: Field[datetime] = None,
    sequence: Field[int] = None,
) -> SearchStrategy[Deleted]:
    """Deleted replies, naming the archive URL or not."""

    @st.composite
    def build(draw: DrawFn) -> Deleted:
        base = draw(_common(docset_id, request_id, timestamp, sequence))
        url = draw(st.one_of(st.none(), archive_urls(base["docset_id"])))
        return Deleted.model_validate({**base, "archive_url": url})

    return build()


_BUILDERS = (package_requests, accepteds, progresses, completes, faileds, delete_requests, deleteds)


def messages(
    docset_id: Field[str] = None,
    request_id: Field[str] = None,
    *,
    timestamp: Field[datetime] = None,
    sequence: Field[int] = None,
) -> SearchStrategy[Message]:
    """One message of any of the seven types (a package request keeps sequence 0 unless ``sequence`` is given)."""
    options: list[SearchStrategy[Message]] = [
        package_requests(docset_id, request_id, timestamp=timestamp, sequence=0 if sequence is None else sequence)
    ]
    options += [build(docset_id, request_id, timestamp=timestamp, sequence=sequence) for build in _BUILDERS[1:]]
    return st.one_of(options)


def message_lists(
    docset_id: Field[str] = None,
    *,
    min_size: int = 0,
    max_size: int = 12,
    foreign: bool = True,
    pool_size: int = 3,
) -> SearchStrategy[list[Message]]:
    """Lists of messages about one docset, built to find folding bugs.

    The messages share a small pool of request ids (in creation order, sometimes with the seed's
    ``""``), of timestamps and of sequence numbers, each of at most ``pool_size`` (1 makes every
    tie-break matter), so replies to the same request, equal sequences and equal times are common.
    With ``foreign``, some messages are about other docsets.
    Every message of the docset uses the drawn docset id (draw it yourself and pass it to know it).
    """

    @st.composite
    def build(draw: DrawFn) -> list[Message]:
        docset = draw(_field(docset_id, docset_ids()))
        ids = draw(ordered_request_ids(min_size=1, max_size=max(1, pool_size)))
        times = draw(st.lists(timestamps(), min_size=1, max_size=pool_size))
        numbers = draw(st.lists(st.integers(0, 4), min_size=1, max_size=pool_size))
        own = messages(
            docset, st.sampled_from(ids), timestamp=st.sampled_from(times), sequence=st.sampled_from(numbers)
        )
        if foreign:
            others = messages(docset_ids().filter(lambda other: other != docset), st.sampled_from(ids))
            element = st.one_of(own, own, own, others)
        else:
            element = own
        return draw(st.lists(element, min_size=min_size, max_size=max_size))

    return build()


def job_histories(
    docset_id: Field[str] = None,
    request_id: Field[str] = None,
    *,
    outcome: Field[str] = None,
) -> SearchStrategy[list[Message]]:
    """One request's messages in the order a working packager sends them.

    Request (sequence 0), Accepted, zero or more Progress with growing counts, then per
    ``outcome``: ``"complete"``, ``"failed"``, ``"deleted"`` (Complete then Deleted) or ``"pending"``
    (no end yet). Sequences count up from 0 and timestamps never go back.
    """

    @st.composite
    def build(draw: DrawFn) -> list[Message]:
        docset = draw(_field(docset_id, docset_ids()))
        request = draw(_field(request_id, request_ids()))
        end = draw(_field(outcome, st.sampled_from(["complete", "failed", "deleted", "pending"])))
        moment = draw(
            st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
        )
        history: list[Message] = []

        def later() -> datetime:
            nonlocal moment
            moment += timedelta(milliseconds=draw(st.integers(0, 60_000)))
            return moment

        def common() -> dict[str, Any]:
            return {"docset_id": docset, "request_id": request, "sequence": len(history), "timestamp": later()}

        history.append(draw(package_requests(docset, request, timestamp=later())))
        history.append(draw(accepteds(**common())))
        total = draw(st.integers(0, 500))
        steps = sorted(draw(st.lists(st.integers(0, total), max_size=4)))
        for done in steps:
            percent = 100.0 * done / total if total else 100.0
            history.append(Progress(**common(), items_done=done, items_total=total, percent=percent))
        if end in ("complete", "deleted"):
            history.append(draw(completes(**common())))
        if end == "failed":
            history.append(draw(faileds(**common())))
        if end == "deleted":
            history.append(Deleted(**common(), archive_url=None))
        return history

    return build()


def interleave(histories: Sequence[Sequence[T]]) -> SearchStrategy[list[T]]:
    """Any interleaving of ``histories`` that keeps each one's own order (as one queue would see them)."""

    @st.composite
    def build(draw: DrawFn) -> list[T]:
        queues = [list(h) for h in histories]
        merged: list[T] = []
        while any(queues):
            choice = draw(st.sampled_from([i for i, q in enumerate(queues) if q]))
            merged.append(queues[choice].pop(0))
        return merged

    return build()
