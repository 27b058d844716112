"""Publishing over kombu: kombu's Producer on the virtual transports; py-amqp, confirms tracked by tag, on AMQP."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import amqp
import kombu as _kombu_module
from amqp.exceptions import RecoverableConnectionError

from tdm_messaging.destinations import Destination, DestinationKind, names_in_words
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import BrokerUnavailableError, SendNotConfirmedError
from tdm_messaging.transport.kombu.link import KombuLink
from tdm_messaging.transport.kombu.messages import content_encoding
from tdm_messaging.transport.kombu.settings import Backend
from tdm_messaging.transport.kombu.wire import (
    drain_events,
    drain_pending,
    envelope_publish,
    publish_frames,
    publish_method,
    write_frames,
)

__all__ = [
    "ConfirmChannel",
    "amqp_message",
    "basic_publish",
    "flush_tracked",
    "publish",
    "publish_confirmed",
    "publish_tracked",
]

log = logging.getLogger(__name__)

# kombu is only partly typed: treat it as dynamic at this one edge.
kombu: Any = _kombu_module

_MOST_UNSETTLED = 256

Declare = Callable[[Destination], object]
"""Declares a queue (by the transport's lease rule) on the link's base channel."""


def amqp_message(envelope: Envelope, *, persistent: bool) -> Any:
    """The py-amqp message kombu's Producer would build for ``envelope``, without its layers."""
    return amqp.Message(
        envelope.body,
        content_type=envelope.content_type,
        content_encoding=content_encoding(envelope.content_type),
        application_headers=dict(envelope.headers),
        delivery_mode=2 if persistent else 1,
    )


def publish(link: KombuLink, channel: Any, destination: Destination, envelope: Envelope, *, persistent: bool) -> None:
    """Publish ``envelope`` unconfirmed to the declared queue ``destination`` through the default exchange.

    Call with the lock held. Virtual transports write synchronously (their "confirm").
    """
    if link.settings.backend is not Backend.AMQP:
        # Virtual transports: kombu's Producer shapes the payload they store; one per channel.
        producer = link.producer
        if producer is None or producer.channel is not channel:
            producer = link.producer = kombu.Producer(channel, auto_declare=False)
        producer.publish(
            envelope.body,
            routing_key=destination.name,
            content_type=envelope.content_type,
            content_encoding=content_encoding(envelope.content_type),
            headers=dict(envelope.headers),
            delivery_mode=2 if persistent else 1,
            retry=False,
        )
        return
    basic_publish(channel, destination.name, envelope, persistent=persistent)


def basic_publish(channel: Any, routing_key: str, envelope: Envelope, *, persistent: bool) -> None:
    """py-amqp's ``basic_publish`` of :func:`amqp_message`, not ``mandatory``, its frames built here (see :mod:`.wire`).

    It keeps what py-amqp's does around the write: the check for a closed connection, the
    drain of what the broker sent (a ``connection.blocked``, a closed channel) before it, and a
    write that times out raised as a connection error (the connection is dead: reconnect).
    """
    conn = channel.connection
    if conn is None:
        raise RecoverableConnectionError("basic_publish: connection closed")
    if conn.client_properties.get("capabilities", {}).get("connection.blocked", False):
        drain_pending(conn)
    channel_id = channel.channel_id
    frames = envelope_publish(
        channel_id,
        conn.frame_max,
        publish_method(channel_id, routing_key, mandatory=False),
        envelope,
        content_encoding=content_encoding(envelope.content_type),
        persistent=persistent,
    )
    try:
        write_frames(conn, (frames,))
    except TimeoutError as exc:
        raise RecoverableConnectionError("basic_publish: timed out") from exc


@dataclass(slots=True, eq=False)
class _Publish:
    """One publish on the confirm channel, until the broker settles it."""

    destination: Destination
    envelope: Envelope
    persistent: bool
    index: int | None  # in the caller's sends; None for an unconfirmed send
    expiration: str | None = None  # a per-message time to live in ms (declare probes only)
    returned: str | None = None
    settled: bool = False
    nacked: bool = False
    at: float = field(default_factory=time.monotonic)

    def again(self) -> _Publish:
        return _Publish(self.destination, self.envelope, self.persistent, self.index, self.expiration, at=self.at)


class ConfirmChannel:
    """The link's channel in confirm mode: every publish on it is ``mandatory`` and tracked by delivery tag.

    Rules: a tag is settled by the broker's ack or nack (``multiple`` settles every tag up to it);
    RabbitMQ sends ``basic.return`` of an unroutable message before its ack, in publish order, so
    a return belongs to the oldest unsettled publish to that routing key. An unconfirmed publish
    acked as routed is forgotten at once; every other settled one stays until a wait takes it.
    Call everything with the link's lock held.
    """

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.next_tag = 1
        self.pending: dict[int, _Publish] = {}
        self.unsettled_count = 0
        channel.confirm_select()
        channel.events["basic_ack"].add(lambda tag, multiple: self._settle(tag, multiple, nacked=False))
        channel.events["basic_nack"].add(lambda tag, multiple: self._settle(tag, multiple, nacked=True))
        channel.events["basic_return"].add(self._on_return)

    def _on_return(self, exc: Any, _exchange: str, routing_key: str, _message: Any) -> None:
        for entry in self.pending.values():
            if not entry.settled and entry.returned is None and entry.destination.name == routing_key:
                entry.returned = f"{routing_key}: {exc}"
                return

    def _settle(self, tag: int, multiple: bool, *, nacked: bool) -> None:
        if multiple:  # noqa: SIM108 - plainer than a nested conditional expression
            tags = [t for t in self.pending if t <= tag]
        else:  # a look-up, not a scan: a batch's single acks would cost n² else
            tags = [tag] if tag in self.pending else []
        for done in tags:
            entry = self.pending[done]
            if entry.settled:
                continue  # settled already (a nack kept for its sender): a later "multiple" ack is not about it
            entry.settled, entry.nacked = True, nacked
            self.unsettled_count -= 1
            if entry.index is None and entry.returned is None and not nacked:
                del self.pending[done]  # an unconfirmed reply, stored: nothing more to know

    def publish(self, entry: _Publish) -> None:
        self.publish_all((entry,))

    def publish_all(self, entries: Sequence[_Publish]) -> None:
        """Publish ``entries`` in order, in one socket write (see :mod:`.wire`)."""
        channel = self.channel
        conn = channel.connection
        if conn is None:
            raise RecoverableConnectionError("basic_publish: connection closed")
        frames = [self._frames(conn, entry) for entry in entries]
        write_frames(conn, frames)
        for entry in entries:
            self.pending[self.next_tag] = entry
            self.next_tag += 1
            self.unsettled_count += 1

    def _frames(self, conn: Any, entry: _Publish) -> bytes:
        # Built once per channel and queue, bounded (wire.publish_method): a long-lived worker
        # replies to ever new reply queues, so a cache per channel would grow without end.
        method = publish_method(self.channel.channel_id, entry.destination.name, mandatory=True)
        envelope = entry.envelope
        if entry.expiration is not None:  # a declare probe: rare, so py-amqp's generic writer
            message = amqp_message(envelope, persistent=entry.persistent)
            message.properties["expiration"] = entry.expiration
            return publish_frames(self.channel.channel_id, conn.frame_max, method, message)
        return envelope_publish(
            self.channel.channel_id,
            conn.frame_max,
            method,
            envelope,
            content_encoding=content_encoding(envelope.content_type),
            persistent=entry.persistent,
        )

    def unsettled(self) -> list[_Publish]:
        return [e for e in self.pending.values() if not e.settled]

    def take_settled(self) -> list[_Publish]:
        """Forget and return the settled publishes."""
        done = [t for t, e in self.pending.items() if e.settled]
        return [self.pending.pop(t) for t in done]

    def close(self) -> None:
        self.channel.close()


def _confirm_channel(link: KombuLink) -> ConfirmChannel:
    if link.confirm_channel is None:
        link.confirm_channel = ConfirmChannel(link.conn.channel())
    confirms: ConfirmChannel = link.confirm_channel
    return confirms


def publish_tracked(link: KombuLink, destination: Destination, envelope: Envelope, *, persistent: bool) -> None:
    """AMQP: publish an unconfirmed reply on the confirm channel, ``mandatory``, without waiting.

    Nobody waits for it now, but if its queue is missing the broker returns it, and the next
    confirmed send or read on this connection (:func:`publish_confirmed`, :func:`flush_tracked`)
    declares the queue and sends it again; so a reply queue need not be declared before
    unconfirmed replies either. Call with the lock held.
    """
    confirms = _confirm_channel(link)
    confirms.publish(_Publish(destination, envelope, persistent, None))
    if len(confirms.pending) > _MOST_UNSETTLED:
        # Nobody drains this connection (no heart-beat thread, no confirmed send): read the acks
        # that arrived so the tracked publishes do not pile up.
        with contextlib.suppress(TimeoutError):
            link.conn.drain_events(timeout=0)


def flush_tracked(link: KombuLink, *, declare: Declare) -> None:
    """AMQP: settle the unconfirmed replies published on the confirm channel, before a read.

    A read runs on another channel than the one they went out on: waiting for their acks makes
    them visible to it, and one returned (its queue was missing) is sent again after a declare.
    A no-op when nothing is pending. Call with the lock held.

    Raises:
        BrokerUnavailableError: no confirm came within ``confirm_timeout`` (the connection is dropped).
    """
    if link.confirm_channel is None or not link.confirm_channel.pending:
        return
    try:
        _settle_all(link, _confirm_channel(link), declare)
    except SendNotConfirmedError as exc:
        if exc.unconfirmed is not None:  # a lost confirm (time out): the connection was dropped
            raise BrokerUnavailableError(str(exc)) from exc


def publish_confirmed(
    link: KombuLink,
    sends: Sequence[tuple[Destination, Envelope]],
    *,
    persistent: bool,
    declare: Declare,
    expiration: str | None = None,
) -> None:
    """AMQP: publish every send on the confirm channel, then wait once for all their confirms.

    Call with the lock held, after declaring the permanent queues among ``sends``. A reply
    queue is not declared first: a send the broker returns as unroutable to a reply queue
    (the queue is missing: expired, or never prepared) makes its queue be declared, with the
    reply arguments, and the send published again (so is any earlier unconfirmed reply that
    came back). A declare the broker refuses raises ``BrokerRefusedError`` (translated by the
    caller's driver context). ``expiration``: each message's time to live in ms (AMQP's
    ``expiration`` property), for declare probes; ``None`` for protocol messages, which never expire.

    Raises:
        SendNotConfirmedError: a send was nacked, returned (a permanent queue is missing, or a
            queue's home node is down), or not confirmed within ``confirm_timeout``; its
            ``unconfirmed`` and ``refused`` say which.
    """
    confirms = _confirm_channel(link)
    confirms.publish_all([_Publish(d, e, persistent, i, expiration) for i, (d, e) in enumerate(sends)])
    failed = [e for e in _settle_all(link, confirms, declare) if e.index is not None]
    if failed:
        for entry in failed:
            if entry.returned is not None:
                link.declared.pop(entry.destination.name, None)  # the next send declares it again, and hears why
        indices = [e.index for e in failed if e.index is not None]
        raise SendNotConfirmedError(
            "; ".join(_why_not_stored(link, e) for e in failed), unconfirmed=indices, refused=indices
        )


def _settle_all(link: KombuLink, confirms: ConfirmChannel, declare: Declare) -> list[_Publish]:
    """Wait until every publish on ``confirms`` is settled; send the ones returned from a missing
    reply queue again after declaring it; return those that still failed (nacked or returned)."""
    settled = _wait(link, confirms)
    # An unconfirmed reply returned longer than reply_ttl ago is not sent again: had its queue been
    # declared before it, the queue (unused since) would have expired with it by now.
    now = time.monotonic()
    missing = [
        e
        for e in settled
        if e.returned is not None
        and e.destination.kind is DestinationKind.REPLY
        and (e.index is not None or now - e.at < link.settings.reply_ttl)
    ]
    if missing:
        for destination in {e.destination.name: e.destination for e in missing}.values():
            link.declared.pop(destination.name, None)
            declare(destination)  # a refusal (the queue exists with other arguments) raises here
        log.debug("declared %d missing reply queue(s) on return; sending again", len(missing))
        confirms.publish_all([entry.again() for entry in missing])
        retried = _wait(link, confirms)
        settled = [e for e in settled if e not in missing] + retried
    lost = [e for e in settled if e.index is None and (e.nacked or e.returned is not None)]
    for entry in lost:
        log.warning(
            "an unconfirmed message to %s was not stored: %s", entry.destination.name, _why_not_stored(link, entry)
        )
    return [e for e in settled if e.nacked or e.returned is not None]


def _wait(link: KombuLink, confirms: ConfirmChannel) -> list[_Publish]:
    """Drain the connection until every publish on ``confirms`` is settled (one wait for the lot); take them."""
    deadline = time.monotonic() + link.settings.confirm_timeout
    # py-amqp's own connection: kombu's drain_events only hands the call down through two layers.
    connection = link.conn.connection
    while confirms.unsettled_count:
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            drain_events(connection, remaining)  # the socket's timeout set once, not per frame
        except TimeoutError as exc:
            unsettled = confirms.unsettled()
            # A late confirm would confuse the next publish on this channel, and closing the
            # channel would wait for a broker that may be gone: drop the connection (no I/O);
            # the next operation opens a fresh one.
            link.conn_broken()
            names = names_in_words(e.destination.name for e in unsettled)
            raise SendNotConfirmedError(
                f"no publisher confirm from {link.settings.display_url} for a message to {names} "
                f"within {link.settings.confirm_timeout:g} s; it may or may not have been stored "
                "(raise confirm_timeout, or check the broker's load)",
                unconfirmed=[e.index for e in unsettled if e.index is not None],
            ) from exc
    return confirms.take_settled()


def _why_not_stored(link: KombuLink, entry: _Publish) -> str:
    where = entry.destination.name
    if entry.returned is None:
        return (
            f"{link.settings.display_url} refused (nacked) a message to {where!r}; "
            "check the broker's logs (disk or memory alarm, queue length limit)"
        )
    return (
        f"{link.settings.display_url} did not store a message to {where!r}: no queue took it "
        f"(returned as unroutable, {entry.returned}); the queue does not exist, or its home node in a cluster is "
        "down (quorum queues survive that: see docs/brokers.md)"
    )
