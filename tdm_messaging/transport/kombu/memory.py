"""In-process ``memory://`` brokers for kombu, one per transport (or per name) instead of kombu's one per process."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

from kombu.transport import memory as kombu_memory
from kombu.transport import virtual as kombu_virtual

__all__ = ["MemoryBroker", "memory_broker"]

# kombu is only partly typed: treat it as dynamic at this one edge.
_BrokerState: Any = kombu_virtual.BrokerState


class MemoryBroker:
    """State of one in-process broker; kombu's own memory transport keeps it class-level (process-wide)."""

    def __init__(self) -> None:
        queues: dict[str, Any] = {}
        state = _BrokerState()

        class Channel(kombu_memory.Channel):
            # Restore unacked messages when a channel closes, like the other transports
            # (kombu's memory channel drops them).
            do_restore = True

        Channel.queues = queues
        Channel.events = defaultdict(set)

        class MemoryTransport(kombu_memory.Transport):
            global_state = state

        MemoryTransport.Channel = Channel
        self.transport_class: type = MemoryTransport


_NAMED_MEMORY_BROKERS: dict[str, MemoryBroker] = {}
_NAMED_MEMORY_LOCK = threading.Lock()


def memory_broker(name: str) -> MemoryBroker:
    """A fresh broker for ``memory://``; the one broker of this process named ``name`` for ``memory://name``."""
    if not name:
        return MemoryBroker()
    with _NAMED_MEMORY_LOCK:
        broker = _NAMED_MEMORY_BROKERS.get(name)
        if broker is None:
            broker = _NAMED_MEMORY_BROKERS[name] = MemoryBroker()
        return broker
