"""The cases of ``--role server`` (the kit plays the packager) and their checks, pure functions of what was seen."""

from __future__ import annotations

from collections.abc import Sequence

from tdm_messaging.conformance.report import Case, Level
from tdm_messaging.conformance.wire import Received, fold_of, header_problems, short
from tdm_messaging.models import Accepted, Complete, DeleteRequest, PackageRequest, Progress
from tdm_messaging.status import DocsetStatus, State

__all__ = [
    "SERVER_CASES",
    "delete_problems",
    "fold_problems",
    "leftover_problems",
    "request_problems",
]

_MUST, _SHOULD = Level.MUST, Level.SHOULD

ARRIVES = Case(1, "after each request trigger, a package request arrives on docsets/package", ("1", "2"))
WELL_FORMED = Case(
    2, "each package request is a well-formed package_request (application/json or text/plain)", ("3", "4.1", "4.8")
)
NAMES_DOCSET = Case(3, "each names the triggered docset, and its reply_to is `package/<docset id>`", ("2.2", "4.1"))
REQUEST_ID = Case(4, "each request_id is a canonical UUIDv7 (never empty), dated no later than now", ("4",))
SEQUENCE_ZERO = Case(5, "each request has sequence 0", ("4",))
HEADERS = Case(6, "each request carries the tdm-* headers of §3, agreeing with its body", ("3",), _SHOULD)
COPY_FIRST = Case(7, "each request's copy is already in `package/<docset id>` when the request arrives", ("1",))
POLL_TAKES = Case(
    8, "a poll takes the replies: the superseded accepted and progress are gone from the reply queue", ("1", "6")
)
POLL_KEEPS = Case(
    9,
    "the poll keeps the status: the reply queue still folds to complete, with the archive URL sent",
    ("1", "6", "6.1"),
)
COMPACTED = Case(
    10, "what the poll leaves is the compaction: the request copy and complete, once each", ("6.1",), _SHOULD
)
SECOND_POLL = Case(11, "a second poll keeps the status too (reading never loses it)", ("6",))
NEWER_ID = Case(12, "a second request for the docset gets a greater request_id than the first", ("4", "6"))
TEXT_REPLIES = Case(
    13,
    "text/plain replies (with tdm-* headers) are read: after a poll the queue folds to failed for the new request",
    ("5", "5.1", "6.1"),
)
SEED_REPLIES = Case(
    14,
    "seed-style text replies (no headers, no request id) count for the newest request: a poll folds to complete",
    ("5.1", "6.1"),
    _SHOULD,
)
SURVIVES_GARBAGE = Case(
    15, "an undecodable reply does not break a poll: the queue still folds to the same status", ("4.8", "9")
)
GARBAGE_TAKEN = Case(16, "the poll takes the undecodable reply off the reply queue", ("6",), _SHOULD)
GARBAGE_PARKED = Case(
    17, "the undecodable reply is parked on docsets/dead-letter with tdm-dead-letter-reason", ("2", "6"), _SHOULD
)
DELETE_ARRIVES = Case(
    18, "after the delete trigger, a well-formed delete_request for the docset arrives on docsets/delete", ("1", "4.6")
)
DELETE_ID = Case(
    19, "the delete request's request_id is a canonical UUIDv7 (never empty) and its sequence is 0", ("4", "4.6")
)
DELETED_KEPT = Case(20, "after deleted and a poll, the reply queue folds to deleted", ("4.7", "6.1"))

SERVER_CASES: tuple[Case, ...] = (
    ARRIVES,
    WELL_FORMED,
    NAMES_DOCSET,
    REQUEST_ID,
    SEQUENCE_ZERO,
    HEADERS,
    COPY_FIRST,
    POLL_TAKES,
    POLL_KEEPS,
    COMPACTED,
    SECOND_POLL,
    NEWER_ID,
    TEXT_REPLIES,
    SEED_REPLIES,
    SURVIVES_GARBAGE,
    GARBAGE_TAKEN,
    GARBAGE_PARKED,
    DELETE_ARRIVES,
    DELETE_ID,
    DELETED_KEPT,
)
"""Every case of ``--role server``, in report order."""


def request_problems(received: Received, docset_id: str) -> dict[Case, list[str]]:
    """What is wrong with a package request the server sent, per case (2 to 6)."""
    found: dict[Case, list[str]] = {c: [] for c in (WELL_FORMED, NAMES_DOCSET, REQUEST_ID, SEQUENCE_ZERO, HEADERS)}
    message = received.message
    if not isinstance(message, PackageRequest):
        what = received.error or f"a {message.type} on docsets/package" if message else received.error
        found[WELL_FORMED].append(f"undecodable: {what}" if received.error else str(what))
        found[HEADERS] += header_problems(received)
        return found
    if message.docset_id != docset_id:
        found[NAMES_DOCSET].append(f"docset_id is {message.docset_id!r}, the trigger named {docset_id!r}")
    if not message.request_id:
        found[REQUEST_ID].append("request_id is empty (the seed's form; a server of this protocol must give one)")
    if message.sequence != 0:
        found[SEQUENCE_ZERO].append(f"sequence is {message.sequence}")
    found[HEADERS] += header_problems(received)
    return found


def delete_problems(received: Received, docset_id: str) -> dict[Case, list[str]]:
    """What is wrong with a delete request the server sent, per case (18 and 19)."""
    found: dict[Case, list[str]] = {DELETE_ARRIVES: [], DELETE_ID: []}
    message = received.message
    if not isinstance(message, DeleteRequest):
        found[DELETE_ARRIVES].append(
            f"undecodable: {received.error}"
            if received.error
            else f"a {message.type if message else '?'} on docsets/delete"
        )
        return found
    if message.docset_id != docset_id:
        found[DELETE_ARRIVES].append(f"docset_id is {message.docset_id!r}, the trigger named {docset_id!r}")
    if not message.request_id:
        found[DELETE_ID].append("request_id is empty")
    if message.sequence != 0:
        found[DELETE_ID].append(f"sequence is {message.sequence}")
    return found


def fold_problems(
    queue: Sequence[Received], docset_id: str, *, state: State, request_id: str, archive_url: str | None = None
) -> list[str]:
    """Why the reply queue does not fold to ``state`` about ``request_id`` (with ``archive_url``), if it does not."""
    status: DocsetStatus = fold_of(queue, docset_id)
    problems = []
    if status.state is not state or status.request_id != request_id:
        problems.append(
            f"the queue {short(queue)} folds to {status.state.value} about request {status.request_id!r}, "
            f"not {state.value} about {request_id}"
        )
    elif archive_url is not None and (status.result is None or status.result.archive_url != archive_url):
        problems.append(f"the archive URL became {status.result.archive_url if status.result else None!r}")
    return problems


def leftover_problems(queue: Sequence[Received], request_id: str) -> tuple[list[str], list[str]]:
    """After a poll of a complete job: (superseded replies still there, departures from the compaction)."""
    mine = [r.message for r in queue if r.message is not None and r.message.request_id == request_id]
    superseded = [f"{m.type}#{m.sequence}" for m in mine if isinstance(m, Accepted | Progress)]
    kinds = sorted(m.type for m in mine)
    extra = [] if kinds == ["complete", "package_request"] else [f"the queue holds {short(queue)}"]
    if any(r.message is None for r in queue):
        extra.append("and something undecodable")
    if not any(isinstance(m, Complete) for m in mine):
        extra.append("no complete")
    return ([f"still in the queue: {superseded}"] if superseded else []), extra
