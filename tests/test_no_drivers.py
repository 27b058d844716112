"""The protocol core works with no driver installed: stomp, kombu, boto3, bottle, prometheus_client, otel blocked."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tdm_messaging"
BLOCKED = ("stomp", "kombu", "amqp", "boto3", "botocore", "bottle", "waitress", "prometheus_client", "opentelemetry")

# The wings that load a driver; everything else in the package must import without one. The
# STOMP wing's package and its dialect are pure (tdm_messaging re-exports Dialect from there).
DRIVER_WINGS = ("tdm_messaging.transport.stomp.", "tdm_messaging.transport.kombu.")
PURE_IN_DRIVER_WINGS = {"tdm_messaging.transport.stomp", "tdm_messaging.transport.stomp.dialect"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# ``__main__`` runs the command line when imported; cli.py, which it calls, is checked.
ALL_MODULES = sorted(_module_name(path) for path in PACKAGE.rglob("*.py") if path.name != "__main__.py")
MODULES = [m for m in ALL_MODULES if not m.startswith(DRIVER_WINGS) or m in PURE_IN_DRIVER_WINGS]

# Runs in a fresh interpreter: blocks the drivers, imports every module, exercises the core, and
# prints one JSON report on stdout. Failures are recorded, not raised, so one report says everything.
SCRIPT = textwrap.dedent(
    """
    import importlib, importlib.abc, json, sys, traceback
    from datetime import UTC, datetime

    BLOCKED = set(filter(None, sys.argv[1].split(",")))
    MODULES = sys.argv[2].split(",")
    DRIVERS = set(sys.argv[3].split(","))

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked by test_no_drivers", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    for name in list(sys.modules):
        if name.split(".")[0] in BLOCKED:
            del sys.modules[name]
    report = {"imports": {}, "checks": {}}

    def check(name, fn):
        try:
            report["checks"][name] = ["ok", fn()]
        except BaseException:
            report["checks"][name] = ["error", traceback.format_exc()]

    def blocker_works():
        try:
            import stomp  # noqa: F401
        except ImportError:
            return "blocked"
        raise AssertionError("stomp was importable")

    if BLOCKED:
        check("blocker", blocker_works)
    for module in MODULES:
        try:
            importlib.import_module(module)
            report["imports"][module] = "ok"
        except BaseException:
            report["imports"][module] = traceback.format_exc()

    from tdm_messaging.models import Accepted, Complete, PackageRequest
    from tdm_messaging.destinations import reply_queue
    from tdm_messaging.transport.stomp.dialect import Dialect, to_wire_name
    from tdm_messaging.status import State, compact, fold
    from tdm_messaging.http_view import http_view

    NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    RID = "0190a000-0000-7000-8000-000000000001"
    request = PackageRequest(docset_id="5", request_id=RID, timestamp=NOW, reply_to="package/5",
                             docset_url="http://server/api/docsets/5?fmt=meta,txt", requested_at=NOW)
    accepted = Accepted(docset_id="5", request_id=RID, sequence=1, timestamp=NOW, estimate_seconds=45)
    done = Complete(docset_id="5", request_id=RID, sequence=2, timestamp=NOW,
                    archive_url="https://b/package/5", size_bytes=345345)

    def core():
        pending = fold([accepted, request], "5")
        finished = fold([request, done, accepted], "5")
        assert pending.state is State.ACCEPTED, pending
        assert finished.state is State.COMPLETE, finished
        assert compact([request, accepted, done], "5") == [request, done]
        pending_view, finished_view = http_view(pending, now=NOW), http_view(finished, now=NOW)
        return {
            "wire": [to_wire_name(reply_queue("5"), d) for d in Dialect],
            "pending": [pending_view.status_code, pending_view.header("Retry-After")],
            "finished": [finished_view.status_code, finished_view.header("Location")],
        }

    check("core", core)

    def codec():
        from tdm_messaging import codec

        for message in (request, accepted, done):
            envelope = codec.encode(message)
            assert codec.decode(envelope) == message, message
        text = codec.encode(accepted, codec.TEXT_CONTENT_TYPE)
        assert codec.decode(text) == accepted
        return "round-trips"

    check("codec", codec)

    def open_transport(url):
        from tdm_messaging.errors import ConfigurationError
        from tdm_messaging.transport.registry import open_transport
        try:
            open_transport(url)
        except ConfigurationError as exc:
            return str(exc)
        raise AssertionError(f"open_transport({url!r}) did not raise ConfigurationError")

    if BLOCKED:
        check("open_stomp", lambda: open_transport("stomp://guest:secret@127.0.0.1:61613/?dialect=rabbitmq"))
        check("open_amqp", lambda: open_transport("amqp://guest:secret@127.0.0.1:5672//"))
    report["loaded_drivers"] = sorted(n for n in sys.modules if n.split(".")[0] in DRIVERS)
    print(json.dumps(report))
    """
)


def _run(blocked: tuple[str, ...]) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, ",".join(blocked), ",".join(MODULES), ",".join(BLOCKED)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return report


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return _run(BLOCKED)


def _ok(report: dict[str, Any], check: str) -> Any:
    outcome, value = report["checks"][check]
    assert outcome == "ok", value
    return value


def test_the_blocker_really_blocks(report: dict[str, Any]) -> None:
    assert _ok(report, "blocker") == "blocked"


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_without_drivers(report: dict[str, Any], module: str) -> None:
    assert report["imports"][module] == "ok", report["imports"][module]


def test_core_works_without_drivers(report: dict[str, Any]) -> None:
    result = _ok(report, "core")
    assert result["wire"] == ["/queue/package/5", "/queue/package%2F5", "package/5"]
    assert result["pending"] == [202, "45"]
    assert result["finished"] == [303, "https://b/package/5"]


def test_codec_works_without_drivers(report: dict[str, Any]) -> None:
    assert _ok(report, "codec") == "round-trips"


@pytest.mark.parametrize(("check", "extra"), [("open_stomp", "stomp"), ("open_amqp", "kombu")])
def test_open_transport_names_the_extra_to_install(report: dict[str, Any], check: str, extra: str) -> None:
    message = _ok(report, check)
    assert f"pip install 'tdm-messaging[{extra}]'" in message
    assert "secret" not in message  # never a password in an error


def test_nothing_blocked_was_loaded(report: dict[str, Any]) -> None:
    assert report["loaded_drivers"] == []


def test_the_core_imports_no_driver_even_when_installed() -> None:
    # With every driver available, importing the core must still not pull one in: backends load lazily.
    report = _run(())
    assert all(outcome == "ok" for outcome in report["imports"].values()), report["imports"]
    assert _ok(report, "core")["pending"] == [202, "45"]
    assert report["loaded_drivers"] == [], "only transport backends may import a driver"
