"""The layers of docs/architecture.md, read from the imports: the core imports no transport or driver,
transports never import the models, each driver stays in its wing, the worker never imports the server."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tdm_messaging"

CORE = (
    "models", "codec", "wire_json", "wire_text", "wire_text_write", "headers", "destinations", "ids", "status",
    "http_view", "poll_plan", "delivery_plan", "dead_letter", "asyncapi", "envelope", "errors", "clock", "observe",
    "tracing", "logging_json",
)  # fmt: skip
MESSAGE_LAYER = (
    "models",
    "codec",
    "wire_json",
    "wire_text",
    "wire_text_write",
    "status",
    "poll_plan",
    "delivery_plan",
    "server",
    "worker",
)
DRIVERS = {"stomp": "transport/stomp", "kombu": "transport/kombu", "amqp": "transport/kombu"}
OTHER_DRIVERS = ("redis", "sqlalchemy", "boto3", "botocore", "bottle", "waitress", "requests")


def _runtime_imports(path: Path) -> set[str]:
    """Modules ``path`` imports when it runs (imports under ``if TYPE_CHECKING:`` do not count)."""
    tree = ast.parse(path.read_text())
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in {"TYPE_CHECKING", "typing.TYPE_CHECKING"}:
            typing_only |= {id(n) for child in node.body for n in ast.walk(child)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _modules() -> dict[str, set[str]]:
    return {str(path.relative_to(PACKAGE).with_suffix("")): _runtime_imports(path) for path in PACKAGE.rglob("*.py")}


MODULES = _modules()


def _inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_sketch_is_real() -> None:
    assert set(CORE) <= set(MODULES), "a core module of docs/architecture.md is missing"
    assert any(m.startswith("transport/stomp/") for m in MODULES) and any(
        m.startswith("transport/kombu/") for m in MODULES
    )


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_no_transport_and_no_driver(module: str) -> None:
    imports = MODULES[module]
    assert not {i for i in imports if _inside(i, "tdm_messaging.transport")}, imports
    assert not {i for i in imports if i.split(".")[0] in (*DRIVERS, *OTHER_DRIVERS)}, imports


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("transport/")))
def test_a_transport_never_imports_the_message_layer(module: str) -> None:
    banned = {f"tdm_messaging.{m}" for m in MESSAGE_LAYER}
    assert not {i for i in MODULES[module] if any(_inside(i, b) for b in banned)}, MODULES[module]


@pytest.mark.parametrize("driver", sorted(DRIVERS))
def test_each_driver_is_imported_by_its_own_wing_only(driver: str) -> None:
    importers = {m for m, imports in MODULES.items() if any(_inside(i, driver) for i in imports)}
    assert importers, f"no module imports {driver}: is the check still looking at the right names?"
    assert all(m.startswith(DRIVERS[driver] + "/") for m in importers), importers


def test_the_worker_does_not_import_the_server() -> None:
    assert not {i for i in MODULES["worker"] if _inside(i, "tdm_messaging.server")}
