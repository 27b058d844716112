"""Broker URLs in messages and logs: every password hidden, in one place for every backend and command."""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["redact_url", "scrub"]


def redact_url(url: str) -> str:
    """``url`` with every password replaced by ``***``.

    Each URL of a failover list (``amqp://u:p@h1//;amqp://u:p@h2//``) is redacted, and a URL
    too broken to parse keeps only what follows its ``@``, so no password can slip through.
    """
    return ";".join(_redact_one(part) for part in url.split(";"))


def scrub(text: str, url: str) -> str:
    """``text`` (e.g. a driver's error message) with ``url`` redacted and every password of it masked."""
    text = text.replace(url, redact_url(url))
    for part in url.split(";"):
        password = _password(part)
        if password:
            text = text.replace(password, "***")
    return text


def _redact_one(url: str) -> str:
    try:
        password = urlsplit(url).password
    except ValueError:
        return url.split("@", 1)[-1] if "@" in url else url
    return url.replace(f":{password}@", ":***@", 1) if password else url


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None
