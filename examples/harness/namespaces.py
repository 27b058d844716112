"""Broker-URL helpers: give every process of one run a queue namespace of its own."""

from __future__ import annotations

import secrets
from typing import Final
from urllib.parse import parse_qsl, urlencode

__all__ = ["unique_namespace", "with_namespace"]

_NAMESPACE_PARAM: Final = "namespace"


def unique_namespace(stem: str) -> str:
    """A queue namespace no other run will pick: ``<stem>-<12 hex digits>``."""
    return f"{stem}-{secrets.token_hex(6)}"


def with_namespace(url: str, namespace: str) -> str:
    """``url`` with the broker-URL parameter ``namespace=<namespace>``: every queue becomes ``<namespace>/<queue>``.

    A URL that already names a namespace keeps it as a stem: ``<theirs>-<namespace>``, so a run
    stays apart from other runs inside a deployment's namespace too.
    """
    base, sep, query = url.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True) if sep else []
    theirs = [value for name, value in pairs if name == _NAMESPACE_PARAM]
    if not theirs:
        joiner = "&" if query else ("" if sep else "?")
        return f"{url}{joiner}{_NAMESPACE_PARAM}={namespace}"
    rest = [(name, value) for name, value in pairs if name != _NAMESPACE_PARAM]
    return f"{base}?{urlencode([*rest, (_NAMESPACE_PARAM, f'{theirs[0]}-{namespace}')])}"
