"""What a ``--role packager`` run saw: per request the replies, polls and downloads; the checks read only this."""

from __future__ import annotations

from dataclasses import dataclass, field

from tdm_messaging.conformance.wire import Received, messages
from tdm_messaging.envelope import Envelope
from tdm_messaging.models import Complete, Deleted, DeleteRequest, Failed, PackageRequest
from tdm_messaging.status import DocsetStatus

__all__ = ["Fetch", "Lifecycle", "PackagerSeen"]


@dataclass(frozen=True, slots=True)
class Fetch:
    """What a GET of an archive URL gave: an HTTP status (0: no answer), the body's size and sha256."""

    status: int
    size: int = 0
    sha256: str = ""
    error: str = ""


@dataclass
class Lifecycle:
    """One package request the kit sent, and what the packager answered on its reply queue.

    Attributes:
        docset_id: the docset (its reply queue is ``package/<docset_id>``).
        request: the request sent (``None`` for a seed-style one, which carries no id).
        replies: what the reply queue got before any delete request, the kit's own copy left out.
        delete: the delete request sent afterwards, if any.
        after_delete: what the reply queue got after it.
        states: the statuses of polls made through ``PackagingClient.status``, in order.
        fetched: the archive's download, when fetched.
        fetched_after_delete: the archive URL's answer after ``deleted``.
    """

    docset_id: str
    request: PackageRequest | None = None
    replies: list[Received] = field(default_factory=list)
    delete: DeleteRequest | None = None
    after_delete: list[Received] = field(default_factory=list)
    states: list[DocsetStatus] = field(default_factory=list)
    fetched: Fetch | None = None
    fetched_after_delete: Fetch | None = None

    @property
    def terminal(self) -> Complete | Failed | None:
        """The first complete or failed among the replies."""
        return next((m for m in messages(self.replies) if isinstance(m, Complete | Failed)), None)

    @property
    def deleted(self) -> Deleted | None:
        """The first deleted after the delete request."""
        return next((m for m in messages(self.after_delete) if isinstance(m, Deleted)), None)


@dataclass
class PackagerSeen:
    """Everything a ``--role packager`` run saw; the checks below read only this."""

    json: Lifecycle
    text: Lifecycle
    seed: Lifecycle
    polled: Lifecycle
    duplicate: Lifecycle
    missing: Lifecycle
    invalid: Lifecycle
    future_major: Lifecycle
    after_poison: Lifecycle
    poison_bodies: list[bytes] = field(default_factory=list)
    dead_letters: list[Envelope] = field(default_factory=list)
    fetch_archives: bool = False
