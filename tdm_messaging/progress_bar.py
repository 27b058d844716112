"""One progress-bar style for a docset's job: `tdm-messaging watch` and the reference demo both draw with it."""

from __future__ import annotations

import math
from typing import TextIO

__all__ = ["BAR_WIDTH", "ProgressBar", "render_progress"]

BAR_WIDTH = 30


def render_progress(
    state: str,
    *,
    percent: float | None = None,
    items_done: int | None = None,
    items_total: int | None = None,
    eta_seconds: float | None = None,
    note: str | None = None,
    width: int = BAR_WIDTH,
) -> str:
    """One line of progress: ``[###############---------------]  50% in_progress 5/10, about 12 s left``.

    The bar is full only at ``complete``, or when every item is done; before that, neither the
    bar nor the percentage rounds up to 100. Values from a peer are clamped (a count past the
    total, a negative or NaN percentage never breaks the line).

    Args:
        state: the job's state, shown as given (``requested``, ``in_progress``, ``complete``, ...).
        percent: how far, 0 to 100; ignored when ``items_total`` is known.
        items_done, items_total: documents packaged so far, of how many.
        eta_seconds: the estimated time left.
        note: a last word, e.g. ``estimate 45 s``.
        width: the bar's width in characters.

    Returns:
        The line, without a newline.
    """
    if state == "complete":
        fraction = 1.0
    elif items_total:
        fraction = (items_done or 0) / items_total
    else:
        fraction = (percent or 0.0) / 100.0
    fraction = min(max(fraction, 0.0), 1.0) if math.isfinite(fraction) else 0.0
    filled, shown = math.floor(fraction * width), math.floor(fraction * 100)
    if fraction < 1.0:  # a float product may round up to the end: only done is full
        filled, shown = min(filled, width - 1), min(shown, 99)
    words = [state]
    if items_total:
        words.append(f" {max(items_done or 0, 0)}/{items_total}")
    if eta_seconds is not None and math.isfinite(eta_seconds) and state != "complete":
        words.append(f", about {max(eta_seconds, 0):.0f} s left")
    if note:
        words.append(f", {note}")
    return f"[{'#' * filled}{'-' * (width - filled)}] {shown:3d}% {''.join(words)}"


class ProgressBar:
    """Draws progress lines on ``stream``: redrawn in place on a terminal, one line per change otherwise.

    Args:
        stream: where to draw (``sys.stderr`` for a command line tool).
        indent: put before every line.
    """

    def __init__(self, stream: TextIO, *, indent: str = "") -> None:
        self._stream = stream
        self._indent = indent
        self._tty = stream.isatty()
        self._last: str | None = None

    def draw(self, line: str) -> None:
        """Show ``line`` (from :func:`render_progress`) unless it is the one already shown."""
        if line == self._last:
            return
        self._last = line
        if self._tty:
            self._stream.write("\r\x1b[K" + self._indent + line)
        else:
            self._stream.write(self._indent + line + "\n")
        self._stream.flush()

    def update(
        self,
        state: str,
        *,
        percent: float | None = None,
        items_done: int | None = None,
        items_total: int | None = None,
        eta_seconds: float | None = None,
        note: str | None = None,
    ) -> None:
        """:meth:`draw` the line :func:`render_progress` makes of these values."""
        self.draw(
            render_progress(
                state,
                percent=percent,
                items_done=items_done,
                items_total=items_total,
                eta_seconds=eta_seconds,
                note=note,
            )
        )

    def close(self) -> None:
        """End the line on a terminal, so what follows starts on a line of its own."""
        if self._tty and self._last is not None:
            self._stream.write("\n")
            self._stream.flush()
        self._last = None
