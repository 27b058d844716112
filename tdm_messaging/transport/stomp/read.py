"""A STOMP read: collect a queue up to a marker, then settle it in one transaction (the batch's states as a table).

How a read ends without a sleep: a marker message (unique id, 60 s time to live) is sent to the
queue, then a client-individual subscription collects messages until that marker comes back
(queues are FIFO). Another reader's marker is re-sent (so its owner still finds it) unless stale.
The read stops early, marker unseen, at its limit.

How it settles without a reconnect (docs/brokers.md, "The transactional read"): the subscription
stays open until the caller decides what to keep. Then one write settles everything: BEGIN; the
ACKs of what goes (and of the read's own marker) inside the transaction; on RabbitMQ the NACKs
(requeue) of what stays, and of any delivery that came after the marker, inside it too;
UNSUBSCRIBE; COMMIT with a receipt. ACKs and NACKs are accepted only while the subscription exists
but take effect at COMMIT, so the read is settled atomically and nothing after the UNSUBSCRIBE
reaches it. On RabbitMQ the UNSUBSCRIBE goes either in that write (an idle queue: one write and
one receipt per settlement) or, while messages are arriving, as soon as the marker came, with a
receipt, so no delivery reaches the read after its settlement (see ``StompLink.unsubscribe_early``).
ActiveMQ gives back at UNSUBSCRIBE what was not acknowledged (it would dead-letter a NACK), so there
the COMMIT comes first and the UNSUBSCRIBE carries a receipt too. A crash before COMMIT applies
nothing: the broker gives everything back when the connection closes.
"""

from __future__ import annotations

import enum
import logging
import os
import queue
import time
import uuid
from collections.abc import Sequence
from typing import Any

from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import (
    BrokerRefusedError,
    BrokerUnavailableError,
    LocalProtocolError,
    TransportClosedError,
    TransportError,
)
from tdm_messaging.transport.base import Batch
from tdm_messaging.transport.stomp.dialect import Dialect
from tdm_messaging.transport.stomp.frames import (
    MARKER_AT_HEADER,
    MARKER_HEADER,
    PROBE_HEADER,
    envelope_from_headers,
    marker_headers,
    queue_headers,
    read_start_frames,
    settle_frames,
)
from tdm_messaging.transport.stomp.link import Frame, Lost, ReadInbox, Receipt, StompLink, ack_id, anchored
from tdm_messaging.transport.stomp.routes import Target

__all__ = ["BATCH_MOVES", "BatchState", "StompBatch", "forward_marker", "read_queue", "send_marker"]

log = logging.getLogger(__name__)


def now_ms() -> int:
    """Wall-clock Unix epoch milliseconds (marker birth times and ActiveMQ ``expires`` are absolute)."""
    return int(time.time() * 1000)


def _dialect(link: StompLink) -> Dialect:
    assert link.dialect is not None  # set once the first connection is open
    return link.dialect


def declare_headers(link: StompLink, target: Target) -> dict[str, str]:
    """The queue-declare headers of a frame to ``target`` (none on the ``/amq/queue`` route)."""
    return queue_headers(target.destination, link.settings, _dialect(link)) if target.declare else {}


def send_marker(link: StompLink, target: Target, marker: str, sent_at_ms: int) -> bool:
    """SEND read marker ``marker`` born at ``sent_at_ms``; False (nothing sent) when it is already stale."""
    headers = marker_headers(
        target.destination, link.settings, _dialect(link), marker=marker, sent_at_ms=sent_at_ms, now_ms=now_ms()
    )
    if headers is None:
        return False
    if not target.declare:
        for name in queue_headers(target.destination, link.settings, _dialect(link)):
            headers.pop(name, None)
    link.transmit(lambda conn: conn.send(target.wire, b"", headers=headers), f"read marker to {target.destination}")
    return True


def forward_marker(link: StompLink, target: Target, frame: Frame) -> None:
    """Give a concurrent reader's marker back to the queue (unless stale), then ack our copy."""
    try:
        sent_at = int(frame.headers.get(MARKER_AT_HEADER, "0"))
    except ValueError:
        sent_at = 0
    if not send_marker(link, target, frame.headers[MARKER_HEADER], sent_at):
        log.debug("dropping a stale read marker in %s", target.destination)
    link.ack(frame)


class BatchState(enum.Enum):
    """Where a read's batch is; the transitions are in :data:`BATCH_MOVES`."""

    READING = "reading"  # subscribed, collecting up to the marker; nothing settled
    HELD = "held"  # collected; still subscribed, nothing settled until ack/settle/release
    ACKED = "acked"  # settled with every message acknowledged
    RELEASED = "released"  # ended; anything not acknowledged is back in the queue


BATCH_MOVES: dict[BatchState, frozenset[BatchState]] = {
    BatchState.READING: frozenset({BatchState.HELD, BatchState.RELEASED}),
    BatchState.HELD: frozenset({BatchState.ACKED, BatchState.RELEASED}),
    BatchState.ACKED: frozenset({BatchState.RELEASED}),
    BatchState.RELEASED: frozenset(),
}
"""The moves a batch may make; anything else is a :class:`LocalProtocolError`."""


def read_queue(link: StompLink, target: Target, limit: int) -> StompBatch:
    """Take what ``target`` holds now: marker SEND, SUBSCRIBE, collect up to the marker, settle later.

    See :meth:`StompTransport.read` for the protocol; the caller has checked ``limit`` and
    chosen the route. Raises what :meth:`StompTransport.read` documents.
    """
    marker = os.urandom(16).hex()  # 128 random bits in 32 hex digits, as uuid4().hex but 3x cheaper
    sub_id = f"tdm-read-{marker}"
    inbox = ReadInbox(marker, limit)
    with link.lock:
        link.inboxes[sub_id] = inbox
        # Held from the start: a held delivery must not re-open the connection under a read
        # that is still collecting (StompLink.return_stuck waits for every read to let go).
        link.held.add(sub_id)
        link.reading(sub_id, target.wire)
        generation = link.generation
    batch = StompBatch(link, target, sub_id, generation)
    try:
        # The marker SEND and the SUBSCRIBE in one write (see frames.read_start_frames for their order).
        link.transmit(
            read_start_frames(
                target.wire,
                declare_headers(link, target),
                _dialect(link),
                limit + 1,
                marker=marker,
                sent_at_ms=now_ms(),
                sub_id=sub_id,
            ),
            f"read marker and subscribe to {target.destination}",
        )
        _collect(batch, inbox, marker=marker, limit=limit)
        batch.collected()
    except BaseException:
        batch.release()
        raise
    return batch


def _collect(batch: StompBatch, inbox: ReadInbox, *, marker: str, limit: int) -> None:
    link, target = batch.link, batch.target
    settings = link.settings
    deadline = time.monotonic() + settings.read_timeout
    while len(batch.frames) < limit:
        try:
            item = inbox.get(max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TransportError(
                f"read of {target.destination} did not finish within {settings.read_timeout:g} s "
                f"({len(batch.frames)} messages taken, own marker not seen); the messages go back to the "
                "queue; is the broker overloaded? (raise ?read_timeout=)"
            ) from None
        if isinstance(item, Lost):
            raise BrokerUnavailableError(
                f"read of {target.destination}: the connection to {settings.address} was lost; "
                "the messages go back to the queue"
            )
        if isinstance(item, (BrokerRefusedError, BrokerUnavailableError)):  # an ERROR frame
            raise item
        if PROBE_HEADER in item.headers:  # a declare's empty probe that met this read: nothing to keep
            link.ack(item)
            continue
        found = item.headers.get(MARKER_HEADER)
        if found == marker:
            batch.marker = item  # acknowledged with the batch's settlement: no frame of its own
            return
        if found is not None:
            forward_marker(link, target, item)
        else:
            batch.frames.append(item)


class StompBatch(Batch):
    """What :meth:`StompTransport.read` took, settled in one transaction (see the module docstring).

    Rules: the subscription lives until the batch is settled (ACKs and NACKs are refused or
    ignored after UNSUBSCRIBE on both brokers); :meth:`ack`, :meth:`settle` and :meth:`release`
    each settle it with one write: BEGIN, ACK/NACK inside the transaction, UNSUBSCRIBE, COMMIT
    (ActiveMQ: COMMIT, then UNSUBSCRIBE), and wait for the receipt. Deliveries that reach the
    subscription after the marker are given back in the same write (RabbitMQ: NACK; ActiveMQ:
    not acknowledged, returned at UNSUBSCRIBE). If the write fails the connection is re-opened,
    which gives back everything not committed, on both brokers.
    """

    def __init__(self, link: StompLink, target: Target, sub_id: str, generation: int) -> None:
        self.link = link
        self.target = target
        self.sub_id = sub_id
        self.generation = generation
        self.frames: list[Frame] = []
        self.marker: Frame | None = None
        self.state = BatchState.READING
        self.leftovers = 0  # deliveries after the marker, given back at settlement (counted for tests)
        self._unsubscribed: tuple[str, Receipt] | None = None  # RabbitMQ: the early UNSUBSCRIBE's receipt
        self._envelopes: list[Envelope] | None = None

    def _move(self, to: BatchState) -> BatchState:
        before = self.state
        if to not in BATCH_MOVES[before]:
            raise LocalProtocolError(f"a read's batch cannot go from {before.value} to {to.value}")
        self.state = to
        return before

    @property
    def envelopes(self) -> Sequence[Envelope]:
        """The messages, oldest first, without broker headers (made once, after the read collected them)."""
        if self._envelopes is not None:
            return self._envelopes
        envelopes = [envelope_from_headers(f.headers, f.body) for f in self.frames]
        if self.state is not BatchState.READING:
            self._envelopes = envelopes
        return envelopes

    def collected(self) -> None:
        """The marker came back (or the limit was reached): the batch is held until settled.

        RabbitMQ, while messages are arriving (``StompLink.unsubscribe_early``): UNSUBSCRIBE now
        (with a receipt awaited at settlement), so nothing sent later reaches this read, and make
        sure the connection's anchor subscription exists: the ACKs and NACKs of settlement name it
        (see ``StompLink.anchored``). Otherwise (an idle queue, the usual poll) the UNSUBSCRIBE goes
        in the settlement's one write, as on a user without anchors. ActiveMQ ignores an ACK after
        UNSUBSCRIBE: its subscription lives until settlement.
        """
        link = self.link
        if link.dialect is Dialect.RABBITMQ and link.anchors and link.unsubscribe_early(self.target.wire):
            receipt = f"tdm-unsub-{uuid.uuid4().hex}"

            def unsubscribe(conn: Any) -> None:
                link.anchor_individual(conn)
                conn.unsubscribe(self.sub_id, headers={"receipt": receipt})

            self._unsubscribed = (
                receipt,
                link.transmit(unsubscribe, "ending a read", receipt=receipt, generation=self.generation, wait=False),
            )
        self._move(BatchState.HELD)

    def ack(self) -> None:
        """Acknowledge every message (one COMMIT with a receipt): they are gone when this returns.

        Raises:
            BrokerUnavailableError: the connection was lost first; the messages go back to the queue.
            SendNotConfirmedError: no receipt for the COMMIT in time; whether it applied is unknown.
            TransportClosedError: the batch was already released.
        """
        if self.state is BatchState.RELEASED:
            raise TransportClosedError("this batch was released; read again")
        if self.state is BatchState.ACKED:
            return
        self._finish(frozenset(), "acknowledging a read", strict=True)
        self._move(BatchState.ACKED)

    def _settle(self, keep: frozenset[int]) -> None:
        """Acknowledge all but ``keep``, give ``keep`` back in place (RabbitMQ: NACK; ActiveMQ: UNSUBSCRIBE).

        One transaction, committed with a receipt: when this returns the others are gone and the
        kept ones are in the queue for any reader. Raises as :meth:`ack`.
        """
        if self.state is not BatchState.HELD:
            raise TransportClosedError(f"this batch is {self.state.value}; read again")
        self._finish(keep, "settling a read", strict=True)
        self._move(BatchState.RELEASED)

    def release(self) -> None:
        """End the read: what was not acknowledged goes back to the queue at once. Idempotent.

        Settles with nothing acknowledged (but the read's marker); if that fails, or the read
        failed half-way, the connection is re-opened, which gives everything back on both brokers.
        """
        if self.state is BatchState.RELEASED:
            return
        before = self._move(BatchState.RELEASED)
        if before is BatchState.ACKED:
            return
        self._finish(frozenset(range(len(self.frames))), "releasing a read", strict=False)

    def _finish(self, keep: frozenset[int], what: str, *, strict: bool) -> None:
        """Settle: ACK all frames but ``keep`` (and the marker), give back the rest, UNSUBSCRIBE, wait.

        ``strict``: raise when it fails (ack/settle); otherwise (release) re-open the connection.
        """
        link = self.link
        rabbit = link.dialect is Dialect.RABBITMQ
        early = self._unsubscribed is not None  # RabbitMQ, once collected: named through the anchor
        if self._unsubscribed is not None:
            # Every MESSAGE of the subscription comes before this receipt, so all are in the inbox.
            try:
                link.await_receipt(self._unsubscribed[1], self._unsubscribed[0], "ending a read")
            except TransportError as exc:
                log.debug("no receipt for ending a read: %s", exc)
        with link.lock:
            inbox = link.inboxes.pop(self.sub_id, None)
            live = self.generation == link.generation and link.connected
        late: list[Frame] = []
        for item in inbox.drain() if isinstance(inbox, ReadInbox) else ():
            if isinstance(item, Frame) and item.generation == self.generation:
                late.append(item)
        self.leftovers += len(late)
        gone = [f for i, f in enumerate(self.frames) if i not in keep]
        if self.marker is not None:
            gone.append(self.marker)
        back = [f for i, f in enumerate(self.frames) if i in keep] + late
        tx = f"{self.sub_id}-tx"
        receipt = f"{self.sub_id}-settle"  # unique: the id holds the read's marker, and a batch settles once
        unsub_receipt = f"{receipt}-unsub"
        commit = bool(gone) or (rabbit and bool(back))

        def named(frame: Frame) -> str:
            return anchored(ack_id(frame)) if early else ack_id(frame)

        one_write = rabbit and commit
        if one_write:
            # The usual case on RabbitMQ: one write of BEGIN, the ACKs and NACKs, UNSUBSCRIBE, COMMIT.
            encoded = settle_frames(
                tx,
                [named(f) for f in gone],
                [named(f) for f in back],
                None if early else self.sub_id,
                receipt,
            )

        def settle(conn: Any) -> None:
            if commit:
                conn.begin(transaction=tx)
                for frame in gone:
                    conn.ack(named(frame), transaction=tx)
                for frame in back if rabbit else ():
                    conn.nack(named(frame), transaction=tx)
            if early:
                if commit:
                    conn.commit(transaction=tx, headers={"receipt": receipt})
                return
            if rabbit:
                # UNSUBSCRIBE before COMMIT: the ACKs and NACKs were accepted while it existed,
                # and no delivery can reach it after the COMMIT's receipt.
                conn.unsubscribe(self.sub_id, headers={} if commit else {"receipt": receipt})
                if commit:
                    conn.commit(transaction=tx, headers={"receipt": receipt})
                return
            # ActiveMQ gives back at UNSUBSCRIBE what is not acknowledged: COMMIT first.
            if commit:
                conn.commit(transaction=tx, headers={"receipt": receipt})
            conn.unsubscribe(self.sub_id, headers={"receipt": unsub_receipt})

        try:
            if not live:
                raise BrokerUnavailableError(
                    f"{what}: the connection to the STOMP broker at {link.settings.address} was lost; "
                    "what it held unacknowledged goes back to the queue"
                )
            if early and not commit:
                pass  # nothing to settle: the UNSUBSCRIBE's receipt came
            elif one_write:
                link.transmit(encoded, what, receipt=receipt, generation=self.generation)
            elif rabbit:
                link.transmit(settle, what, receipt=receipt, generation=self.generation)
            elif commit:
                unsubscribed = link.expect(unsub_receipt)
                link.transmit(settle, what, receipt=receipt, generation=self.generation)
                link.await_receipt(unsubscribed, unsub_receipt, what)
            else:
                link.transmit(settle, what, receipt=unsub_receipt, generation=self.generation)
        except TransportError as exc:
            with link.lock:
                link.held.discard(self.sub_id)
            link.recycle(self.generation, f"a read that could not be settled ({exc})")
            if strict:
                raise
            log.debug("%s failed (%s); re-opened the connection instead", what, exc)
            return
        with link.lock:
            link.held.discard(self.sub_id)
            link.routes.renewed(self.target.destination, time.monotonic())  # its consumer is gone: a new lease
        link.return_stuck()
