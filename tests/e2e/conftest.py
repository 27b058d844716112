"""Fixtures of the end-to-end suite: broker choice, stacks of real processes, moto's S3 server, log tails on failure."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from examples.harness import Stack, StackConfig, log_tail, start_stack, unique_namespace
from tests.conftest import broker_url

EMBEDDED = "embedded"
"""The embedded default: the native ``sqlite://`` transport, a file in the test's directory (no daemon)."""
FLOW_BROKERS = [EMBEDDED, "rabbitmq-stomp", "activemq-stomp", "rabbitmq-amqp"]

MakeStack = Callable[..., Stack]

_STACKS_KEY = pytest.StashKey[list[Stack]]()
_FAILED_KEY = pytest.StashKey[bool]()


def resolve_broker(name: str) -> str | None:
    """The broker URL for ``name`` (``None`` for the embedded default); skips (fails in CI) if it is down."""
    return None if name == EMBEDDED else broker_url(name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    if report.failed:
        item.stash[_FAILED_KEY] = True
    return report


@pytest.fixture
def make_stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStack]:
    """Start stacks (server + packagers, real processes) that are all stopped when the test ends.

    Call it with ``broker`` (a name of :data:`FLOW_BROKERS`) and any :class:`StackConfig` field;
    small docsets by default (12 theses of 2-12 KiB). On failure, every process's log tail is printed.
    Every stack of one test shares one queue namespace of its own (``e2e-<hex>``), so tests and
    runs sharing a broker never see each other's queues, request queues included.
    """
    namespace = unique_namespace("e2e")
    stacks: list[Stack] = []
    request.node.stash[_STACKS_KEY] = stacks
    with ExitStack() as cleanup:

        def make(broker: str = EMBEDDED, **overrides: Any) -> Stack:
            fields: dict[str, Any] = {
                "work_dir": tmp_path / f"stack-{len(stacks) + 1}",
                "broker_url": resolve_broker(broker),
                "namespace": namespace,
                "documents": 12,
                "min_kb": 2,
                "max_kb": 12,
            }
            fields.update(overrides)
            stack = cleanup.enter_context(start_stack(StackConfig(**fields)))
            stacks.append(stack)
            return stack

        try:
            yield make
        finally:
            if request.node.stash.get(_FAILED_KEY, False):
                _print_logs(stacks)


def _print_logs(stacks: list[Stack]) -> None:
    for stack in stacks:
        for log_path in sorted(stack.log_dir.glob("*.log")):
            print(f"--- {log_path} (last 30 lines) ---\n{log_tail(log_path, 30)}")
