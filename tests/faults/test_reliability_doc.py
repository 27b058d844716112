"""docs/reliability.md: every row names a test that exists (parametrization included), and no row lost a request."""

from __future__ import annotations

import subprocess
import sys

from tests.faults.reliability import DOC, ROOT, parse_table


def _collected(paths: set[str]) -> set[str]:
    """The node ids pytest collects from ``paths`` (in a child process, so this session's state is untouched)."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *sorted(paths)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"collecting {sorted(paths)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    return {line.strip() for line in done.stdout.splitlines() if "::" in line}


def test_every_row_has_a_test_behind_it_and_lost_nothing() -> None:
    rows = parse_table(DOC.read_text(encoding="utf-8"))
    assert rows, "docs/reliability.md has no rows between its markers"
    for row in rows.values():
        assert row.lost == 0, f"{row.id}: {row.lost} requests lost"
    # Rows are kept until re-measured, so a renamed or removed test would leave its row behind: every
    # row must name a node id that pytest still collects (a row for a whole module may end in '::*').
    exact = {row.test for row in rows.values() if not row.test.endswith("::*")}
    collected = _collected({test.split("::", 1)[0] for test in exact})
    stale = sorted(f"{row.id}: {row.test}" for row in rows.values() if row.test in exact - collected)
    assert not stale, "rows whose test no longer exists (delete them from docs/reliability.md):\n" + "\n".join(stale)
    for row in rows.values():
        if row.test.endswith("::*"):
            assert (ROOT / row.test.split("::", 1)[0]).is_file(), f"{row.id}: no test module {row.test}"
