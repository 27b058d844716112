"""Bounds on the work one full-text query may ask of SQLite FTS5: prefix terms, NEAR groups, terms, distance.

A query under the body's length limit can still cost minutes: ``NEAR(t* t* ... , 99999)``
expands each prefix over the whole vocabulary and tries every arrangement within the distance.
:func:`check_query` counts what makes a query expensive before SQLite sees it and refuses, by
name, whatever exceeds its limit; the deadline of :mod:`examples.server.repo` catches the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEFAULT_NEAR_DISTANCE",
    "MAX_NEAR_DISTANCE",
    "MAX_NEAR_GROUPS",
    "MAX_NEAR_TERMS",
    "MAX_PREFIX_TERMS",
    "MAX_TERMS",
    "QueryCost",
    "QueryTooComplexError",
    "check_query",
    "measure_query",
]

MAX_PREFIX_TERMS: Final = 8
"""Most ``word*`` prefix terms in one query (each one expands over the vocabulary)."""
MAX_NEAR_GROUPS: Final = 4
"""Most ``NEAR(...)`` groups in one query."""
MAX_NEAR_TERMS: Final = 8
"""Most phrases inside one ``NEAR(...)`` group."""
MAX_NEAR_DISTANCE: Final = 100
"""The largest ``NEAR(..., N)`` distance, in tokens."""
MAX_TERMS: Final = 64
"""Most words and phrases in one query."""
DEFAULT_NEAR_DISTANCE: Final = 10
"""FTS5's distance when a NEAR group gives none."""

_QUOTED: Final = re.compile(r'"(?:[^"]|"")*"')
_NEAR: Final = re.compile(r"\bNEAR\s*\(([^()]*)\)")
_DISTANCE: Final = re.compile(r",\s*(\d+)\s*$")
# A bareword is FTS5's run of token characters; a quoted phrase was replaced by a single `"`.
_TERM: Final = re.compile(r'"|[^\s"():*^+{},-]+')
# Not terms: a NEAR group's distance, and column filters (`title:` or `{title abstract}:`).
_NOT_TERMS: Final = re.compile(r',\s*\d+\s*\)|\{[^{}]*\}\s*:|[^\s"():*^+{},-]+\s*:')
_OPERATORS: Final = frozenset({"AND", "OR", "NOT", "NEAR"})


class QueryTooComplexError(ValueError):
    """The query asks for more work than a limit allows; the message names the limit and the fix."""


@dataclass(frozen=True, slots=True)
class QueryCost:
    """What makes a query expensive, counted outside quoted phrases.

    Attributes:
        terms: words and phrases (operators not counted).
        prefix_terms: ``*`` prefix markers.
        near_groups: ``NEAR(...)`` groups.
        largest_near: the most phrases in one NEAR group.
        largest_distance: the largest NEAR distance (10 where a group gives none).
    """

    terms: int
    prefix_terms: int
    near_groups: int
    largest_near: int
    largest_distance: int


def measure_query(query: str) -> QueryCost:
    """Count the terms, prefixes and NEAR groups of an FTS5 query (a malformed one is counted as far as it goes)."""
    # Phrases become a lone quote: what is inside a phrase is one term and no operator.
    bare = _QUOTED.sub('"', query)
    words = _NOT_TERMS.sub(lambda m: ")" if m.group().endswith(")") else " ", bare)
    terms = sum(1 for token in _TERM.findall(words) if token not in _OPERATORS)
    groups = _NEAR.findall(bare)
    largest_near = 0
    largest_distance = 0
    for group in groups:
        found = _DISTANCE.search(group)
        distance = int(found.group(1)) if found else DEFAULT_NEAR_DISTANCE
        inside = group[: found.start()] if found else group
        largest_near = max(largest_near, len(_TERM.findall(inside)))
        largest_distance = max(largest_distance, distance)
    return QueryCost(
        terms=terms,
        prefix_terms=bare.count("*"),
        near_groups=len(groups),
        largest_near=largest_near,
        largest_distance=largest_distance,
    )


def check_query(query: str) -> QueryCost:
    """Refuse a query over any limit; return its cost otherwise.

    Raises:
        QueryTooComplexError: naming the first limit exceeded, its value, and what the query has.
    """
    cost = measure_query(query)
    checks = (
        (cost.prefix_terms, MAX_PREFIX_TERMS, "prefix terms (word*)", "use fewer prefixes, or whole words"),
        (cost.near_groups, MAX_NEAR_GROUPS, "NEAR groups", "combine them, or use AND"),
        (cost.largest_near, MAX_NEAR_TERMS, "phrases in one NEAR group", "split the group"),
        (cost.largest_distance, MAX_NEAR_DISTANCE, "tokens of NEAR distance", "ask for a closer match"),
        (cost.terms, MAX_TERMS, "words and phrases", "narrow the query"),
    )
    for found, limit, what, hint in checks:
        if found > limit:
            raise QueryTooComplexError(f"the query has {found} {what}, over the limit of {limit}; {hint}")
    return cost
