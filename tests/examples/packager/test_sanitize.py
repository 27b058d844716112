"""Tests for examples.packager.sanitize: hostile document ids become one safe archive path component."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from examples.packager.sanitize import MAX_COMPONENT_LENGTH, is_safe_member_path, safe_component

HOSTILE = [
    "..",
    ".",
    "../../etc/passwd",
    "/etc/passwd",
    "/",
    "C:\\Windows\\system32",
    "C:evil",
    "a\\..\\b",
    "..\\..\\x",
    "nul\x00byte",
    "line\nbreak",
    "carriage\rreturn",
    "tab\there",
    "bell\x07",
    "del\x7f",
    "",
    " ",
    ".hidden",
    "...",
    "x" * 5000,
    "é/ü",
    "\u202eevil.txt",
    "CON",
    "nul.txt",
    "lpt1",
    "a/b",
    "a~b",
    "%2e%2e%2f",
    "x:y",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_ids_become_one_safe_component(name: str) -> None:
    component = safe_component(name)
    assert "/" not in component
    assert is_safe_member_path(component)
    assert is_safe_member_path(f"data/{component}/text.txt")
    assert component not in (".", "..")
    assert not component.startswith(".")
    assert len(component) <= MAX_COMPONENT_LENGTH + 17
    assert component != name  # every one of these was changed
    assert "~" in component


@pytest.mark.parametrize("name", ["1", "42", "doc-7", "thesis_2024.final", "A-b_c.9"])
def test_safe_ids_are_kept(name: str) -> None:
    assert safe_component(name) == name


def test_lookalikes_do_not_collide() -> None:
    names = ["a/b", "a\\b", "a_b", "a b", "a\x00b", "..", "._", "__"]
    assert len({safe_component(n) for n in names}) == len(names)


@given(st.text(max_size=300))
def test_any_text_gives_a_safe_component(name: str) -> None:
    component = safe_component(name)
    assert "/" not in component and is_safe_member_path(component)
    assert 0 < len(component) <= MAX_COMPONENT_LENGTH + 17


@given(st.text(max_size=50), st.text(max_size=50))
def test_distinct_ids_give_distinct_components(a: str, b: str) -> None:
    if a != b:
        assert safe_component(a) != safe_component(b)


@pytest.mark.parametrize(
    "path",
    ["", "/abs", "a//b", "a/./b", "a/../b", "..", "a\\b", "C:x", "a\x00", "a\nb", "a/", "x/\x1f"],
)
def test_unsafe_paths_are_refused(path: str) -> None:
    assert not is_safe_member_path(path)


def test_safe_paths_are_accepted() -> None:
    assert is_safe_member_path("docset-5/data/12/text.txt")
