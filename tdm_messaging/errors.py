"""The one exception tree of tdm_messaging: local faults (ours), remote faults (the peer's), transport faults."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BodyTooLargeError",
    "BrokerRefusedError",
    "BrokerUnavailableError",
    "ConfigurationError",
    "DecodeError",
    "EncodeError",
    "InvalidArgumentError",
    "InvalidDestinationError",
    "LocalProtocolError",
    "MessagingError",
    "RemoteProtocolError",
    "SendNotConfirmedError",
    "TransportClosedError",
    "TransportError",
    "UnknownMessageTypeError",
    "UnsupportedVersionError",
]


class MessagingError(Exception):
    """Root of every error this library raises on purpose.

    Catch this to handle anything tdm_messaging reports; every message says what
    was wrong, where, and (when there is one) how to fix it.
    """


class LocalProtocolError(MessagingError):
    """We, or the code calling us, broke the rules (bad argument, bad config, unencodable message)."""


class RemoteProtocolError(MessagingError):
    """The peer broke the rules: what it sent cannot be understood."""


class EncodeError(LocalProtocolError):
    """A message could not be turned into a wire body (e.g. it has no form in the chosen format)."""


class ConfigurationError(LocalProtocolError):
    """A URL, option or setting is wrong; the message names it and says what is accepted."""


class InvalidArgumentError(LocalProtocolError, ValueError):
    """A call broke a contract rule of the API (a read limit below 1, a destination that is not one, ...)."""


class InvalidDestinationError(LocalProtocolError, ValueError):
    """A docset id or destination name is not allowed (slashes, wildcards, control characters, length)."""


class DecodeError(RemoteProtocolError):
    """A wire body could not be decoded into a message.

    Attributes:
        excerpt: the offending line or fragment, quoted in the message when known.
    """

    def __init__(self, message: str, *, excerpt: str | None = None) -> None:
        super().__init__(message)
        self.excerpt = excerpt


class BodyTooLargeError(DecodeError):
    """A body exceeded the configured size limit; it was refused before parsing."""


class UnsupportedVersionError(DecodeError):
    """The message's protocol major version is not one this library speaks."""


class UnknownMessageTypeError(DecodeError):
    """The message's type is not one this protocol version defines."""


class TransportError(MessagingError):
    """Talking to the broker failed. Raised by transports, translated from the driver's own error.

    Attributes:
        unconfirmed: from :meth:`~tdm_messaging.transport.base.Transport.send_many`, the indices of
            the sends not known to be stored; ``None`` when it does not say (then any may be).
        refused: the subset of ``unconfirmed`` surely not stored (nacked, returned, or never sent).
    """

    unconfirmed: tuple[int, ...] | None = None
    refused: tuple[int, ...] = ()


class BrokerUnavailableError(TransportError):
    """The broker could not be reached, or the connection was lost and could not be restored."""


class BrokerRefusedError(TransportError):
    """The broker answered with an error (access refused, inequivalent queue arguments, ...)."""


class SendNotConfirmedError(TransportError):
    """A send that asked for a confirmation (receipt / publisher confirm) did not get one.

    From :meth:`~tdm_messaging.transport.base.Transport.send_many` it says which sends it is about
    (``unconfirmed``, ``refused``: see :class:`TransportError`).
    """

    def __init__(self, message: str, *, unconfirmed: Sequence[int] | None = None, refused: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.unconfirmed = None if unconfirmed is None else tuple(unconfirmed)
        self.refused = tuple(refused)


class TransportClosedError(TransportError):
    """The transport was used after close()."""
