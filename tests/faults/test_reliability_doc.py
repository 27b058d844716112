"""docs/reliability.md: every row names a test that exists, and no row lost a request."""

from __future__ import annotations

from tests.faults.reliability import DOC, ROOT, parse_table


def test_every_row_has_a_test_behind_it_and_lost_nothing() -> None:
    rows = parse_table(DOC.read_text(encoding="utf-8"))
    assert rows, "docs/reliability.md has no rows between its markers"
    for row in rows.values():
        assert row.lost == 0, f"{row.id}: {row.lost} requests lost"
        path, _, name = row.test.partition("::")
        source = (ROOT / path).read_text(encoding="utf-8")
        function = name.split("[", 1)[0]
        assert function == "*" or f"def {function}(" in source, f"{row.id}: no test {row.test}"
