"""Tests of bench.celery_peer without a broker: the Celery apps' settings, the floor plug-in and the phase's rows."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

pytest.importorskip("celery")

from bench import celery_peer
from bench.cycle import THROUGHPUT, Measured, Prepares, build_rows, measure


def test_the_redis_peer_keeps_results_persistent_under_its_own_prefix() -> None:
    app = celery_peer.make_app(
        "amqp://guest:guest@127.0.0.1:5672//", "q", backend="redis://127.0.0.1:6379/14", keyprefix="pfx-"
    )
    assert app.conf.result_persistent is True
    assert app.conf.task_acks_late is True
    assert app.conf.result_backend_transport_options == {"global_keyprefix": "pfx-"}
    assert app.conf.result_backend == "redis://127.0.0.1:6379/14"


def test_the_rpc_peer_is_unchanged() -> None:
    app = celery_peer.make_app("amqp://guest:guest@127.0.0.1:5672//", "q")
    assert app.conf.result_backend == "rpc://"
    assert app.conf.task_acks_late is True
    assert not app.conf.result_persistent
    assert app.conf.worker_prefetch_multiplier == 1


def test_celery_sends_unconfirmed_unless_the_peer_asks_for_confirms() -> None:
    plain = celery_peer.make_app("amqp://guest:guest@127.0.0.1:5672//", "q", backend="redis://127.0.0.1:6379/14")
    assert not plain.conf.broker_transport_options.get("confirm_publish")
    confirmed = celery_peer.make_app(
        "amqp://guest:guest@127.0.0.1:5672//", "q", backend="redis://127.0.0.1:6379/14", confirm=True
    )
    assert confirmed.conf.broker_transport_options == {"confirm_publish": True}
    # kombu hands the option to py-amqp's connection, which puts its channels in confirm mode.
    with confirmed.connection_for_write() as conn:
        assert conn.transport_options.get("confirm_publish") is True
    assert confirmed.conf.result_persistent is True


def test_the_confirmed_peer_has_rows_without_a_goal() -> None:
    goals = _comparisons(floor_prepares=False)
    assert goals[("ours", "celery-redis-confirmed", THROUGHPUT)] is None
    assert goals[("ours", "celery-redis-confirmed", "p50")] is None
    assert goals[("ours", "celery-redis", THROUGHPUT)] == celery_peer.REDIS_THROUGHPUT_GOAL


def test_the_celery_worker_gets_the_prefetch_ours_runs_with() -> None:
    app = celery_peer.make_app("amqp://guest:guest@127.0.0.1:5672//", "q", prefetch=16)
    assert app.conf.worker_prefetch_multiplier == 16


def test_each_celery_worker_has_a_node_name_of_its_own() -> None:
    argv = celery_peer.celery_worker_argv("bench-celery-abc", "threads")
    assert "--hostname=bench-celery-abc@%h" in argv
    assert argv != celery_peer.celery_worker_argv("bench-celery-def", "threads")


def _comparisons(floor_prepares: bool) -> dict[tuple[str, str, str], float | None]:
    return {(c.ours, c.baseline, c.metric): c.goal for c in celery_peer.comparisons(floor_prepares=floor_prepares)}


def test_the_goals_of_issue_14() -> None:
    goals = _comparisons(floor_prepares=False)
    assert goals[("ours", "celery-redis", THROUGHPUT)] == 1.0
    assert goals[("ours", "celery-redis", "p50")] == 1.0
    assert goals[("ours", "celery-rpc", THROUGHPUT)] == 0.5
    assert goals[("ours-noprep", "floor", THROUGHPUT)] == 0.9
    assert goals[("ours-noprep", "ours", THROUGHPUT)] is None


def test_a_floor_that_prepares_is_held_against_ours_prepared() -> None:
    goals = _comparisons(floor_prepares=True)
    assert goals[("ours", "floor", THROUGHPUT)] == 0.9
    assert ("ours-noprep", "floor", THROUGHPUT) not in goals


def test_a_prepared_floor_is_held_against_ours_prepared_beside_the_unprepared_one() -> None:
    comparisons = celery_peer.comparisons(floor_prepares=False, prepared_floor=True)
    goals = {(c.ours, c.baseline, c.metric): c.goal for c in comparisons}
    assert goals[("ours-noprep", "floor", THROUGHPUT)] == 0.9
    assert goals[("ours", "floor-prep", THROUGHPUT)] == 0.9
    assert goals[("ours", "floor-prep", "p50")] == 0.9
    assert ("ours-noprep", "floor-prep", THROUGHPUT) not in goals
    assert ("ours", "floor-prep", THROUGHPUT) not in _comparisons(floor_prepares=False)


def test_the_stomp_wing_has_a_prepared_floor_that_prepares() -> None:
    spec = celery_peer._floor_spec("stomp", floors=celery_peer.PREPARED_FLOORS, key="floor-prep")
    assert spec is not None and spec.key == "floor-prep"
    from bench.floor_stomp import FloorStomp, FloorStompPrepared

    assert spec.build is FloorStompPrepared
    assert issubclass(FloorStompPrepared, FloorStomp)
    assert hasattr(FloorStompPrepared, "prepare_ahead") and not hasattr(FloorStomp, "prepare_ahead")
    assert celery_peer._floor_spec("amqp", celery_peer.PREPARED_FLOORS, "floor-prep") is None


class _TinyFloor:
    """A throwaway floor: constructed from a URL, jobs complete at once."""

    BASELINE_NAME = "tiny floor"

    def __init__(self, url: str) -> None:
        self.url = url
        self.closed = False

    def submit(self) -> str:
        return "job"

    def wait_all(self, handles: list[Any], timeout: float = 60.0) -> None:
        assert all(h == "job" for h in handles)

    def close(self) -> None:
        self.closed = True


def test_a_missing_floor_module_leaves_the_floor_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(celery_peer.FLOORS, "amqp", "bench.no_such_floor_module:Floor")
    assert celery_peer._floor_spec("amqp") is None


def test_a_floor_module_plugs_in_and_gives_its_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("bench.floor_tiny")
    module.FloorTiny = _TinyFloor  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bench.floor_tiny", module)
    monkeypatch.setitem(celery_peer.FLOORS, "amqp", "bench.floor_tiny:FloorTiny")
    spec = celery_peer._floor_spec("amqp")
    assert spec is not None
    assert (spec.key, spec.name) == ("floor", "tiny floor")
    floor = spec.build("amqp://somewhere")
    assert isinstance(floor, _TinyFloor) and floor.url == "amqp://somewhere"
    assert not isinstance(floor, Prepares)
    ours = _TinyFloor("ours")
    measured = measure({"ours-noprep": ours, "floor": floor}, requests=3, latency_jobs=2, rounds=1, progress=print)
    rows = build_rows(
        celery_peer.comparisons(floor_prepares=False),
        measured,
        label="RabbitMQ AMQP",
        names={"ours-noprep": "ours", "floor": spec.name},
        requests=3,
        command="c",
    )
    assert [(row.baseline_name, row.unit) for row in rows] == [("tiny floor", "jobs/s"), ("tiny floor", "ms")]
    assert all(row.goal == ">= 0.9x" for row in rows)


def test_measured_rows_skip_sides_that_are_absent() -> None:
    measured = Measured(rates={"ours": [1.0], "celery-rpc": [2.0]}, latencies={"ours": [[1.0]], "celery-rpc": [[2.0]]})
    rows = build_rows(
        celery_peer.comparisons(floor_prepares=False),
        measured,
        label="x",
        names={"celery-rpc": "rpc"},
        requests=1,
        command="c",
    )
    assert [row.what.split(", ")[-1] for row in rows] == ["vs Celery rpc://", "vs Celery rpc://"]


def test_the_goals_are_held_against_the_redis_peer_that_fsyncs_always() -> None:
    goals = _comparisons(floor_prepares=False)
    assert goals[("ours", "celery-redis-everysec", THROUGHPUT)] is None
    assert goals[("ours", "celery-redis-everysec", "p50")] is None
    notes = {c.baseline: c.note for c in celery_peer.comparisons(floor_prepares=False) if c.ours == "ours"}
    assert "fsync always" in notes["celery-redis"]
    assert "fsync everysec" in notes["celery-redis-everysec"]


class _FollowingFloor(_TinyFloor):
    FOLLOWS_OUR_WORKER = True

    def __init__(self, url: str, *, prefetch: int = 1, progress: bool = True) -> None:
        super().__init__(url)
        self.prefetch, self.progress = prefetch, progress


def test_a_floor_that_follows_our_worker_is_built_with_its_prefetch_and_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("bench.floor_following")
    module.Floor = _FollowingFloor  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bench.floor_following", module)
    monkeypatch.setitem(celery_peer.FLOORS, "amqp", "bench.floor_following:Floor")
    settings = celery_peer._Settings(
        requests=1,
        latency_jobs=1,
        rounds=1,
        pool="threads",
        phases=("amqp",),
        choice_sends=1,
        everysec=False,
        confirmed=False,
        prefetch=7,
        linger=0.25,
    )
    spec = celery_peer._floor_spec("amqp", settings)
    assert spec is not None
    floor = spec.build("amqp://somewhere")
    assert isinstance(floor, _FollowingFloor) and (floor.prefetch, floor.progress) == (7, False)
    plain = celery_peer._floor_spec("amqp")
    assert plain is not None and plain.build("amqp://x").prefetch == 1  # type: ignore[attr-defined]


def test_the_threaded_sides_have_rows_without_a_goal() -> None:
    comparisons = celery_peer.comparisons(floor_prepares=False, threads=6)
    goals = {(c.ours, c.baseline, c.metric): c.goal for c in comparisons}
    assert goals[("ours-threads", "celery-redis-threads", THROUGHPUT)] is None
    assert goals[("ours-threads", "ours", THROUGHPUT)] is None
    notes = {(c.ours, c.baseline): c.note for c in comparisons}
    assert notes[("ours-threads", "celery-redis-threads")].startswith("6 server threads, one call per request")
    assert "fsync always" in notes[("ours-threads", "celery-redis-threads")]
    assert notes[("ours-threads", "ours")] == "6 server threads vs one thread"


def test_from_threads_calls_each_item_once_from_that_many_threads_and_keeps_the_order() -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    seen: dict[int, str] = {}

    def call(item: int) -> int:
        seen[item] = threading.current_thread().name
        return item * 10

    with ThreadPoolExecutor(3, thread_name_prefix="t") as pool:
        assert celery_peer._from_threads(pool, 3, list(range(10)), call) == [i * 10 for i in range(10)]
    assert sorted(seen) == list(range(10))
    assert len({seen[i] for i in (0, 3, 6, 9)}) == 1  # item i in thread i mod 3, each thread's in order


def test_the_prepared_floor_itself_is_held_against_the_redis_peer_without_a_goal() -> None:
    # AMQP: the floor prepares, so it is the one; STOMP: the second, prepared floor.
    amqp = [c for c in celery_peer.comparisons(floor_prepares=True) if c.subject == "the floor"]
    stomp = [c for c in celery_peer.comparisons(floor_prepares=False, prepared_floor=True) if c.subject == "the floor"]
    assert [(c.ours, c.baseline, c.metric, c.goal) for c in amqp] == [
        ("floor", "celery-redis", THROUGHPUT, None),
        ("floor", "celery-redis", "p50", None),
    ]
    assert [(c.ours, c.baseline, c.metric, c.goal) for c in stomp] == [
        ("floor-prep", "celery-redis", THROUGHPUT, None),
        ("floor-prep", "celery-redis", "p50", None),
    ]
    # A floor that creates the queue in the request is not held against Celery's goal peer.
    assert not [c for c in celery_peer.comparisons(floor_prepares=False) if c.subject == "the floor"]


def test_a_floor_row_names_the_floor_not_ours() -> None:
    measured = Measured(
        rates={"floor": [80.0], "celery-redis": [100.0]}, latencies={"floor": [[4.0]], "celery-redis": [[2.0]]}
    )
    rows = build_rows(
        celery_peer.comparisons(floor_prepares=True),
        measured,
        label="RabbitMQ AMQP",
        names={"floor": "the floor", "celery-redis": "celery"},
        requests=100,
        command="c",
    )
    assert [row.what for row in rows] == [
        "request throughput, 100 no-op jobs, one worker, the floor over RabbitMQ AMQP, " + celery_peer.PATTERN_NOTE,
        "request to complete-visible p50, no-op job, the floor over RabbitMQ AMQP, " + celery_peer.PATTERN_NOTE,
    ]
    assert rows[0].ratio == pytest.approx(0.8) and rows[0].met is None
    assert rows[1].ratio == pytest.approx(0.5)
