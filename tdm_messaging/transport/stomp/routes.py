"""What RabbitMQ's STOMP adapter has declared on a connection, and how the next frame must reach each queue."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from tdm_messaging.destinations import Destination, DestinationKind

__all__ = ["Route", "RouteBook", "Target", "around_wire_name", "queue_of_refusal"]

# Rules (RabbitMQ's STOMP adapter, checked against its rabbit_routing_util and on this machine):
# 1. The first SEND or SUBSCRIBE of a /queue/ name on a connection declares the queue; later
#    frames of that connection, for that name, declare nothing (a per-connection set of names).
# 2. A reply queue's x-expires lease is renewed by a declare or by a consumer going away; a
#    SEND that declares nothing does not renew it. So a name this connection declared more
#    than a lease ago may name a queue the broker already deleted: a SEND to it is dropped
#    silently, a SUBSCRIBE is refused (NOT_FOUND) and the connection is closed.
# 3. A declare with other arguments than the queue's is refused (PRECONDITION_FAILED) and
#    the connection is closed. /amq/queue/<name> declares nothing, so it reaches such a queue.
# Hence a reply queue's next frame takes one of these routes. Permanent and dead-letter
# queues never expire, so they always take DECLARE (rule 1 decides whether it really does).


class Route(enum.Enum):
    """How the next frame to a queue must go."""

    DECLARE = "declare"
    """``/queue/<name>`` as usual: the frame declares the queue, or the queue surely still exists."""
    REFRESH = "refresh"
    """Declare the queue on a short-lived connection first (this one would not): it may have expired."""
    AROUND = "around"
    """``/amq/queue/<name>`` with no declare headers: the queue exists with other arguments."""


@dataclass(slots=True)
class _Entry:
    at: float  # monotonic seconds of the last declare or lease renewal this book knows of
    foreign: bool = False  # the queue exists with arguments other than ours
    confirmed: bool = False  # ``at`` is a declare the broker confirmed (not only a frame sent)


_REFUSED_QUEUE = re.compile(r"inequivalent arg '[^']*' for queue '([^']*)'")


def queue_of_refusal(text: str) -> str | None:
    """The queue named by a RabbitMQ ``inequivalent arg`` refusal, else ``None``."""
    found = _REFUSED_QUEUE.search(text)
    return found.group(1) if found else None


class RouteBook:
    """One RabbitMQ STOMP connection's declared reply queues, plus those declared elsewhere with other arguments.

    Pure bookkeeping: callers pass the time (monotonic seconds) and hold their own lock.
    A name counts as safe for ``lease / 2`` seconds after this book last saw it declared or
    renewed; after that its next frame takes :attr:`Route.REFRESH`. Foreign marks (rule 3)
    survive a reconnect and are re-checked (REFRESH) on the same schedule, since the
    foreign queue may expire too.

    Args:
        lease: the reply queues' expiry in seconds (``reply_ttl``).
    """

    def __init__(self, lease: float) -> None:
        self._safe_for = lease / 2
        self._entries: dict[str, _Entry] = {}

    def route(self, destination: Destination, now: float) -> Route:
        """How the next frame to ``destination`` must go."""
        if destination.kind is not DestinationKind.REPLY:
            return Route.DECLARE
        entry = self._entries.get(destination.name)
        if entry is None:
            return Route.DECLARE
        if now - entry.at >= self._safe_for:
            return Route.REFRESH
        return Route.AROUND if entry.foreign else Route.DECLARE

    def declared_lately(self, destination: Destination, now: float) -> bool:
        """Whether a declare of ``destination`` now would change nothing: the broker confirmed one,
        with our arguments, less than ``lease / 2`` ago (so the queue exists, with most of its lease left)."""
        entry = self._entries.get(destination.name)
        return entry is not None and entry.confirmed and not entry.foreign and now - entry.at < self._safe_for

    def sent(self, destination: Destination, now: float) -> None:
        """A frame went to ``destination`` by :attr:`Route.DECLARE`: the first one declared it (rule 1)."""
        if destination.kind is DestinationKind.REPLY and destination.name not in self._entries:
            self._entries[destination.name] = _Entry(now)

    def renewed(self, destination: Destination, now: float) -> None:
        """``destination``'s lease was renewed (declared elsewhere, or a subscription to it ended)."""
        entry = self._entries.get(destination.name)
        if entry is not None:
            entry.at = now

    def refreshed(self, destination: Destination, now: float, *, foreign: bool) -> None:
        """A declare on a short-lived connection succeeded (``foreign=False``) or was refused for its arguments."""
        entry = self._entries.get(destination.name)
        if entry is None:
            # Even if this connection never declared it (its next frame declares it anyway), the
            # confirmed declare starts a lease that lets the next declare() be skipped.
            self._entries[destination.name] = _Entry(now, foreign=foreign, confirmed=not foreign)
            return
        entry.at = now
        entry.foreign = foreign
        entry.confirmed = not foreign

    def refused(self, name: str, now: float) -> None:
        """RabbitMQ refused to declare queue ``name`` for its arguments (rule 3)."""
        self._entries[name] = _Entry(now, foreign=True)

    def reconnected(self) -> None:
        """A new connection has declared nothing yet: forget all but the foreign marks."""
        self._entries = {name: entry for name, entry in self._entries.items() if entry.foreign}


@dataclass(frozen=True, slots=True)
class Target:
    """Where a frame for a queue goes: its STOMP destination, and whether the frame carries declare headers."""

    destination: Destination
    wire: str
    declare: bool


def around_wire_name(destination: Destination) -> str:
    """RabbitMQ's ``/amq/queue/<name>``: the existing queue, declared by nobody (``/`` written ``%2F``)."""
    return "/amq/queue/" + destination.name.replace("/", "%2F")
