"""Operator actions on ``docsets/dead-letter``: list, replay and purge dead letters, named by a content hash.

Rules
-----
1. A dead letter's id is the SHA-256 of its content type, headers (sorted) and body, cut to
   :data:`ID_LENGTH` hex digits: the same on every broker (whose own message ids differ) and on
   every read. Identical dead letters share an id; an action on that id takes the oldest one.
2. Listing reads the queue and releases it: nothing is taken.
3. Replay sends the letter, without the dead-letter headers and ``tdm-attempt`` (a replay starts
   afresh), to its source queue, *confirmed*, then re-sends the other letters of the read (in
   their order, confirmed), and only then acknowledges the read. A failure at any point leaves
   every letter in the queue (the read is given back), at worst with the replayed one also on its
   source queue, or some others twice: duplicates, never a loss.
4. Purge acknowledges exactly the letters the operator was shown (by id and count); letters that
   arrived since are re-sent before the acknowledgement, so they stay.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tdm_messaging.destinations import DEAD_LETTER, Destination, known_destination
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import InvalidArgumentError, TransportError
from tdm_messaging.headers import ATTEMPT, DEAD_LETTER_QUEUE, DEAD_LETTER_REASON, DOCSET_ID, TYPE

if TYPE_CHECKING:
    from tdm_messaging.transport.base import Transport

__all__ = [
    "DEFAULT_LIMIT",
    "ID_LENGTH",
    "MIN_ID_PREFIX",
    "DeadLetter",
    "find",
    "letter_id",
    "list_dead_letters",
    "purge",
    "replay",
    "restored",
]

ID_LENGTH = 16
"""Hex digits of a dead letter's id (64 bits: no accidental collision in any real queue)."""
MIN_ID_PREFIX = 6
"""Fewest leading hex digits of an id an operator may type."""
DEFAULT_LIMIT = 1000
"""Most dead letters one command reads."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One envelope on ``docsets/dead-letter``, with what an operator wants to see of it.

    Attributes:
        id: see rule 1 of this module.
        envelope: the envelope as parked (dead-letter headers included).
        reason: header ``tdm-dead-letter-reason`` ('' when absent).
        source: header ``tdm-dead-letter-queue``, the queue it was taken from ('' when absent).
        type: header ``tdm-type`` ('' when absent, e.g. a body that never decoded).
        docset_id: header ``tdm-docset-id`` ('' when absent).
    """

    id: str
    envelope: Envelope
    reason: str
    source: str
    type: str
    docset_id: str

    @property
    def size(self) -> int:
        """Body size in bytes."""
        return len(self.envelope.body)

    @classmethod
    def of(cls, envelope: Envelope) -> DeadLetter:
        """The view of ``envelope``."""
        return cls(
            id=letter_id(envelope),
            envelope=envelope,
            reason=envelope.header(DEAD_LETTER_REASON) or "",
            source=envelope.header(DEAD_LETTER_QUEUE) or "",
            type=envelope.header(TYPE) or "",
            docset_id=envelope.header(DOCSET_ID) or "",
        )


def letter_id(envelope: Envelope) -> str:
    """The id of a dead letter (pure): rule 1 of this module."""
    digest = hashlib.sha256()
    texts = [envelope.content_type]
    for name, value in sorted(envelope.headers.items()):
        texts += [name, value]
    parts = [len(envelope.headers).to_bytes(8, "big"), *(t.encode("utf-8", "surrogatepass") for t in texts)]
    for data in [*parts, envelope.body]:
        digest.update(len(data).to_bytes(8, "big") + data)  # every part length-prefixed: no two splits hash alike
    return digest.hexdigest()[:ID_LENGTH]


def restored(envelope: Envelope) -> Envelope:
    """``envelope`` as it goes back to its source queue: without the dead-letter headers and ``tdm-attempt``."""
    dropped = {DEAD_LETTER_REASON, DEAD_LETTER_QUEUE, ATTEMPT}
    headers = {name: value for name, value in envelope.headers.items() if name not in dropped}
    return Envelope(envelope.body, envelope.content_type, headers)


def find(letters: Sequence[DeadLetter], wanted: str) -> int:
    """The position of the oldest letter whose id is ``wanted`` or starts with it.

    Raises:
        InvalidArgumentError: ``wanted`` is not hex or too short, matches nothing, or matches
            letters of more than one id.
    """
    prefix = wanted.strip().lower()
    if len(prefix) < MIN_ID_PREFIX or any(c not in "0123456789abcdef" for c in prefix):
        raise InvalidArgumentError(
            f"{wanted[:40]!r} is not a dead-letter id: give at least {MIN_ID_PREFIX} of the hex digits "
            "that 'tdm-messaging dead-letters list' shows"
        )
    hits = [i for i, letter in enumerate(letters) if letter.id.startswith(prefix)]
    ids = sorted({letters[i].id for i in hits})
    if not hits:
        raise InvalidArgumentError(
            f"no dead letter {prefix} among the {len(letters)} read from {DEAD_LETTER.name}; "
            "list them with 'tdm-messaging dead-letters list' (or raise --limit)"
        )
    if len(ids) > 1:
        raise InvalidArgumentError(f"{prefix} matches dead letters {', '.join(ids)}; give more digits")
    return hits[0]


def list_dead_letters(transport: Transport, *, limit: int = DEFAULT_LIMIT) -> list[DeadLetter]:
    """The dead letters now in the queue, oldest first, up to ``limit``; nothing is taken (rule 2).

    Raises:
        TransportError: the broker could not be read.
    """
    with transport.read(DEAD_LETTER, limit=limit) as batch:
        return [DeadLetter.of(envelope) for envelope in batch.envelopes]


def _source_of(letter: DeadLetter) -> Destination:
    if not letter.source:
        raise InvalidArgumentError(
            f"dead letter {letter.id} has no {DEAD_LETTER_QUEUE} header, so where it came from is unknown; "
            "it cannot be replayed (see it with 'tdm-messaging dead-letters show')"
        )
    return known_destination(letter.source)


def replay(transport: Transport, wanted: str, *, limit: int = DEFAULT_LIMIT) -> DeadLetter:
    """Put the dead letter ``wanted`` (an id or a prefix of one) back on its source queue (rule 3).

    Returns:
        The letter replayed.

    Raises:
        InvalidArgumentError: no such letter among the first ``limit``, or it names no source queue.
        InvalidDestinationError: its source queue is not one of this protocol.
        TransportError: a send or the acknowledgement failed; the message says what is where.
    """
    with transport.read(DEAD_LETTER, limit=limit) as batch:
        letters = [DeadLetter.of(envelope) for envelope in batch.envelopes]
        index = find(letters, wanted)
        letter = letters[index]
        source = _source_of(letter)
        transport.send(source, restored(letter.envelope), confirm=True)
        try:
            for other in letters[:index] + letters[index + 1 :]:
                transport.send(DEAD_LETTER, other.envelope, confirm=True)
            batch.ack()
        except TransportError as exc:
            raise type(exc)(
                f"replaying {letter.id}: it was put back on {source.name} but the dead-letter queue could not "
                f"be settled ({exc}); nothing is lost, but it is still listed there, and some other letters may "
                "be listed twice: remove such duplicates by hand"
            ) from exc
    return letter


def purge(transport: Transport, shown: Sequence[DeadLetter], *, limit: int = DEFAULT_LIMIT) -> int:
    """Remove exactly the letters ``shown`` to the operator (rule 4); return how many went.

    Raises:
        TransportError: the broker failed; what was not acknowledged is still in the queue.
    """
    if not shown:
        return 0
    left = Counter(letter.id for letter in shown)
    removed = 0
    with transport.read(DEAD_LETTER, limit=max(limit, len(shown))) as batch:
        keep: list[Envelope] = []
        for envelope in batch.envelopes:
            key = letter_id(envelope)
            if left[key] > 0:
                left[key] -= 1
                removed += 1
            else:
                keep.append(envelope)
        for envelope in keep:  # arrived after the listing: not the operator's to purge
            transport.send(DEAD_LETTER, envelope, confirm=True)
        batch.ack()
    return removed
