"""``tdm-messaging conformance``: user errors are one ``error:`` line and exit 2, before anything is sent."""

from __future__ import annotations

import socket

import pytest

from tdm_messaging.cli import main


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_the_command_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "conformance" in capsys.readouterr().out


@pytest.mark.parametrize("scheme", ["amqp", "stomp"])
def test_an_unreachable_broker_is_one_error_line_without_the_password(
    scheme: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{scheme}://guest:s3cret@127.0.0.1:{closed_port()}/" + ("/" if scheme == "amqp" else "?dialect=rabbitmq")
    line = error_line(capsys, ["conformance", "--role", "packager", "--broker", url, "--api-listen", "127.0.0.1:0"])
    assert "s3cret" not in line and "127.0.0.1" in line


def test_no_broker_names_the_flag_and_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TDM_BROKER_URL", raising=False)
    assert "pass --broker URL or set TDM_BROKER_URL" in error_line(capsys, ["conformance", "--role", "server"])


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--role", "server"], "--role server needs --docset ID"),
        (["--role", "server", "--docset", "a/b"], "invalid docset id 'a/b'"),
        (["--role", "packager", "--docset", "5"], "--docset and --trigger-* are for --role server"),
        (["--role", "packager", "--api-listen", "nowhere"], "is not HOST:PORT"),
        (["--role", "packager", "--run-id", "no spaces"], "invalid docset id"),
    ],
)
def test_bad_arguments_are_one_error_line(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"amqp://guest:guest@127.0.0.1:{closed_port()}//"
    assert says in error_line(capsys, ["conformance", *argv, "--broker", url])


def test_a_manual_server_run_without_a_terminal_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO())
    url = f"amqp://guest:guest@127.0.0.1:{closed_port()}//"
    line = error_line(capsys, ["conformance", "--role", "server", "--docset", "5", "--broker", url])
    assert "pass --trigger-poll" in line


def test_a_bad_timeout_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance", "--role", "packager", "--timeout", "nan"]) == 2
    assert "finite number of seconds" in capsys.readouterr().err
