"""Tests of bench.update_section: each group owns its section, and the sections keep one order."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from bench import SECTION_ORDER, update_section
from bench.__main__ import summary_section
from bench.harness import Row


def _order(text: str) -> list[str]:
    return [line.split(":")[1] for line in text.splitlines() if line.startswith("<!-- bench:") and ":start" in line]


def test_sections_are_written_in_the_canonical_order(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    for group in ("scaling", "packaging", "estimate", "celery", "codec", "transport", "summary"):
        update_section(group, f"{group} figures", doc)
    assert _order(doc.read_text()) == list(SECTION_ORDER)
    assert doc.read_text().startswith("# Performance\n")


def test_a_rerun_replaces_only_its_section_and_keeps_the_order(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    for group in SECTION_ORDER:
        update_section(group, f"{group} old", doc)
    update_section("celery", "celery new", doc)
    text = doc.read_text()
    assert "celery new" in text and "celery old" not in text
    assert "codec old" in text and "packaging old" in text
    assert _order(text) == list(SECTION_ORDER)
    assert text.count("## Against Celery") == 1


def test_an_old_document_out_of_order_is_put_in_order(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text(
        "# Performance\n\nIntro.\n\n"
        "<!-- bench:codec:start -->\nA\n<!-- bench:codec:end -->\n\n"
        "<!-- bench:packaging:start -->\nB\n<!-- bench:packaging:end -->\n\n"
        "<!-- bench:transport:start -->\nC\n<!-- bench:transport:end -->\n"
    )
    update_section("celery", "D", doc)
    text = doc.read_text()
    assert _order(text) == ["codec", "transport", "celery", "packaging"]
    assert text.startswith("# Performance\n\nIntro.\n\n## Codec")


@given(st.permutations(SECTION_ORDER), st.lists(st.sampled_from(SECTION_ORDER), max_size=6))
def test_order_is_independent_of_the_order_groups_ran(first: list[str], reruns: list[str]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        doc = Path(tmp) / "performance.md"
        for group in [*first, *reruns]:
            update_section(group, f"{group} text", doc)
        once = doc.read_text()
        assert _order(once) == list(SECTION_ORDER)
        update_section(first[0], f"{first[0]} text", doc)
        assert doc.read_text() == once


def test_hand_written_text_after_a_section_stays_with_it(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    for group in SECTION_ORDER:
        update_section(group, f"{group} old", doc)
    text = doc.read_text().replace(
        "<!-- bench:transport:end -->", "<!-- bench:transport:end -->\n\n### STOMP frames\n\nCounted by hand.\n"
    )
    doc.write_text(text)
    update_section("scaling", "scaling new", doc)
    update_section("transport", "transport new", doc)
    update_section("transport", "transport new", doc)
    text = doc.read_text()
    assert text.count("### STOMP frames\n\nCounted by hand.") == 1
    assert text.index("transport new") < text.index("### STOMP frames") < text.index("## Against Celery")
    assert _order(text) == list(SECTION_ORDER)


def test_summary_states_goals_met_and_missed() -> None:
    row = Row("thing", 2.0, 1.0, "x/s", True, ">= 1.5x", True, "cmd", "base")
    miss = Row("other", 1.0, 2.0, "x/s", True, ">= 1.5x", False, "cmd", "base")
    text = summary_section([row, miss], minutes=3.0, failed=[])
    assert "1 of 2 goals met; missed: other." in text
    assert "| thing |" in text and "| other |" in text
    assert "3.0 minutes" in text
