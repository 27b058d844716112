"""The packager's HTTP retries through urllib3's Retry: Retry-After honoured and capped, back-off, stop mid-pause."""

from __future__ import annotations

import threading
import time
from contextlib import closing

import pytest

from examples.packager.api import ApiClient
from examples.packager.errors import FetchError
from examples.packager.limits import Cancel, JobInterrupted
from tests.examples.packager.stub_api import API_KEY, StubApi, StubDoc


def _ready(stub: StubApi) -> None:
    stub.add_docset("5", [StubDoc("0", {"title": "Thesis 0"}, text=b"text 0")])


def _gaps(stub: StubApi) -> list[float]:
    return [later - earlier for earlier, later in zip(stub.seen_at, stub.seen_at[1:], strict=False)]


def test_a_503_with_retry_after_1_is_retried_after_about_a_second(stub: StubApi) -> None:
    _ready(stub)
    stub.fail_next, stub.fail_headers = 1, {"Retry-After": "1"}
    with closing(ApiClient(api_base=stub.base, api_key=API_KEY, retries=2, backoff=0.0)) as client:
        _, body = client.get_json("/api/docsets/5")
    assert body["members"][0]["id"] == "0"
    assert len(stub.seen) == 2
    assert _gaps(stub)[0] >= 0.95  # a lower bound only: the machine may be slow, never early


def test_an_unbounded_retry_after_is_capped(stub: StubApi) -> None:
    _ready(stub)
    stub.fail_next, stub.fail_headers = 1, {"Retry-After": "9" * 30}
    started = time.monotonic()
    with closing(ApiClient(api_base=stub.base, api_key=API_KEY, retries=2, backoff=0.0, max_retry_after=0.5)) as client:
        client.get_json("/api/docsets/5")
    assert len(stub.seen) == 2
    assert _gaps(stub)[0] >= 0.45
    assert time.monotonic() - started < 30  # not 10**29 s


def test_the_cap_holds_for_an_http_date_too(stub: StubApi) -> None:
    _ready(stub)
    stub.fail_next, stub.fail_headers = 1, {"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"}
    with closing(ApiClient(api_base=stub.base, api_key=API_KEY, retries=1, backoff=0.0, max_retry_after=0.3)) as client:
        client.get_json("/api/docsets/5")
    assert len(stub.seen) == 2 and _gaps(stub)[0] >= 0.25


def test_an_unreadable_retry_after_falls_back_to_the_back_off(stub: StubApi) -> None:
    _ready(stub)
    stub.fail_next, stub.fail_headers = 2, {"Retry-After": "soon-ish ☕"}
    pauses: list[float] = []
    client = ApiClient(api_base=stub.base, api_key=API_KEY, retries=3, backoff=0.25, sleep=pauses.append)
    client.get_json("/api/docsets/5")
    client.close()
    assert pauses == [0.0, 0.5]  # urllib3's back-off: the first retry at once, then factor * 2**(n-1)


def test_the_retries_run_out_into_a_retryable_error_naming_the_status(stub: StubApi) -> None:
    stub.fail_next, stub.fail_headers = 10, {"Retry-After": "0"}
    pauses: list[float] = []
    client = ApiClient(api_base=stub.base, api_key=API_KEY, retries=3, backoff=0.1, sleep=pauses.append)
    with pytest.raises(FetchError, match=r"answered HTTP 503 \(after 4 attempts\)") as info:
        client.get_json("/api/docsets/5")
    client.close()
    assert info.value.retryable and len(stub.seen) == 4
    assert pauses == pytest.approx([0.0, 0.2, 0.4])  # Retry-After: 0 means "use the back-off", as in urllib3


def test_a_client_error_is_not_retried(stub: StubApi) -> None:
    stub.routes["/api/docsets/7"] = (400, {"Retry-After": "1"})
    client = ApiClient(api_base=stub.base, api_key=API_KEY, retries=3, sleep=lambda _: pytest.fail("slept"))
    with pytest.raises(FetchError, match="400"):
        client.get_json("/api/docsets/7")
    client.close()
    assert len(stub.seen) == 1


def test_a_stop_ends_a_long_retry_after_pause_at_once(stub: StubApi) -> None:
    stub.fail_next, stub.fail_headers = 10, {"Retry-After": "30"}
    cancel = Cancel()
    threading.Timer(0.3, cancel.cancel, args=(JobInterrupted("stopping"),)).start()
    started = time.monotonic()
    with closing(ApiClient(api_base=stub.base, api_key=API_KEY, retries=3)) as client, pytest.raises(JobInterrupted):
        client.get_json("/api/docsets/5", cancel=cancel)
    assert time.monotonic() - started < 10  # not the 30 s the server asked for
    assert len(stub.seen) == 1
