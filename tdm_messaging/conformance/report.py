"""The conformance report: numbered cases, each with the spec sections it checks, its level and its outcome."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["Case", "Level", "Outcome", "Report", "Result"]


class Level(enum.Enum):
    """How strongly docs/protocol.md asks for what a case checks (RFC 2119)."""

    MUST = "must"
    """A failure breaks interop: the run fails."""
    SHOULD = "should"
    """A failure is reported as a warning: the run still passes."""


class Outcome(enum.Enum):
    """What a case found."""

    PASS = "pass"
    FAIL = "fail"
    """A MUST case found the peer breaking the rule."""
    WARN = "warn"
    """A SHOULD case found the peer not following the recommendation."""
    SKIP = "skip"
    """The case could not be checked (what it needs did not happen, or an option is off)."""


@dataclass(frozen=True, slots=True)
class Case:
    """One check of the kit.

    Attributes:
        number: its number in the report, stable between runs and releases.
        title: what the peer must (or should) do, as one sentence.
        sections: the docs/protocol.md sections it checks, e.g. ``("4", "6")``.
        level: MUST (a failure fails the run) or SHOULD (a warning).
    """

    number: int
    title: str
    sections: tuple[str, ...]
    level: Level = Level.MUST

    def passed(self, detail: str = "") -> Result:
        """This case passed."""
        return Result(self, Outcome.PASS, detail)

    def failed(self, detail: str) -> Result:
        """This case found the rule broken: FAIL for a MUST, WARN for a SHOULD."""
        return Result(self, Outcome.FAIL if self.level is Level.MUST else Outcome.WARN, detail)

    def skipped(self, why: str) -> Result:
        """This case could not be checked, and why."""
        return Result(self, Outcome.SKIP, why)

    def check(self, problems: Sequence[str], *, ok: str = "") -> Result:
        """PASS when ``problems`` is empty, else FAIL/WARN listing them."""
        return self.failed("; ".join(problems)) if problems else self.passed(ok)


@dataclass(frozen=True, slots=True)
class Result:
    """A case and what it found.

    Attributes:
        case: the case.
        outcome: PASS, FAIL, WARN or SKIP.
        detail: what was seen (on FAIL/WARN: what was wrong; on SKIP: why).
    """

    case: Case
    outcome: Outcome
    detail: str = ""


@dataclass
class Report:
    """The results of one run, in case order, with free-form notes (what was set up, what was ignored).

    Attributes:
        role: the role of the peer under test (``packager`` or ``server``).
        broker: the broker URL, without its password.
        results: one result per case.
        notes: lines printed after the cases.
    """

    role: str
    broker: str
    results: list[Result] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, results: Iterable[Result]) -> None:
        """Record results (a case recorded twice keeps its first result)."""
        seen = {r.case.number for r in self.results}
        for result in results:
            if result.case.number not in seen:
                self.results.append(result)
                seen.add(result.case.number)
        self.results.sort(key=lambda r: r.case.number)

    def count(self, outcome: Outcome) -> int:
        """How many cases had ``outcome``."""
        return sum(1 for r in self.results if r.outcome is outcome)

    @property
    def exit_status(self) -> int:
        """0 when no case failed (warnings and skips allowed), else 1."""
        return 1 if self.count(Outcome.FAIL) else 0

    def render(self) -> str:
        """The report as text: one line per case, its detail indented below, then the totals."""
        lines = [f"tdm-messaging conformance: the {self.role} under test, on {self.broker}", ""]
        for result in self.results:
            case = result.case
            where = ", ".join(f"§{s}" for s in case.sections)
            outcome, level = result.outcome.value.upper(), case.level.value.upper()
            lines.append(f"{case.number:3d} {outcome:4s}  {level:6s} [{where}] {case.title}")
            if result.detail:
                lines.extend(f"          {line}" for line in result.detail.splitlines())
        if self.notes:
            lines += ["", "notes:", *(f"  - {note}" for note in self.notes)]
        totals = ", ".join(f"{self.count(o)} {o.value}" for o in Outcome)
        verdict = "FAILED" if self.exit_status else "PASSED"
        lines += ["", f"{verdict}: {len(self.results)} cases: {totals} (sections of docs/protocol.md)"]
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        """The report as a JSON document (for another team's CI)."""
        return (
            json.dumps(
                {
                    "role": self.role,
                    "broker": self.broker,
                    "passed": self.exit_status == 0,
                    "cases": [
                        {
                            "number": r.case.number,
                            "title": r.case.title,
                            "sections": list(r.case.sections),
                            "level": r.case.level.value,
                            "outcome": r.outcome.value,
                            "detail": r.detail,
                        }
                        for r in self.results
                    ],
                    "notes": self.notes,
                },
                indent=2,
            )
            + "\n"
        )
