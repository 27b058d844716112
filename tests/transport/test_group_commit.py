"""Group commit (no broker): concurrent confirmed sends share one backend call; each caller gets its own result."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tdm_messaging.destinations import Destination, DestinationKind, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import BrokerRefusedError, BrokerUnavailableError, SendNotConfirmedError, TransportError
from tdm_messaging.transport.base import Batch, Capabilities, Handler, Transport
from tdm_messaging.transport.group_commit import GroupCommit, split_error

Sends = Sequence[tuple[Destination, Envelope]]
_JOIN = 10.0  # seconds: a thread still running after this hangs (the test fails, it does not hang itself)


def _sends(tag: str, count: int) -> list[tuple[Destination, Envelope]]:
    return [(reply_queue(f"d{tag}"), Envelope(f"{tag}:{i}".encode(), "text/plain")) for i in range(count)]


def _label(sends: Sends) -> list[str]:
    return [envelope.body.decode() for _, envelope in sends]


class _Backend:
    """A fake backend's confirmed sends: records each call; ``gate`` holds the first call until released."""

    def __init__(self, fail: Callable[[Sends], TransportError | BaseException | None] = lambda sends: None) -> None:
        self.calls: list[tuple[str, list[str], bool]] = []
        self.fail = fail
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.group = GroupCommit(self.send_many, self.send_one)

    def send_many(self, sends: Sends, persistent: bool) -> None:
        self.calls.append(("many", _label(sends), persistent))
        self.entered.set()
        assert self.gate.wait(_JOIN)
        error = self.fail(sends)
        if error is not None:
            raise error

    def send_one(self, destination: Destination, envelope: Envelope, persistent: bool) -> None:
        self.send_many([(destination, envelope)], persistent)
        _, labels, flag = self.calls[-1]
        self.calls[-1] = ("one", labels, flag)

    def queued(self) -> int:
        with self.group._lock:
            return len(self.group._queue)


class _Caller(threading.Thread):
    """A thread sending one batch through the group; keeps what it raised."""

    def __init__(self, backend: _Backend, sends: Sends, *, persistent: bool = True, single: bool = False) -> None:
        super().__init__(daemon=True)
        self.backend, self.sends, self.persistent, self.single = backend, sends, persistent, single
        self.error: BaseException | None = None
        self.returned = False

    def run(self) -> None:
        try:
            self.backend.group.send(self.sends, persistent=self.persistent, single=self.single)
            self.returned = True
        except BaseException as exc:
            self.error = exc


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + _JOIN
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


@contextmanager
def _held(backend: _Backend) -> Iterator[_Caller]:
    """A first caller whose group is in flight (held at the backend) while the block queues others."""
    backend.gate.clear()
    first = _Caller(backend, _sends("first", 1))
    first.start()
    assert backend.entered.wait(_JOIN)
    try:
        yield first
    finally:
        backend.gate.set()


def _queue(backend: _Backend, *callers: _Caller) -> None:
    """Start ``callers`` one after the other, each queued before the next starts (a known arrival order)."""
    for caller in callers:
        before = backend.queued()
        caller.start()
        _wait_for(lambda before=before: backend.queued() == before + 1)  # type: ignore[misc]


def _join(*callers: _Caller) -> None:
    for caller in callers:
        caller.join(_JOIN)
        assert not caller.is_alive(), "a caller was left waiting"


def test_a_lone_caller_is_the_backend_call_itself() -> None:
    seen: list[Sends] = []
    refusal = BrokerRefusedError("no")
    group = GroupCommit(lambda sends, persistent: seen.append(sends), lambda d, e, p: None)
    sends = _sends("a", 2)
    group.send(sends, persistent=True)
    assert seen == [sends] and seen[0] is sends  # handed down as it is: no copy, no merge

    def refuse(sends: Sends, persistent: bool) -> None:
        raise refusal

    group = GroupCommit(refuse, lambda d, e, p: None)
    with pytest.raises(BrokerRefusedError) as raised:
        group.send(sends, persistent=True)
    assert raised.value is refusal  # its own error, untouched
    assert group._queue == [] and group._leader is None


def test_a_lone_single_send_goes_through_the_backends_send() -> None:
    backend = _Backend()
    backend.group.send(_sends("a", 1), persistent=False, single=True)
    assert backend.calls == [("one", ["a:0"], False)]


def test_batches_queued_meanwhile_go_in_one_call_in_arrival_order() -> None:
    backend = _Backend()
    callers = [_Caller(backend, _sends(tag, count)) for tag, count in (("a", 2), ("b", 1), ("c", 3))]
    with _held(backend) as first:
        _queue(backend, *callers)
    _join(first, *callers)
    assert backend.calls == [
        ("many", ["first:0"], True),
        ("many", ["a:0", "a:1", "b:0", "c:0", "c:1", "c:2"], True),
    ]
    assert all(c.returned and c.error is None for c in (first, *callers))
    assert (backend.group.groups, backend.group.callers) == (2, 4)


def test_a_single_send_in_a_group_goes_in_the_merged_call() -> None:
    backend = _Backend()
    callers = [_Caller(backend, _sends("a", 1), single=True), _Caller(backend, _sends("b", 2))]
    with _held(backend) as first:
        _queue(backend, *callers)
    _join(first, *callers)
    assert backend.calls[1] == ("many", ["a:0", "b:0", "b:1"], True)


def test_only_batches_of_the_same_persistent_flag_share_a_group() -> None:
    backend = _Backend()
    callers = [
        _Caller(backend, _sends("a", 1), persistent=True),
        _Caller(backend, _sends("b", 1), persistent=False),
        _Caller(backend, _sends("c", 1), persistent=True),
    ]
    with _held(backend) as first:
        _queue(backend, *callers)
    _join(first, *callers)
    assert backend.calls[1:] == [("many", ["a:0", "c:0"], True), ("many", ["b:0"], False)]
    assert all(c.returned for c in callers)


def _failing(bodies: set[str], *, refused: set[str] | None = None) -> Callable[[Sends], TransportError | None]:
    """A backend failure naming the sends whose body is in ``bodies`` (those in ``refused`` surely not stored)."""

    def fail(sends: Sends) -> TransportError | None:
        labels = _label(sends)
        unconfirmed = [i for i, label in enumerate(labels) if label in bodies]
        if not unconfirmed:
            return None
        return SendNotConfirmedError(
            f"not stored: {', '.join(labels[i] for i in unconfirmed)}",
            unconfirmed=unconfirmed,
            refused=[i for i in unconfirmed if labels[i] in (refused or set())],
        )

    return fail


def test_each_caller_gets_only_its_own_failures_in_its_own_indices() -> None:
    backend = _Backend(_failing({"a:1", "c:0", "c:2"}, refused={"c:2"}))
    a, b, c = (_Caller(backend, _sends(tag, count)) for tag, count in (("a", 2), ("b", 2), ("c", 3)))
    with _held(backend) as first:
        _queue(backend, a, b, c)
    _join(first, a, b, c)
    assert len(backend.calls) == 2
    assert b.returned and b.error is None  # none of its sends failed: it returns
    assert isinstance(a.error, SendNotConfirmedError) and isinstance(c.error, SendNotConfirmedError)
    assert (a.error.unconfirmed, a.error.refused) == ((1,), ())
    assert (c.error.unconfirmed, c.error.refused) == ((0, 2), (2,))
    assert str(a.error) == str(c.error) == "not stored: a:1, c:0, c:2"  # the group's message
    assert a.error is not c.error


def test_an_error_that_does_not_say_which_reaches_every_caller_as_its_own() -> None:
    cause = OSError("reset")

    def lost(sends: Sends) -> TransportError | None:
        if len(sends) == 1:
            return None
        error = BrokerUnavailableError("connection lost")
        error.__cause__ = cause
        return error

    backend = _Backend(lost)
    a, b = _Caller(backend, _sends("a", 1)), _Caller(backend, _sends("b", 2))
    with _held(backend) as first:
        _queue(backend, a, b)
    _join(first, a, b)
    for caller in (a, b):
        assert type(caller.error) is BrokerUnavailableError and str(caller.error) == "connection lost"
        assert caller.error.unconfirmed is None and caller.error.__cause__ is cause
    assert a.error is not b.error and first.error is None


def test_a_bug_in_the_backend_reaches_every_caller_and_leaves_none_waiting() -> None:
    bug = RuntimeError("bug")
    backend = _Backend(lambda sends: bug if len(sends) > 1 else None)
    callers = [_Caller(backend, _sends(tag, 1)) for tag in "abcd"]
    with _held(backend) as first:
        _queue(backend, *callers)
    _join(first, *callers)
    assert all(c.error is bug for c in callers)
    # And the group commit still works afterwards.
    backend.fail = lambda sends: None
    backend.group.send(_sends("after", 1), persistent=True)
    assert backend.calls[-1] == ("many", ["after:0"], True)


def test_a_send_from_inside_the_leaders_backend_call_does_not_wait_for_itself() -> None:
    calls: list[list[str]] = []
    group: GroupCommit

    def send_many(sends: Sends, persistent: bool) -> None:
        calls.append(_label(sends))
        if len(calls) == 1:
            group.send(_sends("inner", 1), persistent=True)

    group = GroupCommit(send_many, lambda d, e, p: None)
    done = threading.Event()

    def outer() -> None:
        group.send(_sends("outer", 1), persistent=True)
        done.set()

    thread = threading.Thread(target=outer)
    thread.start()
    thread.join(_JOIN)
    assert done.is_set() and calls == [["outer:0"], ["inner:0"]]


def test_split_error_maps_indices_into_each_batch() -> None:
    error = SendNotConfirmedError("x", unconfirmed=[1, 2, 5], refused=[2])
    a, b, c = split_error(error, [2, 2, 3])
    assert a is not None and (a.unconfirmed, a.refused) == ((1,), ())
    assert b is not None and (b.unconfirmed, b.refused) == ((0,), (0,))
    assert c is not None and (c.unconfirmed, c.refused) == ((1,), ())
    assert (error.unconfirmed, error.refused) == ((1, 2, 5), (2,))  # the original is left as it was
    assert split_error(SendNotConfirmedError("x", unconfirmed=[0]), [1, 4])[1] is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=6),
    data=st.data(),
)
def test_each_caller_sees_exactly_its_own_failures_whatever_the_grouping(
    batches: list[int], data: st.DataObject
) -> None:
    """Any partition of the callers into groups (by when they arrive and how long a group is in
    flight), any sends failed: each caller hears of exactly its own, in its own indices."""
    labels = {f"{n}:{i}" for n, count in enumerate(batches) for i in range(count)}
    failed = data.draw(st.sets(st.sampled_from(sorted(labels))), label="failed")
    refused = data.draw(st.sets(st.sampled_from(sorted(failed))) if failed else st.just(set()), label="refused")
    starts = data.draw(st.lists(st.sampled_from([0.0, 0.001]), min_size=len(batches), max_size=len(batches)))
    flights = data.draw(st.lists(st.sampled_from([0.0005, 0.002, 0.004]), min_size=1, max_size=4))
    fail = _failing(failed, refused=refused)

    def in_flight(sends: Sends) -> TransportError | None:
        time.sleep(flights[len(backend.calls) % len(flights)])  # the confirm wait others queue behind
        return fail(sends)

    backend = _Backend(in_flight)
    callers = [_Caller(backend, _sends(str(n), count)) for n, count in enumerate(batches)]
    for caller, start in zip(callers, starts, strict=True):
        caller.start()
        time.sleep(start)
    _join(*callers)
    sent = [label for _, labels_sent, _ in backend.calls for label in labels_sent]
    assert sorted(sent) == sorted(labels)  # every send went down exactly once
    for n, caller in enumerate(callers):
        own = [f"{n}:{i}" for i in range(batches[n])]
        call = next(c for _, c, _ in backend.calls if own[0] in c)
        assert call[call.index(own[0]) : call.index(own[0]) + len(own)] == own  # its order kept, together
        expected = tuple(i for i, label in enumerate(own) if label in failed)
        if not expected:
            assert caller.returned and caller.error is None
        else:
            assert isinstance(caller.error, SendNotConfirmedError)
            assert caller.error.unconfirmed == expected
            assert caller.error.refused == tuple(i for i, label in enumerate(own) if label in refused)


# ---------------------------------------------------------------------- through Transport


class _FakeTransport(Transport):
    """Just sends: records the backend calls; groups confirmed sends when ``grouping``."""

    def __init__(self, *, grouping: bool) -> None:
        self.calls: list[tuple[str, list[str], bool]] = []
        self._groups = Transport._confirmed_group(self) if grouping else None

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(False, False, False, False, False, False, True)

    def close(self) -> None:
        pass

    def _group_commit(self) -> GroupCommit | None:
        return self._groups

    def _send(self, destination: Destination, envelope: Envelope, *, persistent: bool, confirm: bool) -> None:
        self.calls.append(("send", [envelope.body.decode()], confirm))

    def _send_many(self, sends: Sends, *, persistent: bool, confirm: bool) -> None:
        self.calls.append(("send_many", _label(sends), confirm))

    def _read(self, destination: Destination, *, limit: int) -> Batch:
        raise NotImplementedError

    def _consume(
        self, destinations: Sequence[Destination], handler: Handler, *, prefetch: int, stop: threading.Event
    ) -> None:
        raise NotImplementedError

    def _declare(self, destination: Destination) -> None:
        pass

    def _delete(self, destination: Destination) -> None:
        pass


@pytest.mark.parametrize("grouping", [False, True])
def test_transport_calls_are_the_backends_own_for_a_lone_caller(grouping: bool) -> None:
    transport = _FakeTransport(grouping=grouping)
    queue = Destination("q", DestinationKind.PERMANENT)
    transport.send(queue, Envelope(b"1", "text/plain"), confirm=True)
    transport.send(queue, Envelope(b"2", "text/plain"))
    transport.send_many([(queue, Envelope(b"3", "text/plain"))], confirm=True)
    transport.send_many([(queue, Envelope(b"4", "text/plain"))])
    transport.send_many([], confirm=True)
    assert transport.calls == [
        ("send", ["1"], True),
        ("send", ["2"], False),
        ("send_many", ["3"], True),
        ("send_many", ["4"], False),
        ("send_many", [], True),
    ]
    if grouping:
        assert transport._groups is not None and transport._groups.groups == 2  # the confirmed ones only
