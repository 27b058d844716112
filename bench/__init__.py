"""Benchmarks of tdm-messaging, one group per module; ``python -m bench [GROUP...]`` runs them."""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Sequence
from pathlib import Path

__all__ = ["PERFORMANCE_DOC", "SECTION_ORDER", "machine_description", "update_section"]

PERFORMANCE_DOC = Path(__file__).resolve().parent.parent / "docs" / "performance.md"

SECTION_ORDER = ("summary", "codec", "transport", "celery", "packaging", "estimate", "scaling")
"""The order of the sections of docs/performance.md: whichever group reruns, they stay in this order."""

_TITLE = "# Performance"
_SECTION = re.compile(r"<!-- bench:(?P<name>[\w-]+):start -->\n.*?<!-- bench:(?P=name):end -->", re.DOTALL)


def machine_description() -> str:
    """One line naming the CPU model, core count and Python version of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()} ({platform.python_implementation()})"


def update_section(group: str, text: str, path: Path = PERFORMANCE_DOC, order: Sequence[str] = SECTION_ORDER) -> None:
    """Replace what lies between ``<!-- bench:GROUP:start -->`` and ``<!-- bench:GROUP:end -->`` in ``path``.

    Each group owns only its section; the other sections are kept as they are. The sections
    are written back in ``order`` (those not named there after them, as found), each under
    a heading of its own, so a rerun of one group never moves the document around.

    Args:
        group: the section's name (a group, or ``summary``).
        text: the section's new body (Markdown).
        path: the document (created with a title when missing).
        order: section names in the order they appear.
    """
    document = path.read_text() if path.exists() else _TITLE + "\n"
    matches = list(_SECTION.finditer(document))
    sections = {match["name"]: match.group(0) for match in matches}
    # Hand-written text after a section's end marker (e.g. a "###" subsection) belongs to it and
    # stays after it; without this, any rerun of any group dropped it.
    ends = [following.start() for following in matches[1:]] + [len(document)] * bool(matches)
    tails = {
        match["name"]: _strip_headings(document[match.end() : end]).strip("\n").rstrip()
        for match, end in zip(matches, ends, strict=True)
    }
    sections[group] = f"<!-- bench:{group}:start -->\n{text.rstrip()}\n<!-- bench:{group}:end -->"
    first = _SECTION.search(document)
    preamble = document[: first.start()] if first else document
    preamble = _strip_headings(preamble).rstrip() or _TITLE
    names = [name for name in order if name in sections] + [name for name in sections if name not in order]
    parts = [preamble]
    for name in names:
        heading = _HEADINGS.get(name)
        parts.append(f"## {heading}\n\n{sections[name]}" if heading else sections[name])
        if tails.get(name):
            parts.append(tails[name])
    path.write_text("\n\n".join(parts) + "\n")


_HEADINGS = {
    "summary": "Summary: every row of the last full run",
    "codec": "Codec",
    "transport": "Transport: send rate, poll latency, 10,000 reply queues",
    "celery": "Against Celery",
    "packaging": "Packaging",
    "estimate": "Estimate: Accepted against the real build time",
    "scaling": "Scaling: a poll, a job and a build as their work grows",
}


def _strip_headings(preamble: str) -> str:
    """The preamble without the section headings this module writes (they are rewritten each time)."""
    lines = [line for line in preamble.splitlines() if line.removeprefix("## ") not in _HEADINGS.values()]
    return "\n".join(lines)
