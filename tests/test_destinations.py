"""Destination names, docset-id validation and the per-dialect spelling."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tdm_messaging.destinations import (
    DEAD_LETTER,
    DELETE_REQUESTS,
    PACKAGE_REQUESTS,
    DestinationKind,
    names_in_words,
    reply_queue,
    validate_docset_id,
)
from tdm_messaging.errors import InvalidDestinationError, LocalProtocolError
from tdm_messaging.transport.stomp.dialect import Dialect, from_wire_name, to_wire_name

VALID_ID = st.text(alphabet="ABCxyz019._~:@+-", min_size=1, max_size=128)


def test_seed_spellings() -> None:
    dest = reply_queue("5")
    assert dest.name == "package/5"
    assert dest.kind is DestinationKind.REPLY
    assert dest.docset_id == "5"
    assert to_wire_name(dest, Dialect.ACTIVEMQ) == "/queue/package/5"
    assert to_wire_name(dest, Dialect.RABBITMQ) == "/queue/package%2F5"
    assert to_wire_name(dest, Dialect.PLAIN) == "package/5"
    assert to_wire_name(PACKAGE_REQUESTS, Dialect.ACTIVEMQ) == "/queue/docsets/package"
    assert to_wire_name(DELETE_REQUESTS, Dialect.RABBITMQ) == "/queue/docsets%2Fdelete"
    assert PACKAGE_REQUESTS.docset_id is None


@given(VALID_ID, st.sampled_from(list(Dialect)))
def test_wire_names_round_trip(docset_id: str, dialect: Dialect) -> None:
    dest = reply_queue(docset_id)
    assert from_wire_name(to_wire_name(dest, dialect), dialect) == dest


@pytest.mark.parametrize("dest", [PACKAGE_REQUESTS, DELETE_REQUESTS, DEAD_LETTER])
@pytest.mark.parametrize("dialect", list(Dialect))
def test_fixed_destinations_round_trip(dest: object, dialect: Dialect) -> None:
    assert from_wire_name(to_wire_name(dest, dialect), dialect) is dest  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("", "empty"),
        ("a/b", "'/'"),
        ("a*", "wildcard"),
        ("a>", "wildcard"),
        ("#", "wildcard"),
        ("50%", "escape"),
        ("a b", "not allowed"),
        ("a\x00", "not allowed"),
        ("a\nb", "not allowed"),
        ("é", "not allowed"),
        ("x" * 129, "limit is 128"),
    ],
)
def test_bad_docset_ids_are_refused_with_the_reason(bad: str, fragment: str) -> None:
    with pytest.raises(InvalidDestinationError) as info:
        validate_docset_id(bad)
    assert fragment in str(info.value)
    assert isinstance(info.value, LocalProtocolError)
    assert isinstance(info.value, ValueError)


def test_error_names_the_position() -> None:
    with pytest.raises(InvalidDestinationError, match="position 3"):
        validate_docset_id("abc/def")


def test_non_string_id() -> None:
    with pytest.raises(InvalidDestinationError, match="must be a string"):
        validate_docset_id(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("wire", "dialect"),
    [
        ("/topic/package/5", Dialect.ACTIVEMQ),
        ("/queue/other", Dialect.RABBITMQ),
        ("package/a/b", Dialect.PLAIN),
        ("docsets/unknown", Dialect.PLAIN),
    ],
)
def test_foreign_wire_names_are_refused(wire: str, dialect: Dialect) -> None:
    with pytest.raises(InvalidDestinationError):
        from_wire_name(wire, dialect)


@given(st.lists(st.text(max_size=20), max_size=30), st.integers(min_value=1, max_value=8))
def test_names_in_words_spells_out_at_most_a_few_and_counts_the_rest(names: list[str], most: int) -> None:
    said = names_in_words(names, most=most)
    unique = sorted(set(names))
    shown = unique[:most]
    assert said.startswith(", ".join(repr(n) for n in shown))
    if len(unique) > most:
        assert said.endswith(f" and {len(unique) - most} more")
    else:
        assert said == ", ".join(repr(n) for n in unique)


def test_names_in_words_of_a_few_names_is_each_once_sorted() -> None:
    assert names_in_words(["b", "a", "b"]) == "'a', 'b'"
    assert names_in_words([f"q{i}" for i in range(8)], most=5) == "'q0', 'q1', 'q2', 'q3', 'q4' and 3 more"
