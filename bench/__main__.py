"""``python -m bench [GROUP...]``: run benchmark groups (all when none is named) and update docs/performance.md."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from collections.abc import Callable, Sequence

from bench import machine_description, update_section
from bench.conditions import Conditions, busy_reasons, describe, measure
from bench.harness import BENCH_VHOST, Row, render_rows

# Group name -> "module:function"; the function takes no argument and returns its rows for the
# combined table (it prints and records its own section too). Add a group by adding a line here
# (imported lazily, so a group's dependencies load only when it runs). The order is the run's
# and the document's.
GROUPS: dict[str, str] = {
    "codec": "bench.codec:run",
    "transport": "bench.transport:run",
    "celery": "bench.celery_peer:run",
    "packaging": "bench.packaging:run",
    "estimate": "bench.estimate:run",
    "scaling": "bench.scaling:run",
}

MAKE_COMMAND = "make bench"


def _load(target: str) -> Callable[[], list[Row]]:
    module_name, _sep, function = target.partition(":")
    runner: Callable[[], list[Row]] = getattr(importlib.import_module(module_name), function)
    return runner


def summary_section(
    rows: Sequence[Row],
    *,
    minutes: float,
    failed: Sequence[str],
    conditions: tuple[Conditions, Conditions] | None = None,
) -> str:
    """The document's summary: the machine (and how busy it was at the start and the end of the run),
    the run's length, how to reproduce, and every row in one table."""
    missed = [row.what for row in rows if row.met is False]
    met = sum(1 for row in rows if row.met)
    verdict = f"{met} of {met + len(missed)} goals met" + (f"; missed: {'; '.join(missed)}." if missed else ".")
    lines = [
        f"Machine: {machine_description()}, shared with other work (brokers, other engineers' test runs).  ",
        f"Run: `{MAKE_COMMAND}` (starts the brokers with `scripts/brokers.sh up`, installs `.[dev,bench]`, then "
        f"`.venv/bin/python -m bench`), {minutes:.1f} minutes for all groups.  ",
        "One group: `.venv/bin/python -m bench GROUP` (codec, transport, celery, packaging, estimate, scaling); "
        "each row's command column reproduces it, and each section below gives its method, sizes "
        "(`TDM_BENCH_*`) and notes.  ",
        "Every row is ours against a baseline measured in the same run; ratio above 1x means we are better.  ",
        f"Goals: {verdict}",
    ]
    if conditions is not None:
        start, end = conditions
        busy = busy_reasons(start) + [f"at the end: {r}" for r in busy_reasons(end, load=False)]
        lines.insert(
            1,
            f"Conditions (`bench/conditions.py`): at the start {describe(start)}; "
            f"at the end {describe(end, load=False)}" + (f". **A busy run**: {'; '.join(busy)}.  " if busy else ".  "),
        )
    if failed:
        lines.append(f"**Groups that failed in this run: {', '.join(failed)}** (their rows are missing).  ")
    return "\n".join(lines) + "\n\n" + render_rows(rows)


def _conditions(when: str) -> Conditions:
    """Read and print how busy the machine and the broker are; warn (the run goes on) when busy.

    At the end the load average is the run's own, so it is neither shown nor warned about.
    """
    conditions = measure(BENCH_VHOST)
    at_start = when == "start"
    print(f"bench: conditions at the {when}: {describe(conditions, load=at_start)}", flush=True)
    for reason in busy_reasons(conditions, load=at_start):
        print(f"bench: warning: a busy machine will slow every figure: {reason}", file=sys.stderr, flush=True)
    return conditions


def main(argv: Sequence[str] | None = None) -> int:
    """Run the named groups in order, or every group; print one table of every row; returns 1 if a group failed."""
    parser = argparse.ArgumentParser(prog="python -m bench", description="Run tdm-messaging benchmarks.")
    parser.add_argument("groups", nargs="*", metavar="GROUP", help=f"one of: {', '.join(GROUPS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.groups if name not in GROUPS]
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; known: {', '.join(GROUPS)}")
    names = [name for name in GROUPS if name in args.groups] if args.groups else list(GROUPS)
    before = _conditions("start")
    started = time.monotonic()
    rows: list[Row] = []
    failed: list[str] = []
    for name in names:
        print(f"== {name} ==", flush=True)
        try:
            rows += _load(GROUPS[name])()
        except (RuntimeError, OSError) as exc:  # a broker or worker problem: the message says what
            failed.append(name)
            print(f"bench: group {name} failed: {exc}", file=sys.stderr, flush=True)
        except Exception:  # a bug in the benchmark: show where, and carry on with the next group
            failed.append(name)
            print(f"bench: group {name} failed:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
    minutes = (time.monotonic() - started) / 60
    after = _conditions("end")
    print(f"== all rows ({minutes:.1f} min) ==")
    print(render_rows(rows))
    if not args.groups and not failed:
        update_section("summary", summary_section(rows, minutes=minutes, failed=failed, conditions=(before, after)))
    if failed:
        print(f"bench: failed group(s): {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
