"""The status fold: any collection of a docset's replies -> one DocsetStatus, and the fewest replies that keep it."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypeVar

from tdm_messaging.destinations import validate_docset_id
from tdm_messaging.models import (
    Accepted,
    Complete,
    Deleted,
    Failed,
    Message,
    MessageBase,
    PackageRequest,
    Progress,
)

__all__ = ["DocsetStatus", "State", "compact", "fold", "fold_and_compact"]


class State(enum.Enum):
    """Where a docset's dump stands, as far as its reply queue tells."""

    UNKNOWN = "unknown"
    """No message about this docset: no dump was requested (or its replies were collected)."""
    REQUESTED = "requested"
    """The request was sent; the packager has not taken it yet."""
    ACCEPTED = "accepted"
    """The packager took the request (perhaps with an estimate)."""
    IN_PROGRESS = "in_progress"
    """The packager reported progress."""
    FAILED = "failed"
    """The packager gave up (the failure says whether asking again may help)."""
    COMPLETE = "complete"
    """The archive is ready at the result's URL."""
    DELETED = "deleted"
    """The archive was deleted; its URL no longer works."""

    @property
    def rank(self) -> int:
        """How far along this state is; within one request the fold never moves to a lower rank."""
        return _RANK[self]

    @property
    def is_pending(self) -> bool:
        """True for REQUESTED, ACCEPTED and IN_PROGRESS: the dump is on its way."""
        return self in _PENDING


# Rules
# -----
# 1. Only messages of the docset count; a DeleteRequest (absent from _STATE_OF) is an instruction to the
#    packager, not an observation, so it never changes a status (the archive stays until it says Deleted).
# 2. Only issued requests count: once the queue holds a request's copy (the server writes one per request),
#    a reply counts only if it answers a request whose copy is there, or is a Deleted (which answers a
#    delete request: the server keeps no copy of those). With no copy at all (a seed queue), every reply
#    counts. Among what counts, the greatest request_id decides (ids sort in creation order, "" first),
#    so a reply to an id the server never issued can neither pin nor forge the status of a real request.
# 3. Within that request the state is the highest rank any of its messages reaches (table below), so a
#    late Accepted never hides a Progress or a result. Complete outranks Failed: a Failed next to a
#    Complete can only come from a redelivered duplicate job, and the delivered archive is still valid.
# 4. Of each kind one *witness* is kept: Progress the furthest (items_done, then sequence); every other
#    kind the latest (sequence, then timestamp); remaining ties go to the greatest tuple of all fields in
#    schema order (_tie_break: null first, numbers by value, strings by code point, false < true,
#    instants, lists element-wise), so the choice depends on the set of messages only, never on their
#    order or repetition, and a peer in any language can make the same choice from the JSON values.
# 5. A status keeps only the witnesses its state needs (_KEEPS), and in IN_PROGRESS the Accepted only if it
#    carries an estimate: the rest are what compact() drops. updated_at is the newest of the kept ones.
_RANK: Final[dict[State, int]] = {
    State.UNKNOWN: 0,
    State.REQUESTED: 1,
    State.ACCEPTED: 2,
    State.IN_PROGRESS: 3,
    State.FAILED: 4,
    State.COMPLETE: 5,
    State.DELETED: 6,
}
_PENDING: Final = frozenset({State.REQUESTED, State.ACCEPTED, State.IN_PROGRESS})
_STATE_OF: Final[dict[type[MessageBase], State]] = {
    PackageRequest: State.REQUESTED,
    Accepted: State.ACCEPTED,
    Progress: State.IN_PROGRESS,
    Failed: State.FAILED,
    Complete: State.COMPLETE,
    Deleted: State.DELETED,
}
_KEEPS: Final[dict[State, frozenset[State]]] = {
    State.REQUESTED: frozenset({State.REQUESTED}),
    State.ACCEPTED: frozenset({State.REQUESTED, State.ACCEPTED}),
    State.IN_PROGRESS: frozenset({State.REQUESTED, State.ACCEPTED, State.IN_PROGRESS}),
    State.FAILED: frozenset({State.REQUESTED, State.FAILED}),
    State.COMPLETE: frozenset({State.REQUESTED, State.COMPLETE}),
    State.DELETED: frozenset({State.REQUESTED, State.DELETED}),
}


@dataclass(frozen=True)
class DocsetStatus:
    """One docset's dump status, folded from its replies by :func:`fold`.

    Fields that do not apply to ``state`` are ``None`` (e.g. ``progress`` once COMPLETE).

    Attributes:
        docset_id: the docset.
        state: see :class:`State`.
        request_id: the request the status is about (the newest seen); ``None`` when UNKNOWN.
        requested_at: when the miner asked, if the request's copy was seen.
        estimate_seconds: the packager's estimate from Accepted (ACCEPTED and IN_PROGRESS only).
        progress: the furthest progress of that request (IN_PROGRESS only).
        result: the Complete message (COMPLETE only).
        failure: the Failed message (FAILED only).
        updated_at: the newest timestamp among the messages that shaped this status.
    """

    docset_id: str
    state: State
    request_id: str | None
    requested_at: datetime | None
    estimate_seconds: float | None
    progress: Progress | None
    result: Complete | None
    failure: Failed | None
    updated_at: datetime | None

    @classmethod
    def unknown(cls, docset_id: str) -> DocsetStatus:
        """The status of a docset nothing is known about."""
        return cls(docset_id, State.UNKNOWN, None, None, None, None, None, None, None)


_CheapKey = tuple[int, int, datetime]
_M = TypeVar("_M", bound=MessageBase)


@dataclass(frozen=True)
class _Selection:
    request_id: str | None
    state: State
    witnesses: dict[State, tuple[int, MessageBase]]  # state -> (position in the input, message)


def _state_of(message: MessageBase) -> State | None:
    state = _STATE_OF.get(type(message))
    if state is not None:
        return state
    for cls, state in _STATE_OF.items():  # a subclass of a known kind
        if isinstance(message, cls):
            return state
    return None  # DeleteRequest, or a type this fold does not know


def _cheap_key(message: MessageBase) -> _CheapKey:
    # With _tie_break, a total order over distinct messages: the fields settle what sequence and time
    # leave tied. Keys are compared only within one kind, so the leading items_done is 0 for every other kind.
    items_done = message.items_done if isinstance(message, Progress) else 0
    return (items_done, message.sequence, message.timestamp)


def _beats(message: MessageBase, cheap: _CheapKey, held: MessageBase, held_cheap: _CheapKey) -> bool:
    """Whether ``message`` ranks above ``held`` of its kind; the tie-break over every field is built only on a tie."""
    if cheap != held_cheap:
        return cheap > held_cheap
    return _tie_break(message) > _tie_break(held)


def _tie_break(message: MessageBase) -> tuple[object, ...]:
    """Every field of ``message``, in its schema's order, as values that compare as docs/status.md rule 4 says.

    ``None`` sorts before any value; within one kind a field always holds one type, and Python
    compares those as the rule does: numbers by value, strings by code point, ``False`` < ``True``,
    date-times as instants (the models keep them in UTC), tuples element by element.
    """
    return tuple(
        (0,) if value is None else (1, value)
        for value in (getattr(message, name) for name in type(message).model_fields)
    )


def _select(messages: Sequence[MessageBase], docset_id: str) -> _Selection:
    validate_docset_id(docset_id)
    relevant = [
        (index, message, state)
        for index, message in enumerate(messages)
        if message.docset_id == docset_id and (state := _state_of(message)) is not None
    ]
    if not relevant:
        return _Selection(None, State.UNKNOWN, {})
    issued = {message.request_id for _, message, _ in relevant if isinstance(message, PackageRequest)}
    if issued:
        relevant = [item for item in relevant if item[1].request_id in issued or isinstance(item[1], Deleted)]
    current = max(message.request_id for _, message, _ in relevant)
    best: dict[State, tuple[_CheapKey, int, MessageBase]] = {}
    for index, message, state in relevant:
        if message.request_id != current:
            continue
        cheap = _cheap_key(message)
        held = best.get(state)
        # Strictly greater: among equal messages the first occurrence is kept, so compact() is stable.
        if held is None or _beats(message, cheap, held[2], held[0]):
            best[state] = (cheap, index, message)
    state = max(best, key=_RANK.__getitem__)
    keep = _KEEPS[state]
    witnesses = {s: (index, message) for s, (_, index, message) in best.items() if s in keep}
    accepted = witnesses.get(State.ACCEPTED, (0, None))[1]
    if state is State.IN_PROGRESS and isinstance(accepted, Accepted) and accepted.estimate_seconds is None:
        del witnesses[State.ACCEPTED]  # it says nothing that Progress does not: compact() drops it
    return _Selection(current, state, witnesses)


def _witness(selection: _Selection, state: State, cls: type[_M]) -> _M | None:
    held = selection.witnesses.get(state)
    if held is None:
        return None
    message = held[1]
    assert isinstance(message, cls)
    return message


def fold(messages: Iterable[Message], docset_id: str) -> DocsetStatus:
    """Fold a docset's messages, in any order and with any duplicates, into its status.

    Pure: reads no clock. The rules (which request decides, state ranks, tie-breaks) are in
    ``docs/status.md``. The result does not depend on the order of ``messages`` nor on
    repetitions; adding messages of the same request never lowers the state's rank; a newer
    request supersedes everything an older request said; and while a request's copy is present,
    a reply to a request whose copy is not (other than a Deleted) is ignored.

    Args:
        messages: any messages; those of other docsets, and DeleteRequests, are ignored.
        docset_id: the docset whose status to fold.

    Returns:
        The status; ``State.UNKNOWN`` (all other fields ``None``) when no message counts.

    Raises:
        InvalidDestinationError: ``docset_id`` is not a valid docset id.
    """
    return _status_of(_select(list(messages), docset_id), docset_id)


def _status_of(selection: _Selection, docset_id: str) -> DocsetStatus:
    if selection.state is State.UNKNOWN:
        return DocsetStatus.unknown(docset_id)
    request = _witness(selection, State.REQUESTED, PackageRequest)
    accepted = _witness(selection, State.ACCEPTED, Accepted)
    return DocsetStatus(
        docset_id=docset_id,
        state=selection.state,
        request_id=selection.request_id,
        requested_at=request.requested_at if request is not None else None,
        estimate_seconds=accepted.estimate_seconds if accepted is not None else None,
        progress=_witness(selection, State.IN_PROGRESS, Progress),
        result=_witness(selection, State.COMPLETE, Complete),
        failure=_witness(selection, State.FAILED, Failed),
        updated_at=max(message.timestamp for _, message in selection.witnesses.values()),
    )


def compact(messages: Iterable[Message], docset_id: str) -> list[Message]:
    """The fewest of ``messages`` whose fold equals ``fold(messages, docset_id)``, in their input order.

    This is what a server re-sends to the reply queue after a poll, so the next poll reads the
    same status from at most three messages: the request's copy and one witness per kind the
    state needs (see ``docs/status.md``). ``compact`` is idempotent, and for an UNKNOWN status
    it returns ``[]``.

    Args:
        messages: any messages, as for :func:`fold`.
        docset_id: the docset whose status to keep.

    Returns:
        A new list holding some of the same message objects, each at most once.

    Raises:
        InvalidDestinationError: ``docset_id`` is not a valid docset id.
    """
    items = list(messages)
    positions = {index for index, _ in _select(items, docset_id).witnesses.values()}
    return [message for index, message in enumerate(items) if index in positions]


def fold_and_compact(messages: Iterable[Message], docset_id: str) -> tuple[DocsetStatus, list[Message]]:
    """``(fold(messages, docset_id), compact(messages, docset_id))`` from one selection (what a poll needs).

    Raises:
        InvalidDestinationError: ``docset_id`` is not a valid docset id.
    """
    items = list(messages)
    selection = _select(items, docset_id)
    positions = {index for index, _ in selection.witnesses.values()}
    return _status_of(selection, docset_id), [message for index, message in enumerate(items) if index in positions]
