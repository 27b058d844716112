"""The STOMP wing translates driver errors in one place (transport/stomp/translate.py)."""

from __future__ import annotations

import ast
import ssl
from pathlib import Path

import pytest

stomp_exception = pytest.importorskip("stomp.exception")

from tdm_messaging.errors import BrokerUnavailableError  # noqa: E402
from tdm_messaging.transport.stomp import translate  # noqa: E402

WING = Path(translate.__file__).parent


@pytest.mark.parametrize(
    "exc",
    [
        stomp_exception.ConnectFailedException(),
        stomp_exception.NotConnectedException(),
        ConnectionResetError(104, "Connection reset by peer"),
        ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),
        BrokenPipeError(32, "Broken pipe"),
    ],
)
def test_every_driver_error_becomes_broker_unavailable_naming_what_and_where(exc: BaseException) -> None:
    assert isinstance(exc, translate.DRIVER_ERRORS)
    error = translate.unavailable("sending to 'package/5'", "mq.example:61613", exc)
    assert isinstance(error, BrokerUnavailableError)
    text = str(error)
    assert text.startswith("sending to 'package/5' failed")
    assert "mq.example:61613" in text
    assert type(exc).__name__ in text
    assert translate.HINT not in text


def test_a_failed_first_connection_says_what_to_check() -> None:
    error = translate.cannot_connect("h:1", ConnectionRefusedError(111, "Connection refused"), tls=True)
    assert isinstance(error, BrokerUnavailableError)
    assert str(error).startswith("cannot connect to the STOMP broker at h:1 (TLS) (ConnectionRefusedError")
    assert str(error).endswith(translate.HINT)
    assert "scripts/" not in str(error), "an installed library must not point at a script of this repository"


def _caught_names(tree: ast.AST) -> set[str]:
    caught: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler) and node.type is not None:
            caught |= {ast.unparse(n) for n in ast.walk(node.type) if isinstance(n, ast.Attribute)}
    return caught


def test_no_other_module_of_the_wing_catches_stomp_py_exceptions_itself() -> None:
    offenders = {
        path.name: sorted(name for name in _caught_names(ast.parse(path.read_text())) if name.startswith("stomp."))
        for path in sorted(WING.glob("*.py"))
        if path.name != "translate.py"
    }
    assert {name: found for name, found in offenders.items() if found} == {}
