"""The STOMP floor of a job's cycle: our message pattern written with stomp.py alone (no tdm_messaging), as a baseline.

What it does is what our STOMP wing does per job after issue 14, frame for frame, with none of
our checks, models, codec, routes, retries or reconnects. Its messages are ours, as the AMQP
floor's are: the protocol's JSON bodies and the five ``tdm-*`` headers (type, protocol version,
docset, request, sequence), so the broker parses and stores as many bytes per message as for ours
(until branch ``stompcycle`` it sent ~100-byte bodies without those headers, about half the bytes
of ours, and the broker's work per job, the largest share of a job's CPU, was lighter for the floor).

- request (client): SEND a copy of the request to the docset's reply queue and SEND the request
  to the requests queue, both persistent with a receipt, written back to back; one wait for both.
- worker (its own process, ``python -m bench.floor_stomp worker ...``): a client-individual
  subscription (``prefetch-count`` = ``prefetch``) to the requests queue; every request already
  received is one batch, as our STOMP worker's (``consume_batches``): per request SEND Accepted and
  Progress (unless ``progress=False``: ours lingering sends neither for a job that ends at once)
  and Complete to the reply queue, persistent, a receipt on the Complete only; one wait
  for the batch's receipts; then an ACK of each request.
- poll (client): SEND a marker (60 s expiration), SUBSCRIBE (client-individual), read up to the
  marker; then BEGIN, ACK the marker and what the compaction drops, NACK (requeue) what it keeps
  and anything after the marker, UNSUBSCRIBE, COMMIT with a receipt; wait. The compaction keeps
  the request copy and the newest reply, as ours does for a finished job.

The interface is that of ``bench/celery_peer.py``'s sides: ``submit() -> handle``,
``wait_all(handles, timeout=...)``, ``close()``. RabbitMQ STOMP only (the declare headers and the
NACK requeue are RabbitMQ's).

:class:`FloorStompPrepared` is the same loop with each reply queue created ahead, outside the
timed region (``prepare_ahead``, as ``PackagingClient.prepare`` when a docset is created): an
empty persistent probe SEND with the declare headers, ``expiration: 0`` and a receipt, the probes
of a window written back to back with one wait. Persistent, as ours: storing it makes RabbitMQ
create the queue's on-disk index, so the request's copy only finds the queue there, primed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import stomp

__all__ = ["FloorStomp", "FloorStompPrepared", "main", "run_worker"]

_ROOT = Path(__file__).resolve().parent.parent
_MARKER = "x-floor-marker"
_TIMEOUT = 30.0


def _declare(reply_ttl_ms: int | None) -> dict[str, str]:
    headers = {"durable": "true", "auto-delete": "false", "exclusive": "false"}
    if reply_ttl_ms is not None:
        headers["x-expires"] = str(reply_ttl_ms)
    return headers


def _requests_declare() -> dict[str, str]:
    # Permanent in ours; an expiry here only removes the run's queue afterwards (no cost per job).
    return _declare(600_000)


class _Listener:
    """MESSAGE frames by subscription, RECEIPT ids, ERROR texts; one condition to wait on."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.inboxes: dict[str, list[Any]] = {}
        self.receipts: set[str] = set()
        self.errors: list[str] = []
        self.held = 0  # deliveries to a subscription that had ended (RabbitMQ keeps them unacked)

    def on_message(self, frame: Any) -> None:
        with self.cond:
            inbox = self.inboxes.get(frame.headers.get("subscription", ""))
            if inbox is None:
                self.held += 1
            else:
                inbox.append(frame)
            self.cond.notify_all()

    def on_receipt(self, frame: Any) -> None:
        with self.cond:
            self.receipts.add(frame.headers.get("receipt-id", ""))
            self.cond.notify_all()

    def on_error(self, frame: Any) -> None:
        with self.cond:
            message = str(frame.headers.get("message", ""))
            if message.strip() == "Subscription not found" and not frame.headers.get("receipt-id"):
                self.held += 1  # a delivery that raced an UNSUBSCRIBE
            else:
                self.errors.append(f"{message} {frame.body!r}")
            self.cond.notify_all()

    def wait(self, predicate: Any, what: str) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: predicate() or bool(self.errors), _TIMEOUT):
                raise RuntimeError(f"floor: no {what} within {_TIMEOUT:g} s")
            if self.errors:
                raise RuntimeError(f"floor: broker error during {what}: {self.errors[0]}")


class _Url:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 61613
        self.user = unquote(parts.username or "guest")
        self.password = unquote(parts.password or "guest")
        self.vhost = query.get("vhost", "/")


def _connect(url: str) -> tuple[Any, _Listener]:
    u = _Url(url)
    conn = stomp.Connection12([(u.host, u.port)], vhost=u.vhost, auto_decode=False, heartbeats=(0, 0))
    listener = _Listener()
    conn.set_listener("floor", listener)
    conn.connect(u.user, u.password, wait=True)
    conn.transport.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn, listener


def _queue(name: str) -> str:
    return "/queue/" + name.replace("/", "%2F")


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _message(fields: dict[str, object]) -> tuple[bytes, dict[str, str]]:
    """A JSON body and the headers ours carry (type, version, docset, request, sequence), as the AMQP floor's."""
    headers = {
        "tdm-type": str(fields["type"]),
        "tdm-protocol-version": "1.0",
        "tdm-docset-id": str(fields["docset_id"]),
        "tdm-request-id": str(fields["request_id"]),
        "tdm-sequence": str(fields["sequence"]),
    }
    return json.dumps({"protocol_version": "1.0", **fields}, separators=(",", ":")).encode(), headers


def _replies(request: dict[str, Any], progress: bool) -> list[tuple[bytes, dict[str, str]]]:
    """One no-op job's replies, as our worker's: Accepted and Progress (if ``progress``), Complete."""
    base = {"docset_id": request["docset_id"], "request_id": request["request_id"]}
    replies: list[tuple[bytes, dict[str, str]]] = []
    if progress:  # ours with a linger sends neither for a job that ends within it: the Complete alone
        accepted = {"estimate_seconds": None}
        replies.append(_message({**base, "sequence": 1, "timestamp": _now(), "type": "accepted", **accepted}))
        report = {"items_done": 1, "items_total": 1, "percent": 100.0, "eta_seconds": None}
        replies.append(_message({**base, "sequence": 2, "timestamp": _now(), "type": "progress", **report}))
    result = {
        "archive_url": f"https://tdm-packages.example.org/package/{request['docset_id']}.zip",
        "size_bytes": 345345,
        "sha256": None,
        "content_type": "application/zip",
        "url_expires_at": None,
    }
    replies.append(_message({**base, "sequence": len(replies) + 1, "timestamp": _now(), "type": "complete", **result}))
    return replies


def run_worker(
    url: str, requests: str, reply_ttl_ms: int, stop: threading.Event, *, progress: bool = True, prefetch: int = 1
) -> None:
    """The raw worker, until ``stop`` is set: every request already received (up to ``prefetch``) is one batch;
    per request Accepted and Progress (if ``progress``) and Complete (with a receipt); one wait for the batch's
    receipts; then an ACK of each request."""
    conn, listener = _connect(url)
    sub = "floor-worker"
    listener.inboxes[sub] = []
    headers = {**_requests_declare(), "prefetch-count": str(prefetch)}
    conn.subscribe(_queue(requests), id=sub, ack="client-individual", headers=headers)
    declare = _declare(reply_ttl_ms)
    try:
        while not stop.is_set():
            with listener.cond:
                listener.cond.wait_for(lambda: bool(listener.inboxes[sub]) or stop.is_set(), 0.5)
                batch, listener.inboxes[sub] = listener.inboxes[sub], []
            if not batch:
                continue
            receipts = set()
            for frame in batch:
                request = json.loads(frame.body)
                reply = _queue(request["reply_to"])
                replies = _replies(request, progress)
                for body, extra in replies[:-1]:
                    conn.send(
                        reply, body, content_type="application/json", headers={**declare, **extra, "persistent": "true"}
                    )
                receipt = f"c-{uuid.uuid4().hex}"
                body, extra = replies[-1]
                conn.send(
                    reply,
                    body,
                    content_type="application/json",
                    headers={**declare, **extra, "persistent": "true", "receipt": receipt},
                )
                receipts.add(receipt)
            listener.wait(lambda r=receipts: r <= listener.receipts, "Complete receipts")
            for frame in batch:
                conn.ack(frame.headers["ack"])
    finally:
        conn.disconnect()


class FloorStomp:
    """Request, worker and poll of our pattern in raw stomp.py (see the module docstring).

    Args:
        url: ``stomp://user:pass@host:port/?vhost=...`` of a RabbitMQ STOMP listener.
        reply_ttl_ms: the reply queues' ``x-expires``.
        worker: ``"process"`` (its own Python process, as our bench's worker) or ``"thread"``.
        prefetch: the worker's ``prefetch-count``; the requests already received form one batch, as ours.
        progress: whether the worker sends the no-op job's Accepted and Progress (ours does unless it lingers).
    """

    FOLLOWS_OUR_WORKER = True
    """It takes ``prefetch`` and ``progress``: the Celery group runs it as it runs our worker."""

    def __init__(
        self,
        url: str,
        *,
        reply_ttl_ms: int = 86_400_000,
        worker: str = "process",
        prefetch: int = 1,
        progress: bool = True,
    ) -> None:
        self.url = url
        self.reply_ttl_ms = reply_ttl_ms
        self.run = uuid.uuid4().hex[:8]
        self.requests = f"floor-{self.run}/docsets/package"
        self.conn, self.listener = _connect(url)
        self._ready: list[str] = []
        """Reply queues created ahead, for the next submits (:class:`FloorStompPrepared` fills it)."""
        self.count = 0
        self.frames = 0
        self._anchor = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen[bytes] | None = None
        args = [url, self.requests, str(reply_ttl_ms), "1" if progress else "0", str(prefetch)]
        if worker == "thread":
            self._thread = threading.Thread(
                target=run_worker,
                args=(url, self.requests, reply_ttl_ms, self._stop),
                kwargs={"progress": progress, "prefetch": prefetch},
            )
            self._thread.start()
        else:
            env = dict(os.environ, PYTHONPATH=str(_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
            self._process = subprocess.Popen(
                [sys.executable, "-m", "bench.floor_stomp", "worker", *args], env=env, stdout=subprocess.PIPE
            )
            assert self._process.stdout is not None
            if self._process.stdout.readline().strip() != b"ready":
                raise RuntimeError("floor: the raw worker did not start")

    def _send(self, frame: str, **kwargs: Any) -> None:
        self.frames += 1
        getattr(self.conn, frame)(**kwargs)

    def _new_reply_to(self) -> str:
        self.count += 1
        return f"floor-{self.run}/package/floor-{self.run}-{self.count}"

    def _next_reply_to(self) -> str:
        """The reply queue of the next submit: one created ahead if there is one, else a new one."""
        return self._ready.pop(0) if self._ready else self._new_reply_to()

    def submit(self) -> str:
        """Copy to the reply queue, request to the requests queue, one wait for both receipts."""
        reply_to = self._next_reply_to()
        docset = reply_to.rpartition("/")[2]
        now = _now()
        body, extra = _message(
            {
                "docset_id": docset,
                "request_id": str(uuid.uuid4()),
                "sequence": 0,
                "timestamp": now,
                "type": "package_request",
                "docset_url": f"http://server/api/docsets/{docset}",
                "formats": ["meta", "txt"],
                "reply_to": reply_to,
                "requested_at": now,
            }
        )
        first, second = f"r-{uuid.uuid4().hex}", f"r-{uuid.uuid4().hex}"
        declare = _declare(self.reply_ttl_ms)
        headers = {**declare, **extra, "persistent": "true", "receipt": first}
        self._send("send", destination=_queue(reply_to), body=body, content_type="application/json", headers=headers)
        headers = {**_requests_declare(), **extra, "persistent": "true", "receipt": second}
        self._send(
            "send", destination=_queue(self.requests), body=body, content_type="application/json", headers=headers
        )
        self.listener.wait(lambda: {first, second} <= self.listener.receipts, "request receipts")
        return reply_to

    def _give_back_held(self) -> None:
        """NACK every outstanding delivery (tag 0, multiple) through an anchor subscription, as ours does."""
        if not self.listener.held:
            return
        if not self._anchor:
            self._send(
                "subscribe", destination=f"/exchange/amq.direct/floor-{uuid.uuid4().hex}", id="anchor", ack="client"
            )
            self._anchor = True
        receipt = f"g-{uuid.uuid4().hex}"
        self.listener.held = 0
        self._send("nack", id="T_anchor@@floor@@0", receipt=receipt)
        self.listener.wait(lambda: receipt in self.listener.receipts, "give-back receipt")

    def poll(self, reply_to: str) -> bool:
        """One poll of ``reply_to``: True when it holds a Complete."""
        self._give_back_held()
        wire = _queue(reply_to)
        declare = _declare(self.reply_ttl_ms)
        marker = uuid.uuid4().hex
        sub = f"poll-{marker}"
        inbox: list[Any] = []
        with self.listener.cond:
            self.listener.inboxes[sub] = inbox
        self._send("send", destination=wire, body=b"", headers={**declare, _MARKER: marker, "expiration": "60000"})
        self._send("subscribe", destination=wire, id=sub, ack="client-individual", headers=declare)
        self.listener.wait(lambda: any(f.headers.get(_MARKER) == marker for f in inbox), "read marker")
        with self.listener.cond:
            frames = list(inbox)
            del self.listener.inboxes[sub]
        at = next(i for i, f in enumerate(frames) if f.headers.get(_MARKER) == marker)
        before, own, after = frames[:at], frames[at], frames[at + 1 :]
        kinds = [json.loads(f.body).get("type") for f in before]
        keep = {0, len(before) - 1} if before else set()  # the request copy and the newest reply
        tx, receipt = f"t-{marker}", f"s-{marker}"
        self._send("begin", transaction=tx)
        for frame in [own] + [f for i, f in enumerate(before) if i not in keep]:
            self._send("ack", id=frame.headers["ack"], transaction=tx)
        for frame in [f for i, f in enumerate(before) if i in keep] + after:
            self._send("nack", id=frame.headers["ack"], transaction=tx)
        self._send("unsubscribe", id=sub)
        self._send("commit", transaction=tx, headers={"receipt": receipt})
        self.listener.wait(lambda: receipt in self.listener.receipts, "settle receipt")
        return "complete" in kinds

    def wait_all(self, handles: list[str], timeout: float = 60.0) -> None:
        """Poll each handle until its Complete is there."""
        deadline = time.monotonic() + timeout
        pending = list(handles)
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"floor: {len(pending)} of {len(handles)} jobs not complete after {timeout:g} s")
            pending = [h for h in pending if not self.poll(h)]

    def close(self) -> None:
        """Stop the worker and disconnect."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self.conn.disconnect()


class FloorStompPrepared(FloorStomp):
    """:class:`FloorStomp` with each reply queue created ahead of its request, outside the timed region."""

    BASELINE_NAME = "raw stomp.py loop of our message pattern, reply queue created ahead"

    def prepare_ahead(self, count: int) -> None:
        """Create and prime the reply queues of the next ``count`` submits: persistent empty probes, one wait."""
        receipts = set()
        declare = _declare(self.reply_ttl_ms)
        while len(self._ready) < count:
            reply_to = self._new_reply_to()
            receipt = f"p-{uuid.uuid4().hex}"
            headers = {**declare, "expiration": "0", "persistent": "true", "receipt": receipt}
            self._send("send", destination=_queue(reply_to), body=b"", headers=headers)
            receipts.add(receipt)
            self._ready.append(reply_to)
        self.listener.wait(lambda: receipts <= self.listener.receipts, "prepare receipts")


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.floor_stomp worker URL REQUESTS_QUEUE REPLY_TTL_MS [PROGRESS [PREFETCH]]``: the raw
    worker, until SIGTERM (``PROGRESS`` ``0``: no Progress; default ``1``; ``PREFETCH`` default ``1``)."""
    args = sys.argv[1:] if argv is None else argv
    if (
        len(args) not in (4, 5, 6)
        or args[0] != "worker"
        or (len(args) >= 5 and args[4] not in ("0", "1"))
        or (len(args) == 6 and not (args[5].isdigit() and int(args[5]) >= 1))
    ):
        usage = "usage: python -m bench.floor_stomp worker URL REQUESTS_QUEUE REPLY_TTL_MS [0|1 [PREFETCH]]"
        print(usage, file=sys.stderr)
        return 2
    import signal

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    progress = len(args) == 4 or args[4] == "1"
    prefetch = int(args[5]) if len(args) == 6 else 1
    thread = threading.Thread(
        target=run_worker,
        args=(args[1], args[2], int(args[3]), stop),
        kwargs={"progress": progress, "prefetch": prefetch},
    )
    thread.start()
    print("ready", flush=True)
    thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
