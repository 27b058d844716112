"""The raw STOMP floors run our job cycle on RabbitMQ: the plain one and the one that prepares its reply queues."""

from __future__ import annotations

import pytest

from tests.conftest import broker_url

pytest.importorskip("stomp")

from bench.cycle import Prepares
from bench.floor_stomp import FloorStomp, FloorStompPrepared


@pytest.mark.broker
@pytest.mark.parametrize("floor_cls", [FloorStomp, FloorStompPrepared])
@pytest.mark.parametrize("prefetch", [1, 4])
def test_the_floor_completes_its_jobs(floor_cls: type[FloorStomp], prefetch: int) -> None:
    """One job at a time (prefetch 1) or in batches of what the worker has already received (4)."""
    floor = floor_cls(broker_url("rabbitmq-stomp"), reply_ttl_ms=60_000, worker="thread", prefetch=prefetch)
    try:
        if isinstance(floor, Prepares):
            floor.prepare_ahead(3)
            assert len(floor._ready) == 3
        handles = [floor.submit() for _ in range(4)]  # one more than prepared: made on the spot
        assert len(set(handles)) == 4
        floor.wait_all(handles, timeout=30)
    finally:
        floor.close()


@pytest.mark.broker
@pytest.mark.parametrize("progress", [True, False])
def test_the_floor_worker_sends_accepted_and_progress_only_when_ours_would(progress: bool) -> None:
    """``progress=False`` (ours lingering) leaves the no-op job's Accepted and Progress out, as our worker does."""
    import json

    from bench.floor_stomp import _declare, _queue

    floor = FloorStomp(broker_url("rabbitmq-stomp"), reply_ttl_ms=60_000, worker="thread", progress=progress)
    try:
        reply_to = floor.submit()
        inbox: list[object] = []
        with floor.listener.cond:
            floor.listener.inboxes["look"] = inbox
        floor.conn.subscribe(_queue(reply_to), id="look", ack="auto", headers=_declare(60_000))

        def kinds() -> list[str]:
            return [json.loads(f.body)["type"] for f in inbox]  # type: ignore[attr-defined]

        with floor.listener.cond:  # the listener notifies on every frame it files
            floor.listener.cond.wait_for(lambda: "complete" in kinds(), 30)
            seen = kinds()
        assert seen == ["package_request", *(["accepted", "progress"] if progress else []), "complete"]
    finally:
        floor.close()
