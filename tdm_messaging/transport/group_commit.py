"""Group commit: concurrent confirmed sends on one transport share one send and one confirm wait.

A backend whose confirmed send holds its connection while it waits for the broker (kombu's AMQP:
one lock across publish and confirm wait) makes every other thread queue behind that wait, so
four threads sending at once go no faster than one. :class:`GroupCommit` lets them share it, the
classic way databases share an fsync: a caller queues its batch; whoever finds no group in
flight leads, takes every batch queued (in arrival order, each caller's own order kept), hands
them to the backend's ``_send_many`` at once, and gives each caller its own result. Callers that
arrive while a group is in flight wait for it to end and form the next group together.

What it costs a caller alone: nothing noticeable. With no group in flight it leads a group of
one at once: no timer, no sleep, no waiting for company; its send is the backend's own call
(``_send`` for :meth:`Transport.send`, ``_send_many`` for ``send_many``) and its errors are the
backend's own, untouched.

Errors are split per caller: a :class:`~tdm_messaging.errors.TransportError` that says which
sends it is about (``unconfirmed``, ``refused``, indices into the group) goes to each caller
whose sends are among them, as its own copy (same type and message) with the indices mapped
into that caller's own batch; a caller none of whose sends is unconfirmed returns normally. One
that does not say (``unconfirmed`` is ``None``: any send may be stored) goes to every caller of
the group. Any other exception (a bug) reaches every caller of the group too: none is left waiting.

Only batches with the same ``persistent`` flag share a group; another flag waits for the next.

Which backends use it (``Transport._group_commit``): kombu's AMQP only. Not STOMP (it holds no
lock across the receipt wait, so concurrent waits overlap already; grouping measured slower, and
its errors name no indices), nor Redis, SQLite and memory (synchronous writes: no wait to share;
their batch stops at its first failure, which would fail the callers merged after it).
See docs/performance.md, "Group commit".
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tdm_messaging.destinations import Destination
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import TransportError

__all__ = ["GroupCommit", "split_error"]

Sends = Sequence[tuple[Destination, Envelope]]
SendMany = Callable[[Sends, bool], None]
"""The backend's confirmed ``_send_many(sends, persistent)``."""
SendOne = Callable[[Destination, Envelope, bool], None]
"""The backend's confirmed ``_send(destination, envelope, persistent)``."""


@dataclass(slots=True, eq=False)
class _Caller:
    """One caller's batch, queued until a group takes it, then its outcome."""

    sends: Sends
    persistent: bool
    single: bool  # from Transport.send: alone in its group, it goes through the backend's _send
    done: bool = False
    error: BaseException | None = None
    waiting: threading.Event | None = field(default=None)


class GroupCommit:
    """Leader/follower grouping of one transport's confirmed sends (see the module's docstring).

    Thread-safe; one per transport. ``send_many`` and ``send_one`` are the backend's confirmed
    sends; they are called by one thread at a time (the leader's), never while another group
    is in flight. A thread that calls back in while it leads (a backend sending through its own
    public methods) is not queued behind itself: its call goes straight to the backend.
    """

    def __init__(self, send_many: SendMany, send_one: SendOne) -> None:
        self._send_many = send_many
        self._send_one = send_one
        self._lock = threading.Lock()
        self._queue: list[_Caller] = []
        self._leader: int | None = None  # thread id of the group in flight's leader
        self.groups = 0
        """How many groups were sent (each one backend call); tests and benchmarks read it."""
        self.callers = 0
        """How many callers those groups served."""

    def send(self, sends: Sends, *, persistent: bool, single: bool = False) -> None:
        """Send ``sends`` confirmed, in one group with whatever other callers queue meanwhile.

        Returns once every send of ``sends`` is confirmed; raises as the backend would for this
        batch alone (see the module's docstring for how a group's error is split).
        """
        me = _Caller(sends, persistent, single)
        lock = self._lock
        with lock:
            nested = self._leader == threading.get_ident()
            if not nested:
                self._queue.append(me)
                group = self._lead_or_wait(me)
        if nested:
            self._call(me)
        else:
            self._until_done(me, group)
        if me.error is not None:
            raise me.error

    def _until_done(self, me: _Caller, group: list[_Caller] | None) -> None:
        """Lead groups or wait for them until one has sent ``me``."""
        lock = self._lock
        while True:
            if group is None:
                assert me.waiting is not None
                try:
                    me.waiting.wait()
                except BaseException:  # interrupted: leave the queue, and pass the turn to lead on
                    with lock:
                        if me in self._queue:
                            self._queue.remove(me)
                            if self._leader is None:
                                self._wake_next()
                    raise
                with lock:
                    if me.done:
                        return
                    group = self._lead_or_wait(me)
                continue
            try:
                self._run(group)
            finally:
                with lock:  # a caller looks at done and clears its event under the lock
                    for caller in group:
                        caller.done = True
                        if caller.waiting is not None:
                            caller.waiting.set()
                    self._leader = None
                    self._wake_next()
            if me.done:
                return
            with lock:  # ours had another persistent flag than the group's: the next group, then
                group = self._lead_or_wait(me)

    # ------------------------------------------------------------------ with the lock held
    def _lead_or_wait(self, me: _Caller) -> list[_Caller] | None:
        """The group to send if nobody leads (this thread leads it now), else ``None``: wait on ``me.waiting``."""
        if self._leader is None:
            self._leader = threading.get_ident()
            return self._take()
        if me.waiting is None:
            me.waiting = threading.Event()
        else:
            me.waiting.clear()
        return None

    def _take(self) -> list[_Caller]:
        """Every queued batch with the oldest one's ``persistent`` flag, in arrival order."""
        persistent = self._queue[0].persistent
        group = [c for c in self._queue if c.persistent == persistent]
        self._queue = [c for c in self._queue if c.persistent != persistent]
        return group

    def _wake_next(self) -> None:
        """Wake the oldest queued caller to lead the next group (the others sleep on)."""
        if self._queue:
            waiting = self._queue[0].waiting
            if waiting is not None:
                waiting.set()

    # ------------------------------------------------------------------ the leader, without the lock
    def _run(self, group: list[_Caller]) -> None:
        """Send ``group`` with one backend call; set each caller's error (the caller marks them done)."""
        self.groups += 1
        self.callers += len(group)
        if len(group) == 1:
            self._call(group[0])  # alone: the backend's own call and error, untouched
        else:
            self._call_group(group)

    def _call(self, caller: _Caller) -> None:
        try:
            if caller.single:
                ((destination, envelope),) = caller.sends
                self._send_one(destination, envelope, caller.persistent)
            else:
                self._send_many(caller.sends, caller.persistent)
        except BaseException as exc:
            caller.error = exc

    def _call_group(self, group: list[_Caller]) -> None:
        sends = [item for caller in group for item in caller.sends]
        try:
            self._send_many(sends, group[0].persistent)
        except TransportError as exc:
            try:
                errors: list[BaseException | None] = list(split_error(exc, [len(caller.sends) for caller in group]))
            except Exception:  # a bug here must not let a caller return as if all were stored
                errors = [exc] * len(group)
            for caller, error in zip(group, errors, strict=True):
                caller.error = error
        except BaseException as exc:
            for caller in group:
                caller.error = exc  # not about sends (a bug): every caller hears of it


def split_error(exc: TransportError, counts: Sequence[int]) -> list[TransportError | None]:
    """Split ``exc``, raised for the concatenation of batches of ``counts`` sends, into one error per batch.

    ``None`` for a batch none of whose sends is unconfirmed; else a copy of ``exc`` (same type,
    message and cause) whose ``unconfirmed``/``refused`` are that batch's own indices. An error
    that does not say which (``unconfirmed`` is ``None``) goes, as a copy each, to every batch.
    """
    errors: list[TransportError | None] = []
    start = 0
    unconfirmed = exc.unconfirmed
    for count in counts:
        end = start + count
        if unconfirmed is None:
            errors.append(_copy(exc, None, ()))
        else:
            mine = tuple(i - start for i in unconfirmed if start <= i < end)
            refused = tuple(i - start for i in exc.refused if start <= i < end)
            errors.append(_copy(exc, mine, refused) if mine else None)
        start = end
    return errors


def _copy(exc: TransportError, unconfirmed: tuple[int, ...] | None, refused: tuple[int, ...]) -> TransportError:
    """``exc`` again, for one caller: its own object (callers may change theirs), its own indices."""
    try:
        mine = copy.copy(exc)
    except Exception:  # an error class copy cannot rebuild: a new one of the base class, same message
        mine = TransportError(*exc.args)
    mine.unconfirmed = unconfirmed
    mine.refused = refused
    mine.__cause__ = exc.__cause__
    mine.__context__ = exc.__context__
    mine.__suppress_context__ = exc.__suppress_context__
    return mine
