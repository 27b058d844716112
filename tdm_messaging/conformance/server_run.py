"""``--role server``: the kit plays the packager against a server under test, which triggers make act."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tdm_messaging.clock import utc_now
from tdm_messaging.codec import TEXT_CONTENT_TYPE, encode
from tdm_messaging.conformance.report import Case, Report, Result
from tdm_messaging.conformance.scripted_packager import Arrival, ScriptedPackager
from tdm_messaging.conformance.server_checks import (
    ARRIVES,
    COMPACTED,
    COPY_FIRST,
    DELETE_ARRIVES,
    DELETE_ID,
    DELETED_KEPT,
    GARBAGE_PARKED,
    GARBAGE_TAKEN,
    NEWER_ID,
    POLL_KEEPS,
    POLL_TAKES,
    SECOND_POLL,
    SEED_REPLIES,
    SERVER_CASES,
    SURVIVES_GARBAGE,
    TEXT_REPLIES,
    delete_problems,
    fold_problems,
    leftover_problems,
    request_problems,
)
from tdm_messaging.conformance.triggers import Trigger
from tdm_messaging.conformance.wire import Received, fold_of, peek
from tdm_messaging.destinations import DEAD_LETTER, DELETE_REQUESTS, PACKAGE_REQUESTS, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.headers import DEAD_LETTER_REASON
from tdm_messaging.models import Accepted, Complete, Deleted, DeleteRequest, Failed, Message, PackageRequest, Progress
from tdm_messaging.status import State
from tdm_messaging.transport.base import Transport

__all__ = ["ServerRun", "Triggers", "run_server_role"]

_HINT = " (does the server send on this broker URL, namespace included, and does no other packager consume there?)"
_SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


@dataclass(frozen=True)
class Triggers:
    """What makes the server under test act on a docset."""

    request: Trigger
    poll: Trigger
    delete: Trigger


@dataclass(frozen=True)
class ServerRun:
    """How to run ``--role server``.

    Attributes:
        docset_id: the docset the triggers act on (the server must be able to request its package).
        timeout: seconds to wait for a request after its trigger.
    """

    docset_id: str
    timeout: float = 30.0


@dataclass
class _Findings:
    """Problems, skips and pass notes per case, turned into results at the end."""

    problems: dict[Case, list[str]] = field(default_factory=dict)
    checked: dict[Case, list[str]] = field(default_factory=dict)
    skips: dict[Case, str] = field(default_factory=dict)

    def add(self, case: Case, problems: Sequence[str], ok: str = "") -> None:
        self.checked.setdefault(case, [])
        if ok:
            self.checked[case].append(ok)
        if problems:
            self.problems.setdefault(case, []).extend(problems)

    def skip(self, cases: Sequence[Case], why: str) -> None:
        for case in cases:
            self.skips.setdefault(case, why)

    def results(self) -> list[Result]:
        out = []
        for case in SERVER_CASES:
            if case in self.problems:
                out.append(case.failed("; ".join(self.problems[case])))
            elif case in self.checked:
                out.append(case.passed("; ".join(self.checked[case])))
            else:
                out.append(case.skipped(self.skips.get(case, "not reached")))
        return out


class _Session:
    """One run: the server's docset, the kit's transports and packager, and what was found."""

    def __init__(self, transport: Transport, packager: ScriptedPackager, triggers: Triggers, run: ServerRun) -> None:
        self.transport = transport
        self.packager = packager
        self.triggers = triggers
        self.run = run
        self.docset = run.docset_id
        self.queue = reply_queue(run.docset_id)
        self.found = _Findings()
        self.token = secrets.token_hex(4)

    def look(self) -> list[Received]:
        return peek(self.transport, self.queue, docset_id=self.docset)

    def request(self, number: int) -> tuple[Arrival, PackageRequest] | None:
        """Trigger a package request and check it; ``None`` (with the failure noted) when none came."""
        problem = self.triggers.request.fire(self.docset)
        arrival = None if problem else self.packager.next(PACKAGE_REQUESTS, self.docset, self.run.timeout)
        if arrival is None:
            self.found.add(
                ARRIVES, [problem or f"request {number}: nothing arrived within {self.run.timeout:g} s{_HINT}"]
            )
            return None
        self.found.add(ARRIVES, [], ok=f"request {number} arrived")
        for case, problems in request_problems(arrival.received, self.docset).items():
            self.found.add(case, [f"request {number}: {p}" for p in problems])
        request = arrival.received.message
        if not isinstance(request, PackageRequest):
            arrival.answered()
            return None
        copies = [r.message for r in self.look() if isinstance(r.message, PackageRequest)]
        have = any(c.request_id == request.request_id for c in copies)
        self.found.add(COPY_FIRST, [] if have else [f"request {number}: no copy with its id in {self.queue.name}"])
        return arrival, request

    def reply(self, envelopes: Sequence[Envelope], arrival: Arrival) -> None:
        for envelope in envelopes:
            self.transport.send(self.queue, envelope, persistent=True, confirm=True)
        arrival.answered()

    def poll(self, cases: Sequence[Case]) -> bool:
        """Trigger a poll; on failure, fail ``cases`` with the reason and return False."""
        problem = self.triggers.poll.fire(self.docset)
        if problem:
            for case in cases:
                self.found.add(case, [problem])
            return False
        return True


def run_server_role(
    transport: Transport, consumer: Transport, triggers: Triggers, run: ServerRun, report: Report
) -> None:
    """Play the packager through the scenario of docs/conformance.md, checking the server at each step.

    Args:
        transport: an open transport on the server's broker and namespace (the kit's replies and looks).
        consumer: a second one, for the kit's packager (it consumes the request queues).
        triggers: what makes the server request, poll and delete.
        run: the options.
        report: where the results and notes go.

    Raises:
        TransportError: the broker failed during the run.
    """
    with ScriptedPackager(consumer, report.notes) as packager:
        session = _Session(transport, packager, triggers, run)
        _scenario(session)
    report.add(session.found.results())
    report.notes.append(f"docset {run.docset_id}; the kit's archive URLs are https://conformance.invalid/...")


def _scenario(s: _Session) -> None:
    first = s.request(1)
    if first is None:
        s.found.skip(SERVER_CASES, "no package request to answer")
        return
    arrival, r1 = first
    url1 = f"https://conformance.invalid/{s.token}/1.zip"
    s.reply([encode(m) for m in _job(r1, Complete, archive_url=url1, size_bytes=1234, sha256=_SHA256)], arrival)
    if s.poll([POLL_TAKES, POLL_KEEPS]):
        left = s.look()
        superseded, extra = leftover_problems(left, r1.request_id)
        s.found.add(POLL_TAKES, superseded)
        s.found.add(COMPACTED, extra, ok=f"{len(left)} messages left")
        s.found.add(
            POLL_KEEPS, fold_problems(left, s.docset, state=State.COMPLETE, request_id=r1.request_id, archive_url=url1)
        )
        if s.poll([SECOND_POLL]):
            s.found.add(SECOND_POLL, fold_problems(s.look(), s.docset, state=State.COMPLETE, request_id=r1.request_id))

    second = s.request(2)
    if second is None:
        s.found.skip([NEWER_ID, TEXT_REPLIES], "the second request did not arrive")
    else:
        arrival, r2 = second
        s.found.add(NEWER_ID, [] if r2.request_id > r1.request_id else [f"{r2.request_id} <= {r1.request_id}"])
        failure = {"reason": "the conformance kit's packager fails this one on purpose", "retryable": True}
        s.reply([encode(m, TEXT_CONTENT_TYPE) for m in _job(r2, Failed, **failure)], arrival)
        if s.poll([TEXT_REPLIES]):
            s.found.add(TEXT_REPLIES, fold_problems(s.look(), s.docset, state=State.FAILED, request_id=r2.request_id))
        r1 = r2

    third = s.request(3)
    if third is None:
        s.found.skip([SEED_REPLIES], "the third request did not arrive")
    else:
        arrival, r3 = third
        s.found.add(NEWER_ID, [] if r3.request_id > r1.request_id else [f"{r3.request_id} <= {r1.request_id}"])
        url3 = f"https://conformance.invalid/{s.token}/3.zip"
        seed = [b"Accepted. 30 seconds", f"Complete: {url3}\nSize: 2345".encode()]
        s.reply([Envelope(body, TEXT_CONTENT_TYPE, {}) for body in seed], arrival)
        if s.poll([SEED_REPLIES]):
            problems = fold_problems(
                s.look(), s.docset, state=State.COMPLETE, request_id=r3.request_id, archive_url=url3
            )
            s.found.add(SEED_REPLIES, problems)

    _garbage(s)
    _delete(s)


def _garbage(s: _Session) -> None:
    body = b'{"type": "no_such_type", "conformance": "' + s.token.encode() + b'"}'
    before = fold_of(s.look(), s.docset)
    s.transport.send(s.queue, Envelope(body, "application/json", {}), persistent=True, confirm=True)
    if not s.poll([SURVIVES_GARBAGE, GARBAGE_TAKEN]):
        return
    after = s.look()
    status = fold_of(after, s.docset)
    same = (status.state, status.request_id, status.result) == (before.state, before.request_id, before.result)
    s.found.add(
        SURVIVES_GARBAGE, [] if same else [f"{before.state.value} became {status.state.value}"], ok=status.state.value
    )
    s.found.add(
        GARBAGE_TAKEN, ["it is still in the reply queue"] if any(r.envelope.body == body for r in after) else []
    )
    parked = _until(
        lambda: [r.envelope for r in peek(s.transport, DEAD_LETTER, docset_id=None) if r.envelope.body == body],
        min(s.run.timeout, 3.0),
    )
    if not parked:
        s.found.add(GARBAGE_PARKED, ["not found on docsets/dead-letter"])
    else:
        reason = parked[0].headers.get(DEAD_LETTER_REASON)
        s.found.add(GARBAGE_PARKED, [] if reason else [f"no {DEAD_LETTER_REASON} header"], ok=f"reason: {reason}")


def _delete(s: _Session) -> None:
    problem = s.triggers.delete.fire(s.docset)
    arrival = None if problem else s.packager.next(DELETE_REQUESTS, s.docset, s.run.timeout)
    if arrival is None:
        s.found.add(DELETE_ARRIVES, [problem or f"nothing arrived within {s.run.timeout:g} s{_HINT}"])
        s.found.skip([DELETE_ID, DELETED_KEPT], "no delete request arrived")
        return
    for case, problems in delete_problems(arrival.received, s.docset).items():
        s.found.add(case, problems)
    request = arrival.received.message
    if not isinstance(request, DeleteRequest):
        arrival.answered()
        return
    deleted = Deleted(**_fields(request, 1), archive_url=request.archive_url)
    s.reply([encode(deleted)], arrival)
    if s.poll([DELETED_KEPT]):
        s.found.add(DELETED_KEPT, fold_problems(s.look(), s.docset, state=State.DELETED, request_id=request.request_id))


def _job(request: PackageRequest, end: type[Complete | Failed], **result: object) -> list[Message]:
    """A packager's replies to ``request``: accepted, one progress, then ``end``."""
    return [
        Accepted(**_fields(request, 1), estimate_seconds=30),
        Progress(**_fields(request, 2), items_done=1, items_total=2, percent=50.0, eta_seconds=15),
        end(**_fields(request, 3), **result),
    ]


def _fields(request: PackageRequest | DeleteRequest, sequence: int) -> dict[str, object]:
    return {
        "docset_id": request.docset_id,
        "request_id": request.request_id,
        "sequence": sequence,
        "timestamp": utc_now(),
    }


def _until(find: Callable[[], list[Envelope]], timeout: float) -> list[Envelope]:
    deadline = time.monotonic() + timeout
    while True:
        found = find()
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(0.2)
