"""The reliability table: tests record one measured row per fault; the session renders them into docs/reliability.md."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["DOC", "END", "RESULTS_DIR", "START", "Row", "parse_table", "record", "render"]

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
RESULTS_DIR = ROOT / ".work" / "reliability"
START = "<!-- reliability:start -->"
END = "<!-- reliability:end -->"
_HEADER = (
    "| id | fault (issue 5 item) | what was done | expected | what happened | lost | duplicates | test |\n"
    "|---|---|---|---|---|---|---|---|\n"
)


@dataclass(frozen=True)
class Row:
    """One measured fault: filled in by the test that caused it, from what it observed.

    Attributes:
        id: stable key, e.g. ``poison-bad-json-stomp``; one row per id.
        item: the issue-5 item it belongs to, e.g. ``6 poison``.
        done: what the test did to the system.
        expected: what should happen.
        happened: what the test observed (measured values, not a restatement of ``expected``).
        lost: acknowledged requests that never got a final status (must be 0).
        duplicates: duplicate messages or jobs observed (counted, allowed when harmless).
        test: the pytest node id that produced the row.
    """

    id: str
    item: str
    done: str
    expected: str
    happened: str
    lost: int
    duplicates: int
    test: str


def record(row: Row) -> None:
    """Write ``row`` to the results directory; the session end renders every recorded row into the doc."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{row.id}.json").write_text(json.dumps(asdict(row), indent=1), encoding="utf-8")


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _uncell(text: str) -> str:
    return text.strip().replace("\\|", "|")


def parse_table(doc_text: str) -> dict[str, Row]:
    """The rows between the markers of ``doc_text``, by id (empty when there is no table yet)."""
    match = re.search(re.escape(START) + r"(.*?)" + re.escape(END), doc_text, re.S)
    if match is None:
        return {}
    rows: dict[str, Row] = {}
    for line in match.group(1).splitlines():
        if not line.startswith("| ") or line.startswith(("| id ", "|---")):
            continue
        cells = [_uncell(c) for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) != 8:
            continue
        rid, item, done, expected, happened, lost, dups, test = cells
        rows[rid] = Row(rid, item, done, expected, happened, int(lost), int(dups), test.strip("`"))
    return rows


def render(doc: Path = DOC, results: Path = RESULTS_DIR) -> int:
    """Merge the recorded rows into the table of ``doc`` (rows not re-measured are kept); return rows written.

    Does nothing when nothing was recorded or the doc has no markers.
    """
    fresh = sorted(results.glob("*.json")) if results.is_dir() else []
    if not fresh or not doc.exists():
        return 0
    text = doc.read_text(encoding="utf-8")
    if START not in text or END not in text:
        return 0
    rows = parse_table(text)
    for path in fresh:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows[data["id"]] = Row(**data)
        path.unlink()
    ordered = sorted(rows.values(), key=lambda r: (r.item, r.id))
    body = "".join(
        "| "
        + " | ".join(
            [
                _cell(r.id),
                _cell(r.item),
                _cell(r.done),
                _cell(r.expected),
                _cell(r.happened),
                str(r.lost),
                str(r.duplicates),
                f"`{_cell(r.test)}`",
            ]
        )
        + " |\n"
        for r in ordered
    )
    start, rest = text.split(START, 1)
    _old, end = rest.split(END, 1)
    doc.write_text(start + START + "\n" + _HEADER + body + END + end, encoding="utf-8")
    return len(ordered)
