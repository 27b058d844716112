"""The native SQLite transport: URLs, leases that a dead or frozen process gives back, competing processes, expiry."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tdm_messaging.destinations import PACKAGE_REQUESTS, Destination, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import BrokerUnavailableError, ConfigurationError, TransportClosedError
from tdm_messaging.testing import wait_until
from tdm_messaging.transport import Batch, Delivery, open_transport
from tdm_messaging.transport.sqlite import store
from tdm_messaging.transport.sqlite.backend import SqliteTransport
from tdm_messaging.transport.sqlite.settings import (
    DEFAULT_POLL_INTERVAL,
    DEFAULT_REPLY_TTL,
    DEFAULT_VISIBILITY_TIMEOUT,
    parse_sqlite_url,
)
from tdm_messaging.transport.sqlite.wake import Waker

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]


def _url(path: Path, **params: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"sqlite:///{path}" + (f"?{query}" if query else "")


def _queue() -> Destination:
    return reply_queue("sq-" + uuid.uuid4().hex[:12])


def _count(path: Path, name: str) -> int:
    with closing(store.connect(path, busy_timeout=5)) as conn:
        return store.message_count(conn, name)


def _exists(path: Path, name: str) -> bool:
    with closing(store.connect(path, busy_timeout=5)) as conn:
        return store.queue_exists(conn, name)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "broker.db"


@pytest.fixture
def opened(db: Path) -> Iterator[list[SqliteTransport]]:
    """Transports opened by a test; all closed at teardown."""
    transports: list[SqliteTransport] = []
    yield transports
    for transport in transports:
        transport.close()


def _open(opened: list[SqliteTransport], db: Path, **params: object) -> SqliteTransport:
    transport = SqliteTransport.from_url(_url(db, **params))
    opened.append(transport)
    return transport


# -- URLs -------------------------------------------------------------------------------------------


def test_url_forms_and_defaults() -> None:
    relative = parse_sqlite_url("sqlite:///tdm-broker.db")
    assert relative.path == "tdm-broker.db"
    assert relative.resolved_path() == Path.cwd() / "tdm-broker.db"
    absolute = parse_sqlite_url("sqlite:////var/lib/tdm/broker%20one.db")
    assert absolute.path == "/var/lib/tdm/broker one.db"
    assert (absolute.reply_ttl, absolute.visibility_timeout, absolute.poll_interval) == (
        DEFAULT_REPLY_TTL,
        DEFAULT_VISIBILITY_TIMEOUT,
        DEFAULT_POLL_INTERVAL,
    )
    assert DEFAULT_REPLY_TTL == 86_400  # the same default as the STOMP and kombu backends
    tuned = parse_sqlite_url(
        "sqlite:///b.db?reply_ttl=2.5&visibility_timeout=3&poll_interval=0.05&busy_timeout=1&dialect=plain"
    )
    assert (tuned.reply_ttl, tuned.visibility_timeout, tuned.poll_interval, tuned.busy_timeout) == (2.5, 3, 0.05, 1)
    assert (tuned.reply_ttl_ms, tuned.visibility_timeout_ms) == (2500, 3000)


@pytest.mark.parametrize(
    ("url", "fragments"),
    [
        ("sqlite://host/b.db", ["names a file, not a host", "sqlite:///"]),
        ("sqlite://", ["no database file"]),
        ("sqlite:///", ["no database file"]),
        ("sqlite:///dir/", ["no database file"]),
        ("sqlite:///:memory:", ["every process can open", "memory://"]),
        ("sqlite:///b.db?visibility=3", ["unknown parameter 'visibility'", "visibility_timeout", "poll_interval"]),
        ("sqlite:///b.db?reply_ttl=soon", ["reply_ttl='soon'", "at least 0.001"]),
        ("sqlite:///b.db?reply_ttl=0", ["reply_ttl='0'"]),
        ("sqlite:///b.db?visibility_timeout=0.5", ["visibility_timeout='0.5'", "at least 1"]),
        ("sqlite:///b.db?poll_interval=2", ["poll_interval='2'", "from 0.001 to 0.5"]),
        ("sqlite:///b.db?busy_timeout=inf", ["busy_timeout='inf'"]),
        ("sqlite:///b.db?reply_ttl=1&reply_ttl=2", ["'reply_ttl' is given twice"]),
        ("sqlite:///b.db?dialect=rabbitmq", ["dialect='rabbitmq'", "plain"]),
        ("amqp:///b.db", ["sqla+sqlite://", "sqlite:///relative.db"]),
    ],
)
def test_bad_urls_say_what_and_how_to_fix(url: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_sqlite_url(url)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_the_registry_opens_sqlite_urls_and_keeps_kombus(db: Path) -> None:
    with open_transport(_url(db)) as transport:
        assert isinstance(transport, SqliteTransport)
    from tdm_messaging.transport.registry import SCHEMES

    assert SCHEMES["sqlite"].endswith("sqlite.backend:SqliteTransport")
    assert SCHEMES["sqla+sqlite"].endswith("kombu.backend:KombuTransport")


def test_a_missing_directory_is_named_with_the_fix(tmp_path: Path) -> None:
    target = tmp_path / "no-such-dir" / "broker.db"
    with pytest.raises(BrokerUnavailableError) as info:
        SqliteTransport.from_url(_url(target))
    message = str(info.value)
    assert str(target) in message and "does not exist" in message and "create it" in message


def test_a_directory_as_the_file_is_named_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(BrokerUnavailableError) as info:
        SqliteTransport.from_url(_url(tmp_path))
    assert str(tmp_path) in str(info.value) and "cannot open" in str(info.value)


def test_a_file_that_is_not_a_database_is_a_configuration_error(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_bytes(b"these are not the pages of a SQLite database, just text " * 100)
    with pytest.raises(ConfigurationError) as info:
        SqliteTransport.from_url(_url(target))
    assert str(target) in str(info.value) and "new file" in str(info.value)


def test_works_with_no_driver_installed(db: Path) -> None:
    """A bare ``pip install``: with kombu, stomp.py and amqp unimportable, sqlite:// still works."""
    script = textwrap.dedent(
        """
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"kombu", "stomp", "amqp", "sqlalchemy"}:
                    raise ImportError(f"blocked: {name}")
                return None

        sys.meta_path.insert(0, Block())
        from tdm_messaging import Envelope, open_transport
        from tdm_messaging.destinations import reply_queue
        with open_transport(sys.argv[1]) as t:
            t.send(reply_queue("bare"), Envelope(b"no drivers", "text/plain"))
            with t.read(reply_queue("bare")) as batch:
                print(batch.envelopes[0].body.decode())
                batch.ack()
        print(sorted(m for m in sys.modules if m.split(".")[0] in {"kombu", "stomp", "amqp", "sqlalchemy"}))
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", script, _url(db)], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.splitlines() == ["no drivers", "[]"]


# -- leases -----------------------------------------------------------------------------------------

_HOLDER = """
import sys
from tdm_messaging.destinations import reply_queue
from tdm_messaging.transport import open_transport
transport = open_transport(sys.argv[1])
batch = transport.read(reply_queue(sys.argv[2]))
print("taken", len(batch.envelopes), flush=True)
sys.stdin.readline()            # hold the lease until told to go on
batch.ack()
print("acked", flush=True)
transport.close()
"""


def _start_holder(url: str, docset: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, url, docset],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line.strip() == "taken 1", (line, child.stderr.read() if child.stderr else "")
    return child


def _first_delivery(transport: SqliteTransport, queue: Destination) -> Delivery:
    """Consume ``queue`` until one message arrives (acknowledged); return it."""
    got: list[Delivery] = []
    stop = threading.Event()

    def handle(delivery: Delivery) -> None:
        got.append(delivery)
        stop.set()

    thread = threading.Thread(target=transport.consume, args=([queue], handle), kwargs={"stop": stop}, daemon=True)
    thread.start()
    thread.join(timeout=60)
    stop.set()
    assert got, "nothing was delivered within 60 s"
    return got[0]


def test_a_message_held_by_a_killed_process_comes_back_redelivered(db: Path, opened: list[SqliteTransport]) -> None:
    url = _url(db, visibility_timeout=1)
    transport = _open(opened, db, visibility_timeout=1)
    queue = _queue()
    transport.send(queue, Envelope(b"the job", "text/plain", {"tdm-type": "package-request"}))
    child = _start_holder(url, queue.docset_id or "")
    with transport.read(queue) as batch:
        assert list(batch.envelopes) == [], "a message under a live lease was handed out twice"
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL
    delivery = _first_delivery(transport, queue)
    assert delivery.envelope == Envelope(b"the job", "text/plain", {"tdm-type": "package-request"})
    assert delivery.redelivered is True
    assert _count(db, queue.name) == 0, "the redelivered message was acknowledged and is gone"


def test_a_frozen_holder_loses_its_lease_and_its_late_ack_removes_nothing(
    db: Path, opened: list[SqliteTransport]
) -> None:
    """SIGSTOP stops renewal like a kill; on SIGCONT the old holder's ack is fenced off the new delivery."""
    url = _url(db, visibility_timeout=1)
    transport = _open(opened, db, visibility_timeout=1, busy_timeout=1)
    queue = _queue()
    transport.send(queue, Envelope(b"only once", "text/plain"))
    child = _start_holder(url, queue.docset_id or "")
    held: list[Batch] = []

    def redelivered() -> bool:
        try:
            batch = transport.read(queue)
        except BrokerUnavailableError:
            # Frozen inside a lease renewal's transaction, it holds the file's write lock (SQLite blocks
            # every writer then): let it finish that transaction and freeze it again.
            os.kill(child.pid, signal.SIGCONT)
            time.sleep(0.01)
            os.kill(child.pid, signal.SIGSTOP)
            return False
        if batch.envelopes:
            held.append(batch)
            return True
        batch.release()
        return False

    try:
        os.kill(child.pid, signal.SIGSTOP)
        wait_until(redelivered, timeout=30, what="the frozen holder's lease to run out")
        assert [e.body for e in held[0].envelopes] == [b"only once"]
        os.kill(child.pid, signal.SIGCONT)
        out, err = child.communicate("go\n", timeout=30)
        assert child.returncode == 0, err
        assert out.strip() == "acked"
        assert "no longer held" in err, "the late ack should say it removed nothing"
        assert _count(db, queue.name) == 1, "the old holder's late ack removed the message it no longer held"
        held[0].ack()
        assert _count(db, queue.name) == 0
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGCONT)
            child.kill()
            child.wait(timeout=30)


def test_renewal_keeps_a_long_held_message_invisible(db: Path, opened: list[SqliteTransport]) -> None:
    holder = _open(opened, db, visibility_timeout=1)
    other = _open(opened, db, visibility_timeout=1)
    queue = _queue()
    holder.send(queue, Envelope(b"long job", "text/plain"))
    with holder.read(queue) as batch:
        assert len(batch.envelopes) == 1
        held_until = time.monotonic() + 3.5  # several visibility timeouts, several renewals
        looks = 0
        while time.monotonic() < held_until:
            with other.read(queue) as seen:
                assert list(seen.envelopes) == [], f"redelivered while its holder lived (look {looks})"
            looks += 1
            time.sleep(0.1)
        batch.ack()
    assert looks > 10
    assert _count(db, queue.name) == 0


def test_release_gives_back_at_once_in_place_and_marks_redelivered(db: Path, opened: list[SqliteTransport]) -> None:
    transport = _open(opened, db)
    queue = _queue()
    for i in range(3):
        transport.send(queue, Envelope(f"m{i}".encode(), "text/plain"))
    with transport.read(queue, limit=1) as first:
        assert [e.body for e in first.envelopes] == [b"m0"]
    deliveries: list[Delivery] = []
    stop = threading.Event()

    def handle(delivery: Delivery) -> None:
        deliveries.append(delivery)
        if len(deliveries) == 3:
            stop.set()

    transport.consume([queue], handle, prefetch=2, stop=stop)
    assert [(d.envelope.body, d.redelivered) for d in deliveries] == [(b"m0", True), (b"m1", False), (b"m2", False)]


def test_close_gives_back_what_it_held(db: Path, opened: list[SqliteTransport]) -> None:
    first = _open(opened, db)
    second = _open(opened, db)
    queue = _queue()
    first.send(queue, Envelope(b"held", "text/plain"))
    batch = first.read(queue)
    assert len(batch.envelopes) == 1
    first.close()
    with pytest.raises(TransportClosedError):
        batch.ack()
    batch.release()  # nothing left to give back: no error
    with second.read(queue) as again:
        assert [e.body for e in again.envelopes] == [b"held"]


def test_every_call_after_close_raises_transport_closed(db: Path) -> None:
    transport = SqliteTransport.from_url(_url(db))
    queue = _queue()
    transport.close()
    transport.close()  # idempotent
    for call in (
        lambda: transport.send(queue, Envelope(b"x")),
        lambda: transport.read(queue),
        lambda: transport.declare(queue),
        lambda: transport.delete(queue),
        lambda: transport.consume([queue], lambda d: None, stop=threading.Event()),
    ):
        with pytest.raises(TransportClosedError, match="closed; open a new one"):
            call()


def test_close_from_another_thread_ends_a_consumer(db: Path) -> None:
    transport = SqliteTransport.from_url(_url(db))
    failure: list[BaseException] = []

    def run() -> None:
        try:
            transport.consume([_queue()], lambda d: None, stop=threading.Event())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    transport.close()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert len(failure) == 1 and isinstance(failure[0], TransportClosedError)


# -- competing processes ----------------------------------------------------------------------------

_COMPETITOR = """
import json, sys, threading, time
from tdm_messaging.destinations import PACKAGE_REQUESTS
from tdm_messaging.transport import open_transport
from tdm_messaging.transport.sqlite import store
from tdm_messaging.transport.sqlite.settings import parse_sqlite_url

url, mode = sys.argv[1], sys.argv[2]
now_ms = lambda: int(time.time() * 1000)
inspect = store.connect(parse_sqlite_url(url).resolved_path(), busy_timeout=10)
got = []
with open_transport(url) as transport:
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    if mode == "read":
        first = True
        while True:
            with transport.read(PACKAGE_REQUESTS, limit=3) as batch:
                got.extend(e.body.decode() for e in batch.envelopes)
                deadline = time.monotonic() + 60
                left = store.message_count(inspect, PACKAGE_REQUESTS.name)
                # Hold the first batch until another process holds messages too, or has taken and
                # acknowledged some while this one held its batch (a consumer holds its two only
                # for a moment, which a 10 ms look can miss): the processes then surely compete for
                # the queue at the same moment.
                while (
                    first
                    and batch.envelopes
                    and len(store.live_holders(inspect, now_ms=now_ms())) < 2
                    and store.message_count(inspect, PACKAGE_REQUESTS.name) >= left
                ):
                    if time.monotonic() > deadline:
                        raise SystemExit("no other process ever held a message")
                    time.sleep(0.01)
                first = False
                batch.ack()
            if not batch.envelopes:
                break
    else:
        stop = threading.Event()

        def handle(delivery):
            got.append(delivery.envelope.body.decode())
            # A job's worth of work (1 ms): a consumer that handled nothing would drain the queue
            # before a loaded machine even schedules the other processes (a CI run saw 0/0/0/300).
            time.sleep(0.001)

        def watch():
            # Other processes take messages too: stop once the queue holds nothing at all.
            while store.message_count(inspect, PACKAGE_REQUESTS.name):
                stop.wait(0.05)
            stop.set()

        threading.Thread(target=watch, daemon=True).start()
        transport.consume([PACKAGE_REQUESTS], handle, prefetch=2, stop=stop)
print(json.dumps(got))
"""


def test_competing_processes_never_take_the_same_message(db: Path, opened: list[SqliteTransport]) -> None:
    total = 300
    sender = _open(opened, db)
    sent = [f"request-{i}" for i in range(total)]
    for body in sent:
        sender.send(PACKAGE_REQUESTS, Envelope(body.encode(), "text/plain"))
    modes = ["read", "read", "consume", "consume"]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _COMPETITOR, _url(db), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for mode in modes
    ]
    results: list[list[str]] = []
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    for child in children:
        out, err = child.communicate(timeout=90)
        assert child.returncode == 0, err
        results.append(json.loads(out))
    taken = [body for got in results for body in got]
    assert sorted(taken) == sorted(sent), f"{len(taken)} taken of {total}; duplicates or losses"
    assert len(set(taken)) == total
    assert sum(1 for got in results if got) >= 2, f"only one process got work: {[len(g) for g in results]}"
    for got in results:
        assert got == sorted(got, key=sent.index), "a process saw its share out of order"
    assert _count(db, PACKAGE_REQUESTS.name) == 0


# -- reply-queue expiry -----------------------------------------------------------------------------


def test_an_unused_reply_queue_is_removed_with_its_messages(db: Path, opened: list[SqliteTransport]) -> None:
    transport = _open(opened, db, reply_ttl=1)
    assert transport.capabilities.queue_expiry
    queue = _queue()
    transport.send(queue, Envelope(b"Accepted. 45 seconds", "text/plain"))
    transport.declare(PACKAGE_REQUESTS)
    assert _exists(db, queue.name) and _count(db, queue.name) == 1
    # Nobody touches the queue: the transport's own sweeper removes it (a read would too, see below).
    wait_until(lambda: not _exists(db, queue.name), timeout=30, what="the sweeper to remove the idle reply queue")
    assert _count(db, queue.name) == 0
    assert _exists(db, PACKAGE_REQUESTS.name), "permanent queues never expire"


def _send(conn: sqlite3.Connection, spec: store.QueueSpec, body: bytes, now_ms: int) -> None:
    store.send(conn, spec, body=body, content_type="text/plain", headers={}, now_ms=now_ms)


def _take(conn: sqlite3.Connection, name: str, now_ms: int, *, holder: str = "h1") -> list[store.Taken]:
    return store.take(conn, name, holder=holder, limit=10, now_ms=now_ms, lease_ms=1000)


def test_store_expiry_is_decided_on_touch_by_the_clock_given(db: Path) -> None:
    """With the clock passed in, no waiting: a queue unused for its lifetime is gone on the next touch."""
    spec = store.QueueSpec("package/clock", "reply", 1000)
    with closing(store.connect(db, busy_timeout=5)) as conn:
        _send(conn, spec, b"old", 10_000)
        assert store.stale_queues(conn, now_ms=10_999) == []
        assert store.stale_queues(conn, now_ms=11_000) == [spec.name]
        _send(conn, spec, b"new", 11_000)  # the touch removes the stale queue first
        assert [t.body for t in _take(conn, spec.name, 11_001)] == [b"new"]
        permanent = store.QueueSpec("docsets/package", "permanent", None)
        _send(conn, permanent, b"request", 0)
        assert store.sweep(conn, now_ms=10**12) == [spec.name]
        assert not store.queue_exists(conn, spec.name)
        assert [t.body for t in _take(conn, permanent.name, 10**12)] == [b"request"], "permanent queues never expire"


def test_store_a_live_lease_keeps_a_queue_and_fences_the_old_holder(db: Path) -> None:
    spec = store.QueueSpec("package/lease", "reply", 1000)
    with closing(store.connect(db, busy_timeout=5)) as conn:
        _send(conn, spec, b"job", 0)
        [first] = _take(conn, spec.name, 500, holder="h1")  # leased until 1500, queue used at 500
        assert (first.deliveries, first.previous_holder) == (1, None)
        assert store.renew(conn, holder="h1", taken=[(first.id, 1)], until_ms=2_500) == 1
        assert not store.has_visible(conn, spec.name, now_ms=2_499)
        assert store.stale_queues(conn, now_ms=2_499) == [], "idle past its lifetime, but under a live lease"
        assert store.has_visible(conn, spec.name, now_ms=2_500), "the lease ran out: visible again"
        store.touch(conn, [spec.name], now_ms=2_400)  # a consumer is attached: the queue stays in use
        [second] = _take(conn, spec.name, 2_500, holder="h2")
        assert (second.deliveries, second.previous_holder) == (2, "h1")
        assert store.renew(conn, holder="h1", taken=[(first.id, 1)], until_ms=9_999) == 0
        assert store.release(conn, holder="h1", taken=[(first.id, 1)]) == 0
        assert store.ack(conn, holder="h1", taken=[(first.id, 1)]) == 0, "the old holder's ack is fenced off"
        assert store.message_count(conn, spec.name) == 1
        assert store.ack(conn, holder="h2", taken=[(second.id, 2)]) == 1
        assert store.message_count(conn, spec.name) == 0


def test_a_reply_queue_with_a_live_lease_is_not_removed(db: Path, opened: list[SqliteTransport]) -> None:
    holder = _open(opened, db, reply_ttl=0.2, visibility_timeout=1)
    queue = _queue()
    holder.send(queue, Envelope(b"being read", "text/plain"))
    with holder.read(queue) as batch:
        until = time.monotonic() + 2.5  # ten lifetimes; the sweeper runs every second
        while time.monotonic() < until:
            assert _exists(db, queue.name), "a reply queue was removed under a live lease"
            time.sleep(0.1)
        batch.ack()
    assert _count(db, queue.name) == 0


def test_a_consumed_reply_queue_counts_as_used(db: Path, opened: list[SqliteTransport]) -> None:
    consumer = _open(opened, db, reply_ttl=1)
    queue = _queue()
    consumer.declare(queue)
    stop = threading.Event()
    thread = threading.Thread(target=consumer.consume, args=([queue], lambda d: None), kwargs={"stop": stop})
    thread.start()
    try:
        until = time.monotonic() + 3
        while time.monotonic() < until:
            assert _exists(db, queue.name), "a reply queue with a consumer was removed"
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=30)


# -- the law: FIFO, each message exactly once after ack, whatever is released in between -----------

_envelopes = st.lists(
    st.builds(
        Envelope,
        body=st.binary(max_size=64),
        content_type=st.sampled_from(["application/json", "text/plain", "application/octet-stream"]),
        headers=st.dictionaries(
            st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=8),
            st.text(max_size=12),
            max_size=3,
        ),
    ),
    max_size=25,
)
_reads = st.lists(st.tuples(st.integers(min_value=1, max_value=7), st.booleans()), max_size=30)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sent=_envelopes, reads=_reads)
def test_reads_return_each_message_once_in_order(sent: list[Envelope], reads: list[tuple[int, bool]]) -> None:
    with tempfile.TemporaryDirectory() as tmp, SqliteTransport.from_url(_url(Path(tmp) / "b.db")) as transport:
        queue = reply_queue("law")
        for envelope in sent:
            transport.send(queue, envelope)
        acked: list[Envelope] = []
        for limit, ack in [*reads, (1000, True)]:
            with transport.read(queue, limit=limit) as batch:
                assert len(batch.envelopes) == min(limit, len(sent) - len(acked))
                assert list(batch.envelopes) == sent[len(acked) : len(acked) + len(batch.envelopes)]
                if ack:
                    acked.extend(batch.envelopes)
                    batch.ack()
        assert acked == sent
        with transport.read(queue) as empty:
            assert list(empty.envelopes) == []


def _vm_steps(conn: sqlite3.Connection, action: Callable[[], object]) -> int:
    """How many SQLite virtual-machine steps ``action`` took, in hundreds (a count of work, not a time)."""
    steps = 0

    def tick() -> int:
        nonlocal steps
        steps += 1
        return 0

    conn.set_progress_handler(tick, 100)
    try:
        action()
    finally:
        conn.set_progress_handler(None, 100)
    return steps


def test_store_a_send_costs_the_same_however_long_the_queue(db: Path) -> None:
    """The stale-queue check ran over every message of the queue on every send; now it looks at the queue row only."""
    short, long_ = store.QueueSpec("bench/short", "permanent", None), store.QueueSpec("bench/long", "permanent", None)
    reply = store.QueueSpec("package/long", "reply", 60_000)
    with closing(store.connect(db, busy_timeout=5)) as conn:
        store.set_synchronous(conn, full=False)  # no fsync per commit: the filling is not what is counted
        for index in range(5):
            _send(conn, short, b"m", index)
        for index in range(5000):
            _send(conn, long_, b"m", index)
            _send(conn, reply, b"m", index)
        to_short = _vm_steps(conn, lambda: _send(conn, short, b"m", 10_000))
        to_long = _vm_steps(conn, lambda: _send(conn, long_, b"m", 10_000))
        to_reply = _vm_steps(conn, lambda: _send(conn, reply, b"m", 10_000))
        take_long = _vm_steps(conn, lambda: _take(conn, reply.name, 10_001))
    assert to_long <= 2 * to_short + 5, f"a send to a queue of 5,000 messages took {to_long} vs {to_short} steps"
    assert to_reply <= 2 * to_short + 5, f"a send to a reply queue of 5,000 took {to_reply} vs {to_short} steps"
    assert take_long <= 2 * to_short + 20, f"a take of 10 from a queue of 5,000 took {take_long} vs {to_short} steps"


def test_store_the_latest_declarer_sets_the_lifetime_both_ways(db: Path) -> None:
    """A reply queue used as a permanent one stops expiring, and the other way round (sends skip no such change)."""
    as_reply = store.QueueSpec("package/both", "reply", 1000)
    as_permanent = store.QueueSpec("package/both", "permanent", None)
    with closing(store.connect(db, busy_timeout=5)) as conn:
        _send(conn, as_reply, b"1", 0)
        _send(conn, as_permanent, b"2", 500)
        assert store.stale_queues(conn, now_ms=10**9) == [], "used as permanent: it never expires"
        _send(conn, as_permanent, b"3", 600)
        _send(conn, as_reply, b"4", 700)
        assert store.stale_queues(conn, now_ms=1_699) == []
        assert store.stale_queues(conn, now_ms=1_700) == [as_reply.name], "a reply queue again, used last at 700"
        assert store.message_count(conn, as_reply.name) == 4


# -- a send to a permanent queue is one autocommitted INSERT; it must do what the full transaction does ---

_send_ops = st.lists(
    st.tuples(st.sampled_from(["q/a", "q/b"]), st.booleans(), st.integers(min_value=0, max_value=1500)),
    min_size=1,
    max_size=25,
)


def _file_state(conn: sqlite3.Connection) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    queues = conn.execute("SELECT name, kind, expires_ms, last_used_ms FROM tdm_queue ORDER BY name").fetchall()
    messages = conn.execute("SELECT id, queue, body, content_type, headers FROM tdm_message ORDER BY id").fetchall()
    return queues, messages


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_send_ops)
def test_store_append_then_send_leaves_the_file_as_send_alone(ops: list[tuple[str, bool, int]]) -> None:
    """The law of the send's fast path: append, falling back to send, gives the same ids and file as send alone.

    Names are used as reply queues (lifetime 1 s) and as permanent queues in any order, the clock
    moving by up to 1.5 s between sends, so stale reply queues are met and removed on the way.
    """
    with (
        tempfile.TemporaryDirectory() as tmp,
        closing(store.connect(Path(tmp) / "fast.db", busy_timeout=5)) as fast,
        closing(store.connect(Path(tmp) / "full.db", busy_timeout=5)) as full,
    ):
        now = 0
        for index, (name, as_reply, step) in enumerate(ops):
            now += step
            spec = store.QueueSpec(name, "reply" if as_reply else "permanent", 1000 if as_reply else None)
            body, headers = f"m{index}".encode(), {"tdm-sequence": str(index)}
            fast_id = None
            if not as_reply:
                fast_id = store.append(fast, name, body=body, content_type="text/plain", headers=headers)
            if fast_id is None:
                fast_id = store.send(fast, spec, body=body, content_type="text/plain", headers=headers, now_ms=now)
            full_id = store.send(full, spec, body=body, content_type="text/plain", headers=headers, now_ms=now)
            assert fast_id == full_id
            assert not fast.in_transaction, "a send left its transaction open"
        assert _file_state(fast) == _file_state(full)


def test_store_append_inserts_only_into_a_stored_permanent_queue(db: Path) -> None:
    with closing(store.connect(db, busy_timeout=5)) as conn:
        assert store.append(conn, "q/missing", body=b"x", content_type="text/plain", headers={}) is None
        assert not store.queue_exists(conn, "q/missing")
        _send(conn, store.QueueSpec("q/reply", "reply", 1000), b"r", 0)
        assert store.append(conn, "q/reply", body=b"x", content_type="text/plain", headers={}) is None
        assert store.message_count(conn, "q/reply") == 1
        _send(conn, store.QueueSpec("q/work", "permanent", None), b"1", 0)
        second = store.append(conn, "q/work", body=b"2", content_type="text/plain", headers={"a": "b"})
        assert second is not None
        assert [t.body for t in _take(conn, "q/work", 0)] == [b"1", b"2"]


@pytest.mark.parametrize("queue", [PACKAGE_REQUESTS, reply_queue("committed")], ids=["permanent", "reply"])
def test_a_send_is_committed_when_it_returns(db: Path, opened: list[SqliteTransport], queue: Destination) -> None:
    """Seen from another connection at once, with the synchronous level the send asked for."""
    transport = _open(opened, db)
    for index, persistent in enumerate([True, False, False, True]):
        transport.send(queue, Envelope(f"m{index}".encode(), "text/plain"), persistent=persistent)
        assert _count(db, queue.name) == index + 1, "the send's transaction was left open"
        level = transport._link.conn.execute("PRAGMA synchronous").fetchone()[0]
        assert level == (2 if persistent else 1), f"persistent={persistent} committed with synchronous={level}"


# -- the send's hot path: headers encoded by a prebuilt encoder, a kept cursor, a waker with no sleepers ---

_header_maps = st.dictionaries(st.text(max_size=10), st.text(max_size=16), max_size=6)


@settings(max_examples=200, deadline=None)
@given(headers=_header_maps)
def test_store_headers_are_stored_as_json_dumps_writes_them(headers: dict[str, str]) -> None:
    """The prebuilt encoder, and its fallback without the C accelerator, write json.dumps's text, any text."""
    expected = json.dumps(headers, separators=(",", ":"))
    assert store.headers_json(headers) == expected
    assert store.headers_json(MappingProxyType(headers)) == expected
    assert store._HEADERS_ENCODER.encode(headers) == expected  # what headers_json does without the accelerator
    assert json.loads(expected) == headers


def test_store_headers_fall_back_without_the_c_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "_C_HEADERS_ENCODER", None)
    assert store.headers_json(MappingProxyType({"a": "é\n", "b": ""})) == '{"a":"\\u00e9\\n","b":""}'


def test_store_a_prebuilt_encoder_that_writes_other_text_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Python whose private C encoder constructor differs falls back to JSONEncoder, not to other text."""
    assert store._prebuilt_encoder() is not None, "CPython's json accelerator is expected here"
    monkeypatch.setattr(store, "c_make_encoder", lambda *args: lambda obj, level: ["{}"])
    assert store._prebuilt_encoder() is None

    def refuses(*args: object) -> object:
        raise TypeError("takes 10 arguments")

    monkeypatch.setattr(store, "c_make_encoder", refuses)
    assert store._prebuilt_encoder() is None


@pytest.mark.parametrize("queue", [PACKAGE_REQUESTS, reply_queue("bodies")], ids=["permanent", "reply"])
def test_a_body_that_is_not_bytes_like_is_refused_and_stores_nothing(
    db: Path, opened: list[SqliteTransport], queue: Destination
) -> None:
    transport = _open(opened, db)
    transport.send(queue, Envelope(bytearray(b"ba")))  # bytes-like bodies are stored as BLOBs, as bytes are
    with pytest.raises(TypeError):
        transport.send(queue, Envelope("text", "text/plain"))  # type: ignore[arg-type]
    transport.send(queue, Envelope(memoryview(b"mv")))
    with transport.read(queue) as batch:
        assert [e.body for e in batch.envelopes] == [b"ba", b"mv"]
        assert all(type(e.body) is bytes for e in batch.envelopes)
        batch.ack()


def test_sends_from_several_threads_share_the_kept_cursor_safely(db: Path, opened: list[SqliteTransport]) -> None:
    """Each send's id and row are its own: the cursor kept for sends is used under the link's lock."""
    transport = _open(opened, db)
    transport.declare(PACKAGE_REQUESTS)

    def sender(worker: int) -> None:
        for index in range(50):
            transport.send(PACKAGE_REQUESTS, Envelope(f"{worker}:{index}".encode()), persistent=False)

    threads = [threading.Thread(target=sender, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    with transport.read(PACKAGE_REQUESTS) as batch:
        bodies = [e.body.decode() for e in batch.envelopes]
        batch.ack()
    assert sorted(bodies) == sorted(f"{w}:{i}" for w in range(4) for i in range(50))
    for worker in range(4):
        assert [b for b in bodies if b.startswith(f"{worker}:")] == [f"{worker}:{i}" for i in range(50)]


def test_the_waker_wakes_a_sleeper_at_once_and_skips_no_send() -> None:
    waker = Waker()
    seen = waker.generation
    waker.notify()  # nobody asleep: only counted
    assert waker.generation == seen + 1
    started = time.monotonic()
    waker.wait(seen, timeout=30)  # a send came since `seen`: no sleep at all
    assert time.monotonic() - started < 5
    seen = waker.generation
    woke = threading.Event()

    def sleeper() -> None:
        waker.wait(seen, timeout=30)
        woke.set()

    thread = threading.Thread(target=sleeper, daemon=True)
    thread.start()
    wait_until(lambda: waker._sleepers == 1, timeout=10)
    waker.notify()
    assert woke.wait(5), "a notify did not wake the sleeping consumer"
    thread.join(timeout=5)
    assert waker._sleepers == 0
