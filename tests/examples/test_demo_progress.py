"""The demo draws the dump's progress with the library's bar (the style of `tdm-messaging watch`)."""

from __future__ import annotations

import io

from examples.demo import show_dump_progress
from examples.harness import DumpProgress
from tdm_messaging import ProgressBar, render_progress


def test_the_demo_draws_one_line_per_change_off_a_terminal() -> None:
    out = io.StringIO()
    bar = ProgressBar(out, indent="  ")
    show_dump_progress(bar, DumpProgress("requested", None, None, None, None, 1.0))
    show_dump_progress(bar, DumpProgress("requested", None, None, None, None, 1.0))  # unchanged: not drawn again
    show_dump_progress(bar, DumpProgress("in_progress", 50.0, 5, 10, 2.0, 1.0))
    bar.update("complete")
    bar.close()
    assert out.getvalue().splitlines() == [
        "  [" + "-" * 30 + "]   0% requested",
        "  [" + "#" * 15 + "-" * 15 + "]  50% in_progress 5/10, about 2 s left",
        "  [" + "#" * 30 + "] 100% complete",
    ]


def test_the_demo_and_watch_draw_the_same_line() -> None:
    out = io.StringIO()
    show_dump_progress(ProgressBar(out), DumpProgress("in_progress", 40.0, 4, 10, 12.0, 1.0))
    line = render_progress("in_progress", percent=40.0, items_done=4, items_total=10, eta_seconds=12.0)
    assert out.getvalue() == line + "\n"
