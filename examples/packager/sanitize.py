"""Archive member names from untrusted ids: one safe path component, never a path, a device or a dot name."""

from __future__ import annotations

import hashlib
import re
from typing import Final

__all__ = ["MAX_COMPONENT_LENGTH", "is_safe_member_path", "safe_component"]

MAX_COMPONENT_LENGTH: Final = 100
"""Longest sanitised name kept before the fingerprint suffix (file systems allow 255 bytes)."""

_SAFE: Final = re.compile(r"[A-Za-z0-9._-]")
# Device names Windows refuses whatever the extension; an extracted bag should open everywhere.
_RESERVED: Final = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"COM{i}" for i in range(1, 10)] + [f"LPT{i}" for i in range(1, 10)]
)


def safe_component(name: str) -> str:
    """Turn an untrusted id (e.g. a document id from the API) into one safe archive path component.

    A name made only of ``A-Z a-z 0-9 . _ -`` that does not start with a dot, is not a
    device name and is at most :data:`MAX_COMPONENT_LENGTH` long is kept as it is. Any
    other name has each unsafe character (``/``, ``\\``, NUL, control characters, spaces,
    non-ASCII...) replaced by ``_``, leading dots replaced, is cut to the limit, and gets
    ``~`` plus 16 hex digits of the SHA-256 of the original. A kept name never contains
    ``~``, so a changed name cannot collide with a kept one, and two different originals
    collide only if their hashes do.

    Args:
        name: the untrusted id.

    Returns:
        A non-empty name free of separators, dot segments, NUL and control characters.
    """
    cleaned = "".join(ch if _SAFE.fullmatch(ch) else "_" for ch in name)
    stripped = cleaned.lstrip(".")
    cleaned = "_" * (len(cleaned) - len(stripped)) + stripped
    unchanged = (
        cleaned == name and 0 < len(name) <= MAX_COMPONENT_LENGTH and name.split(".", 1)[0].upper() not in _RESERVED
    )
    if unchanged:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{cleaned[:MAX_COMPONENT_LENGTH] or '_'}~{digest}"


def is_safe_member_path(path: str) -> bool:
    """Whether ``path`` is a relative archive path that stays inside the archive's root when extracted.

    Refused: empty names, absolute paths (``/x``, ``C:x``), backslashes, NUL and control
    characters, and empty, ``.`` or ``..`` segments.
    """
    if not path or path.startswith("/") or "\\" in path:
        return False
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        return False
    if re.match(r"[A-Za-z]:", path):
        return False
    return all(segment not in ("", ".", "..") for segment in path.split("/"))
