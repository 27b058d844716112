"""The raw STOMP floors run our job cycle on RabbitMQ: the plain one and the one that prepares its reply queues."""

from __future__ import annotations

import pytest

from tests.conftest import broker_url

pytest.importorskip("stomp")

from bench.cycle import Prepares
from bench.floor_stomp import FloorStomp, FloorStompPrepared


@pytest.mark.broker
@pytest.mark.parametrize("floor_cls", [FloorStomp, FloorStompPrepared])
def test_the_floor_completes_its_jobs(floor_cls: type[FloorStomp]) -> None:
    floor = floor_cls(broker_url("rabbitmq-stomp"), reply_ttl_ms=60_000, worker="thread")
    try:
        if isinstance(floor, Prepares):
            floor.prepare_ahead(3)
            assert len(floor._ready) == 3  # type: ignore[attr-defined]
        handles = [floor.submit() for _ in range(4)]  # one more than prepared: made on the spot
        assert len(set(handles)) == 4
        floor.wait_all(handles, timeout=30)
    finally:
        floor.close()
