"""The error lines an operator meets first (issue 15, "Errors that mislead"), through the real ``open_transport``."""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path

import pytest

from tdm_messaging import cli
from tdm_messaging.errors import ConfigurationError
from tdm_messaging.transport.registry import open_transport


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


def test_a_relative_sqlite_path_says_four_slashes_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # var/tdm does not exist under it
    url = "sqlite:///var/tdm/broker.db"
    assert cli.main(["status", "5", "--broker", url]) == 2
    err = _one_error_line(capsys)
    assert "four slashes" in err and "sqlite:////var/tdm/broker.db" in err
    assert "relative to the working directory" in err
    assert err.count(url) == 1  # the URL once, not as the prefix and again inside the backend's text
    for network_advice in ("host", "port", "credentials", "reachable"):
        assert network_advice not in err


def test_a_namespaced_sqlite_url_is_still_named_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["status", "5", "--broker", "sqlite:///var/tdm/broker.db?namespace=prod"]) == 2
    err = _one_error_line(capsys)
    assert err.count("sqlite:///var/tdm/broker.db") == 1 and "four slashes" in err


def test_an_absolute_sqlite_path_gets_no_slash_advice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing" / "broker.db"
    assert cli.main(["status", "5", "--broker", f"sqlite:///{target}"]) == 2
    err = _one_error_line(capsys)
    assert "does not exist" in err and "slashes" not in err


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///tdm-broker.db?nonsense=1",
        "stomp://127.0.0.1:1/?nonsense=1",
        "amqp://guest:guest@127.0.0.1:1//?nonsense=1",
        "redis://127.0.0.1:1/0?nonsense=1",
    ],
)
def test_the_valid_parameter_lists_include_namespace(url: str) -> None:
    if not url.startswith("sqlite"):
        pytest.importorskip("stomp" if url.startswith("stomp") else "kombu")
    with pytest.raises(ConfigurationError, match="nonsense") as info:
        open_transport(url)
    assert "namespace" in str(info.value)


def test_namespace_is_accepted_where_it_is_listed(tmp_path: Path) -> None:
    with open_transport(f"sqlite:///{tmp_path}/b.db?namespace=ops-check") as transport:
        assert transport.capabilities.cross_process


def test_redis_without_its_driver_names_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("kombu")
    monkeypatch.setitem(sys.modules, "redis", None)  # as if the package were not installed
    with pytest.raises(ConfigurationError) as info:
        open_transport("redis://127.0.0.1:6379/0")
    message = str(info.value)
    assert "'redis' transport needs redis" in message and "pip install 'tdm-messaging[kombu]'" in message
    assert "amqp" not in message


def test_redis_without_kombu_names_kombu_and_redis_not_amqp(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kombu wing imports py-amqp first; without the extra that is what fails to import, yet a
    redis:// user must read that kombu and redis are missing."""
    for name in [m for m in sys.modules if m.startswith("tdm_messaging.transport.kombu")]:
        monkeypatch.delitem(sys.modules, name)
    for driver in ("amqp", "kombu"):
        monkeypatch.setitem(sys.modules, driver, None)
    with pytest.raises(ConfigurationError) as info:
        open_transport("redis://127.0.0.1:6379/0")
    message = str(info.value)
    assert message == (
        "the 'redis' transport needs kombu and redis, not installed here; "
        "install with: pip install 'tdm-messaging[kombu]'"
    )


def test_sqla_without_its_driver_names_sqlalchemy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("kombu")
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)
    with pytest.raises(ConfigurationError, match="needs SQLAlchemy"):
        open_transport(f"sqla+sqlite:///{tmp_path}/k.db")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_failed_stomp_connect_is_one_line_without_stomppys_warning(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("stomp")
    caplog.set_level(logging.DEBUG, logger="stomp.py")
    port = _closed_port()
    assert cli.main(["status", "5", "--broker", f"stomp://127.0.0.1:{port}/?dialect=rabbitmq"]) == 2
    err = _one_error_line(capsys)
    assert "Connection refused" in err  # the cause stomp.py only logged is in our line
    assert not [r for r in caplog.records if r.name == "stomp.py" and "could not connect" in r.getMessage()]


def test_stomppys_logger_is_left_as_it_was_after_a_connect() -> None:
    pytest.importorskip("stomp")
    before = list(logging.getLogger("stomp.py").filters)
    with pytest.raises(Exception, match="cannot connect"):
        open_transport(f"stomp://127.0.0.1:{_closed_port()}/")
    assert logging.getLogger("stomp.py").filters == before
