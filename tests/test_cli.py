"""cli: decode, encode and asyncapi via main() with captured stdio, the broker-command hook, and one real subprocess."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tdm_messaging.cli import main
from tdm_messaging.errors import DecodeError

ROOT = Path(__file__).resolve().parent.parent

COMPLETE = {
    "type": "complete",
    "docset_id": "5",
    "request_id": "0190a0b0-0000-7000-8000-000000000001",
    "sequence": 3,
    "timestamp": "2026-11-27T12:00:00Z",
    "archive_url": "https://host/package/5",
    "size_bytes": 345345,
}


def run(
    argv: list[str], stdin: bytes, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_decode_text_body(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["decode", "--docset-id", "5"], b"Accepted. 45 seconds\r\n", monkeypatch, capsys)
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "protocol_version": "1.0",
        "type": "accepted",
        "docset_id": "5",
        "request_id": "",
        "sequence": 0,
        "timestamp": "1970-01-01T00:00:00Z",
        "estimate_seconds": 45.0,
    }


def test_decode_options(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "decode",
        "--content-type",
        "text/plain",
        "--header",
        "TDM-Docset-Id=9",
        "--request-id",
        "0190a0b0-0000-7000-8000-000000000001",
        "--received-at",
        "2026-01-02T03:04:05+00:00",
    ]
    code, out, _err = run(argv, b"Complete: https://h/p/9\nSize: 12", monkeypatch, capsys)
    assert code == 0
    data = json.loads(out)
    assert (data["docset_id"], data["request_id"], data["timestamp"], data["size_bytes"]) == (
        "9",
        "0190a0b0-0000-7000-8000-000000000001",
        "2026-01-02T03:04:05Z",
        12,
    )


def test_decode_json_guessed(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(["decode"], json.dumps(COMPLETE).encode(), monkeypatch, capsys)
    assert code == 0
    assert json.loads(out) | {} == {
        **COMPLETE,
        "protocol_version": "1.0",
        "sha256": None,
        "content_type": "application/zip",
        "url_expires_at": None,
    }


def test_encode_text(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["encode", "--content-type", "text/plain", "--headers"]
    code, out, err = run(argv, json.dumps(COMPLETE).encode(), monkeypatch, capsys)
    assert code == 0
    assert out == "Complete: https://host/package/5\nSize: 345345"
    assert "tdm-type: complete\n" in err
    assert "tdm-sequence: 3\n" in err


def test_encode_json_round_trips(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(["encode"], json.dumps(COMPLETE).encode(), monkeypatch, capsys)
    assert code == 0
    code, again, _err = run(["encode", "--content-type", "application/json"], out.encode(), monkeypatch, capsys)
    assert (code, again) == (0, out)


@pytest.mark.parametrize(
    ("argv", "stdin", "fragment"),
    [
        (["decode", "--docset-id", "5"], b"Accepted. soon", "error: text/plain line 1 'Accepted. soon'"),
        (["decode"], b"Accepted.", "error: this text/plain 'accepted' reply does not say its docset"),
        (["decode"], b'{"type": "teleport"}', "error: unknown message type 'teleport'"),
        # Issue 10: these printed a traceback.
        (
            ["decode", "--content-type", "text/plain", "--docset-id", "5"],
            "Complete: http://x/a.zip\nSize: \u00b2".encode(),
            "error: text/plain line 2 'Size: \u00b2': expected 'Size: <bytes>' (ASCII digits",
        ),
        (
            ["decode", "--content-type", "text/plain", "--header", "tdm-sequence=\u00b2"],
            b"http://127.0.0.1:8080/api/docsets/1",
            "error: header tdm-sequence must be ASCII digits",
        ),
        (["decode", "--content-type", "application/json"], b"[" * 100_000, "error: JSON body nests arrays"),
        (["decode", "--content-type", "application/json"], b"{" * 100_000, "error: JSON body nests"),
        (["decode", "--max-body-bytes", "3"], b"Accepted.", "error: body of 9 bytes exceeds the limit of 3"),
        (["decode", "--content-type", "image/png"], b"x", "error: content type 'image/png' is not a format"),
        (["encode"], b"not json", "error: invalid JSON body"),
        (["encode"], b'{"type": "accepted"}', "error: invalid accepted message: field 'docset_id' is missing"),
        (
            ["encode", "--content-type", "text/plain"],
            json.dumps({**COMPLETE, "archive_url": "https://h/a b"}).encode(),
            "error: invalid complete message: field 'archive_url': Value error, archive_url must be printable ASCII",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(
    argv: list[str], stdin: bytes, fragment: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(argv, stdin, monkeypatch, capsys)
    assert code == 2
    assert out == ""
    assert err.startswith(fragment), err
    assert "Traceback" not in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["decode", "--received-at", "yesterday"],
        ["decode", "--header", "novalue"],
        ["encode", "--content-type", "image/png"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "usage: tdm-messaging" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("decode", "encode", "asyncapi"):
        assert command in out


def test_asyncapi_formats(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(["asyncapi", "--format", "json"], b"", monkeypatch, capsys)
    assert code == 0
    assert json.loads(out)["asyncapi"] == "3.0.0"
    code, out, _err = run(["asyncapi"], b"", monkeypatch, capsys)
    assert code == 0
    assert out == (ROOT / "docs" / "asyncapi.yaml").read_text()


def test_asyncapi_without_pyyaml(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)  # makes `import yaml` raise ImportError
    code, out, _err = run(["asyncapi"], b"", monkeypatch, capsys)
    assert code == 0
    assert json.loads(out)["asyncapi"] == "3.0.0"
    code, out, err = run(["asyncapi", "--format", "yaml"], b"", monkeypatch, capsys)
    assert code == 2
    assert err.startswith("error: YAML output needs pyyaml")


def test_broker_commands_are_registered_when_present(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[str] = []

    def status(args: argparse.Namespace) -> int:
        if args.docset_id == "bad":
            raise DecodeError("the reply queue held garbage")
        seen.append(args.docset_id)
        return 0

    def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
        sub = subparsers.add_parser("status")
        sub.add_argument("docset_id")
        sub.set_defaults(func=status)

    fake = types.ModuleType("tdm_messaging.cli_broker")
    fake.register = register  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tdm_messaging.cli_broker", fake)
    assert main(["status", "5"]) == 0
    assert seen == ["5"]
    assert main(["status", "bad"]) == 2
    assert capsys.readouterr().err == "error: the reply queue held garbage\n"


def test_python_dash_m_in_a_subprocess() -> None:
    body = json.dumps(COMPLETE).encode()
    encoded = subprocess.run(
        [sys.executable, "-m", "tdm_messaging", "encode", "--content-type", "text/plain"],
        input=body,
        capture_output=True,
        cwd=ROOT,
        check=False,
        timeout=60,
    )
    assert encoded.returncode == 0, encoded.stderr
    assert encoded.stdout == b"Complete: https://host/package/5\nSize: 345345"
    failed = subprocess.run(
        [sys.executable, "-m", "tdm_messaging", "decode"],
        input=b"Nonsense\n",
        capture_output=True,
        cwd=ROOT,
        check=False,
        timeout=60,
    )
    assert failed.returncode == 2
    assert failed.stderr.startswith(b"error: text/plain line 1 'Nonsense'")
    assert b"Traceback" not in failed.stderr


def test_version_names_the_library_and_the_protocol(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    from tdm_messaging.models import PROTOCOL_VERSION

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"tdm-messaging {version('tdm-messaging')} (protocol {PROTOCOL_VERSION})\n"


@pytest.mark.parametrize("body", [b"Accepted. 45 seconds", b"Progress: 1/2", b"Failed: no text\nRetryable: no"])
def test_a_text_reply_without_docset_names_the_flag(
    body: bytes, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["decode"], body, monkeypatch, capsys)
    assert (code, out) == (2, "")
    assert err.startswith("error: this text/plain ") and "pass --docset-id ID" in err, err
    assert "DecodeContext" not in err and "Traceback" not in err and err.count("\n") == 1
    # ... and with the flag, the same body decodes
    code, out, err = run(["decode", "--docset-id", "5"], body, monkeypatch, capsys)
    assert (code, err) == (0, "") and json.loads(out)["docset_id"] == "5"


def test_a_text_reply_with_another_fault_keeps_the_decoders_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run(["decode"], b"Accepted. soon", monkeypatch, capsys)
    assert code == 2 and err.startswith("error: text/plain line 1 'Accepted. soon'"), err
