"""How a stomp.py or socket error becomes a tdm_messaging error: the STOMP wing's one translator."""

from __future__ import annotations

from collections.abc import Sequence

import stomp.exception

from tdm_messaging.errors import BrokerRefusedError, BrokerUnavailableError
from tdm_messaging.transport.home_node import home_node_down, is_home_node_down
from tdm_messaging.transport.stomp.frames import explain_refusal
from tdm_messaging.transport.stomp.settings import StompSettings

__all__ = ["DRIVER_ERRORS", "HINT", "ErrorFrame", "cannot_connect", "error_frame", "unavailable"]

ErrorFrame = BrokerRefusedError | BrokerUnavailableError
"""What a broker's ERROR frame becomes: a refusal, or (a queue's node is down) unavailability."""

DRIVER_ERRORS: tuple[type[BaseException], ...] = (stomp.exception.StompException, OSError)
"""What stomp.py (and the socket under it) raise when a connection cannot be used; ``ssl.SSLError`` is an OSError."""

HINT = (
    "check that the broker runs and listens for STOMP there (RabbitMQ: rabbitmq-plugins enable rabbitmq_stomp; "
    "ActiveMQ: a stomp transportConnector)"
)
"""What to check when a STOMP broker cannot be reached at all."""


def cannot_connect(
    address: str, exc: BaseException, *, tls: bool = False, reasons: Sequence[str] = ()
) -> BrokerUnavailableError:
    """The error to raise ``from exc`` when a first connection to ``address`` failed: what, where, what to check.

    Args:
        reasons: what stomp.py logged about the failed attempt (the socket's error), said instead of its
            exception's bare name.
    """
    detail = reasons[-1] if reasons else _detail(exc)
    return BrokerUnavailableError(
        f"cannot connect to the STOMP broker at {address}{' (TLS)' if tls else ''} ({detail}); {HINT}"
    )


def unavailable(what: str, address: str, exc: BaseException) -> BrokerUnavailableError:
    """The error to raise ``from exc`` when ``what`` failed because the connection to ``address`` is unusable.

    Broker refusals (ERROR frames) are not driver errors: the listener turns them into
    :class:`~tdm_messaging.errors.BrokerRefusedError` with the broker's own words.

    Args:
        what: what was being done, e.g. ``"sending to 'package/5'"``.
        address: ``host:port`` of the broker.
        exc: the driver's exception.
    """
    return BrokerUnavailableError(
        f"{what} failed: the connection to the STOMP broker at {address} is unusable ({_detail(exc)})"
    )


def _detail(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def error_frame(message: str, details: str, settings: StompSettings) -> ErrorFrame:
    """The error a broker's ERROR frame (its ``message`` header and body) stands for.

    RabbitMQ's "home node ... of durable queue ... is down or inaccessible" is not a refusal:
    the same frame works once the node is back, so it is :class:`BrokerUnavailableError`
    (callers back off and retry; a worker burns no attempt on it). Anything else is the
    broker's refusal, explained in one sentence.
    """
    if is_home_node_down(f"{message} {details}"):
        return BrokerUnavailableError(
            home_node_down("a frame", f"the STOMP broker at {settings.address}", f"{message} {details}")
        )
    return BrokerRefusedError(explain_refusal(message, details, settings))
