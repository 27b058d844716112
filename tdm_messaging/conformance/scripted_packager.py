"""The kit's packager for ``--role server``: takes requests off the broker and holds each until the kit has answered."""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

from tdm_messaging.conformance.wire import Received, decode_envelope
from tdm_messaging.destinations import DELETE_REQUESTS, PACKAGE_REQUESTS, Destination
from tdm_messaging.transport.base import Delivery, Transport

__all__ = ["Arrival", "ScriptedPackager"]

logger = logging.getLogger(__name__)


@dataclass
class Arrival:
    """A request the server sent, held unacknowledged until :meth:`answered` (a packager acks after its replies).

    Attributes:
        source: the queue it came from.
        received: the envelope and what it decoded to.
    """

    source: Destination
    received: Received
    _done: threading.Event = field(default_factory=threading.Event)

    def answered(self) -> None:
        """Let the request be acknowledged."""
        self._done.set()


class ScriptedPackager:
    """Consumes ``docsets/package`` and ``docsets/delete`` (prefetch 1) in a thread of its own.

    Args:
        transport: a transport used by this consumer alone.
        notes: where to note requests the run did not ask for (they are acknowledged and ignored).
    """

    def __init__(self, transport: Transport, notes: list[str]) -> None:
        self._transport = transport
        self._notes = notes
        self._inbox: queue.Queue[Arrival] = queue.Queue()
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._consume, name="conformance-packager", daemon=True)

    def __enter__(self) -> ScriptedPackager:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        while not self._inbox.empty():
            self._inbox.get_nowait().answered()
        self._thread.join(timeout=10)

    def next(self, source: Destination, docset_id: str, timeout: float) -> Arrival | None:
        """The next request from ``source`` about ``docset_id``, or ``None`` after ``timeout``; others are let go.

        Raises:
            TransportError: the consumer failed.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._failure is not None:
                raise self._failure
            try:
                arrival = self._inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            message = arrival.received.message
            if arrival.source == source and (message is None or message.docset_id == docset_id):
                return arrival
            what = message.type if message else "an undecodable message"
            self._notes.append(
                f"ignored {what} on {arrival.source.name} about docset {message.docset_id if message else '?'}"
            )
            arrival.answered()
        return None

    def _consume(self) -> None:
        try:
            self._transport.consume([PACKAGE_REQUESTS, DELETE_REQUESTS], self._hold, prefetch=1, stop=self._stop)
        except BaseException as exc:  # handed to the main thread, which reports it
            if not self._stop.is_set():
                logger.debug("the kit's packager stopped: %s", exc)
                self._failure = exc

    def _hold(self, delivery: Delivery) -> None:
        arrival = Arrival(delivery.destination, decode_envelope(delivery.envelope, docset_id=None))
        self._inbox.put(arrival)
        while not arrival._done.wait(0.5):
            if self._stop.is_set():
                return
