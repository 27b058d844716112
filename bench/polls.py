"""The poll benchmark's pollers: ours and the raw clients', each on a reply queue seeded with a compacted status."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from bench.harness import host_port
from bench.raw_clients import RawAmqpPoller, RawStompClient, rabbitmq_queue_headers
from tdm_messaging.codec import encode
from tdm_messaging.destinations import reply_queue
from tdm_messaging.ids import new_request_id
from tdm_messaging.models import Accepted, Complete, Message, PackageRequest, Progress
from tdm_messaging.server import PackagingClient
from tdm_messaging.status import State, compact
from tdm_messaging.transport import Transport, open_transport
from tdm_messaging.transport.stomp.dialect import Dialect, to_wire_name

__all__ = [
    "OursPoll",
    "RawAmqpPoll",
    "RawStompPoll",
    "alternating",
    "complete_message",
    "completed_status",
    "in_progress_status",
    "in_vhost",
    "seed_status",
    "status_messages",
    "with_query",
]

POLL_REPLY_TTL = 900
"""Seconds: the poll queues outlive the run's measurements."""


def status_messages(docset_id: str) -> list[Message]:
    """A typical in-flight docset: its request, Accepted with an estimate, and a progress report."""
    now = datetime.now(UTC)
    common = {"docset_id": docset_id, "request_id": new_request_id(), "timestamp": now}
    return [
        PackageRequest(
            **common,
            sequence=0,
            docset_url=f"http://server/api/docsets/{docset_id}?fmt=meta,txt",
            reply_to=f"package/{docset_id}",
            requested_at=now,
        ),
        Accepted(**common, sequence=1, estimate_seconds=45),
        Progress(**common, sequence=2, items_done=4, items_total=10, percent=40.0, eta_seconds=30),
    ]


def complete_message(docset_id: str, request_id: str | None = None) -> Complete:
    """A finished job's Complete for ``request_id`` (a new id when ``None``: an idle docset's last word)."""
    return Complete(
        docset_id=docset_id,
        request_id=new_request_id() if request_id is None else request_id,
        sequence=3,
        timestamp=datetime.now(UTC),
        archive_url=f"https://tdm-packages.example.org/package/{docset_id}.zip",
        size_bytes=345345,
    )


def completed_status(docset_id: str) -> list[Message]:
    """What compaction keeps of a finished job (the request's copy and its Complete): what a poll usually finds."""
    messages = status_messages(docset_id)
    return compact([*messages, complete_message(docset_id, messages[0].request_id)], docset_id)


def in_progress_status(docset_id: str) -> list[Message]:
    """What compaction keeps of a job under way (request, Accepted, the last progress report)."""
    return compact(status_messages(docset_id), docset_id)


def seed_status(transport: Transport, docset_id: str, messages: Sequence[Message]) -> int:
    """Put ``messages`` (a status, e.g. :func:`completed_status`) in the docset's reply queue; return how many.

    Persistent, in order, and confirmed before it returns: seeding is not timed, and the first
    poll must find all of it.
    """
    queue = reply_queue(docset_id)
    transport.send_many([(queue, encode(message)) for message in messages], persistent=True, confirm=True)
    return len(messages)


def with_query(url: str, **params: str) -> str:
    """``url`` with ``params`` set in its query string (the others kept)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(params)
    return parts._replace(query=urlencode(query)).geturl()


def in_vhost(url: str, vhost: str) -> str:
    """A RabbitMQ URL moved to ``vhost``: the path of an ``amqp://`` URL, the ``vhost`` parameter of a STOMP one."""
    if urlsplit(url).scheme.startswith(("amqp", "pyamqp")):
        return urlsplit(url)._replace(path="/" + quote(vhost, safe="")).geturl()
    return with_query(url, vhost=vhost)


def alternating(
    first: Callable[[], None], second: Callable[[], None], count: int, clock: Callable[[], float]
) -> tuple[list[float], list[float]]:
    """``count`` timed calls of each of two polls, alternating, the order flipped every pair (ABBA...).

    Each call's time (``clock`` units times 1000: milliseconds for ``time.perf_counter``) goes to
    its poll's list; flipping the order keeps "who goes first" from favouring either.
    """
    times: tuple[list[float], list[float]] = ([], [])
    for index in range(count):
        order = ((0, first), (1, second)) if index % 2 == 0 else ((1, second), (0, first))
        for slot, poll in order:
            start = clock()
            poll()
            times[slot].append((clock() - start) * 1000)
    return times


class OursPoll:
    """A reply queue seeded with a compacted status, polled by our PackagingClient.

    Args:
        url: the broker URL (any backend); reply queues get ``reply_ttl`` :data:`POLL_REPLY_TTL`.
        seed: the status to seed, e.g. :func:`completed_status`.
        expect: the state each poll must find.
    """

    def __init__(
        self, url: str, seed: Callable[[str], list[Message]] = completed_status, expect: State = State.COMPLETE
    ) -> None:
        self.transport = open_transport(with_query(url, reply_ttl=str(POLL_REPLY_TTL)))
        self.client = PackagingClient(self.transport)
        self.docset_id = f"bench-poll-{uuid.uuid4().hex[:10]}-ours"
        self.expect = expect
        self.size = seed_status(self.transport, self.docset_id, seed(self.docset_id))

    def poll(self) -> None:
        """One poll; raises RuntimeError if it did not find the expected state."""
        status = self.client.status(self.docset_id)
        if status.state is not self.expect:
            raise RuntimeError(f"poll of {self.docset_id} said {status.state}, expected {self.expect}")

    def close(self) -> None:
        """Empty the queue (ActiveMQ keeps it otherwise), then close."""
        try:
            with self.transport.read(reply_queue(self.docset_id)) as batch:
                batch.ack()
        finally:
            self.transport.close()


class RawStompPoll:
    """The same status on a queue of its own, polled by hand with stomp.py (:meth:`RawStompClient.poll`)."""

    def __init__(self, url: str, dialect: Dialect, default_port: int) -> None:
        parts = urlsplit(url)
        host, port = host_port(url, default_port)
        vhost = dict(parse_qsl(parts.query)).get("vhost", "/")
        self.raw = RawStompClient(host=host, port=port, username=parts.username, password=parts.password, vhost=vhost)
        docset_id = f"bench-poll-{uuid.uuid4().hex[:10]}-raw"
        self.wire = to_wire_name(reply_queue(docset_id), dialect)
        self.headers = rabbitmq_queue_headers(reply_ttl_ms=POLL_REPLY_TTL * 1000) if dialect is Dialect.RABBITMQ else {}
        kept = completed_status(docset_id)
        self.expected = len(kept)
        send_headers = dict(self.headers, persistent="true")
        for index, message in enumerate(kept):
            self.raw.send(self.wire, encode(message), send_headers, receipt=index == self.expected - 1)

    def poll(self) -> None:
        """One hand-written poll."""
        self.raw.poll(self.wire, self.expected, self.headers)

    def close(self) -> None:
        """Drain the queue, then disconnect."""
        try:
            self.raw.drain(self.wire, self.headers, quiet=0.5)
        finally:
            self.raw.close()


class RawAmqpPoll:
    """The same status on a queue of its own, polled by hand with py-amqp (:class:`RawAmqpPoller`)."""

    def __init__(self, url: str) -> None:
        self.raw = RawAmqpPoller(url, f"bench-poll-{uuid.uuid4().hex[:10]}-raw", ttl_ms=POLL_REPLY_TTL * 1000)
        kept = completed_status("bench-poll-raw")
        self.raw.seed([encode(message) for message in kept])
        self.expected = len(kept)

    def poll(self) -> None:
        """One hand-written poll; raises RuntimeError if it did not read the whole status."""
        got = len(self.raw.poll())
        if got != self.expected:
            raise RuntimeError(f"raw AMQP poll read {got} messages, expected {self.expected}")

    def close(self) -> None:
        """Delete the queue and disconnect."""
        self.raw.close()
