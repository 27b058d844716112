"""A STOMP read: collect a queue up to a marker, then settle it by transactions (the batch's states as a table).

How a read ends without a sleep: a marker message (unique id, 60 s time to live) is sent to the
queue, then a client-individual subscription collects messages until that marker comes back
(queues are FIFO). Another reader's marker is re-sent (so its owner still finds it) unless stale.
The read stops early, marker unseen, at its limit.

How it settles without a reconnect (docs/brokers.md, "The transactional read"): before returning,
the read ACKs every message *inside a STOMP transaction* (and, on RabbitMQ, NACKs each inside a
second one), then UNSUBSCRIBEs. Nothing is applied yet, and nothing the caller sends afterwards
reaches this read. ``Batch.ack`` COMMITs the ACK transaction; ``Batch.release`` COMMITs the NACK one
(RabbitMQ: requeued in place) or ABORTs (ActiveMQ: given back). A crash before either leaves both
uncommitted: the broker gives the messages back when the connection closes.
"""

from __future__ import annotations

import enum
import logging
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
    prefetch_headers,
    queue_headers,
)
from tdm_messaging.transport.stomp.link import Frame, Item, Lost, Receipt, StompLink, ack_id
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
    HELD = "held"  # unsubscribed; the ACK (and, on RabbitMQ, NACK) transactions are open
    ACKED = "acked"  # the ACK transaction was committed
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
    marker = uuid.uuid4().hex
    sub_id = f"tdm-read-{marker}"
    inbox: queue.Queue[Item] = queue.Queue()
    with link.lock:
        link.inboxes[sub_id] = inbox
        # Held from the start: a held delivery must not re-open the connection under a read
        # that is still collecting (StompLink.return_stuck waits for every read to let go).
        link.held.add(sub_id)
        generation = link.generation
    batch = StompBatch(link, target, sub_id, generation)
    try:
        send_marker(link, target, marker, now_ms())
        headers = declare_headers(link, target)
        headers.update(prefetch_headers(_dialect(link), limit + 1))
        link.transmit(
            lambda conn: conn.subscribe(target.wire, id=sub_id, ack="client-individual", headers=headers),
            f"subscribe to {target.destination}",
        )
        _collect(batch, inbox, marker=marker, limit=limit)
        batch.settle_later()
    except BaseException:
        batch.release()
        raise
    return batch


def _collect(batch: StompBatch, inbox: queue.Queue[Item], *, marker: str, limit: int) -> None:
    link, target = batch.link, batch.target
    settings = link.settings
    deadline = time.monotonic() + settings.read_timeout
    while len(batch.frames) < limit:
        try:
            item = inbox.get(timeout=max(0.0, deadline - time.monotonic()))
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
            link.ack(item)
            return
        if found is not None:
            forward_marker(link, target, item)
        else:
            batch.frames.append(item)


class StompBatch(Batch):
    """What :meth:`StompTransport.read` took, settled by transactions (see docs/brokers.md).

    Rules: ACKs and NACKs are sent while the subscription exists (both brokers refuse or
    ignore them after UNSUBSCRIBE) but inside transactions, so they take effect only at
    COMMIT, which may come after UNSUBSCRIBE. Exactly one of the two transactions is ever
    committed; a connection that closes first commits neither.
    """

    def __init__(self, link: StompLink, target: Target, sub_id: str, generation: int) -> None:
        self.link = link
        self.target = target
        self.sub_id = sub_id
        self.generation = generation
        self.frames: list[Frame] = []
        self.state = BatchState.READING
        self.leftovers = 0  # deliveries after the marker: RabbitMQ keeps them until the connection closes
        self._ack_tx = f"{sub_id}-ack"
        self._back_tx = f"{sub_id}-back"
        self._tx_begun = False
        self._unsubscribed: Receipt | None = None
        self._unsub_receipt = ""

    def _move(self, to: BatchState) -> BatchState:
        before = self.state
        if to not in BATCH_MOVES[before]:
            raise LocalProtocolError(f"a read's batch cannot go from {before.value} to {to.value}")
        self.state = to
        return before

    @property
    def envelopes(self) -> Sequence[Envelope]:
        """The messages, oldest first, without broker headers."""
        return [envelope_from_headers(f.headers, f.body) for f in self.frames]

    def settle_later(self) -> None:
        """Open the ACK (and NACK) transactions over every frame, then UNSUBSCRIBE (confirmed)."""
        link = self.link
        rabbit = link.dialect is Dialect.RABBITMQ
        receipt = f"tdm-unsub-{uuid.uuid4().hex}"

        def settle(conn: Any) -> None:
            if self.frames:
                self._tx_begun = True
                conn.begin(transaction=self._ack_tx)
                for frame in self.frames:
                    conn.ack(ack_id(frame), transaction=self._ack_tx)
                if rabbit:
                    conn.begin(transaction=self._back_tx)
                    for frame in self.frames:
                        conn.nack(ack_id(frame), transaction=self._back_tx)
            conn.unsubscribe(self.sub_id, headers={"receipt": receipt})

        # RabbitMQ handles a connection's frames in order: whatever the caller sends next comes
        # after the UNSUBSCRIBE, so nothing it sends reaches this read, and there is no need to
        # wait here. Deliveries that came after the marker arrive before the receipt; the
        # receiver thread counts them as stuck (no inbox) once the inbox is gone.
        self._unsubscribed = link.transmit(
            settle, "ending a read", receipt=receipt, generation=self.generation, wait=not rabbit
        )
        self._unsub_receipt = receipt
        with link.lock:
            inbox = link.inboxes.pop(self.sub_id, None)
            while inbox is not None and not inbox.empty():
                self.leftovers += isinstance(inbox.get_nowait(), Frame)
            if rabbit and self.generation == link.generation:
                link.stuck += self.leftovers
                link.held.add(self.sub_id)
            link.routes.renewed(self.target.destination, time.monotonic())  # its consumer is gone: a new lease
        self._move(BatchState.HELD)

    def ack(self) -> None:
        """COMMIT the ACK transaction (with a receipt): the messages are gone when this returns.

        Raises:
            BrokerUnavailableError: the connection was lost first; the messages go back to the queue.
            SendNotConfirmedError: no receipt for the COMMIT in time; whether it applied is unknown.
            TransportClosedError: the batch was already released.
        """
        if self.state is BatchState.RELEASED:
            raise TransportClosedError("this batch was released; read again")
        if self.state is BatchState.ACKED:
            return
        link = self.link
        if self.frames:
            receipt = f"tdm-commit-{uuid.uuid4().hex}"
            rabbit = link.dialect is Dialect.RABBITMQ

            def commit(conn: Any) -> None:
                conn.commit(transaction=self._ack_tx, headers={"receipt": receipt})
                if rabbit:
                    conn.abort(transaction=self._back_tx)

            link.transmit(commit, "acknowledging a read", receipt=receipt, generation=self.generation)
        self._move(BatchState.ACKED)
        self._let_go()

    def release(self) -> None:
        """End the read: what was not acknowledged goes back to the queue at once. Idempotent.

        RabbitMQ: COMMIT the NACK transaction (requeued in place); ActiveMQ: ABORT the ACK
        one. If that fails, or the read failed half-way, the connection is re-opened, which
        gives everything back on both brokers.
        """
        if self.state is BatchState.RELEASED:
            return
        before = self._move(BatchState.RELEASED)
        link = self.link
        with link.lock:
            inbox = link.inboxes.pop(self.sub_id, None)
        if before is BatchState.READING:
            self._abandon(inbox)
            return
        rabbit = link.dialect is Dialect.RABBITMQ
        if before is BatchState.HELD and self.frames:
            receipt = f"tdm-back-{uuid.uuid4().hex}"

            def give_back(conn: Any) -> None:
                if rabbit:
                    conn.commit(transaction=self._back_tx, headers={"receipt": receipt})
                    conn.abort(transaction=self._ack_tx)
                else:
                    conn.abort(transaction=self._ack_tx, headers={"receipt": receipt})

            # Wait for the receipt on both brokers: without it, a poll on another connection (another
            # server process, or an AMQP client) that starts as soon as this one returned could find
            # the given-back messages still on their way back to the queue, and fold a partial status.
            try:
                link.transmit(give_back, "releasing a read", receipt=receipt, generation=self.generation, wait=True)
            except TransportError as exc:
                log.debug("giving back a read failed (%s); re-opening the connection instead", exc)
                link.recycle(self.generation, "a read that could not be given back")
        self._let_go()

    def _let_go(self) -> None:
        """This read no longer needs its connection: re-open it now if it holds stuck deliveries."""
        link = self.link
        if self._unsubscribed is not None and not self._unsubscribed.event.is_set():
            # Every delivery of the subscription comes before the UNSUBSCRIBE's receipt: after
            # it, the stuck ones are all counted (but for RabbitMQ's rare late ones, see is_late_delivery).
            try:
                link.await_receipt(self._unsubscribed, self._unsub_receipt, "ending a read")
            except TransportError as exc:
                log.debug("no receipt for ending a read: %s", exc)
        with link.lock:
            link.held.discard(self.sub_id)
        link.return_stuck()

    def _abandon(self, inbox: queue.Queue[Item] | None) -> None:
        """The read failed before it settled: UNSUBSCRIBE, and re-open the connection if needed."""
        link = self.link
        with link.lock:
            link.held.discard(self.sub_id)
        leftovers = len(self.frames)
        while inbox is not None and not inbox.empty():
            leftovers += isinstance(inbox.get_nowait(), Frame)
        if self._tx_begun:
            # Settling broke half-way: closing the connection returns everything, on both brokers.
            link.recycle(self.generation, "a read that failed while settling")
            return
        try:
            # With a receipt, so the broker has finished with the subscription (ActiveMQ has
            # returned its unacked messages) before the caller's next frame.
            receipt = f"tdm-unsub-{uuid.uuid4().hex}"
            link.transmit(
                lambda c: c.unsubscribe(self.sub_id, headers={"receipt": receipt}),
                "unsubscribe",
                receipt=receipt,
                generation=self.generation,
            )
        except TransportError as exc:
            log.debug("unsubscribe %s failed: %s", self.sub_id, exc)
            return
        # RabbitMQ keeps a cancelled subscription's unacknowledged deliveries until the connection closes.
        if leftovers and link.dialect is Dialect.RABBITMQ:
            link.recycle(self.generation, f"{leftovers} unacknowledged deliveries of a failed read")
