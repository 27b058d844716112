"""Fixtures for the packager tests: a stub API on real HTTP, and a client for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from examples.packager.api import ApiClient
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
