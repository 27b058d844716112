"""Tests for examples.harness.stack's configuration: where a stack keeps its database, broker and archives."""

from __future__ import annotations

from pathlib import Path

from examples.harness import StackConfig


def test_the_embedded_default_is_the_native_sqlite_file(tmp_path: Path) -> None:
    config = StackConfig(work_dir=tmp_path, namespace="e2e-0a1b")
    assert config.effective_broker_url == f"sqlite:///{tmp_path.resolve() / 'broker.db'}?namespace=e2e-0a1b"


def test_a_given_broker_url_gets_the_namespace_and_storage_defaults_to_the_served_directory(tmp_path: Path) -> None:
    config = StackConfig(work_dir=tmp_path, broker_url="amqp://h//", namespace="run-1")
    assert config.effective_broker_url == "amqp://h//?namespace=run-1"
    assert config.effective_storage == f"local:{tmp_path.resolve() / 'archives'}"
    assert config.db_url == f"sqlite:///{tmp_path.resolve() / 'tdm-server.db'}"


def test_without_a_namespace_the_broker_url_is_used_as_given(tmp_path: Path) -> None:
    config = StackConfig(work_dir=tmp_path, broker_url="redis://127.0.0.1:6379/15", storage="s3://bucket/p")
    assert config.effective_broker_url == "redis://127.0.0.1:6379/15"
    assert config.effective_storage == "s3://bucket/p"
