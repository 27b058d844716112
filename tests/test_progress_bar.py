"""The one progress-bar style (tdm_messaging.progress_bar): the line's laws, and drawing on a terminal or a log."""

from __future__ import annotations

import io
import math
import re

from hypothesis import given
from hypothesis import strategies as st

from tdm_messaging import ProgressBar, render_progress
from tdm_messaging.progress_bar import BAR_WIDTH

LINE = re.compile(r"^\[(#*)(-*)\] +(\d{1,3})% (.*)$", re.DOTALL)

states = st.sampled_from(["requested", "accepted", "in_progress", "failed", "unknown"]) | st.text(min_size=1)
numbers = st.none() | st.floats(allow_nan=True, allow_infinity=True)
counts = st.none() | st.integers(min_value=-(10**6), max_value=10**6)


@given(
    state=states,
    percent=numbers,
    done=counts,
    total=counts,
    eta=numbers,
    note=st.none() | st.text(),
    width=st.integers(min_value=1, max_value=80),
)
def test_every_line_is_a_bar_of_the_width_and_a_percentage(
    *,
    state: str,
    percent: float | None,
    done: int | None,
    total: int | None,
    eta: float | None,
    note: str | None,
    width: int,
) -> None:
    total = None if total is not None and total <= 0 else total
    line = render_progress(
        state, percent=percent, items_done=done, items_total=total, eta_seconds=eta, note=note, width=width
    )
    match = LINE.match(line)
    assert match is not None, line
    filled, empty, shown, rest = match.groups()
    assert len(filled) + len(empty) == width
    assert 0 <= int(shown) <= 100
    assert rest.startswith(state)
    # Full bar and 100% only when everything is done: never rounded up.
    assert (len(filled) == width) == (int(shown) == 100)


@given(st.floats(min_value=0, max_value=99.99))
def test_short_of_the_end_the_bar_is_never_full(percent: float) -> None:
    line = render_progress("in_progress", percent=percent)
    assert "#" * BAR_WIDTH not in line and " 100%" not in line
    assert line.count("#") == math.floor(percent / 100 * BAR_WIDTH)


def test_items_win_over_the_percentage_and_complete_is_full() -> None:
    assert render_progress("in_progress", percent=90.0, items_done=1, items_total=4, width=8) == (
        "[##------]  25% in_progress 1/4"
    )
    assert render_progress("complete", percent=10.0, eta_seconds=5, width=4) == "[####] 100% complete"
    assert render_progress("accepted", note="estimate 45 s", width=4) == "[----]   0% accepted, estimate 45 s"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_one_line_is_redrawn_in_place_then_ended() -> None:
    out = _Terminal()
    bar = ProgressBar(out)
    bar.update("requested")
    bar.update("requested")
    bar.update("in_progress", percent=50.0)
    bar.close()
    text = out.getvalue()
    assert text.count("\r\x1b[K") == 2 and text.endswith("50% in_progress\n") and text.count("\n") == 1


def test_off_a_terminal_one_line_per_change_and_close_adds_nothing() -> None:
    out = io.StringIO()
    bar = ProgressBar(out, indent="> ")
    bar.update("requested")
    bar.update("requested")
    bar.close()
    assert out.getvalue() == "> [" + "-" * BAR_WIDTH + "]   0% requested\n"
