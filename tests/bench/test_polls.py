"""Tests of the poll benchmark's pure parts: the compacted status, vhost URLs, alternation and the scale rows."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from bench.poll_scale import SCALE_GOAL, scale_rows
from bench.polls import (
    alternating,
    complete_message,
    completed_status,
    in_progress_status,
    in_vhost,
    seed_status,
    with_query,
)
from tdm_messaging.codec import decode
from tdm_messaging.destinations import Destination, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.models import Accepted, Complete, PackageRequest, Progress
from tdm_messaging.status import State, compact, fold


def test_the_completed_status_is_what_compaction_keeps_a_request_and_its_complete() -> None:
    kept = completed_status("bench-x")
    assert [type(m) for m in kept] == [PackageRequest, Complete]
    assert kept[0].request_id == kept[1].request_id
    assert compact(kept, "bench-x") == kept
    assert fold(kept, "bench-x").state is State.COMPLETE


def test_in_vhost_moves_amqp_and_stomp_urls() -> None:
    assert in_vhost("amqp://guest:guest@127.0.0.1:5672/tdm-bench-1", "tdm-bench-1-idle") == (
        "amqp://guest:guest@127.0.0.1:5672/tdm-bench-1-idle"
    )
    assert in_vhost("amqp://guest:guest@h:5672//", "a/b") == "amqp://guest:guest@h:5672/a%2Fb"
    stomp = in_vhost("stomp://guest:guest@h:61613/?dialect=rabbitmq&vhost=old", "new")
    assert stomp == "stomp://guest:guest@h:61613/?dialect=rabbitmq&vhost=new"
    assert with_query("stomp://h/?dialect=rabbitmq", reply_ttl="900") == "stomp://h/?dialect=rabbitmq&reply_ttl=900"
    assert with_query("amqp://h/v?heartbeat=0", reply_ttl="900") == "amqp://h/v?heartbeat=0&reply_ttl=900"
    assert in_vhost("pyamqp://h:5672//", "v") == "pyamqp://h:5672/v"


def test_the_in_progress_status_is_what_compaction_keeps_of_a_job_under_way() -> None:
    kept = in_progress_status("bench-y")
    assert [type(m) for m in kept] == [PackageRequest, Accepted, Progress]
    assert fold(kept, "bench-y").state is State.IN_PROGRESS
    assert complete_message("bench-y").request_id != complete_message("bench-y").request_id  # a new id each


class _Recorder:
    """A transport's ``send_many``, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[tuple[Destination, Envelope]], bool, bool]] = []

    def send_many(
        self, sends: Sequence[tuple[Destination, Envelope]], *, persistent: bool = True, confirm: bool = False
    ) -> None:
        self.calls.append((list(sends), persistent, confirm))


def test_seeding_sends_the_status_in_order_persistent_and_confirmed() -> None:
    recorder = _Recorder()
    kept = completed_status("bench-z")
    assert seed_status(recorder, "bench-z", kept) == len(kept)  # type: ignore[arg-type]
    [(sends, persistent, confirm)] = recorder.calls
    assert persistent and confirm
    assert {destination for destination, _ in sends} == {reply_queue("bench-z")}
    assert [decode(envelope).sequence for _, envelope in sends] == [m.sequence for m in kept]


def test_alternating_flips_the_order_every_pair_and_files_each_time_under_its_poll() -> None:
    calls: list[str] = []
    ticks = itertools.count()

    def clock() -> float:
        return float(next(ticks))

    first_times, second_times = alternating(lambda: calls.append("empty"), lambda: calls.append("full"), 4, clock)
    assert calls == ["empty", "full", "full", "empty", "empty", "full", "full", "empty"]
    assert len(first_times) == len(second_times) == 4
    # Each call spans one clock tick: 1 (x1000 for milliseconds).
    assert set(first_times) == set(second_times) == {1000.0}


def test_scale_rows_hold_the_idle_vhost_against_the_empty_one() -> None:
    windows = [([1.0, 1.0, 2.0], [1.05, 1.05, 3.0]), ([1.0, 1.0, 2.0], [1.05, 1.05, 3.0])]
    p50, p99 = scale_rows("RabbitMQ AMQP", windows, 10_000, "cmd")
    assert "10,000 idle reply queues" in p50.what and "RabbitMQ AMQP" in p50.what
    assert (p50.ours, p50.baseline) == (1.05, 1.0)
    assert p50.met is True and p50.goal == f"<= {SCALE_GOAL}x"
    assert (p99.ours, p99.baseline, p99.met) == (3.0, 2.0, None)
    slow = [([1.0], [1.2])]
    assert scale_rows("x", slow, 1, "cmd")[0].met is False
