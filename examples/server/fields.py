"""The value types the API's bodies share, each with one rule that JSON Schema states exactly (ids, years, text)."""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import AfterValidator, BeforeValidator, Field

from examples.server.search_limits import (
    MAX_NEAR_DISTANCE,
    MAX_NEAR_GROUPS,
    MAX_NEAR_TERMS,
    MAX_PREFIX_TERMS,
    MAX_TERMS,
)

__all__ = [
    "MAX_SQLITE_INT",
    "NOT_BLANK",
    "WHITE_SPACE",
    "WHITE_SPACE_CLASS",
    "Department",
    "DocumentId",
    "Name",
    "SearchText",
    "Year",
    "strip_white_space",
    "whole_number",
]

MAX_SQLITE_INT: Final = (1 << 63) - 1
"""SQLite's INTEGER is 64-bit: an id above this can name no row (and would fail at the query, not as a 422)."""

# The Unicode White_Space property: one definition every language can look up. Python's
# str.isspace() and the regex flavours' \s all differ from it (and from each other) at the edges
# (U+001C..U+001F, U+0085, U+FEFF), so the API never says "white space" without this list.
_WHITE_SPACE_RANGES: Final = (
    (0x09, 0x0D),
    (0x20, 0x20),
    (0x85, 0x85),
    (0xA0, 0xA0),
    (0x1680, 0x1680),
    (0x2000, 0x200A),
    (0x2028, 0x2029),
    (0x202F, 0x202F),
    (0x205F, 0x205F),
    (0x3000, 0x3000),
)
WHITE_SPACE: Final = "".join(chr(c) for low, high in _WHITE_SPACE_RANGES for c in range(low, high + 1))
"""The 25 characters of the Unicode White_Space property, which the server strips from both ends of text fields."""

WHITE_SPACE_CLASS: Final = "".join(
    f"\\u{low:04X}" if low == high else f"\\u{low:04X}-\\u{high:04X}" for low, high in _WHITE_SPACE_RANGES
)
""":data:`WHITE_SPACE` inside a regex character class, in escapes read alike by ECMA-262, Python and Rust."""
NOT_BLANK: Final = f"[^{WHITE_SPACE_CLASS}]"
"""The JSON Schema pattern of text with a character outside :data:`WHITE_SPACE`."""


def strip_white_space(value: str) -> str:
    """``value`` without :data:`WHITE_SPACE` at either end.

    Raises:
        ValueError: nothing else is left (JSON Schema: ``"pattern": NOT_BLANK``).
    """
    stripped = value.strip(WHITE_SPACE)
    if not stripped:
        raise ValueError("is only white space; give some text")
    return stripped


def whole_number(value: Any) -> Any:
    """A float with no fraction as the int it spells: JSON Schema's ``integer`` admits ``1.0`` (and ``1e2``).

    Everything else passes unchanged to the strict int check, which refuses booleans, strings and fractions.
    """
    if type(value) is float and value.is_integer():
        return int(value)
    return value


def _text(max_length: int, description: str) -> Any:
    # The length is counted as sent, before stripping, so the rule is exactly the JSON Schema
    # {"maxLength": max_length, "pattern": NOT_BLANK} ("pattern" also rules out the empty string).
    return Field(min_length=1, max_length=max_length, description=description, json_schema_extra={"pattern": NOT_BLANK})


Name = Annotated[
    str, _text(200, "1 to 200 characters, not all white space; stored stripped"), AfterValidator(strip_white_space)
]
"""A docset's name: 1 to 200 characters as sent, not all :data:`WHITE_SPACE`; stored stripped."""
Department = Annotated[
    str,
    _text(200, "Exact match, in any case; 1 to 200 characters, not all white space"),
    AfterValidator(strip_white_space),
]
"""A department to match: like :data:`Name`."""
_SEARCH_DESCRIPTION: Final = (
    "SQLite FTS5 query over title, abstract and full text; 1 to 1000 characters, not all white space; at most "
    f"{MAX_TERMS} words and phrases, {MAX_PREFIX_TERMS} prefix terms (word*), {MAX_NEAR_GROUPS} NEAR groups of "
    f"at most {MAX_NEAR_TERMS} phrases each, a NEAR distance of at most {MAX_NEAR_DISTANCE} "
    "(beyond a limit, or not FTS5 syntax: 422)"
)
SearchText = Annotated[str, _text(1000, _SEARCH_DESCRIPTION), AfterValidator(strip_white_space)]
"""A full-text query: 1 to 1000 characters as sent, not all :data:`WHITE_SPACE` (FTS5's limits are the server's)."""
DocumentId = Annotated[int, Field(ge=1, le=MAX_SQLITE_INT), BeforeValidator(whole_number)]
"""A document id: 1 to 2^63-1."""
Year = Annotated[int, Field(ge=1000, le=9999), BeforeValidator(whole_number)]
"""A year of four digits."""
