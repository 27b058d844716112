"""A namespace for every queue: lets deployments (or test runs) share one broker without sharing queues."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit

from tdm_messaging.destinations import Destination, validate_docset_id
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import ConfigurationError, InvalidDestinationError
from tdm_messaging.transport.base import Batch, BatchHandler, Capabilities, Delivery, Handler, Transport

__all__ = ["NAMESPACE_PARAM", "NamespacedTransport", "split_namespace"]

NAMESPACE_PARAM = "namespace"
"""The URL query parameter naming the namespace, e.g. ``amqp://host//?namespace=staging``."""


def split_namespace(url: str) -> tuple[str, str | None]:
    """Return ``url`` without its ``namespace`` parameter, and the namespace (``None`` if absent).

    Raises:
        ConfigurationError: the namespace is empty, repeated, or not a valid name.
    """
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    values = [value for name, value in pairs if name == NAMESPACE_PARAM]
    if not values:
        return url, None
    if len(values) > 1:
        raise ConfigurationError(f"{NAMESPACE_PARAM} is given {len(values)} times in the broker URL; give it once")
    try:
        namespace = validate_docset_id(values[0])
    except InvalidDestinationError as exc:
        raise ConfigurationError(
            f"broker URL parameter {NAMESPACE_PARAM}={values[0]!r} is not a valid name: "
            + str(exc).replace("docset id", "namespace")
        ) from exc
    rest = urlencode([(name, value) for name, value in pairs if name != NAMESPACE_PARAM])
    # Rebuilt by hand: urlunsplit turns "memory://" into "memory:", which kombu refuses.
    base, _, tail = url.partition("?")
    fragment = tail.partition("#")[2]
    return base + ("?" + rest if rest else "") + ("#" + fragment if fragment else ""), namespace


class NamespacedTransport(Transport):
    """Wraps a transport so that every destination ``d`` becomes ``<namespace>/<d>``.

    ``docsets/package`` is then the queue ``staging/docsets/package`` (AMQP), spelled
    ``/queue/staging%2Fdocsets%2Fpackage`` on RabbitMQ STOMP and
    ``/queue/staging/docsets/package`` on ActiveMQ. Deliveries report the logical,
    un-prefixed destination, so helpers never see the namespace. Every peer of a
    deployment must use the same namespace.
    """

    def __init__(self, inner: Transport, *, namespace: str) -> None:
        self._inner = inner
        self._namespace = validate_docset_id(namespace)
        self._prefix = namespace + "/"

    @property
    def namespace(self) -> str:
        """The namespace put before every queue name."""
        return self._namespace

    @property
    def inner(self) -> Transport:
        """The wrapped transport."""
        return self._inner

    @property
    def capabilities(self) -> Capabilities:
        return self._inner.capabilities

    def address(self, destination: Destination) -> str:
        return self._inner.address(self._outer(destination))

    def _outer(self, destination: Destination) -> Destination:
        return Destination(self._prefix + destination.name, destination.kind)

    def _send(
        self,
        destination: Destination,
        envelope: Envelope,
        *,
        persistent: bool = True,
        confirm: bool = False,
    ) -> None:
        self._inner.send(self._outer(destination), envelope, persistent=persistent, confirm=confirm)

    def _send_many(self, sends: Sequence[tuple[Destination, Envelope]], *, persistent: bool, confirm: bool) -> None:
        outer = [(self._outer(destination), envelope) for destination, envelope in sends]
        self._inner.send_many(outer, persistent=persistent, confirm=confirm)

    def _read(self, destination: Destination, *, limit: int = 1000) -> Batch:
        return self._inner.read(self._outer(destination), limit=limit)

    def _consume(
        self,
        destinations: Sequence[Destination],
        handler: Handler,
        *,
        prefetch: int = 1,
        stop: threading.Event,
    ) -> None:
        logical = {self._outer(d).name: d for d in destinations}

        def unwrap(delivery: Delivery) -> None:
            original = logical.get(delivery.destination.name, delivery.destination)
            handler(Delivery(delivery.envelope, original, delivery.redelivered))

        self._inner.consume([self._outer(d) for d in destinations], unwrap, prefetch=prefetch, stop=stop)

    def _consume_batches(
        self, destinations: Sequence[Destination], handler: BatchHandler, *, prefetch: int, stop: threading.Event
    ) -> None:
        logical = {self._outer(d).name: d for d in destinations}

        def unwrap(deliveries: Sequence[Delivery]) -> None:
            handler(
                [
                    Delivery(d.envelope, logical.get(d.destination.name, d.destination), d.redelivered)
                    for d in deliveries
                ]
            )

        self._inner.consume_batches([self._outer(d) for d in destinations], unwrap, prefetch=prefetch, stop=stop)

    def _declare(self, destination: Destination) -> None:
        self._inner.declare(self._outer(destination))

    def _declare_primed(self, destination: Destination) -> None:
        self._inner.declare(self._outer(destination), prime=True)

    def _depth(self, destination: Destination) -> int | None:
        return self._inner.depth(self._outer(destination))

    def _delete(self, destination: Destination) -> None:
        self._inner.delete(self._outer(destination))

    def close(self) -> None:
        self._inner.close()
