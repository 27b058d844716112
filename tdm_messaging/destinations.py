"""Destination names: the protocol's logical queues and docset-id rules (STOMP spellings: transport/stomp/)."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from tdm_messaging.errors import InvalidDestinationError

__all__ = [
    "DEAD_LETTER",
    "DELETE_REQUESTS",
    "MAX_DOCSET_ID_LENGTH",
    "PACKAGE_REQUESTS",
    "Destination",
    "DestinationKind",
    "known_destination",
    "names_in_words",
    "reply_queue",
    "validate_docset_id",
]

MAX_DOCSET_ID_LENGTH = 128
# Unreserved URL characters plus ':' and '@': safe in STOMP headers, AMQP queue
# names, Redis keys and file names, and free of every broker's wildcard syntax.
_DOCSET_ID_OK = re.compile(r"[A-Za-z0-9._~:@+-]+")
_REPLY_PREFIX = "package/"


class DestinationKind(enum.Enum):
    """What a queue is for; decides its durability and expiry on every broker."""

    PERMANENT = "permanent"
    """Work queues (package and delete requests): durable, never expire."""
    REPLY = "reply"
    """Per-docset reply queues: durable, collected by the broker after a time of disuse."""
    DEAD_LETTER = "dead-letter"
    """Where poison messages are parked with the reason: durable, never expire."""


@dataclass(frozen=True, slots=True)
class Destination:
    """A logical queue name, such as ``docsets/package`` or ``package/5``.

    Build reply queues with :func:`reply_queue`; the permanent ones are the
    module constants. ``name`` is the dialect-free name (the AMQP queue name).
    """

    name: str
    kind: DestinationKind

    @property
    def docset_id(self) -> str | None:
        """The docset id of a reply queue, else ``None``."""
        if self.kind is DestinationKind.REPLY:
            return self.name[len(_REPLY_PREFIX) :]
        return None

    def __str__(self) -> str:
        return self.name


PACKAGE_REQUESTS = Destination("docsets/package", DestinationKind.PERMANENT)
DELETE_REQUESTS = Destination("docsets/delete", DestinationKind.PERMANENT)
DEAD_LETTER = Destination("docsets/dead-letter", DestinationKind.DEAD_LETTER)
_FIXED = {d.name: d for d in (PACKAGE_REQUESTS, DELETE_REQUESTS, DEAD_LETTER)}


NAMES_IN_WORDS = 5
"""How many queue names an error or log line spells out (:func:`names_in_words`)."""


def names_in_words(names: Iterable[str], *, most: int = NAMES_IN_WORDS) -> str:
    """Queue ``names`` for an error or a log line: sorted, each once, quoted; past ``most``, a count.

    A batch may span thousands of reply queues; naming them all made one unconfirmed send's
    error 400 KB long. ``names_in_words(["b", "a", "b"])`` is ``"'a', 'b'"``; eight names with
    ``most=5`` give the first five and ``"and 3 more"``.
    """
    unique = sorted(set(names))
    most = max(most, 1)
    shown = ", ".join(repr(name) for name in unique[:most])
    rest = len(unique) - most
    return f"{shown} and {rest} more" if rest > 0 else shown


def validate_docset_id(docset_id: str) -> str:
    """Return ``docset_id`` if it may name a reply queue, else raise.

    Allowed: 1 to 128 characters from ``A-Z a-z 0-9 . _ ~ : @ + -``. Refused
    with the reason: ``/`` (a path separator on ActiveMQ, refused by RabbitMQ),
    the wildcards ``*`` ``>`` ``#``, ``%``, spaces, control and non-ASCII characters.

    Raises:
        InvalidDestinationError: naming the offending character and its position.
    """
    if not isinstance(docset_id, str):
        raise InvalidDestinationError(f"docset id must be a string, got {type(docset_id).__name__}")
    if not docset_id:
        raise InvalidDestinationError("docset id is empty; give 1 to 128 characters")
    if len(docset_id) > MAX_DOCSET_ID_LENGTH:
        raise InvalidDestinationError(
            f"docset id is {len(docset_id)} characters long; the limit is {MAX_DOCSET_ID_LENGTH}"
        )
    if _DOCSET_ID_OK.fullmatch(docset_id):
        return docset_id
    position, char = next((i, c) for i, c in enumerate(docset_id) if not _DOCSET_ID_OK.fullmatch(c))
    why = {
        "/": "'/' separates path segments in destinations",
        "*": "'*' is a broker wildcard",
        ">": "'>' is a broker wildcard",
        "#": "'#' is a broker wildcard",
        "%": "'%' is the escape character of RabbitMQ destinations",
    }.get(char, f"character {char!r} is not allowed")
    raise InvalidDestinationError(
        f"invalid docset id {docset_id!r} at position {position}: {why}; use letters, digits and . _ ~ : @ + -"
    )


def reply_queue(docset_id: str) -> Destination:
    """The reply queue of a docset: ``package/<docset_id>``.

    Raises:
        InvalidDestinationError: if ``docset_id`` is not allowed (see :func:`validate_docset_id`).
    """
    # A request, its poll and its replies name the same docset several times each: the checked
    # queue of a docset seen lately is remembered (exact str only: a subclass may hash or compare
    # otherwise; an invalid id raises, and is not remembered).
    make = _checked_reply_queue if type(docset_id) is str else _checked_reply_queue.__wrapped__
    return make(docset_id)


@lru_cache(maxsize=4096)
def _checked_reply_queue(docset_id: str) -> Destination:
    return Destination(_REPLY_PREFIX + validate_docset_id(docset_id), DestinationKind.REPLY)


def known_destination(name: str, *, spelled: str | None = None) -> Destination:
    """The protocol's destination called ``name`` (``docsets/package``, ``package/5``, ...).

    Args:
        spelled: how the caller met the name (a broker's wire name), quoted in the error instead.

    Raises:
        InvalidDestinationError: ``name`` is neither a fixed queue nor ``package/<docset id>``.
    """
    if name in _FIXED:
        return _FIXED[name]
    if name.startswith(_REPLY_PREFIX):
        return reply_queue(name[len(_REPLY_PREFIX) :])
    raise InvalidDestinationError(
        f"{spelled if spelled is not None else name!r} is not a destination of this protocol; "
        "known: " + ", ".join(sorted(_FIXED)) + ", package/<docset id>"
    )
