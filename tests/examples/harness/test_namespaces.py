"""Tests for examples.harness.namespaces: the namespace parameter is added, nested, and never repeats."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from examples.harness import unique_namespace, with_namespace
from tdm_messaging.transport.namespace import split_namespace


@pytest.mark.parametrize(
    "url",
    [
        "amqp://guest:guest@127.0.0.1:5672//",
        "stomp://127.0.0.1:61623/?dialect=activemq",
        "redis://127.0.0.1:6379/15?",
        "sqla+sqlite:////tmp/broker.db",
        "sqlite:////tmp/broker.db?visibility_timeout=3",
    ],
)
def test_with_namespace_adds_the_parameter_and_keeps_the_rest(url: str) -> None:
    namespaced = with_namespace(url, "e2e-0a1b")
    rest, namespace = split_namespace(namespaced)
    assert namespace == "e2e-0a1b"
    assert rest == url.rstrip("?")


def test_with_namespace_nests_inside_a_namespace_the_url_already_names() -> None:
    namespaced = with_namespace("amqp://h//?namespace=prod&heartbeat=2", "demo-ff")
    assert split_namespace(namespaced) == ("amqp://h//?heartbeat=2", "prod-demo-ff")


@given(st.lists(st.sampled_from(["demo", "e2e", "x"]), min_size=2, max_size=20))
@settings(max_examples=20)
def test_unique_namespaces_are_valid_and_never_repeat(stems: list[str]) -> None:
    names = [unique_namespace(stem) for stem in stems]
    assert len(set(names)) == len(names)
    for name, stem in zip(names, stems, strict=True):
        assert name.startswith(stem + "-")
        assert split_namespace(with_namespace("memory://", name))[1] == name
