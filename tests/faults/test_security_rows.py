"""Issue 5, item 9: rows for the security tests that live with the apps (SSRF, member names, owners, URL lifetime).

Those tests are the reference apps' own; this module re-runs them in one child pytest (so a row
is always the product of a run in this session, never a claim) and turns their results into rows.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.examples.packager.test_sanitize import HOSTILE
from tests.examples.packager.test_urlguard import SSRF_CORPUS
from tests.faults.reliability import ROOT, Row, record

pytestmark = [pytest.mark.timeout(300)]


@dataclass(frozen=True)
class Area:
    """One security rule and the existing tests that prove it."""

    id: str
    nodeids: tuple[str, ...]
    done: str
    expected: str


AREAS = [
    Area(
        "security-ssrf",
        ("tests/examples/packager/test_urlguard.py",),
        f"the packager's URL guard fed its SSRF corpus ({len(SSRF_CORPUS)} URLs: other hosts; decimal, hex, octal, "
        "short and IPv4-mapped IPv6 spellings of loopback; user-info; encoded dot segments; file:, ftp:, gopher:, "
        "data: and scheme-relative links) and redirects",
        "every one refused before any request; URLs on the API base pass",
    ),
    Area(
        "security-member-names",
        ("tests/examples/packager/test_sanitize.py",),
        f"archive member names made from {len(HOSTILE)} hostile document ids ('..', absolute paths, backslashes, "
        "NUL and control characters, device names) plus hypothesis-generated text",
        "each becomes one safe path component; distinct ids never collide; unsafe paths refused",
    ),
    Area(
        "security-owner-isolation",
        ("tests/e2e/test_isolation.py",),
        "real server and packager processes: a second miner, no key, an unknown key and the packager's key on every "
        "docset endpoint of the first miner's docset",
        "403 for another owner and nothing changed; 401 without a valid key; 404 alike for everyone; the packager "
        "key reads but changes nothing",
    ),
    Area(
        "security-presigned-lifetime",
        (
            "tests/examples/packager/test_storage.py::test_s3_multipart_upload_with_parts_over_5_mib",
            "tests/examples/packager/test_storage.py::test_s3_bad_settings_are_configuration_errors",
        ),
        "S3 storage on moto with url_ttl=900: a presigned URL's X-Amz-Expires and url_expires_at; url_ttl of 0 and "
        "of 7 days + 1 s",
        "the lifetime is the configured one; out-of-range lifetimes are configuration errors",
    ),
]


@dataclass(frozen=True)
class Outcome:
    passed: int
    failed: int
    skipped: int


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Run every area's tests once in a child pytest; their outcomes by area id."""
    report = tmp_path_factory.mktemp("security") / "junit.xml"
    nodeids = [n for area in AREAS for n in area.nodeids]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *nodeids, "-q", "-p", "no:cacheprovider", f"--junitxml={report}"],
        cwd=ROOT,
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert report.exists(), done.stdout[-2000:] + done.stderr[-2000:]
    cases = ET.parse(report).getroot().iter("testcase")
    counts: dict[str, list[int]] = {area.id: [0, 0, 0] for area in AREAS}
    for case in cases:
        module = case.get("classname", "").replace(".", "/") + ".py"
        name = case.get("name", "").split("[", 1)[0]
        for area in AREAS:
            if any(n in (module, f"{module}::{name}") for n in area.nodeids):
                kind = (
                    2
                    if case.find("skipped") is not None
                    else 1
                    if len(case) and case[0].tag in {"failure", "error"}
                    else 0
                )
                counts[area.id][kind] += 1
    return {key: Outcome(*values) for key, values in counts.items()}


@pytest.mark.parametrize("area", AREAS, ids=[a.id for a in AREAS])
def test_security_rule_holds(area: Area, outcomes: dict[str, Outcome], request: pytest.FixtureRequest) -> None:
    outcome = outcomes[area.id]
    assert outcome.passed > 0 and outcome.failed == 0, outcome
    record(
        Row(
            id=area.id,
            item="9 security",
            done=area.done,
            expected=area.expected,
            happened=f"{outcome.passed} test cases passed, {outcome.failed} failed, {outcome.skipped} skipped "
            f"(re-run of {', '.join(Path(n).name for n in area.nodeids)})",
            lost=0,
            duplicates=0,
            test=request.node.nodeid,
        )
    )
