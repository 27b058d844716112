"""How a kombu or py-amqp error becomes a tdm_messaging error, and what of the connection it leaves broken."""

from __future__ import annotations

import enum
import errno
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import amqp.exceptions

from tdm_messaging.errors import (
    BrokerRefusedError,
    BrokerUnavailableError,
    ConfigurationError,
    TransportError,
)
from tdm_messaging.transport.home_node import home_node_down, is_home_node_down
from tdm_messaging.transport.kombu.settings import KombuSettings

__all__ = ["Breaks", "Translation", "is_refusal", "translate"]

log = logging.getLogger(__name__)


class Breaks(enum.Enum):
    """What an error leaves unusable, so the connection owner knows what to drop."""

    NOTHING = enum.auto()
    CHANNEL = enum.auto()
    """The broker closed a channel after an error: open fresh channels on the same connection."""
    CONNECTION = enum.auto()
    """Lost, or in an unknown state: drop the connection (no I/O); the next operation reconnects."""


@dataclass(frozen=True, slots=True)
class Translation:
    """The error to raise (``from`` the driver's) and what it breaks."""

    error: TransportError
    breaks: Breaks


def is_refusal(exc: BaseException) -> bool:
    """Whether a 406 PRECONDITION_FAILED refuses what we asked (inequivalent queue arguments).

    Any other 406 (a consumer_timeout, an unknown delivery tag) is a channel loss.
    """
    return "inequivalent arg" in str(exc).lower()


def _is_auth_failure(exc: BaseException) -> bool:
    name = type(exc).__name__.lower()
    text = str(exc).lower()
    return "authentication" in name or "noauth" in text or "invalid password" in text or "wrongpass" in text


def translate(
    exc: Exception,
    *,
    what: str,
    settings: KombuSettings,
    driver_errors: Callable[[], tuple[type[BaseException], ...]],
) -> Translation | None:
    """Translate ``exc``, raised while doing ``what``; None when it is not the driver's to translate.

    ``driver_errors`` gives the connection and channel errors of the backend's driver; it is
    called only for an error none of the specific rules matched. None means: re-raise ``exc``
    as it is (already ours, a bad argument, or not a broker's error at all).
    """
    url = settings.display_url
    if isinstance(exc, TransportError):
        return None
    if isinstance(exc, TimeoutError) and exc.errno == errno.ETIMEDOUT:
        # Not our socket timeout (no errno) but the kernel's: sent data went unacknowledged for
        # TCP_USER_TIMEOUT (or keepalive probes went unanswered), and the connection is gone.
        log.warning("%s on %s: the kernel dropped the connection (%s)", what, url, exc)
        ms = settings.tcp_user_timeout_ms
        waited = f"tcp_user_timeout={ms / 1000:g} s" if ms else "the kernel's retransmission time (tcp_user_timeout=0)"
        return Translation(
            BrokerUnavailableError(
                f"{what} on {url}: the broker acknowledged none of the data sent for {waited}, so the "
                "connection was dropped; check that the broker is running and reachable, or raise "
                "tcp_user_timeout if it only stalls"
            ),
            Breaks.CONNECTION,
        )
    if isinstance(exc, TimeoutError):
        # A socket timeout mid-conversation leaves the connection in an unknown state.
        log.warning("%s on %s: no answer from the broker in time; dropping the connection", what, url)
        return Translation(
            BrokerUnavailableError(
                f"{what} on {url}: the broker did not answer in time (connect_timeout="
                f"{settings.connect_timeout:g} s when connecting, confirm_timeout={settings.confirm_timeout:g} s "
                "for other answers); check that it is running and reachable, or raise the timeout if it is only slow"
            ),
            Breaks.CONNECTION,
        )
    if isinstance(exc, amqp.exceptions.NotFound):
        if is_home_node_down(str(exc)):
            log.warning("%s on %s: a queue's home node is down: %s", what, url, exc)
            return Translation(BrokerUnavailableError(home_node_down(what, url, str(exc))), Breaks.CHANNEL)
        return Translation(BrokerRefusedError(f"{what} on {url}: {exc}"), Breaks.CHANNEL)
    if isinstance(exc, (amqp.exceptions.AccessRefused, amqp.exceptions.NotAllowed)):
        return Translation(
            BrokerRefusedError(
                f"{what} on {url}: access refused ({exc}); check the user name, password and virtual host in the URL"
            ),
            Breaks.NOTHING,
        )
    if isinstance(exc, amqp.exceptions.PreconditionFailed):
        return _precondition_failed(exc, what, url)
    if isinstance(exc, amqp.exceptions.ChannelError):
        return Translation(BrokerRefusedError(f"{what} on {url}: {exc}"), Breaks.CHANNEL)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Translation(
            BrokerUnavailableError(
                f"{what} on {url}: the broker's TLS certificate was refused ({exc.verify_message or exc}); check "
                "that the CA file given as ssl_ca_certs (or SSL_CERT_FILE, or the system's CAs) is the CA that "
                "signed the broker's certificate, and that the certificate names the host of the URL"
            ),
            Breaks.CONNECTION,
        )
    if isinstance(exc, ssl.SSLError):
        return Translation(
            BrokerUnavailableError(
                f"{what} on {url}: TLS failed ({exc}); check that the port is the broker's TLS listener "
                "(amqps://, usually 5671) and that the ssl_* files of the URL are valid"
            ),
            Breaks.CONNECTION,
        )
    if isinstance(exc, (ConfigurationError, ValueError, TypeError)):
        return None
    if _is_auth_failure(exc):
        return Translation(
            BrokerRefusedError(f"{what} on {url}: access refused ({exc}); check the user name and password in the URL"),
            Breaks.NOTHING,
        )
    if isinstance(exc, driver_errors()):
        return Translation(
            BrokerUnavailableError(
                f"{what} on {url} failed: {type(exc).__name__}: {exc}; "
                "check that the broker is running and reachable at that address"
            ),
            Breaks.CONNECTION,
        )
    return None


def _precondition_failed(exc: amqp.exceptions.PreconditionFailed, what: str, url: str) -> Translation:
    if not is_refusal(exc):
        # Not about what we asked: RabbitMQ closed a channel, e.g. a consumer's after its
        # consumer_timeout ("delivery acknowledgement on channel N timed out"). Its
        # unacknowledged messages are redelivered; drop the connection (the next
        # operation reconnects, consume() resubscribes).
        log.warning("%s on %s: the broker closed a channel: %s", what, url, exc)
        return Translation(
            BrokerUnavailableError(
                f"{what} on {url}: the broker closed a channel ({exc}); the connection is reopened and "
                "unacknowledged messages are redelivered. If this is RabbitMQ's consumer_timeout, raise it "
                "above the longest job"
            ),
            Breaks.CONNECTION,
        )
    return Translation(
        BrokerRefusedError(
            f"{what} on {url}: {exc}; a queue of that name exists with other arguments (queue arguments are "
            "immutable): check reply_ttl, quorum and reply_queue_type match every peer, or delete the queue"
        ),
        Breaks.CHANNEL,
    )
