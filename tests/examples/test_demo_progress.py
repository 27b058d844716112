"""Tests for examples.demo's progress bar, off a terminal: one line per change."""

from __future__ import annotations

import io

from examples.demo import ProgressBar
from examples.harness import DumpProgress


def test_progress_bar_draws_one_line_per_change_off_a_terminal() -> None:
    out = io.StringIO()
    bar = ProgressBar(out, width=10)
    bar.update(DumpProgress("requested", None, None, None, None, 1.0))
    bar.update(DumpProgress("requested", None, None, None, None, 1.0))  # unchanged: not drawn again
    bar.update(DumpProgress("in_progress", 50.0, 5, 10, 2.0, 1.0))
    bar.done()
    lines = out.getvalue().splitlines()
    assert lines == [
        "  [..........]   0.0% requested",
        "  [#####.....]  50.0% in_progress 5/10, about 2 s left",
        "  [##########] 100.0% complete",
    ]
