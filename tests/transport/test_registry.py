"""The URL-scheme registry: lazy backends, clear errors, no leaked passwords."""

from __future__ import annotations

import sys

import pytest

from tdm_messaging.errors import ConfigurationError, MessagingError
from tdm_messaging.transport import registry
from tdm_messaging.transport.base import Transport
from tdm_messaging.transport.urls import redact_url


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError) as info:
        registry.open_transport("mqtt://user:secret@host:1883")
    message = str(info.value)
    assert "'mqtt'" in message
    for scheme in ("amqp", "memory", "redis", "sqla+sqlite", "sqlite", "stomp", "stomp+ssl"):
        assert scheme in message
    assert "secret" not in message


@pytest.mark.parametrize("url", ["", "localhost:61613", None])
def test_url_without_scheme(url: object) -> None:
    with pytest.raises(ConfigurationError, match="no scheme"):
        registry.open_transport(url)  # type: ignore[arg-type]


def test_registered_scheme_is_opened_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.SCHEMES, "fake", "tests.transport.fake_backend_does_not_exist:Nope")
    with pytest.raises(ConfigurationError, match=r"cannot be loaded: no module named 'tests\.transport\.fake_backend"):
        registry.open_transport("fake://x")


def test_register_scheme_points_at_a_class(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "SCHEMES", dict(registry.SCHEMES))
    registry.register_scheme("Test", "tdm_messaging.testing:InMemoryTransport")
    assert registry.SCHEMES["test"] == "tdm_messaging.testing:InMemoryTransport"
    with pytest.raises(ConfigurationError, match="module:ClassName"):
        registry.register_scheme("bad", "no-colon")


def test_registry_errors_share_the_root() -> None:
    assert issubclass(ConfigurationError, MessagingError)
    assert isinstance(Transport, type)


def test_redact() -> None:
    assert redact_url("amqp://u:pw@h:5672//") == "amqp://u:***@h:5672//"
    assert redact_url("memory://") == "memory://"


def test_sqlite_needs_no_extra() -> None:
    """The embedded default is in the standard library: no driver, so no extra to name."""
    assert registry.SCHEMES["sqlite"] == "tdm_messaging.transport.sqlite.backend:SqliteTransport"
    assert "sqlite" not in registry._DRIVERS and "inmemory" not in registry._DRIVERS


@pytest.mark.parametrize(
    ("url", "driver", "extra"),
    [
        ("redis://127.0.0.1:6379/0", "kombu and redis", "kombu"),
        ("rediss://127.0.0.1:6379/0", "kombu and redis", "kombu"),
        ("amqp://guest:secret@127.0.0.1:5672//", "kombu (with py-amqp)", "kombu"),
        ("sqla+sqlite:///x.db", "kombu and SQLAlchemy", "kombu"),
        ("memory://", "kombu", "kombu"),
        ("stomp://127.0.0.1:61613", "stomp.py", "stomp"),
    ],
)
def test_a_missing_driver_is_named_for_the_scheme_used(
    monkeypatch: pytest.MonkeyPatch, url: str, driver: str, extra: str
) -> None:
    """redis:// without the extra names redis (not amqp), and the extra that installs it."""
    module = registry.SCHEMES[url.partition(":")[0]].partition(":")[0]
    monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ImportError, as without the driver
    with pytest.raises(ConfigurationError) as info:
        registry.open_transport(url)
    message = str(info.value)
    scheme = url.partition(":")[0]
    assert message.startswith(f"the {scheme!r} transport needs {driver}, not installed here;")
    assert message.endswith(f"install with: pip install 'tdm-messaging[{extra}]'")
    assert "secret" not in message
    if scheme.startswith("redis"):
        assert "amqp" not in message
