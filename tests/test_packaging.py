"""The package says what it is: an SPDX license with its file, extras the wheel imports, app requirements apart."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
APP_REQUIREMENTS = (ROOT / "examples" / "requirements.txt", ROOT / "examples" / "requirements-s3.txt")
# Distribution name -> the module it provides, where they differ.
MODULE_OF = {
    "stomp.py": "stomp",
    "pyyaml": "yaml",
    "opentelemetry-api": "opentelemetry",
    "pydantic-settings": "pydantic_settings",
}
# Drivers the wheel reaches through kombu, which it names when they are missing (transport/kombu/link.py).
THROUGH_KOMBU = {"sqlalchemy", "redis"}


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r.strip(), maxsplit=1)[0].lower() for r in requirements}


def _file_requirements(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def _third_party_imports(where: Path) -> set[str]:
    found: set[str] = set()
    for path in [where] if where.is_file() else where.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
            elif (  # importlib.import_module("name..."): the lazy imports of optional libraries
                isinstance(node, ast.Call)
                and ast.unparse(node.func) in {"importlib.import_module", "import_module"}
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.add(node.args[0].value.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"__future__", "tdm_messaging", "examples"}


def test_the_license_is_spdx_with_its_file() -> None:
    assert PROJECT["license"] == "MIT"
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text
    assert not any(c.startswith("License ::") for c in PROJECT["classifiers"])  # the SPDX field says it


def test_classifiers_name_the_pythons_of_requires_python() -> None:
    versions = {c.rsplit(" ", 1)[-1] for c in PROJECT["classifiers"] if re.fullmatch(r".*Python :: 3\.\d+", c)}
    assert PROJECT["requires-python"] == ">=3.11" and versions == {"3.11", "3.12", "3.13"}
    assert PROJECT["urls"]


def test_every_extra_installs_something_the_wheel_imports() -> None:
    imported = _third_party_imports(ROOT / "tdm_messaging")
    for extra, requirements in PROJECT["optional-dependencies"].items():
        if extra in {"dev", "bench"}:
            continue  # toolchains, not features of the library
        for name in _names(requirements):
            module = MODULE_OF.get(name, name)
            assert module in imported or module in THROUGH_KOMBU, f"[{extra}] installs {name}, never imported"


def test_the_reference_apps_requirements_are_what_they_import() -> None:
    required = set().union(*(_names(_file_requirements(path)) for path in APP_REQUIREMENTS))
    imported = _third_party_imports(ROOT / "examples")
    typing_only = {"mypy_boto3_s3"}  # under TYPE_CHECKING: the dev extra's boto3-stubs
    with_the_library = {"pydantic", "pydantic_core"}  # the library's own dependency (the apps may pin a newer one)
    needed = {"boto3" if module == "botocore" else module for module in imported - typing_only - with_the_library}
    assert needed == {MODULE_OF.get(name, name) for name in required} - with_the_library


def test_the_sdist_ships_no_tests_it_cannot_run() -> None:
    assert "prune tests" in (ROOT / "MANIFEST.in").read_text().splitlines()


def test_the_wheel_holds_the_library_alone() -> None:
    assert PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"] == ["tdm_messaging*"]
