"""The cases of ``--role packager`` (the kit plays the server) and their checks, pure functions of what was seen."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from tdm_messaging.clock import utc_now
from tdm_messaging.codec import JSON_CONTENT_TYPE, encode
from tdm_messaging.conformance.packager_seen import Fetch, Lifecycle, PackagerSeen
from tdm_messaging.conformance.report import Case, Level, Result
from tdm_messaging.conformance.wire import Received, fold_of, header_problems, messages, short
from tdm_messaging.headers import DEAD_LETTER_REASON
from tdm_messaging.models import Accepted, Complete, Failed, Message, Progress
from tdm_messaging.poll_plan import plan_poll
from tdm_messaging.status import DocsetStatus, State, fold

__all__ = ["PACKAGER_CASES", "evaluate"]

_MUST, _SHOULD = Level.MUST, Level.SHOULD


def _lifecycle_cases(first: int, label: str) -> list[Case]:
    titles = [
        (("3", "4", "4.8"), _MUST, "replies arrive on `package/<docset id>`, each a well-formed message"),
        (("4",), _MUST, "every reply carries the request's docset_id and request_id"),
        (
            ("1", "6"),
            _MUST,
            "accepted comes first (or, for a job that ended within the packager's linger, the outcome alone), "
            "then progress, then one complete or failed, and nothing after",
        ),
        (("4",), _MUST, "the sequence numbers of the replies increase"),
        (("4.3",), _MUST, "progress only moves forward (items_done never decreases, never above items_total)"),
        (("4.4",), _MUST, "the job ends complete (the stand-in API serves the docset)"),
        (
            ("6", "6.1"),
            _MUST,
            "a server's poll of the queue folds it to complete for this request, nothing dead-lettered",
        ),
        (("4.4",), _SHOULD, "the archive at archive_url has size_bytes bytes and the sha256 given (--fetch-archives)"),
        (("3",), _SHOULD, "each reply carries the tdm-* headers of §3, agreeing with its body"),
    ]
    return [Case(first + i, f"{label}: {title}", sections, level) for i, (sections, level, title) in enumerate(titles)]


_JSON_CASES = _lifecycle_cases(1, "JSON request")
_TEXT_CASES = _lifecycle_cases(10, "text/plain request")
_SEED = Case(
    19,
    "seed-style request (the URL alone, no tdm-* headers): answered on `package/<last path segment>`, ends complete",
    ("5", "5.1"),
    _SHOULD,
)
_POLLED = Case(
    20,
    "polled through PackagingClient.status while it works: the state only moves forward, ends complete",
    ("6", "6.1"),
)
_DUPLICATE = Case(
    21, "the same request delivered twice: every reply carries its id, the job ends, a poll folds to complete", ("6",)
)
_MISSING = Case(
    22, "a docset the API cannot serve (HTTP 404): the job ends failed with a reason, never complete", ("4.5", "6")
)
_INVALID = Case(
    23,
    "a package request with an invalid field (ftp:// docset_url) is not acted on: no accepted, progress or complete",
    ("4.8", "9"),
)
_MAJOR = Case(
    24, "a package request of protocol version 2.0 is refused: no accepted, progress or complete", ("4.8", "8")
)
_SERVED_AFTER = Case(
    25,
    "after a body that is not JSON and the two refused requests, the next request is served to the end",
    ("4.8", "6"),
)
_DEAD_LETTERED = Case(
    26,
    "the three unreadable requests are parked on docsets/dead-letter with tdm-dead-letter-reason",
    ("2", "6"),
    _SHOULD,
)
_DELETE_JSON = Case(
    27,
    "a JSON delete request is answered with deleted for its docset; a poll then folds to deleted",
    ("4.6", "4.7", "6.1"),
)
_DELETE_TEXT = Case(
    28,
    "a text/plain delete request (`Delete: <id>`) is answered with deleted; a poll then folds to deleted",
    ("4.6", "4.7", "5"),
)
_GONE = Case(29, "after deleted, the archive URL no longer works (--fetch-archives)", ("4.7",), _SHOULD)

PACKAGER_CASES: tuple[Case, ...] = (
    *_JSON_CASES,
    *_TEXT_CASES,
    _SEED,
    _POLLED,
    _DUPLICATE,
    _MISSING,
    _INVALID,
    _MAJOR,
    _SERVED_AFTER,
    _DEAD_LETTERED,
    _DELETE_JSON,
    _DELETE_TEXT,
    _GONE,
)
"""Every case of ``--role packager``, in report order."""


def evaluate(seen: PackagerSeen) -> list[Result]:
    """Every case's result for one run."""
    results = _lifecycle(_JSON_CASES, seen.json, seen.fetch_archives)
    results += _lifecycle(_TEXT_CASES, seen.text, seen.fetch_archives)
    checks: list[Callable[[PackagerSeen], Result]] = [
        _seed,
        _polled,
        _duplicate,
        _missing,
        lambda s: _not_acted_on(_INVALID, s.invalid),
        lambda s: _not_acted_on(_MAJOR, s.future_major),
        _served_after,
        _dead_lettered,
        lambda s: _deleted(_DELETE_JSON, s.json),
        lambda s: _deleted(_DELETE_TEXT, s.text),
        _gone,
    ]
    return results + [check(seen) for check in checks]


# -- one request's lifecycle ---------------------------------------------------------------------


def _lifecycle(cases: Sequence[Case], run: Lifecycle, fetch_archives: bool) -> list[Result]:
    formed, ids, order, sequence, progress, complete, folds, archive, headers = cases
    if not run.replies:
        why = (
            f"nothing arrived on package/{run.docset_id} before the timeout (does the packager consume "
            "docsets/package on this broker URL, namespace included, and fetch from the kit's --api-listen?)"
        )
        return [formed.failed(why), *(c.skipped(why) for c in cases[1:])]
    bad = [f"undecodable reply: {r.error}" for r in run.replies if r.message is None]
    results = [formed.check(bad, ok=f"{len(run.replies)} replies {short(run.replies)}")]
    replies = messages(run.replies)
    request_id = run.request.request_id if run.request else ""
    strays = [
        f"{m.type}#{m.sequence} names docset {m.docset_id!r} and request {m.request_id!r}"
        for m in replies
        if m.docset_id != run.docset_id or m.request_id != request_id
    ]
    expected = f"the request was {request_id!r} of docset {run.docset_id!r}"
    results.append(ids.check([expected, *strays] if strays else []))
    results.append(order.check(_order_problems(replies)))
    results.append(sequence.check(_sequence_problems(replies)))
    results.append(progress.check(_progress_problems(replies)))
    end = run.terminal
    if isinstance(end, Complete):
        results.append(complete.passed(f"{end.archive_url} ({end.size_bytes} bytes)"))
    else:
        results.append(complete.failed(f"failed: {end.reason}" if end else "no complete or failed arrived"))
    results.append(_poll_folds(folds, run, State.COMPLETE))
    results.append(_archive(archive, end, run.fetched, fetch_archives))
    results.append(headers.check([p for r in run.replies for p in header_problems(r)]))
    return results


def _order_problems(replies: Sequence[Message]) -> list[str]:
    kinds = [m.type for m in replies]
    problems: list[str] = []
    outcome_alone = len(kinds) == 1 and kinds[0] in ("complete", "failed")  # ended within a linger (§ 1)
    if not outcome_alone and (not kinds or kinds[0] != "accepted"):
        problems.append(f"the first reply is {kinds[0] if kinds else 'missing'}, not accepted")
    if kinds.count("accepted") > 1:
        problems.append(f"{kinds.count('accepted')} accepted")
    ends = [i for i, k in enumerate(kinds) if k in ("complete", "failed")]
    if not ends:
        problems.append("no complete or failed")
    elif len(ends) > 1 or ends[0] != len(kinds) - 1:
        problems.append(f"replies after the first {kinds[ends[0]]}: {kinds[ends[0] + 1 :]}")
    strays = [k for k in kinds if k not in ("accepted", "progress", "complete", "failed")]
    if strays:
        problems.append(f"unexpected replies: {strays}")
    return problems


def _sequence_problems(replies: Sequence[Message]) -> list[str]:
    numbers = [m.sequence for m in replies]
    if any(b <= a for a, b in itertools.pairwise(numbers)):
        return [f"sequence numbers in arrival order: {numbers}"]
    if numbers and numbers[0] == 0:
        return ["the first reply has sequence 0, the request's own number"]
    return []


def _progress_problems(replies: Sequence[Message]) -> list[str]:
    done = [(m.items_done, m.items_total) for m in replies if isinstance(m, Progress)]
    if any(b[0] < a[0] for a, b in itertools.pairwise(done)):
        return [f"items_done/items_total went back: {done}"]
    return []


def _poll_folds(case: Case, run: Lifecycle, state: State) -> Result:
    if run.request is None:
        return case.skipped("no request copy")
    envelopes = [encode(run.request), *(r.envelope for r in run.replies)]
    plan = plan_poll(
        envelopes, docset_id=run.docset_id, content_type=JSON_CONTENT_TYPE, queue_expiry=False, now=utc_now()
    )
    problems = [f"dead-lettered: {d.reason}" for d in plan.dead_letters]
    status = plan.status
    if status.state is not state or status.request_id != run.request.request_id:
        problems.append(f"the poll says {status.state.value} about request {status.request_id!r}")
    return case.check(problems, ok=f"{status.state.value}")


def _archive(case: Case, end: Complete | Failed | None, fetched: Fetch | None, fetch_archives: bool) -> Result:
    if not fetch_archives:
        return case.skipped("--fetch-archives is off")
    if not isinstance(end, Complete) or fetched is None:
        return case.skipped("no complete to fetch")
    if fetched.status != 200:
        return case.failed(f"GET {end.archive_url}: {fetched.error or f'HTTP {fetched.status}'}")
    problems = []
    if fetched.size != end.size_bytes:
        problems.append(f"{fetched.size} bytes, size_bytes says {end.size_bytes}")
    if end.sha256 is not None and fetched.sha256 != end.sha256:
        problems.append(f"sha256 {fetched.sha256}, complete says {end.sha256}")
    return case.check(problems, ok=f"{fetched.size} bytes" + (", sha256 matches" if end.sha256 else ""))


# -- the other scenarios -----------------------------------------------------------------------


def _seed(seen: PackagerSeen) -> Result:
    run = seen.seed
    if not run.replies:
        return _SEED.failed(f"nothing arrived on package/{run.docset_id}")
    end = run.terminal
    bad = [r.error or "" for r in run.replies if r.message is None]
    if bad:
        return _SEED.failed(f"undecodable replies: {bad}")
    if not isinstance(end, Complete):
        return _SEED.failed(f"it ended {end.type if end else 'without complete or failed'}")
    return _SEED.passed(short(run.replies))


def _polled(seen: PackagerSeen) -> Result:
    run, case = seen.polled, _POLLED
    states = [s for s in run.states if s.state is not State.UNKNOWN]
    if not states:
        return case.failed("every poll said unknown")
    ranks = [s.state.rank for s in states]
    trail = " -> ".join(dict.fromkeys(s.state.value for s in states))
    problems = []
    if any(b < a for a, b in itertools.pairwise(ranks)):
        problems.append(f"the state went back: {[s.state.value for s in states]}")
    last = states[-1]
    request_id = run.request.request_id if run.request else None
    if last.state is not State.COMPLETE or last.request_id != request_id:
        problems.append(f"the last poll says {last.state.value} about request {last.request_id!r}")
    return case.check(problems, ok=trail)


def _duplicate(seen: PackagerSeen) -> Result:
    run = seen.duplicate
    request_id = run.request.request_id if run.request else ""
    replies = messages(run.replies)
    problems = [f"{m.type} names request {m.request_id!r}" for m in replies if m.request_id != request_id]
    problems += [f"undecodable reply: {r.error}" for r in run.replies if r.message is None]
    if run.terminal is None:
        problems.append("no complete or failed arrived")
    folded = _poll_folds(_DUPLICATE, run, State.COMPLETE)
    if folded.detail and folded.outcome.value != "pass":
        problems.append(folded.detail)
    return _DUPLICATE.check(problems, ok=f"{len(replies)} replies {short(run.replies)}")


def _missing(seen: PackagerSeen) -> Result:
    end = seen.missing.terminal
    if isinstance(end, Failed):
        return _MISSING.passed(f"failed: {end.reason[:120]} (retryable: {end.retryable})")
    if isinstance(end, Complete):
        return _MISSING.failed(f"it ended complete: {end.archive_url}")
    return _MISSING.failed(f"no complete or failed arrived {short(seen.missing.replies)}")


def _not_acted_on(case: Case, run: Lifecycle) -> Result:
    acted = [m.type for m in messages(run.replies) if isinstance(m, Accepted | Progress | Complete)]
    if acted:
        return case.failed(f"the packager answered it: {acted}")
    return case.passed(f"replies on its queue: {short(run.replies)}")


def _served_after(seen: PackagerSeen) -> Result:
    end = seen.after_poison.terminal
    if end is None:
        return _SERVED_AFTER.failed(f"no complete or failed arrived {short(seen.after_poison.replies)}")
    return _SERVED_AFTER.passed(f"ended {end.type}")


def _dead_lettered(seen: PackagerSeen) -> Result:
    parked = {e.body: e for e in seen.dead_letters}
    problems = []
    for body in seen.poison_bodies:
        envelope = parked.get(body)
        if envelope is None:
            problems.append(f"{body[:40]!r} is not on docsets/dead-letter")
        elif not envelope.headers.get(DEAD_LETTER_REASON):
            problems.append(f"{body[:40]!r} has no {DEAD_LETTER_REASON}")
    return _DEAD_LETTERED.check(problems)


def _deleted(case: Case, run: Lifecycle) -> Result:
    if run.delete is None:
        return case.skipped("no delete request was sent (the job did not complete)")
    deleted = run.deleted
    if deleted is None:
        return case.failed(f"no deleted arrived {short(run.after_delete)}")
    problems = []
    if deleted.docset_id != run.docset_id:
        problems.append(f"deleted names docset {deleted.docset_id!r}")
    known = {run.delete.request_id, run.request.request_id if run.request else ""}
    if deleted.request_id not in known:
        problems.append(f"deleted names request {deleted.request_id!r}, neither the delete's nor the package request's")
    everything = [*run.replies, *run.after_delete]
    status = fold_of(everything, run.docset_id) if run.request is None else _fold_with_copy(run, everything)
    if status.state is not State.DELETED:
        problems.append(f"a poll folds to {status.state.value}")
    spelling = "delete" if deleted.request_id == run.delete.request_id else "package request"
    return case.check(problems, ok=f"deleted, with the request id of the {spelling}")


def _gone(seen: PackagerSeen) -> Result:
    if not seen.fetch_archives:
        return _GONE.skipped("--fetch-archives is off")
    fetched = [run.fetched_after_delete for run in (seen.json, seen.text) if run.fetched_after_delete is not None]
    if not fetched:
        return _GONE.skipped("no archive was deleted")
    working = [f for f in fetched if f.status == 200]
    return _GONE.check([f"still answers 200 ({f.size} bytes)" for f in working], ok=f"HTTP {fetched[0].status}")


def _fold_with_copy(run: Lifecycle, everything: list[Received]) -> DocsetStatus:
    assert run.request is not None
    return fold([run.request, *messages(everything)], run.docset_id)
