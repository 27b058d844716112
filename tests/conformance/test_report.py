"""The report: outcomes by level, exit status, text and JSON forms; the case tables and the sections they cite."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tdm_messaging.conformance.packager_checks import PACKAGER_CASES
from tdm_messaging.conformance.report import Case, Level, Outcome, Report
from tdm_messaging.conformance.server_checks import SERVER_CASES

PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

MUST = Case(1, "a must", ("4",))
SHOULD = Case(2, "a should", ("3", "6.1"), Level.SHOULD)


def test_a_broken_must_fails_and_a_broken_should_warns() -> None:
    assert MUST.failed("x").outcome is Outcome.FAIL
    assert SHOULD.failed("x").outcome is Outcome.WARN
    assert MUST.check([]).outcome is Outcome.PASS
    assert MUST.check(["a", "b"]).detail == "a; b"


def test_only_a_failed_must_makes_the_run_fail() -> None:
    report = Report("packager", "memory://")
    report.add([SHOULD.failed("meh"), MUST.skipped("n/a")])
    assert report.exit_status == 0
    assert report.render().rstrip().splitlines()[-1].startswith("PASSED: 2 cases: 0 pass, 0 fail, 1 warn, 1 skip")
    report = Report("packager", "memory://")
    report.add([MUST.failed("broken")])
    assert report.exit_status == 1
    assert "FAILED" in report.render()


def test_cases_come_out_in_number_order_each_once() -> None:
    report = Report("server", "memory://")
    report.add([SHOULD.passed(), MUST.failed("first")])
    report.add([MUST.passed("second")])
    assert [r.case.number for r in report.results] == [1, 2]
    assert report.results[0].outcome is Outcome.FAIL


def test_the_text_form_numbers_each_case_with_its_sections_and_detail() -> None:
    report = Report("server", "amqp://guest:***@host//")
    report.add([MUST.failed("line one\nline two"), SHOULD.passed()])
    text = report.render()
    assert "  1 FAIL  MUST   [§4] a must\n          line one\n          line two\n" in text
    assert "  2 PASS  SHOULD [§3, §6.1] a should\n" in text


@given(st.text(), st.text(), st.sampled_from(list(Outcome)))
def test_the_json_form_keeps_any_text(title: str, detail: str, outcome: Outcome) -> None:
    from tdm_messaging.conformance.report import Result

    case = Case(3, title, ("5.1",))
    report = Report("packager", "memory://", notes=[detail])
    report.add([Result(case, outcome, detail)])
    document = json.loads(report.to_json())
    assert document["cases"] == [
        {"number": 3, "title": title, "sections": ["5.1"], "level": "must", "outcome": outcome.value, "detail": detail}
    ]
    assert document["passed"] is (outcome is not Outcome.FAIL)
    assert document["notes"] == [detail]
    assert report.render()  # never raises, whatever the text


@pytest.mark.parametrize("cases", [PACKAGER_CASES, SERVER_CASES], ids=["packager", "server"])
def test_cases_are_numbered_from_one_without_gaps_and_titled_once(cases: tuple[Case, ...]) -> None:
    assert [c.number for c in cases] == list(range(1, len(cases) + 1))
    assert len({c.title for c in cases}) == len(cases)


@pytest.mark.parametrize("cases", [PACKAGER_CASES, SERVER_CASES], ids=["packager", "server"])
def test_every_cited_section_is_a_heading_of_protocol_md(cases: tuple[Case, ...]) -> None:
    # "## 6. Lifecycle" and "### 6.1 The status fold": the numbers the report prints as §6, §6.1
    headings = set(re.findall(r"^#{2,3} ([0-9]+(?:\.[0-9]+)?)\.? ", PROTOCOL.read_text(encoding="utf-8"), re.M))
    assert {"1", "4.8", "6.1", "9"} <= headings
    cited = {s for c in cases for s in c.sections}
    assert cited <= headings, sorted(cited - headings)


@pytest.mark.parametrize("cases", [PACKAGER_CASES, SERVER_CASES], ids=["packager", "server"])
def test_docs_conformance_md_lists_every_case_as_the_report_prints_it(cases: tuple[Case, ...]) -> None:
    text = (PROTOCOL.parent / "conformance.md").read_text(encoding="utf-8")
    for case in cases:
        sections = ", ".join(f"§{s}" for s in case.sections)
        row = f"| {case.number} | {case.level.value.upper()} | {sections} | {case.title} |"
        assert row in text, f"docs/conformance.md lacks the row: {row}"
