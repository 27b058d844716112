"""The floor of our job cycle on AMQP: our exact message pattern, written with py-amqp alone.

``FloorAmqp`` has the interface of the Celery benchmark's sides (``submit() -> handle``,
``wait_all(handles, timeout=...)``, ``close()``); its worker is a process of its own
(``python -m bench.floor_amqp URL QUEUE``), as our worker is. Nothing here imports
tdm_messaging: the floor shares no code with what it measures. Per job, on the wire
(docs/performance.md, "The job's message pattern"):

client, request: publish the request's copy to ``package/<id>`` and the request to the work
    queue on one channel in confirm mode, both persistent and ``mandatory``; one wait for both
    acks. A copy returned (the reply queue is missing) declares the queue (durable,
    ``x-expires``) and is published again, with a second wait. ``prepare=True`` declares the
    reply queue first, as ``PackagingClient.prepare`` does when a docset is created, and primes
    it as ours does: an empty persistent probe with ``expiration: 0``, confirmed, so RabbitMQ
    creates the queue's on-disk index before the request's copy.
worker: consume (prefetch ``prefetch``); take every delivery the socket already holds; for each,
    publish Accepted and Progress (persistent, mandatory, not waited for), unless
    ``progress=False`` (ours with a linger: the Complete supersedes both), and Complete
    (persistent, mandatory); one wait for the acks of the whole batch (a return declares the queue and
    publishes again), then ack each request.
client, poll: declare the reply queue if this connection has not; three ``basic.get`` sent
    together (as ours), then one at a time until ``message_count`` is 0; keep the request's copy and the
    one reply the status needs; ``basic.ack`` the rest, ``basic.reject(requeue)`` the kept, then
    a passive declare so the queue has them back before the poll returns.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import Any
from urllib.parse import unquote, urlsplit

import amqp
from amqp import spec

__all__ = ["FloorAmqp", "main"]

REPLY_TTL_MS = 86_400_000
"""The reply queues' ``x-expires``: our backend's default ``reply_ttl`` (one day)."""
CONFIRM_TIMEOUT = 30.0
ARCHIVE_SIZE = 345345
_JOB_TIMEOUT = 60.0
READ_AHEAD = 3
"""The gets a poll sends at once: ours' (``tdm_messaging.transport.kombu.read.READ_AHEAD``), not imported
(the floor shares no code with what it measures)."""
_RANK = {"package_request": 1, "accepted": 2, "progress": 3, "failed": 4, "complete": 5}


def _connect(url: str) -> amqp.Connection:
    """A py-amqp connection from an ``amqp://user:pass@host:port/vhost`` URL (``//`` is vhost ``/``)."""
    parts = urlsplit(url)
    vhost = unquote(parts.path[1:]) if parts.path not in ("", "/") else "/"
    conn = amqp.Connection(
        host=f"{parts.hostname or '127.0.0.1'}:{parts.port or 5672}",
        userid=unquote(parts.username or "guest"),
        password=unquote(parts.password or "guest"),
        virtual_host=vhost or "/",
        heartbeat=0,
    )
    conn.connect()
    return conn


def _declare_reply(channel: Any, name: str, *, passive: bool = False) -> Any:
    if passive:
        return channel.queue_declare(queue=name, passive=True)
    return channel.queue_declare(
        queue=name, durable=True, exclusive=False, auto_delete=False, arguments={"x-expires": REPLY_TTL_MS}
    )


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _probe() -> amqp.Message:
    """The declare probe that primes a reply queue: empty, persistent, expiring at once, read by nobody."""
    return amqp.Message(
        b"",
        content_type="application/octet-stream",
        application_headers={"tdm-declare-probe": "1"},
        delivery_mode=2,
        expiration="0",
    )


def _message(fields: dict[str, object]) -> amqp.Message:
    """A persistent JSON message with the headers ours carry (type, version, docset, request, sequence)."""
    headers = {
        "tdm-type": str(fields["type"]),
        "tdm-protocol-version": "1.0",
        "tdm-docset-id": str(fields["docset_id"]),
        "tdm-request-id": str(fields["request_id"]),
        "tdm-sequence": str(fields["sequence"]),
    }
    body = json.dumps({"protocol_version": "1.0", **fields}, separators=(",", ":")).encode()
    return amqp.Message(
        body,
        content_type="application/json",
        content_encoding="utf-8",
        application_headers=headers,
        delivery_mode=2,
    )


class _Confirms:
    """A channel in confirm mode whose publishes are mandatory and tracked by delivery tag."""

    def __init__(self, conn: amqp.Connection) -> None:
        self.conn = conn
        self.channel = conn.channel()
        self.channel.confirm_select()
        self.next_tag = 1
        self.unsettled: dict[int, tuple[str, amqp.Message]] = {}
        self.returned: list[tuple[str, amqp.Message]] = []
        self.channel.events["basic_ack"].add(self._settle)
        self.channel.events["basic_nack"].add(self._nack)
        self.channel.events["basic_return"].add(
            lambda _exc, _exchange, routing_key, message: self.returned.append((routing_key, message))
        )

    def _settle(self, tag: int, multiple: bool) -> None:
        for done in [t for t in self.unsettled if t == tag or (multiple and t <= tag)]:
            del self.unsettled[done]

    def _nack(self, tag: int, multiple: bool) -> None:
        raise RuntimeError(f"the broker nacked publish {tag}")

    def publish(self, routing_key: str, message: amqp.Message) -> None:
        self.channel.basic_publish(message, exchange="", routing_key=routing_key, mandatory=True)
        self.unsettled[self.next_tag] = (routing_key, message)
        self.next_tag += 1

    def wait(self, declare: Callable[[str], object]) -> None:
        """One wait for every publish; a returned one declares its queue and goes again (once more)."""
        for _ in range(2):
            deadline = time.monotonic() + CONFIRM_TIMEOUT
            while self.unsettled:
                self.conn.drain_events(timeout=max(deadline - time.monotonic(), 0.001))
            if not self.returned:
                return
            again, self.returned = self.returned, []
            for routing_key in {key for key, _ in again}:
                declare(routing_key)
            for routing_key, message in again:
                self.publish(routing_key, message)
        raise RuntimeError(f"returned again after a declare: {self.returned}")


class FloorAmqp:
    """Our job cycle's message pattern on py-amqp: the client here, its worker in a process of its own.

    Args:
        url: ``amqp://user:pass@host:port/vhost``.
        queue: the work queue (ours: ``docsets/package``); by default one of this floor's own
            (``floor-<run>/docsets/package``), so it never competes with our worker in the same vhost.
        prepare: declare each reply queue before its request, as ``PackagingClient.prepare`` does
            (in :meth:`submit`, timed; :meth:`prepare_ahead` does it outside a bench's timed region).
        prefetch: the worker's prefetch, as ``PackagerWorker(prefetch=...)``.
        progress: whether the worker sends the no-op job's Accepted and Progress (ours does unless it lingers).
    """

    FOLLOWS_OUR_WORKER = True
    """It takes ``prefetch`` and ``progress``: the Celery group runs it as it runs our worker."""

    def __init__(
        self, url: str, *, queue: str | None = None, prepare: bool = False, prefetch: int = 1, progress: bool = True
    ) -> None:
        if queue is None:
            queue = f"floor-{uuid.uuid4().hex[:8]}/docsets/package"
        self.url, self.queue, self.prepare = url, queue, prepare
        self._ready: list[str] = []
        self.conn = _connect(url)
        self.channel = self.conn.channel()
        self.channel.queue_declare(queue=queue, durable=True, exclusive=False, auto_delete=False)
        self.confirms = _Confirms(self.conn)
        self.declared: set[str] = set()
        self.run = uuid.uuid4().hex[:8]
        self.count = 0
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "bench.floor_amqp", url, queue, str(prefetch), "1" if progress else "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        )
        assert self.worker.stdout is not None
        line = self.worker.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"the floor's worker did not start: {line!r}")

    def _declare(self, name: str) -> None:
        _declare_reply(self.channel, name)
        self.declared.add(name)

    def _next_docset(self) -> str:
        self.count += 1
        return f"floor-{self.run}-{self.count}"

    def prepare_ahead(self, count: int) -> None:
        """Declare and prime the reply queues of the next ``count`` submits (a server does it when the
        docset is created): one confirm wait for all the probes."""
        while len(self._ready) < count:
            docset = self._next_docset()
            self._declare(f"package/{docset}")
            self.confirms.publish(f"package/{docset}", _probe())
            self._ready.append(docset)
        self.confirms.wait(self._declare)

    def submit(self) -> str:
        """Request one no-op job; returns its docset id."""
        docset = self._ready.pop(0) if self._ready else self._next_docset()
        reply = f"package/{docset}"
        if self.prepare and reply not in self.declared:
            self._declare(reply)
        now = _now()
        request = _message(
            {
                "docset_id": docset,
                "request_id": str(uuid.uuid4()),
                "sequence": 0,
                "timestamp": now,
                "type": "package_request",
                "docset_url": f"http://server/api/docsets/{docset}",
                "formats": ["meta", "txt"],
                "reply_to": reply,
                "requested_at": now,
            }
        )
        self.confirms.publish(reply, request)
        self.confirms.publish(self.queue, request)
        self.confirms.wait(self._declare)
        return docset

    def _poll(self, docset: str) -> bool:
        """One poll: read everything, keep the copy and the reply the status needs; True once complete."""
        reply = f"package/{docset}"
        if reply not in self.declared:
            self._declare(reply)
        taken: list[tuple[amqp.Message, str]] = []
        # The first READ_AHEAD gets go out together, as ours do; a message got ahead and not used goes back.
        for _ in range(READ_AHEAD):
            self.channel.send_method(spec.Basic.Get, "Bsb", (0, reply, False))
        ahead = []
        for _ in range(READ_AHEAD):
            answer = self.channel.wait([spec.Basic.GetOk, spec.Basic.GetEmpty], returns_tuple=True)
            ahead.append(self.channel._on_get_ok(*answer) if answer and len(answer) >= 2 else None)
        while True:
            message = ahead.pop(0) if ahead else self.channel.basic_get(queue=reply, no_ack=False)
            if message is None:
                break
            taken.append((message, json.loads(message.body)["type"]))
            if message.delivery_info.get("message_count") == 0:
                break
        for raw in ahead:
            if raw is not None:
                self.channel.basic_reject(raw.delivery_tag, requeue=True)
        if not taken:
            return False
        best = max(_RANK[kind] for _, kind in taken)
        keep = {next(i for i, (_, kind) in enumerate(taken) if kind == "package_request")}
        if best > 1:
            keep.add(max(i for i, (_, kind) in enumerate(taken) if _RANK[kind] == best))
        for index, (message, _) in enumerate(taken):
            if index in keep:
                self.channel.basic_reject(message.delivery_tag, requeue=True)
            else:
                self.channel.basic_ack(message.delivery_tag)
        _declare_reply(self.channel, reply, passive=True)  # the queue has the kept ones back
        if best == _RANK["failed"]:
            raise RuntimeError(f"docset {docset} failed")
        return best == _RANK["complete"]

    def wait_all(self, handles: list[str], timeout: float = _JOB_TIMEOUT) -> None:
        """Poll each docset until COMPLETE, as our bench side does."""
        deadline = time.monotonic() + timeout
        pending = list(handles)
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the floor stalled: {len(pending)} of {len(handles)} jobs not complete")
            if self.worker.poll() is not None:
                raise RuntimeError(f"the floor's worker exited with {self.worker.returncode}")
            pending = [h for h in pending if not self._poll(h)]

    def close(self) -> None:
        try:
            for name in [*self.declared, self.queue]:
                try:
                    self.channel.queue_delete(queue=name)
                except Exception:  # best-effort clean-up of our own queues
                    break
            self.conn.close()
        finally:
            self.worker.terminate()
            try:
                self.worker.wait(10)
            except subprocess.TimeoutExpired:
                self.worker.kill()


def _work(url: str, queue: str, stop: threading.Event, *, prefetch: int = 1, progress: bool = True) -> None:
    """The floor's worker: what our PackagerWorker puts on the wire for a no-op job with one progress report."""
    conn = _connect(url)
    channel = conn.channel()
    channel.queue_declare(queue=queue, durable=True, exclusive=False, auto_delete=False)
    channel.basic_qos(0, prefetch, False)
    confirms = _Confirms(conn)
    declare = conn.channel()
    pending: list[amqp.Message] = []
    channel.basic_consume(queue=queue, callback=pending.append, no_ack=False)
    print("ready", flush=True)
    while not stop.is_set():
        if not pending:
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=0.5)
            continue
        with contextlib.suppress(TimeoutError):  # the deliveries the socket already holds join the batch
            for _ in range(1000):
                conn.drain_events(timeout=0)
        batch, pending[:] = pending[:], []
        for delivery in batch:
            _reply(confirms, json.loads(delivery.body), progress=progress)
        confirms.wait(lambda name: _declare_reply(declare, name))
        for delivery in batch:
            channel.basic_ack(delivery.delivery_tag)
    conn.close()


def _reply(confirms: _Confirms, request: dict[str, Any], *, progress: bool) -> None:
    """Publish one no-op job's replies, not waiting for their acks."""
    base = {"docset_id": request["docset_id"], "request_id": request["request_id"]}
    reply = request["reply_to"]
    sequence = 1
    if progress:  # ours with a linger sends neither for a job that ends within it: the Complete alone
        accepted = {"estimate_seconds": None}
        confirms.publish(reply, _message({**base, "sequence": 1, "timestamp": _now(), "type": "accepted", **accepted}))
        report = {"items_done": 1, "items_total": 1, "percent": 100.0, "eta_seconds": None}
        confirms.publish(reply, _message({**base, "sequence": 2, "timestamp": _now(), "type": "progress", **report}))
        sequence = 3
    result = {
        "archive_url": f"https://tdm-packages.example.org/package/{request['docset_id']}.zip",
        "size_bytes": ARCHIVE_SIZE,
        "sha256": None,
        "content_type": "application/zip",
        "url_expires_at": None,
    }
    confirms.publish(reply, _message({**base, "sequence": sequence, "timestamp": _now(), "type": "complete", **result}))


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.floor_amqp URL QUEUE [PREFETCH [PROGRESS]]``: run the floor's worker until SIGTERM/SIGINT."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in {2, 3, 4} or not all(a.isdigit() for a in args[2:]):
        print("usage: python -m bench.floor_amqp AMQP_URL QUEUE [PREFETCH [PROGRESS 1/0]]", file=sys.stderr)
        return 2
    prefetch = int(args[2]) if len(args) >= 3 else 1
    progress = args[3] != "0" if len(args) == 4 else True
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    _work(args[0], args[1], stop, prefetch=prefetch, progress=progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
