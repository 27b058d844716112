"""docs/asyncapi.yaml checked by the official AsyncAPI parser (Node.js, scripts/asyncapi/), and what it does not check.

The parser validates against the AsyncAPI 3 JSON Schema and its own semantic rules. It is
installed from the committed package-lock.json by ``make test`` (``npm ci``), or by this module
when missing. Without Node.js and npm the tests skip locally and fail in CI.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tdm_messaging import headers
from tdm_messaging.asyncapi import asyncapi_document
from tests.conftest import in_ci

ROOT = Path(__file__).resolve().parent.parent
VALIDATOR = ROOT / "scripts" / "asyncapi"
DOC = ROOT / "docs" / "asyncapi.yaml"


def _unavailable(why: str) -> None:
    if in_ci():
        pytest.fail(f"AsyncAPI validator unavailable in CI: {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="module")
def node() -> str:
    """The ``node`` executable, with the validator's packages installed (``npm ci`` when they are missing)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable("node and npm are needed to validate docs/asyncapi.yaml (install Node.js 18 or later)")
    assert node is not None and npm is not None
    if not (VALIDATOR / "node_modules" / "@asyncapi" / "parser").is_dir():
        done = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=VALIDATOR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            _unavailable(f"npm ci in {VALIDATOR} failed: {done.stderr.strip()[-500:]}")
    return node


def validate(node: str, path: Path) -> tuple[int, list[str]]:
    done = subprocess.run(
        [node, "validate.mjs", str(path)], cwd=VALIDATOR, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode in {0, 1}, f"the validator itself failed: {done.stderr}"
    return done.returncode, [line for line in done.stdout.splitlines() if line.startswith("error ")]


def test_the_checked_in_document_is_valid(node: str) -> None:
    code, errors = validate(node, DOC)
    assert (code, errors) == (0, [])


def test_the_validator_rejects_a_broken_document(node: str, tmp_path: Path) -> None:
    """So a pass above means something: an unknown field and a dangling channel reference are both caught."""
    document: dict[str, Any] = yaml.safe_load(DOC.read_text())
    document["channels"]["replies"]["retention"] = "forever"
    document["operations"]["readReplies"]["channel"] = {"$ref": "#/channels/nowhere"}
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(document))
    code, errors = validate(node, broken)
    assert code == 1
    assert any("retention" in line for line in errors), errors
    assert any("#/channels/nowhere" in line for line in errors), errors


# -- what the parser does not check ---------------------------------------------------------------


def test_every_address_parameter_is_declared() -> None:
    for name, channel in asyncapi_document()["channels"].items():
        used = set(re.findall(r"\{(\w+)\}", channel["address"]))
        assert used == set(channel.get("parameters", {})), name
        assert channel["address"].startswith("{namespacePrefix}"), f"{name}: every queue may be namespaced"


def test_every_tdm_header_is_in_the_document() -> None:
    components = asyncapi_document()["components"]["schemas"]
    documented: dict[str, str] = {}
    for schema in ("Headers", "ReadMarkerHeaders", "DeclareProbeHeaders"):
        for name, prop in components[schema]["properties"].items():
            assert name not in documented, f"{name} documented twice"
            documented[name] = prop["description"]
    assert documented == {row.name: row.meaning for row in headers.HEADERS}
