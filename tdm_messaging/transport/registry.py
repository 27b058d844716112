"""Pick a transport backend by URL scheme; backends are imported lazily so no driver is needed until used."""

from __future__ import annotations

import importlib
from typing import Protocol, cast
from urllib.parse import urlsplit

from tdm_messaging.errors import ConfigurationError
from tdm_messaging.transport.base import Transport
from tdm_messaging.transport.namespace import split_namespace
from tdm_messaging.transport.urls import redact_url

__all__ = ["SCHEMES", "open_transport", "register_scheme"]


class _Opener(Protocol):
    def from_url(self, url: str) -> Transport: ...


# scheme -> "module:Class"; the class has a ``from_url(url) -> Transport`` classmethod.
SCHEMES: dict[str, str] = {
    "stomp": "tdm_messaging.transport.stomp.backend:StompTransport",
    "stomp+ssl": "tdm_messaging.transport.stomp.backend:StompTransport",
    "amqp": "tdm_messaging.transport.kombu.backend:KombuTransport",
    "amqps": "tdm_messaging.transport.kombu.backend:KombuTransport",
    "redis": "tdm_messaging.transport.kombu.backend:KombuTransport",
    "rediss": "tdm_messaging.transport.kombu.backend:KombuTransport",
    "sqla+sqlite": "tdm_messaging.transport.kombu.backend:KombuTransport",
    "sqlite": "tdm_messaging.transport.sqlite.backend:SqliteTransport",
    "memory": "tdm_messaging.transport.kombu.backend:KombuTransport",
    "inmemory": "tdm_messaging.transport.memory.backend:InMemoryTransport",
}
# scheme -> (the driver packages its backend needs, the extra that installs them); sqlite/inmemory need none.
_DRIVERS: dict[str, tuple[str, str]] = {
    "stomp": ("stomp.py", "stomp"),
    "stomp+ssl": ("stomp.py", "stomp"),
    "amqp": ("kombu (with py-amqp)", "kombu"),
    "amqps": ("kombu (with py-amqp)", "kombu"),
    "redis": ("kombu and redis", "kombu"),
    "rediss": ("kombu and redis", "kombu"),
    "sqla+sqlite": ("kombu and SQLAlchemy", "kombu"),
    "memory": ("kombu", "kombu"),
}


def register_scheme(scheme: str, target: str) -> None:
    """Map URL ``scheme`` to ``"module:Class"`` (a class with ``from_url``). Replaces any earlier entry."""
    if ":" not in target:
        raise ConfigurationError(f"target {target!r} must look like 'package.module:ClassName'")
    SCHEMES[scheme.lower()] = target


def open_transport(url: str) -> Transport:
    """Open the transport that ``url``'s scheme names.

    Examples: ``stomp://guest:guest@127.0.0.1:61613/?dialect=rabbitmq``,
    ``amqp://guest:guest@127.0.0.1:5672//``, ``redis://127.0.0.1:6379/0``,
    ``sqlite:////var/tdm/broker.db`` (the embedded default: standard library only),
    ``sqla+sqlite:////var/tdm/broker.db`` (kombu's SQLAlchemy transport), ``memory://`` (kombu's),
    ``inmemory://NAME`` (this library's, standard library only, one process). Any of them may carry
    ``namespace=NAME``: every queue is then ``NAME/<queue>`` (see
    :class:`~tdm_messaging.transport.namespace.NamespacedTransport`).

    Raises:
        ConfigurationError: unknown scheme (the message lists the known ones), a missing
            optional driver (the message names the extra to install), or a bad URL.
        BrokerUnavailableError: the broker could not be reached.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"broker URL {url!r} has no scheme; expected e.g. 'stomp://host:61613' or 'amqp://host:5672//'"
        )
    scheme = urlsplit(url).scheme.lower()
    inner_url, namespace = split_namespace(url)
    target = SCHEMES.get(scheme)
    if target is None:
        raise ConfigurationError(
            f"unknown broker URL scheme {scheme!r} in {redact_url(url)}; known schemes: " + ", ".join(sorted(SCHEMES))
        )
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(_missing_driver(scheme, exc)) from exc
    opener = cast(_Opener, getattr(module, class_name))
    transport = opener.from_url(inner_url)
    if namespace is None:
        return transport
    # Imported here: namespace.py imports this package's base, and most URLs carry no namespace.
    from tdm_messaging.transport.namespace import NamespacedTransport  # noqa: PLC0415

    return NamespacedTransport(transport, namespace=namespace)


def _missing_driver(scheme: str, exc: ImportError) -> str:
    missing = f"no module named {exc.name!r}" if exc.name else str(exc)
    if scheme not in _DRIVERS:
        return f"the {scheme!r} transport cannot be loaded: {missing}"
    # The module that failed may be a driver's own dependency (py-amqp under kombu for redis://):
    # name what the user installs for this scheme instead.
    packages, extra = _DRIVERS[scheme]
    return (
        f"the {scheme!r} transport needs {packages}, not installed here; "
        f"install with: pip install 'tdm-messaging[{extra}]'"
    )
