"""The command line: settings from options and environment, add-key, and a real waitress process on port 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from examples.server.__main__ import build_parser, main, settings_from
from examples.server.settings import parse_api_keys

ROOT = Path(__file__).resolve().parents[3]


def test_settings_from_env_and_options() -> None:
    environ = {
        "TDM_SERVER_DB": "sqlite:///x.db",
        "TDM_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
        "TDM_SERVER_API_KEYS": "alice=k1, bob=k2",
        "TDM_PACKAGER_API_KEY": "pk",
    }
    args = build_parser().parse_args(["serve", "--port", "0", "--api-key", "carol=k3"])
    settings = settings_from(args, environ)
    assert settings.db_url == "sqlite:///x.db"
    assert settings.broker_url.startswith("amqp://")
    assert settings.port == 0
    assert [(k.owner, k.role) for k in settings.keys_to_provision] == [
        ("alice", "miner"),
        ("bob", "miner"),
        ("carol", "miner"),
        ("packager", "packager"),
    ]
    assert "k1" not in repr(settings)


def test_the_default_broker_is_the_embedded_sqlite_file() -> None:
    """No option, no variable: the native SQLite transport, which needs no broker daemon and no driver."""
    settings = settings_from(build_parser().parse_args(["serve"]), {})
    assert settings.broker_url == "sqlite:///tdm-broker.db"


@pytest.mark.parametrize("text", ["alice", "=k", "alice="])
def test_bad_key_entries(text: str) -> None:
    with pytest.raises(ValueError, match="owner=key"):
        parse_api_keys(text)


def test_add_key_prints_a_working_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'k.db'}"
    assert main(["add-key", "--db", db, "--owner", "dora", "--role", "packager"]) == 0
    key = capsys.readouterr().out.strip()
    assert len(key) >= 24
    from examples.server.db import Database
    from examples.server.repo import find_caller

    with Database(db).connect() as conn:
        caller = find_caller(conn, key)
    assert caller is not None
    assert (caller.owner, caller.role) == ("dora", "packager")


def test_bad_database_url_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["add-key", "--db", "postgres://x", "--owner", "a"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "Traceback" not in err


def test_waitress_process_on_port_zero(tmp_path: Path) -> None:
    env = {**os.environ, "TDM_SERVER_API_KEYS": "alice=secret-key-1", "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable,
        "-m",
        "examples.server",
        "--db",
        f"sqlite:///{tmp_path / 'srv.db'}",
        "--broker",
        f"sqlite:///{tmp_path / 'broker.db'}",
        "--archive-dir",
        str(tmp_path / "archives"),
        "--port",
        "0",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline().strip()
        assert first.startswith("listening on http://127.0.0.1:"), first + (
            process.stderr.read() if process.stderr and process.poll() else ""
        )
        base = first.removeprefix("listening on ")
        assert requests.get(f"{base}/api/collections", timeout=10).status_code == 401
        ok = requests.get(f"{base}/api/collections", headers={"X-API-Key": "secret-key-1"}, timeout=10)
        assert ok.status_code == 200
        assert ok.json() == {"collections": []}
        too_big = requests.post(
            f"{base}/api/docsets",
            data=b"x" * ((1 << 20) + 1),
            headers={"X-API-Key": "secret-key-1", "Content-Type": "application/json"},
            timeout=10,
        )
        assert too_big.status_code == 413
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert "secret-key-1" not in stderr
