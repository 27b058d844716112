"""Benchmarks of tdm-messaging, one group per module; ``python -m bench [GROUP...]`` runs them."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

__all__ = ["PERFORMANCE_DOC", "machine_description", "update_section"]

PERFORMANCE_DOC = Path(__file__).resolve().parent.parent / "docs" / "performance.md"


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


def update_section(group: str, text: str, path: Path = PERFORMANCE_DOC) -> None:
    """Replace what lies between ``<!-- bench:GROUP:start -->`` and ``<!-- bench:GROUP:end -->`` in ``path``.

    The markers are appended (with the text) when the document lacks them; the rest of the
    document is left as it is, so each group owns only its section.
    """
    start, end = f"<!-- bench:{group}:start -->", f"<!-- bench:{group}:end -->"
    block = f"{start}\n{text.rstrip()}\n{end}"
    document = path.read_text() if path.exists() else "# Performance\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(document):
        document = pattern.sub(lambda _match: block, document)
    else:
        document = document.rstrip() + "\n\n" + block + "\n"
    path.write_text(document)
