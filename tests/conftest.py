"""Shared fixtures: broker URLs from the environment; in CI an unreachable broker fails, elsewhere it skips."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

# name -> environment variable holding its URL (set by the Makefile; scripts/brokers.sh starts them).
BROKER_ENV = {
    "rabbitmq-stomp": "TDM_TEST_RABBITMQ_STOMP_URL",
    "activemq-stomp": "TDM_TEST_ACTIVEMQ_STOMP_URL",
    "rabbitmq-amqp": "TDM_TEST_AMQP_URL",
    "redis": "TDM_TEST_REDIS_URL",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port
    if port is None:
        return True
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def broker_url(name: str) -> str:
    """The URL of broker ``name``, or skip (fail in CI) with one line saying what to start."""
    env = BROKER_ENV[name]
    url = os.environ.get(env)
    if not url:
        why = f"{name}: {env} is not set (run `make test`, which starts the brokers and sets it)"
    elif not _reachable(url):
        why = f"{name}: nothing answers at {env}={url} (start it with `bash scripts/brokers.sh up`)"
    else:
        return url
    if in_ci():
        pytest.fail(f"broker unreachable in CI: {why}", pytrace=False)
    pytest.skip(why)


AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
"""Credentials moto accepts; given to packager processes and to the tests' own S3 clients."""


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """An S3 API served by moto over real HTTP on loopback, for the whole session; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's credentials in this process's environment (and no AWS profile) for the test."""
    for name, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Iterator[None]:
    """Undo what a test's app start-up (configure_logging, basicConfig) did to the root logger.

    Left in place, its handler would write to that test's captured stderr, closed by then, and
    every later test that logs would print a logging error into its own output.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
