"""Fixtures for the packager tests: a stub API on real HTTP, a client for it, an archive directory, a work dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.packager.api import ApiClient
from examples.packager.storage import LocalStorage
from tests.examples.packager.stub_api import API_KEY, StubApi, serve


@pytest.fixture
def stub() -> Iterator[StubApi]:
    api = StubApi()
    with serve(api):
        yield api


@pytest.fixture
def client(stub: StubApi) -> Iterator[ApiClient]:
    api = ApiClient(api_base=stub.base, api_key=API_KEY, retries=2, backoff=0.0, sleep=lambda _: None)
    yield api
    api.close()


@pytest.fixture
def archives(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "archives", "http://127.0.0.1:9/archives")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path
