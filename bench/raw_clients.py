"""The baselines of the transport benchmarks: plain stomp.py, kombu and sqlite3 code doing what our transports do."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import stomp
from kombu.connection import Connection
from kombu.messaging import Producer

from tdm_messaging.envelope import Envelope

__all__ = ["RawAmqpPoller", "RawKombuSender", "RawSqliteQueue", "RawStompClient", "rabbitmq_queue_headers"]


def rabbitmq_queue_headers(*, reply_ttl_ms: int | None) -> dict[str, str]:
    """The declare headers a hand-written RabbitMQ STOMP client must send on every SEND/SUBSCRIBE.

    Written out here rather than taken from our backend, so the baseline shares no code with us.
    """
    headers = {"durable": "true", "auto-delete": "false", "exclusive": "false"}
    if reply_ttl_ms is not None:
        headers["x-expires"] = str(reply_ttl_ms)
    return headers


class _Inbox:
    """A stomp.py listener that collects MESSAGE frames and RECEIPT ids, with a condition to wait on."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.frames: list[Any] = []
        self.receipts: set[str] = set()
        self.errors: list[str] = []

    def on_message(self, frame: Any) -> None:
        with self.cond:
            self.frames.append(frame)
            self.cond.notify_all()

    def on_receipt(self, frame: Any) -> None:
        with self.cond:
            self.receipts.add(frame.headers.get("receipt-id", ""))
            self.cond.notify_all()

    def on_error(self, frame: Any) -> None:
        with self.cond:
            self.errors.append(str(frame.headers.get("message", "")) + " " + str(frame.body))
            self.cond.notify_all()


class RawStompClient:
    """stomp.py ``Connection12`` at its default settings (no TCP_NODELAY, no heart-beats), as a user would write it.

    Args:
        host, port: the STOMP listener.
        username, password: credentials (``None`` for ActiveMQ's anonymous access).
        vhost: the STOMP ``host`` header (RabbitMQ's virtual host).
        timeout: seconds to wait for a receipt or a message before failing.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str | None,
        password: str | None,
        vhost: str,
        timeout: float = 10.0,
    ) -> None:
        self._inbox = _Inbox()
        self._timeout = timeout
        self.conn = stomp.Connection12([(host, port)], vhost=vhost)
        self.conn.set_listener("bench", self._inbox)
        self.conn.connect(username, password, wait=True)

    def close(self) -> None:
        """Disconnect."""
        if self.conn.is_connected():
            self.conn.disconnect()

    def send(self, wire_name: str, envelope: Envelope, headers: Mapping[str, str], *, receipt: bool = False) -> None:
        """SEND ``envelope`` to ``wire_name`` with ``headers``; with ``receipt``, wait for the broker's RECEIPT."""
        all_headers = dict(envelope.headers)
        all_headers.update(headers)
        receipt_id = f"raw-{uuid.uuid4().hex}" if receipt else None
        if receipt_id is not None:
            all_headers["receipt"] = receipt_id
        self.conn.send(wire_name, envelope.body, content_type=envelope.content_type, headers=all_headers)
        if receipt_id is not None:
            self._await_receipt(receipt_id)

    def _await_receipt(self, receipt_id: str) -> None:
        inbox = self._inbox
        with inbox.cond:
            if not inbox.cond.wait_for(lambda: receipt_id in inbox.receipts or bool(inbox.errors), self._timeout):
                raise TimeoutError(f"no RECEIPT {receipt_id} within {self._timeout} s")
            if inbox.errors:
                raise RuntimeError(f"broker ERROR: {inbox.errors[-1]}")
            inbox.receipts.discard(receipt_id)

    def poll(self, wire_name: str, expected: int, queue_headers: Mapping[str, str]) -> list[Any]:
        """One status poll done by hand: SUBSCRIBE (client ack), take ``expected`` messages, ACK them
        (receipt on the last), UNSUBSCRIBE (with a receipt), then re-send them (receipt on the last).

        Re-sending after UNSUBSCRIBE, not before the ACKs: the subscription would otherwise
        receive the copies itself, and RabbitMQ keeps those unacknowledged until the connection closes.

        A hand-written poller cannot know where the queue ends; this one is told how many messages
        there are, the best a raw client can do (no waiting for a quiet period).
        """
        inbox = self._inbox
        sub_id = f"raw-sub-{uuid.uuid4().hex}"
        with inbox.cond:
            inbox.frames.clear()
        self.conn.subscribe(wire_name, id=sub_id, ack="client-individual", headers=dict(queue_headers))
        with inbox.cond:
            if not inbox.cond.wait_for(lambda: len(inbox.frames) >= expected, self._timeout):
                raise TimeoutError(f"{wire_name}: got {len(inbox.frames)} of {expected} messages")
            frames = list(inbox.frames)
            inbox.frames.clear()
        for index, frame in enumerate(frames):
            receipt_id = f"raw-ack-{uuid.uuid4().hex}" if index == len(frames) - 1 else None
            self.conn.ack(frame.headers.get("ack") or frame.headers["message-id"], receipt=receipt_id)
            if receipt_id is not None:
                self._await_receipt(receipt_id)
        receipt_id = f"raw-unsub-{uuid.uuid4().hex}"
        self.conn.unsubscribe(sub_id, headers={"receipt": receipt_id})
        self._await_receipt(receipt_id)
        for index, frame in enumerate(frames):
            body = frame.body if isinstance(frame.body, bytes) else str(frame.body).encode()
            app = {k: v for k, v in frame.headers.items() if k.startswith("tdm-")}
            envelope = Envelope(body, frame.headers.get("content-type", "application/json"), app)
            extra = dict(queue_headers)
            extra["persistent"] = "true"
            self.send(wire_name, envelope, extra, receipt=index == len(frames) - 1)
        return frames

    def drain(self, wire_name: str, queue_headers: Mapping[str, str], *, quiet: float = 1.0) -> int:
        """Take and drop every message of ``wire_name`` (auto ack) until none came for ``quiet`` seconds.

        Clean-up only (never timed): a queue's end cannot be seen in STOMP without a marker.
        """
        inbox = self._inbox
        sub_id = f"raw-drain-{uuid.uuid4().hex}"
        taken = 0
        self.conn.subscribe(wire_name, id=sub_id, ack="auto", headers=dict(queue_headers))
        while True:
            with inbox.cond:
                before = len(inbox.frames)
                inbox.cond.wait_for(lambda seen=before: len(inbox.frames) > seen, quiet)  # type: ignore[misc]
                if len(inbox.frames) == before:
                    taken += before
                    inbox.frames.clear()
                    break
                if len(inbox.frames) > 10_000:
                    taken += len(inbox.frames)
                    inbox.frames.clear()
        self.conn.unsubscribe(sub_id)
        return taken


class RawKombuSender:
    """kombu ``Producer.publish`` to a queue declared once, as a user of kombu would write it.

    Args:
        url: the broker URL (``amqp://``, ``redis://`` or ``sqla+sqlite://``).
        queue_name: the queue, published to through the default exchange.
        arguments: queue arguments (e.g. ``x-expires``) for the one declare.
    """

    def __init__(self, url: str, queue_name: str, *, arguments: Mapping[str, object] | None = None) -> None:
        connection_cls: Any = Connection
        self.connection: Any = connection_cls(url)
        self.channel: Any = self.connection.channel()
        self.queue_name = queue_name
        self.channel.queue_declare(
            queue=queue_name, durable=True, exclusive=False, auto_delete=False, arguments=dict(arguments or {})
        )
        producer: Any = Producer
        self.producer: Any = producer(self.channel, auto_declare=False)

    def send(self, envelope: Envelope) -> None:
        """Publish ``envelope``, persistent (delivery mode 2), unconfirmed."""
        self.producer.publish(
            envelope.body,
            routing_key=self.queue_name,
            content_type=envelope.content_type,
            content_encoding="utf-8",
            headers=dict(envelope.headers),
            delivery_mode=2,
            retry=False,
        )

    def close(self) -> None:
        """Release the channel and the connection."""
        self.connection.release()


class RawAmqpPoller:
    """A status poll over AMQP written by hand with py-amqp (under kombu's connection), as a user would.

    One durable queue with ``x-expires``, declared once; :meth:`poll` takes every message with
    ``basic.get`` (no auto-ack; the ``message_count`` of each answer says when the queue is
    empty) and gives each back with ``basic.reject(requeue)`` (py-amqp has no ``basic.nack``):
    RabbitMQ puts them back in their places, so nothing is re-sent and the next poll reads the same messages.
    The least work a poll of a compacted status can do over AMQP: one round trip per message
    (the last answer's ``message_count`` of 0 ends it) and none for the rejects (asynchronous;
    the channel keeps them ordered before the next get).

    Args:
        url: the ``amqp://`` URL (its vhost included).
        queue_name: the queue (its own, never one of ours).
        ttl_ms: the queue's ``x-expires``.
    """

    def __init__(self, url: str, queue_name: str, *, ttl_ms: int) -> None:
        connection_cls: Any = Connection
        self.connection: Any = connection_cls(url)
        self.channel: Any = self.connection.default_channel
        self.queue_name = queue_name
        self.channel.queue_declare(
            queue=queue_name, durable=True, exclusive=False, auto_delete=False, arguments={"x-expires": ttl_ms}
        )

    def seed(self, envelopes: list[Envelope]) -> None:
        """Publish ``envelopes`` persistent, with publisher confirms (each waited for: seeding is not timed)."""
        self.channel.confirm_select()
        for envelope in envelopes:
            message = self.channel.prepare_message(
                envelope.body,
                content_type=envelope.content_type,
                content_encoding="utf-8",
                headers=dict(envelope.headers),
                properties={"delivery_mode": 2},
            )
            self.channel.basic_publish(message, exchange="", routing_key=self.queue_name)

    def poll(self) -> list[Any]:
        """Take every message of the queue with ``basic.get``, then requeue each with ``basic.reject``."""
        taken: list[Any] = []
        while True:
            message = self.channel.basic_get(self.queue_name, no_ack=False)
            if message is None:
                break
            taken.append(message)
            if message.delivery_info.get("message_count", 0) == 0:
                break
        for message in taken:
            self.channel.basic_reject(message.delivery_tag, requeue=True)
        return taken

    def close(self) -> None:
        """Delete the queue, then release the connection."""
        try:
            self.channel.queue_delete(self.queue_name)
        finally:
            self.connection.release()


_RAW_SQLITE_TABLE = """
CREATE TABLE IF NOT EXISTS message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    body BLOB NOT NULL,
    content_type TEXT NOT NULL,
    headers TEXT NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 0,
    holder TEXT,
    lease_until_ms INTEGER
)
"""


class RawSqliteQueue:
    """A queue table in plain ``sqlite3``, as a user would write one: WAL, ``synchronous=FULL``, autocommit.

    The table has the shape of our transport's message table (same columns, an index on
    ``(queue, id)``), written out here so the baseline shares no code with ours. Each method does
    the least durable work its counterpart of ours must do.

    Args:
        path: the database file (its own, never our transport's).
        queue_name: the queue every call works on.
    """

    def __init__(self, path: Path, queue_name: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute(_RAW_SQLITE_TABLE)
        self.conn.execute("CREATE INDEX IF NOT EXISTS message_by_queue ON message (queue, id)")
        self.queue_name = queue_name
        self.holder = f"raw:{uuid.uuid4().hex[:8]}"

    def send(self, envelope: Envelope) -> None:
        """One INSERT, committed on its own (autocommit): one fsync'd transaction per message."""
        self.conn.execute(
            "INSERT INTO message (queue, body, content_type, headers) VALUES (?, ?, ?, ?)",
            (self.queue_name, envelope.body, envelope.content_type, json.dumps(dict(envelope.headers))),
        )

    def lease_and_release(self, lease_ms: int = 30_000) -> list[Envelope]:
        """A poll that takes the queue's messages under a lease and gives them back: two committed transactions.

        ``BEGIN IMMEDIATE``, select the visible rows, lease them, commit; then clear the leases
        and commit. That is the durable work our poll does when the queue already holds only its
        compacted status (nothing to re-send); decoding and folding are ours alone.
        """
        now = int(time.time() * 1000)
        self.conn.execute("BEGIN IMMEDIATE")
        rows = self.conn.execute(
            "SELECT id, body, content_type, headers FROM message WHERE queue = ? "
            "AND (lease_until_ms IS NULL OR lease_until_ms <= ?) ORDER BY id",
            (self.queue_name, now),
        ).fetchall()
        self.conn.executemany(
            "UPDATE message SET holder = ?, lease_until_ms = ?, deliveries = deliveries + 1 WHERE id = ?",
            [(self.holder, now + lease_ms, row[0]) for row in rows],
        )
        self.conn.execute("COMMIT")
        envelopes = [Envelope(bytes(row[1]), str(row[2]), json.loads(row[3])) for row in rows]
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(
            "UPDATE message SET holder = NULL, lease_until_ms = NULL WHERE id = ? AND holder = ?",
            [(row[0], self.holder) for row in rows],
        )
        self.conn.execute("COMMIT")
        return envelopes

    def peek(self) -> list[Envelope]:
        """A read-only poll: one SELECT of the queue's rows, no lease and no write (nothing made durable)."""
        rows = self.conn.execute(
            "SELECT body, content_type, headers FROM message WHERE queue = ? ORDER BY id", (self.queue_name,)
        ).fetchall()
        return [Envelope(bytes(row[0]), str(row[1]), json.loads(row[2])) for row in rows]

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()
