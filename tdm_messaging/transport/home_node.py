"""RabbitMQ's "home node of a queue is down" answer, which both wings read as unavailability, not refusal."""

from __future__ import annotations

import re

__all__ = ["home_node_down", "is_home_node_down"]

# RabbitMQ 3.x/4.x, AMQP and STOMP alike: "NOT_FOUND - home node 'rabbit@b' of durable queue
# 'package/5' in vhost '/' is down or inaccessible". The queue exists; the one node holding it
# (a classic queue) is gone for now, so the same operation works again once it is back.
_HOME_NODE_DOWN = re.compile(r"home node '([^']*)' of durable queue '([^']*)'.*down or inaccessible", re.DOTALL)


def is_home_node_down(text: str) -> bool:
    """Whether a broker's error text says a queue's home node is down (RabbitMQ cluster, classic queue)."""
    return _HOME_NODE_DOWN.search(text) is not None


def home_node_down(what: str, where: str, text: str) -> str:
    """One honest sentence for that error: what failed, that it is temporary, and how to avoid it."""
    found = _HOME_NODE_DOWN.search(text)
    node, queue = found.groups() if found else ("?", "?")
    return (
        f"{what} on {where}: queue {queue!r} is unavailable while its home node {node} is down (a classic "
        "queue lives on one node of a cluster); nothing was stored, retry when the node is back, or declare "
        "the queue as a quorum queue, which another node takes over (see docs/brokers.md, running on a cluster)"
    )
