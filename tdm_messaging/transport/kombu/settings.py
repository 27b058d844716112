"""Settings of the kombu backend: parsed from URL query parameters, frozen, and the capabilities of each broker."""

from __future__ import annotations

import enum
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from tdm_messaging.errors import ConfigurationError
from tdm_messaging.transport.base import Capabilities
from tdm_messaging.transport.namespace import NAMESPACE_PARAM
from tdm_messaging.transport.urls import redact_url

__all__ = [
    "DEFAULT_REPLY_TTL",
    "AmqpTls",
    "Backend",
    "KombuSettings",
    "capabilities_of",
    "parse_kombu_url",
]

DEFAULT_REPLY_TTL = 86400.0
"""Seconds an idle reply queue lives (AMQP ``x-expires``) or a reply stays readable (lazy expiry)."""


class Backend(enum.Enum):
    """The kind of broker behind a kombu URL; decides queue arguments and capabilities."""

    AMQP = "amqp"
    REDIS = "redis"
    SQLITE = "sqlite"
    MEMORY = "memory"


_SCHEME_BACKEND = {
    "amqp": Backend.AMQP,
    "amqps": Backend.AMQP,
    "redis": Backend.REDIS,
    "rediss": Backend.REDIS,
    "sqla+sqlite": Backend.SQLITE,
    "memory": Backend.MEMORY,
}

# TLS query parameters: kept in the URL for kombu/redis-py (rediss://); on amqps:// parsed into
# AmqpTls (py-amqp takes them as a dict of other names, never from the URL).
_PASSTHROUGH = frozenset({"ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile"})
_CERT_REQS = {
    "cert_required": ssl.CERT_REQUIRED,
    "required": ssl.CERT_REQUIRED,
    "cert_optional": ssl.CERT_OPTIONAL,
    "optional": ssl.CERT_OPTIONAL,
    "cert_none": ssl.CERT_NONE,
    "none": ssl.CERT_NONE,
}

_CAPABILITIES = {
    Backend.AMQP: Capabilities(
        queue_expiry=True,
        message_expiry=True,
        nack_requeue=True,
        dead_lettering=True,
        cross_process=True,
        delete_queue=True,
        confirms=True,
        reply_queue_on_send=True,
    ),
    # Virtual transports: no broker-side expiry (lazy expiry instead), kombu's
    # reject(requeue=True) restores the message, writes are synchronous but unconfirmed.
    Backend.REDIS: Capabilities(
        queue_expiry=False,
        message_expiry=False,
        nack_requeue=True,
        dead_lettering=False,
        cross_process=True,
        delete_queue=True,
        confirms=False,
    ),
    Backend.SQLITE: Capabilities(
        queue_expiry=False,
        message_expiry=False,
        nack_requeue=True,
        dead_lettering=False,
        cross_process=True,
        delete_queue=True,
        confirms=False,
    ),
    Backend.MEMORY: Capabilities(
        queue_expiry=False,
        message_expiry=False,
        nack_requeue=True,
        dead_lettering=False,
        cross_process=False,
        delete_queue=True,
        confirms=False,
    ),
}


def capabilities_of(backend: Backend) -> Capabilities:
    """What ``backend`` can do (see :class:`~tdm_messaging.transport.base.Capabilities`)."""
    return _CAPABILITIES[backend]


@dataclass(frozen=True, kw_only=True, slots=True)
class AmqpTls:
    """TLS settings of an ``amqps://`` connection, from the URL's ``ssl_*`` parameters.

    Attributes:
        ca_certs: PEM file of the CAs to trust (``ssl_ca_certs``); ``None``: the system's
            default CAs (OpenSSL's, which ``SSL_CERT_FILE`` can point elsewhere).
        certfile: client certificate PEM (``ssl_certfile``), for brokers that ask for one.
        keyfile: its private key (``ssl_keyfile``).
        cert_reqs: ``ssl.CERT_REQUIRED`` (the default: the broker's certificate and host name
            are verified), ``CERT_OPTIONAL`` or ``CERT_NONE`` (no verification: tests only).
    """

    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    cert_reqs: ssl.VerifyMode = ssl.CERT_REQUIRED

    def kombu_ssl(self) -> dict[str, Any]:
        """A fresh ``ssl=`` dict for ``kombu.Connection`` (py-amqp's socket wrapper keywords).

        ``server_hostname`` is ``None``: kombu fills in the URL's host, so the host name is
        checked against the certificate whenever verification is on.
        """
        options: dict[str, Any] = {"cert_reqs": self.cert_reqs}
        if self.cert_reqs != ssl.CERT_NONE:
            options["server_hostname"] = None
        if self.ca_certs is not None:
            options["ca_certs"] = self.ca_certs
        if self.certfile is not None:
            options["certfile"] = self.certfile
        if self.keyfile is not None:
            options["keyfile"] = self.keyfile
        return options


@dataclass(frozen=True, kw_only=True, slots=True)
class KombuSettings:
    """Settings of one :class:`~tdm_messaging.transport.kombu.backend.KombuTransport`.

    Attributes:
        url: the URL handed to kombu, with this library's own query parameters removed.
        hosts: AMQP: one such URL per node of ``amqp://h1//;amqp://h2//`` (failover, in order);
            every other scheme: ``(url,)``.
        display_url: the URL as given, every password replaced by ``***`` (for messages and logs).
        backend: which broker kind the scheme names.
        reply_ttl: seconds; AMQP reply queues are declared with ``x-expires`` = ``reply_ttl * 1000``;
            elsewhere replies are stamped to expire after it (lazy expiry).
        quorum: declare permanent and dead-letter queues as RabbitMQ quorum queues; on by
            default when the URL lists several nodes (a cluster), off otherwise.
        reply_queue_type: ``"classic"`` (the default) or ``"quorum"``: the RabbitMQ type of reply
            queues. A quorum reply queue survives the loss of a node, at the cost of a Raft group
            per docset (see docs/brokers.md, running on a cluster).
        confirm_timeout: seconds to wait for a publisher confirm before
            :class:`~tdm_messaging.errors.SendNotConfirmedError`; on AMQP also the most any
            other wait for the broker's answer lasts (queue declare, basic_get, channel
            open/close) before :class:`~tdm_messaging.errors.BrokerUnavailableError`.
        heartbeat: AMQP heartbeat in seconds (0 disables); kept alive by a helper thread.
        tcp_user_timeout: AMQP on Linux: seconds that data sent may stay unacknowledged by the
            broker's TCP before the kernel drops the connection (``TCP_USER_TIMEOUT``); ``None``
            (the default): ``confirm_timeout``, so a broker stall is outlived as long as any wait
            for the broker is; ``0``: the kernel's own (retransmissions for about 15 minutes).
            Replaces py-amqp's 1 s, which turned a stall of over a second into a lost connection.
        connect_timeout: seconds to wait for the broker when connecting.
        poll_interval: seconds between polls of an idle queue on Redis-less virtual
            transports (SQLite, memory) while consuming.
        retry_max: most seconds between reconnect attempts while consuming.
        tls: ``amqps://`` only: the TLS settings (verification on unless ``ssl_cert_reqs``
            says otherwise); ``None`` for every other scheme.
    """

    url: str
    display_url: str
    backend: Backend
    hosts: tuple[str, ...] = ()
    reply_ttl: float = DEFAULT_REPLY_TTL
    quorum: bool = False
    reply_queue_type: str = "classic"
    confirm_timeout: float = 10.0
    heartbeat: float = 60.0
    tcp_user_timeout: float | None = None
    connect_timeout: float = 5.0
    poll_interval: float = 0.1
    retry_max: float = 10.0
    tls: AmqpTls | None = None

    @property
    def reply_ttl_ms(self) -> int:
        """``reply_ttl`` in whole milliseconds (at least 1)."""
        return max(1, round(self.reply_ttl * 1000))

    @property
    def tcp_user_timeout_ms(self) -> int:
        """The ``TCP_USER_TIMEOUT`` to set, in whole milliseconds (0: the kernel's default)."""
        seconds = self.confirm_timeout if self.tcp_user_timeout is None else self.tcp_user_timeout
        return 0 if seconds == 0 else max(1, round(seconds * 1000))


_FLOATS = {
    "reply_ttl": (0.001, "seconds an idle reply queue lives, e.g. reply_ttl=86400"),
    "confirm_timeout": (0.001, "seconds to wait for a publisher confirm, e.g. confirm_timeout=10"),
    "heartbeat": (0.0, "AMQP heartbeat seconds, 0 to disable, e.g. heartbeat=60"),
    "connect_timeout": (0.001, "seconds to wait when connecting, e.g. connect_timeout=5"),
    "poll_interval": (0.001, "seconds between polls of an idle SQLite/memory queue, e.g. poll_interval=0.1"),
    "retry_max": (0.001, "most seconds between reconnect attempts, e.g. retry_max=10"),
}
_MAX_TCP_USER_TIMEOUT = 2_147_483
"""The kernel takes ``TCP_USER_TIMEOUT`` as a C int of milliseconds: about 24.8 days at most."""
_BOOLS = {"quorum": "declare permanent queues as RabbitMQ quorum queues: quorum=true|false"}
_OTHER = {
    "dialect": "only 'plain' (logical names as they are) for kombu URLs",
    "reply_queue_type": "the RabbitMQ type of reply queues: reply_queue_type=classic|quorum",
    "tcp_user_timeout": (
        "seconds sent data may stay unacknowledged by the broker before the kernel drops the connection: "
        f"0 (the kernel's default) or from 0.001 to {_MAX_TCP_USER_TIMEOUT}, e.g. tcp_user_timeout=30 "
        "(left out: confirm_timeout)"
    ),
}
_QUEUE_TYPES = ("classic", "quorum")
_VALID = sorted([*_FLOATS, *_BOOLS, *_OTHER, *_PASSTHROUGH, NAMESPACE_PARAM])  # namespace: see open_transport
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_kombu_url(url: str) -> KombuSettings:
    """Parse a kombu broker URL and this library's query parameters into settings.

    Accepted schemes: ``amqp``, ``amqps``, ``redis``, ``rediss``, ``sqla+sqlite``, ``memory``;
    ``amqp://h1//;amqp://h2//?...`` lists the nodes of a RabbitMQ cluster (failover, and
    ``quorum`` on unless ``quorum=false``). Our parameters (``reply_ttl``, ``quorum``,
    ``reply_queue_type``, ``confirm_timeout``, ``heartbeat``, ``tcp_user_timeout``,
    ``connect_timeout``, ``poll_interval``, ``retry_max``, ``dialect=plain``) are removed
    before the URL goes to kombu. TLS parameters (``ssl_ca_certs``, ``ssl_certfile``,
    ``ssl_keyfile``, ``ssl_cert_reqs=required|optional|none``) stay in a ``rediss://`` URL
    for redis-py; on ``amqps://`` they become :attr:`KombuSettings.tls`.

    Raises:
        ConfigurationError: unknown scheme, unknown parameter (the message lists the valid
            ones), or a value that is not a number / boolean in range.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(f"broker URL {url!r} has no scheme; expected e.g. 'amqp://host:5672//'")
    if ";" in url:
        return _parse_failover(url)
    display = redact_url(url)
    scheme = url.split("://", 1)[0].lower()
    backend = _SCHEME_BACKEND.get(scheme)
    if backend is None:
        raise ConfigurationError(
            f"{display}: scheme {scheme!r} is not a kombu transport of this library; use one of "
            + ", ".join(sorted(_SCHEME_BACKEND))
        )
    base, _, query = url.partition("?")
    values: dict[str, object] = {}
    kept: list[tuple[str, str]] = []
    for name, raw in parse_qsl(query, keep_blank_values=True):
        if name in _PASSTHROUGH:
            kept.append((name, raw))
        elif name in _FLOATS:
            values[name] = _parse_float(name, raw, display)
        elif name in _BOOLS:
            values[name] = _parse_bool(name, raw, display)
        elif name == "reply_queue_type":
            if raw.lower() not in _QUEUE_TYPES:
                raise ConfigurationError(f"{display}: reply_queue_type={raw!r} is not valid; {_OTHER[name]}")
            values[name] = raw.lower()
        elif name == "tcp_user_timeout":
            values[name] = _parse_tcp_user_timeout(raw, display, backend)
        elif name == "dialect":
            if raw.lower() != "plain":
                raise ConfigurationError(
                    f"{display}: dialect={raw!r} is not valid for a kombu URL; kombu transports use the "
                    "logical queue names as they are (dialect=plain), or leave the parameter out"
                )
        else:
            raise ConfigurationError(
                f"{display}: unknown parameter {name!r}; valid parameters are " + ", ".join(_VALID)
            )
    if values.get("quorum") and backend is not Backend.AMQP:
        raise ConfigurationError(f"{display}: quorum=true needs RabbitMQ (amqp:// or amqps://)")
    if values.get("reply_queue_type", "classic") != "classic" and backend is not Backend.AMQP:
        raise ConfigurationError(f"{display}: reply_queue_type=quorum needs RabbitMQ (amqp:// or amqps://)")
    if backend is Backend.AMQP:
        if kept and scheme != "amqps":
            raise ConfigurationError(
                f"{display}: {', '.join(name for name, _ in kept)} need a TLS connection; use amqps:// "
                "(RabbitMQ's TLS listener, usually port 5671)"
            )
        if scheme == "amqps":
            values["tls"] = _amqp_tls(dict(kept), display)
        kept = []
    kombu_url = base + ("?" + urlencode(kept) if kept else "")
    return KombuSettings(
        url=kombu_url,
        display_url=display,
        backend=backend,
        hosts=(kombu_url,),
        **values,  # type: ignore[arg-type]
    )


def _parse_failover(url: str) -> KombuSettings:
    """``amqp://h1//;amqp://h2//?params``: the nodes of one RabbitMQ cluster, tried in turn.

    This library's parameters may follow any of the URLs and hold for all of them (given
    twice, they must agree); the scheme must be amqp:// (or amqps://) throughout.
    """
    display = redact_url(url)
    parts = [part for part in url.split(";") if part.strip()]
    each = [parse_kombu_url(part.strip()) for part in parts]
    first = each[0]
    if any(s.backend is not Backend.AMQP for s in each) or len({s.tls is None for s in each}) > 1:
        raise ConfigurationError(
            f"{display}: a list of broker URLs (separated by ';') is a failover list of RabbitMQ nodes: give "
            "amqp:// URLs only (or amqps:// only), e.g. 'amqp://h1:5672//;amqp://h2:5672//'"
        )
    options: dict[str, object] = {}
    for settings, part in zip(each, parts, strict=True):
        given = {name for name, _ in parse_qsl(part.partition("?")[2], keep_blank_values=True)}
        for name in given - set(_PASSTHROUGH) - {"dialect"}:
            value = getattr(settings, name)
            if name in options and options[name] != value:
                raise ConfigurationError(
                    f"{display}: {name} is given twice with different values; give it once (it holds for every host)"
                )
            options[name] = value
        if given & _PASSTHROUGH:
            options["tls"] = settings.tls
    hosts = tuple(s.url for s in each)
    # Several nodes: a cluster, where a classic queue lives on one node and is gone with it.
    options.setdefault("quorum", True)
    return KombuSettings(
        url=";".join(hosts),
        display_url=display,
        backend=Backend.AMQP,
        hosts=hosts,
        **{**{"tls": first.tls}, **options},  # type: ignore[arg-type]
    )


def _amqp_tls(params: dict[str, str], display: str) -> AmqpTls:
    raw_reqs = params.get("ssl_cert_reqs", "required")
    cert_reqs = _CERT_REQS.get(raw_reqs.strip().lower())
    if cert_reqs is None:
        raise ConfigurationError(
            f"{display}: ssl_cert_reqs={raw_reqs!r} is not valid; give required (the default: verify the "
            "broker's certificate), optional or none"
        )
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if name in params and not params[name]:
            raise ConfigurationError(f"{display}: {name} is empty; give the path of a PEM file or leave it out")
    if "ssl_keyfile" in params and "ssl_certfile" not in params:
        raise ConfigurationError(f"{display}: ssl_keyfile needs ssl_certfile (the client certificate it belongs to)")
    return AmqpTls(
        ca_certs=params.get("ssl_ca_certs"),
        certfile=params.get("ssl_certfile"),
        keyfile=params.get("ssl_keyfile"),
        cert_reqs=cert_reqs,
    )


def _parse_float(name: str, raw: str, display: str) -> float:
    minimum, hint = _FLOATS[name]
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= minimum or value == float("inf"):
        raise ConfigurationError(f"{display}: {name}={raw!r} is not valid; give {hint} (at least {minimum:g})")
    return value


def _parse_tcp_user_timeout(raw: str, display: str, backend: Backend) -> float:
    if backend is not Backend.AMQP:
        raise ConfigurationError(
            f"{display}: tcp_user_timeout needs RabbitMQ (amqp:// or amqps://); the other kombu transports "
            "keep their driver's socket settings"
        )
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (value == 0 or 0.001 <= value <= _MAX_TCP_USER_TIMEOUT):  # NaN fails both
        raise ConfigurationError(f"{display}: tcp_user_timeout={raw!r} is not valid; give {_OTHER['tcp_user_timeout']}")
    return value


def _parse_bool(name: str, raw: str, display: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ConfigurationError(f"{display}: {name}={raw!r} is not valid; {_BOOLS[name]}")
