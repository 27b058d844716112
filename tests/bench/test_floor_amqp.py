"""The AMQP floor keeps our message pattern: it polls with as many gets at once as our reads send."""

from __future__ import annotations

from bench import floor_amqp
from tdm_messaging.transport.kombu import read


def test_the_floor_reads_ahead_as_ours_does() -> None:
    # The floor shares no code with what it measures, so the number is written twice: held equal here.
    assert floor_amqp.READ_AHEAD == read.READ_AHEAD
