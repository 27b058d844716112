"""A kombu read: take what a queue holds by basic_get, held unacknowledged in a batch until ack() or release()."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Collection, Sequence
from functools import partial
from typing import Any

import amqp
from amqp import spec
from kombu.message import Message as KombuMessage

from tdm_messaging.destinations import Destination, DestinationKind
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import TransportError
from tdm_messaging.transport.base import Batch
from tdm_messaging.transport.expiry import is_expired
from tdm_messaging.transport.kombu.link import KombuLink, quietly
from tdm_messaging.transport.kombu.messages import raw_envelope, to_envelope
from tdm_messaging.transport.kombu.queues import collect_acked, delete_queue
from tdm_messaging.transport.kombu.settings import Backend
from tdm_messaging.transport.kombu.wire import ack_frame, get_frame, passive_declare_frame, reject_frame, write_frames
from tdm_messaging.transport.markers import is_probe, marker_of, marker_remaining_ms

__all__ = ["READ_AHEAD", "KombuBatch", "take"]

READ_AHEAD = 3
"""AMQP: how many ``basic.get`` a read sends at once. A reply queue holds three messages when a poll
finds a job ended since the last poll (the request's copy, Accepted, the last reply; a Progress a
lingering worker sent none of) and two once compacted (the copy and the last reply): one round
trip for either. A get that finds the queue empty costs the broker next to nothing."""

log = logging.getLogger(__name__)


class KombuBatch(Batch):
    """Messages taken by basic_get, held unacknowledged until ack() or release().

    On AMQP the messages are py-amqp's own (no kombu wrapper), settled with raw frames: a batch's
    acknowledgements, rejects and fence go out in one socket write (see :mod:`.wire`).
    """

    def __init__(self, link: KombuLink, destination: Destination, taken: list[tuple[Any, Envelope]]) -> None:
        self._link = link
        self._destination = destination
        self._taken = taken
        self._envelopes = tuple(envelope for _, envelope in taken)
        self._done = False
        self._raw = link.settings.backend is Backend.AMQP

    @property
    def envelopes(self) -> Sequence[Envelope]:
        """What was in the queue when the read began, oldest first."""
        return self._envelopes

    def ack(self) -> None:
        """Acknowledge every envelope of the batch; they are gone from the queue.

        Raises:
            BrokerUnavailableError: the connection was lost; the broker gives the messages back.
        """
        if self._done:
            return
        self._done = True
        with self._link.driver(f"acknowledging messages of {self._destination.name!r}"):
            if self._raw:
                if self._taken:
                    self._write([ack_frame(m.channel.channel_id, m.delivery_tag) for m, _ in self._taken])
                return
            for message, _ in self._taken:
                message.ack()
            collect_acked(self._link, self._destination)

    def _settle(self, keep: frozenset[int]) -> None:
        """Acknowledge all but ``keep``; give ``keep`` back (requeue), and return once the queue has them.

        Raises:
            BrokerUnavailableError: the connection was lost; the broker gives back what was not
                acknowledged (a dropped message may then be read again: a duplicate, never a loss).
        """
        if self._done:
            return
        self._done = True
        with self._link.driver(f"settling messages of {self._destination.name!r}"):
            if self._raw:
                self._settle_raw(keep)
                return
            for index, (message, _) in enumerate(self._taken):
                if index in keep:
                    message.reject(requeue=True)
                else:
                    message.ack()
            collect_acked(self._link, self._destination)

    def _settle_raw(self, keep: Collection[int]) -> None:
        """AMQP: the acks and rejects, then a passive declare, in one write; return once it is answered.

        A reject is asynchronous: the queue has the messages back only once it has handled it.
        The queue answers a passive declare from the same channel after the rejects, so once it
        returns, a poll on any connection finds them all.
        """
        if not self._taken:
            return
        channel = self._taken[0][0].channel
        frames = [
            reject_frame(m.channel.channel_id, m.delivery_tag, requeue=True)
            if index in keep
            else ack_frame(m.channel.channel_id, m.delivery_tag)
            for index, (m, _) in enumerate(self._taken)
        ]
        if keep:
            frames.append(passive_declare_frame(channel.channel_id, self._destination.name))
        self._write(frames)
        if keep:
            channel.wait(spec.Queue.DeclareOk, returns_tuple=True)

    def _write(self, frames: list[bytes]) -> None:
        write_frames(self._taken[0][0].channel.connection, frames)

    def release(self) -> None:
        """Give unacknowledged envelopes back to the queue, in their order. Idempotent."""
        if self._done:
            return
        self._done = True
        try:
            with self._link.driver(f"releasing messages of {self._destination.name!r}"):
                if self._raw:
                    self._settle_raw(range(len(self._taken)))
                    return
                for message, _ in self._taken:
                    message.reject(requeue=True)
        except TransportError as exc:
            # A lost connection gives unacknowledged messages back on its own.
            log.warning("release of %s failed (%s); the broker requeues on disconnect", self._destination, exc)


def take(
    link: KombuLink, channel: Any, destination: Destination, limit: int, *, now_ms: int
) -> list[tuple[Any, Envelope]]:
    """Take up to ``limit`` messages from the declared queue ``destination``, each with its envelope.

    Call with the lock held. Stops when the broker says the queue is empty. On the virtual
    transports, reply envelopes whose lazy-expiry stamp is before ``now_ms`` are acknowledged
    and dropped, and a reply queue left with nothing live is deleted. On AMQP, a STOMP reader's
    read marker or declare probe (they share RabbitMQ queues) is never taken as a message: a
    live marker is sent back to the queue for its reader, a stale one and a probe are dropped
    (docs/protocol.md § 6.2). If taking fails, what was taken is given back before the error
    propagates.
    """
    raw = link.settings.backend is Backend.AMQP
    lazy = not raw and destination.kind is DestinationKind.REPLY
    taken: list[tuple[Any, Envelope]] = []
    forwarded: set[str] = set()
    dropped = 0
    # AMQP: the first gets go out together (one round trip for what a reply queue holds when a
    # poll finds a job done); a message got ahead and not used is given back.
    ahead: deque[Any] = deque()
    if raw and limit >= 2:
        ahead.extend(_get_ahead(channel, destination.name, min(limit, READ_AHEAD)))
    try:
        while len(taken) < limit:
            message = ahead.popleft() if ahead else channel.basic_get(queue=destination.name, no_ack=False)
            if message is None:
                break
            # AMQP: py-amqp's message as it is (kombu's wrapper only for a body kombu would decompress).
            envelope = raw_envelope(message) if raw else None
            if envelope is None:
                message = channel.message_to_python(message)
                envelope = to_envelope(message)
            if lazy and is_expired(envelope.headers, now_ms=now_ms):
                message.ack()
                dropped += 1
                continue
            if marker_of(envelope.headers) is not None or is_probe(envelope.headers):
                if raw and not isinstance(message, KombuMessage):
                    message = channel.message_to_python(message)
                if not _pass_on(channel, destination, message, envelope, forwarded, now_ms=now_ms, amqp_link=raw):
                    break  # a marker this read already passed on: everything before it was taken
                continue
            taken.append((message, envelope))
            if message.delivery_info.get("message_count") == 0:
                break
    except BaseException:
        for message, _ in taken:
            quietly(partial(_give_back, channel, message))
        for raw in ahead:
            if raw is not None:
                quietly(partial(channel.basic_reject, raw.delivery_tag, requeue=True))
        raise
    for raw in ahead:
        if raw is not None:  # got ahead, past the end this read found: back to the queue
            channel.basic_reject(raw.delivery_tag, requeue=True)
    if dropped:
        log.info("dropped %d expired replies from %s", dropped, destination.name)
        collect_acked(link, destination)
        if not taken and channel._size(destination.name) == 0:
            delete_queue(link, destination)
    return taken


def _give_back(channel: Any, message: Any) -> None:
    """Requeue one taken message: kombu's wrapper, or py-amqp's own message on AMQP."""
    if isinstance(message, KombuMessage):
        message.reject(requeue=True)  # type: ignore[no-untyped-call]
    else:
        channel.basic_reject(message.delivery_tag, requeue=True)


def _get_ahead(channel: Any, queue: str, count: int) -> list[Any]:
    """``count`` ``basic.get`` written at once, then every answer read: each a py-amqp message or None (empty)."""
    get = get_frame(channel.channel_id, queue)
    write_frames(channel.connection, [get] * count)
    answers = []
    for _ in range(count):
        answer = channel.wait([spec.Basic.GetOk, spec.Basic.GetEmpty], returns_tuple=True)
        answers.append(channel._on_get_ok(*answer) if answer and len(answer) >= 2 else None)
    return answers


def _pass_on(
    channel: Any,
    destination: Destination,
    message: Any,
    envelope: Envelope,
    forwarded: set[str],
    *,
    now_ms: int,
    amqp_link: bool,
) -> bool:
    """Settle a marker or probe met by a read: False when it is a marker this read already sent back.

    A live marker is published again with the same headers and the time it has left (AMQP
    ``expiration``), then acknowledged, so the STOMP reader that sent it still finds it; a stale
    one, and a probe, are acknowledged and so dropped. One met a second time goes back untouched.
    Only RabbitMQ, shared with STOMP readers, holds markers; elsewhere one is simply dropped.
    """
    marker = marker_of(envelope.headers)
    if marker is not None and marker in forwarded:
        message.reject(requeue=True)
        return False
    remaining = 0 if marker is None else marker_remaining_ms(envelope.headers, now_ms=now_ms)
    if marker is not None and remaining > 0 and amqp_link:
        again = amqp.Message(b"", application_headers=dict(envelope.headers), expiration=str(remaining))
        channel.basic_publish(again, exchange="", routing_key=destination.name)
        forwarded.add(marker)
    message.ack()
    return True
