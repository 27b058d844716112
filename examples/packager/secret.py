"""The deployment secret that keys archive names: given, or made once and kept in storage, 0600."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from typing import TYPE_CHECKING, Final

from tdm_messaging import ConfigurationError

if TYPE_CHECKING:
    from examples.packager.storage import Storage

__all__ = ["MIN_SECRET_CHARS", "SECRET_NAME", "archive_fingerprint", "check_secret", "load_secret", "new_secret"]

log = logging.getLogger(__name__)

SECRET_NAME: Final = ".archive-secret"
"""Where storage keeps a secret it made: a hidden name, never an archive name, never served."""
MIN_SECRET_CHARS: Final = 32
_MAX_SECRET_CHARS: Final = 1024
_HOW: Final = "make one with: python -c 'import secrets; print(secrets.token_hex(32))'"


def archive_fingerprint(secret: bytes, docset_id: str, content_digest: str) -> str:
    """The fingerprint in an archive's name: HMAC-SHA256, keyed by ``secret``, of the docset id and its content.

    The content digest is a SHA-256 of public data (ids, metadata, text links), so anyone could
    compute it; the key is what makes the name unguessable, and the docset id in the message
    gives two docsets with the same members two different names.

    Args:
        secret: the deployment's secret (:func:`load_secret`).
        docset_id: the docset the archive is of.
        content_digest: the hex SHA-256 of the layout, the formats and the listing.

    Returns:
        64 lowercase hex digits.
    """
    message = json.dumps(["tdm-archive-name-1", docset_id, content_digest]).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def check_secret(text: str, *, where: str) -> bytes:
    """The secret ``text`` (from ``where``, for the message) as bytes, if it is long enough and printable ASCII.

    Raises:
        ConfigurationError: it is shorter than :data:`MIN_SECRET_CHARS`, longer than 1024
            characters, or has characters other than printable ASCII.
    """
    value = text.strip()
    if not (value.isascii() and value.isprintable()) or " " in value:
        raise ConfigurationError(f"the archive secret in {where} must be printable ASCII without spaces; {_HOW}")
    if not MIN_SECRET_CHARS <= len(value) <= _MAX_SECRET_CHARS:
        raise ConfigurationError(
            f"the archive secret in {where} has {len(value)} characters; give {MIN_SECRET_CHARS} to "
            f"{_MAX_SECRET_CHARS}; {_HOW}"
        )
    return value.encode("ascii")


def new_secret() -> bytes:
    """A fresh random secret: 64 hex digits (256 bits)."""
    return secrets.token_hex(32).encode("ascii")


def load_secret(storage: Storage, given: str | None = None) -> bytes:
    """The deployment's archive secret: ``given`` if set, else the one ``storage`` keeps, made on first use.

    Keeping it in the storage itself lets every packager that shares the storage, and every
    restart, name an unchanged docset's archive alike (so it is reused); the first packager to
    store one wins a race between two (a create-if-absent write).

    Raises:
        ConfigurationError: ``given`` or the stored secret is not a valid secret.
        StorageError: the storage could not be read or written.
    """
    if given is not None:
        return check_secret(given, where="TDM_ARCHIVE_SECRET")
    stored = storage.read_secret()
    if stored is None:
        stored = storage.create_secret(new_secret())
        log.info("archive names are keyed by the secret kept in %s (made now or by a peer)", storage.secret_location())
    try:
        text = stored.decode("ascii")
    except UnicodeDecodeError:
        text = "\x00"  # refused below with the usual message
    return check_secret(text, where=storage.secret_location())
