"""``python -m bench [GROUP...]``: run benchmark groups (all when none is named) and update docs/performance.md."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

# Group name -> "module:function"; the function takes no argument and returns an exit status.
# Add a group by adding a line here (imported lazily, so a group's dependencies load only when it runs).
GROUPS: dict[str, str] = {
    "codec": "bench.codec:main",
    "transport": "bench.transport:main",
    "celery": "bench.celery_peer:main",
    "packaging": "bench.packaging:main",
}


def _load(target: str) -> Callable[[], int]:
    module_name, _sep, function = target.partition(":")
    runner: Callable[[], int] = getattr(importlib.import_module(module_name), function)
    return runner


def main(argv: Sequence[str] | None = None) -> int:
    """Run the named groups in order, or every group; returns the worst exit status."""
    parser = argparse.ArgumentParser(prog="python -m bench", description="Run tdm-messaging benchmarks.")
    parser.add_argument("groups", nargs="*", metavar="GROUP", help=f"one of: {', '.join(GROUPS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.groups if name not in GROUPS]
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; known: {', '.join(GROUPS)}")
    status = 0
    for name in args.groups or list(GROUPS):
        print(f"== {name} ==")
        status = max(status, _load(GROUPS[name])())
    return status


if __name__ == "__main__":
    sys.exit(main())
