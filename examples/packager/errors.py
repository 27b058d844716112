"""The packager's errors, all under the library's one root, ``MessagingError``."""

from __future__ import annotations

from tdm_messaging import LocalProtocolError, MessagingError, RemoteProtocolError

__all__ = [
    "FetchError",
    "DeleteRefusedError",
    "InvalidArchiveNameError",
    "LimitError",
    "PackagerError",
    "StorageError",
    "UnsafeUrlError",
]


class PackagerError(MessagingError):
    """Something the packager could not do; ``retryable`` says whether trying again later may help."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class UnsafeUrlError(PackagerError, RemoteProtocolError):
    """A URL (in a request, a page link or a redirect) points outside the configured API base: refused (SSRF)."""


class FetchError(PackagerError):
    """The API could not be read: an HTTP error, a network error, or a response we cannot understand."""


class StorageError(PackagerError):
    """The archive could not be stored, found or deleted (local directory or S3)."""


class InvalidArchiveNameError(PackagerError, LocalProtocolError):
    """A storage key does not have the form the packager writes."""


class LimitError(PackagerError):
    """A job went over one of the packager's limits (bytes, members, pages, deadline); the message names it."""


class DeleteRefusedError(PackagerError, RemoteProtocolError):
    """A delete request names an archive that is not this packager's (another host, bucket or prefix): refused."""
