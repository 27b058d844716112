"""Settings of the STOMP backend, parsed from a ``stomp://`` or ``stomp+ssl://`` URL (no driver import)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, unquote, urlsplit

from tdm_messaging.errors import ConfigurationError
from tdm_messaging.transport.namespace import NAMESPACE_PARAM
from tdm_messaging.transport.stomp.dialect import Dialect
from tdm_messaging.transport.urls import redact_url

__all__ = ["DEFAULT_REPLY_TTL", "ReplyExpiry", "StompSettings", "parse_stomp_url", "redact_url"]

DEFAULT_REPLY_TTL = 86_400
"""Seconds a reply queue lives after its last use, by default (one day)."""


class ReplyExpiry(enum.Enum):
    """How reply queues expire on RabbitMQ (ActiveMQ always uses message ``expires`` + broker GC)."""

    ARGUMENTS = "arguments"
    """``x-expires`` on every SEND and SUBSCRIBE: identical on every declare, or RabbitMQ refuses it."""
    POLICY = "policy"
    """No queue argument: a broker policy gives the expiry (see ``scripts/brokers.sh``), so peers
    that declare the queue plainly (the seed does) are not refused."""


@dataclass(frozen=True, kw_only=True)
class StompSettings:
    """Everything the STOMP backend needs to know, as one frozen value.

    Attributes:
        host, port: the broker's STOMP listener (default port 61613); with ``failover``, the one
            in use (see :meth:`on`).
        failover: the other nodes of a cluster, ``stomp://h1:p1,h2:p2,h3:p3/``: a lost connection
            is re-opened on the next node in turn.
        username, password: credentials; the password never appears in ``repr`` or logs.
        dialect: ``Dialect.RABBITMQ`` or ``Dialect.ACTIVEMQ``; ``None`` means detect it from
            the CONNECTED frame's ``server`` header.
        vhost: the STOMP ``host`` header; RabbitMQ reads it as the virtual host, so ``/``.
        heartbeat_ms: STOMP heart-beat interval both ways, 0 to turn heart-beats off.
        reply_ttl: seconds a reply queue (RabbitMQ) or reply message (ActiveMQ) lives unused.
        reply_expiry: RabbitMQ only: queue arguments or a broker policy (see :class:`ReplyExpiry`).
        quorum: RabbitMQ only: declare permanent queues as quorum queues; on by default when
            the URL lists several nodes (a cluster), off otherwise.
        reply_queue_type: RabbitMQ only: ``"classic"`` (the default) or ``"quorum"`` reply queues
            (a quorum reply queue survives the loss of a node; a Raft group per docset).
        tls: set by the ``stomp+ssl`` scheme.
        ca_file, cert_file, key_file: TLS files (PEM); the system CAs when ``ca_file`` is unset.
        verify: check the broker's TLS certificate and host name (on unless turned off).
        connect_timeout: seconds to wait for a connection (and for a reconnect during a call).
        confirm_timeout: seconds to wait for a receipt when a send asks for confirmation.
        read_timeout: seconds a :meth:`read` may take before it fails.
        reconnect_max_delay: longest pause between reconnection attempts while consuming.
    """

    host: str = "127.0.0.1"
    port: int = 61613
    failover: tuple[tuple[str, int], ...] = ()
    username: str | None = None
    password: str | None = None
    dialect: Dialect | None = None
    vhost: str = "/"
    heartbeat_ms: int = 10_000
    reply_ttl: int = DEFAULT_REPLY_TTL
    reply_expiry: ReplyExpiry = ReplyExpiry.ARGUMENTS
    quorum: bool = False
    reply_queue_type: str = "classic"
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True
    connect_timeout: float = 10.0
    confirm_timeout: float = 10.0
    read_timeout: float = 10.0
    reconnect_max_delay: float = 10.0

    def __repr__(self) -> str:
        password = "***" if self.password else None
        return (
            f"StompSettings(host={self.host!r}, port={self.port}, username={self.username!r}, "
            f"password={password!r}, dialect={self.dialect}, vhost={self.vhost!r}, tls={self.tls}"
            + (f", failover={[f'{h}:{p}' for h, p in self.failover]}" if self.failover else "")
            + ")"
        )

    @property
    def address(self) -> str:
        """``host:port``, for messages."""
        return f"{self.host}:{self.port}"

    @property
    def nodes(self) -> tuple[tuple[str, int], ...]:
        """Every ``(host, port)`` to try, in order: ``host:port`` first, then ``failover``."""
        return ((self.host, self.port), *self.failover)

    def on(self, index: int) -> StompSettings:
        """These settings for node ``index`` of :attr:`nodes` (the others become its ``failover``)."""
        nodes = self.nodes
        host, port = nodes[index % len(nodes)]
        others = nodes[index % len(nodes) + 1 :] + nodes[: index % len(nodes)]
        return replace(self, host=host, port=port, failover=others)


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"URL parameter {name}={raw!r} is not a whole number") from None
    if value < 0:
        raise ConfigurationError(f"URL parameter {name}={raw!r} must not be negative")
    return value


def _seconds(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"URL parameter {name}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise ConfigurationError(f"URL parameter {name}={raw!r} must be more than 0 seconds")
    return value


def _flag(name: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(f"URL parameter {name}={raw!r} must be true or false")


def _dialect(name: str, raw: str) -> Dialect:
    if raw.lower() == Dialect.RABBITMQ.value:
        return Dialect.RABBITMQ
    if raw.lower() == Dialect.ACTIVEMQ.value:
        return Dialect.ACTIVEMQ
    raise ConfigurationError(f"URL parameter {name}={raw!r} is not a STOMP dialect; use rabbitmq or activemq")


def _reply_expiry(name: str, raw: str) -> ReplyExpiry:
    try:
        return ReplyExpiry(raw.lower())
    except ValueError:
        raise ConfigurationError(f"URL parameter {name}={raw!r} must be 'arguments' or 'policy'") from None


def _queue_type(name: str, raw: str) -> str:
    if raw.lower() not in {"classic", "quorum"}:
        raise ConfigurationError(f"URL parameter {name}={raw!r} must be 'classic' or 'quorum'")
    return raw.lower()


def _text(name: str, raw: str) -> str:
    return raw


_PARAMS: dict[str, Callable[[str, str], object]] = {
    "dialect": _dialect,
    "vhost": _text,
    "heartbeat_ms": _positive_int,
    "reply_ttl": _positive_int,
    "reply_expiry": _reply_expiry,
    "quorum": _flag,
    "reply_queue_type": _queue_type,
    "ca_file": _text,
    "cert_file": _text,
    "key_file": _text,
    "verify": _flag,
    "connect_timeout": _seconds,
    "confirm_timeout": _seconds,
    "read_timeout": _seconds,
    "reconnect_max_delay": _seconds,
}
_TLS_ONLY = {"ca_file", "cert_file", "key_file", "verify"}


def parse_stomp_url(url: str) -> StompSettings:
    """Parse ``stomp://user:pass@host:port/?param=value&...`` (or ``stomp+ssl://``).

    Nodes of a cluster are listed with commas, ``stomp://user:pass@h1:61613,h2:61613/?...``:
    one user, one set of parameters; a lost connection is re-opened on the next node.

    Query parameters: ``dialect`` (rabbitmq|activemq), ``vhost``, ``heartbeat_ms``,
    ``reply_ttl`` (seconds), ``reply_expiry`` (arguments|policy), ``quorum`` (default: true
    for a list of nodes), ``reply_queue_type`` (classic|quorum), ``ca_file``,
    ``cert_file``, ``key_file``, ``verify`` (TLS only), ``connect_timeout``,
    ``confirm_timeout``, ``read_timeout``, ``reconnect_max_delay`` (seconds).

    Returns:
        The settings, validated.

    Raises:
        ConfigurationError: wrong scheme, bad port, an unknown or malformed parameter
            (the message lists the valid ones), or a TLS option on a plain ``stomp://`` URL.
    """
    url, failover = _split_failover(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"bad STOMP URL {redact_url(url)}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in {"stomp", "stomp+ssl"}:
        raise ConfigurationError(f"{redact_url(url)} is not a STOMP URL; use stomp://host:61613 or stomp+ssl://...")
    if parts.path not in {"", "/"}:
        raise ConfigurationError(
            f"STOMP URL {redact_url(url)} has a path {parts.path!r}; give the virtual host as ?vhost=... instead"
        )
    values: dict[str, object] = {}
    for name, raw in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        parser = _PARAMS.get(name)
        if parser is None:
            raise ConfigurationError(
                f"unknown STOMP URL parameter {name!r} in {redact_url(url)}; valid parameters: "
                + ", ".join(sorted([*_PARAMS, NAMESPACE_PARAM]))  # namespace is taken off by open_transport
            )
        if name in _TLS_ONLY and scheme != "stomp+ssl":
            raise ConfigurationError(f"URL parameter {name!r} is a TLS option; use a stomp+ssl:// URL")
        values[name] = parser(name, raw)
    if failover:
        values.setdefault("quorum", True)  # several nodes: a cluster, where a classic queue dies with its node
    settings = StompSettings(
        host=parts.hostname or "127.0.0.1",
        port=port if port is not None else 61613,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        tls=scheme == "stomp+ssl",
        failover=failover,
        **values,  # type: ignore[arg-type]
    )
    if settings.reply_ttl == 0:
        raise ConfigurationError("URL parameter reply_ttl=0: a reply queue needs a time to live of 1 s or more")
    return settings


def _split_failover(url: str) -> tuple[str, tuple[tuple[str, int], ...]]:
    """``stomp://u:p@h1:p1,h2:p2/?q`` -> (``stomp://u:p@h1:p1/?q``, ((h2, p2),)); a one-host URL as it is."""
    scheme, sep, rest = url.partition("://")
    netloc_end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    netloc, tail = rest[:netloc_end], rest[netloc_end:]
    userinfo, at, hostlist = netloc.rpartition("@")
    if not sep or "," not in hostlist:
        return url, ()
    nodes: list[tuple[str, int]] = []
    for item in hostlist.split(","):
        try:
            parts = urlsplit(f"stomp://{item.strip()}")
            port = parts.port
        except ValueError as exc:
            raise ConfigurationError(f"bad host {item!r} in STOMP URL {redact_url(url)}: {exc}") from None
        if not parts.hostname or parts.path or parts.query:
            raise ConfigurationError(
                f"bad host {item!r} in STOMP URL {redact_url(url)}: give the nodes as host:port, separated by "
                "commas, e.g. stomp://user:password@mq1:61613,mq2:61613/?dialect=rabbitmq"
            )
        nodes.append((parts.hostname, port if port is not None else 61613))
    first_host, first_port = nodes[0]
    host = f"[{first_host}]" if ":" in first_host else first_host
    return f"{scheme}://{userinfo}{at}{host}:{first_port}{tail}", tuple(nodes[1:])
