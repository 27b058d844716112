"""The AMQP floor keeps our message pattern: it polls with as many gets at once as our reads send, and its
worker sends the replies ours sends."""

from __future__ import annotations

import amqp
import pytest

from bench import floor_amqp
from tdm_messaging.transport.kombu import read


def test_the_floor_reads_ahead_as_ours_does() -> None:
    # The floor shares no code with what it measures, so the number is written twice: held equal here.
    assert floor_amqp.READ_AHEAD == read.READ_AHEAD


@pytest.mark.parametrize("progress", [True, False])
def test_the_floor_worker_sends_accepted_and_progress_only_when_ours_would(progress: bool) -> None:
    """``progress=False`` (ours lingering) leaves the no-op job's Accepted and Progress out, as our worker does."""
    import json

    from bench.floor_amqp import _reply

    published: list[tuple[str, dict[str, object]]] = []

    class Confirms:
        def publish(self, queue: str, message: amqp.Message) -> None:
            published.append((queue, json.loads(message.body)))

    request = {"docset_id": "d1", "request_id": "r1", "reply_to": "package/d1"}
    _reply(Confirms(), request, progress=progress)  # type: ignore[arg-type]
    kinds = [(body["type"], body["sequence"]) for _queue, body in published]
    expected = [("accepted", 1), ("progress", 2), ("complete", 3)] if progress else [("complete", 1)]
    assert kinds == expected and {queue for queue, _body in published} == {"package/d1"}
