"""The dump endpoints against the in-memory broker, with a fake packager thread replying step by step."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tdm_messaging.codec import decode
from tdm_messaging.destinations import DELETE_REQUESTS, PACKAGE_REQUESTS
from tdm_messaging.errors import BrokerUnavailableError
from tdm_messaging.models import PackageRequest
from tdm_messaging.testing import InMemoryBroker
from tests.examples.server.conftest import (
    PUBLIC_URL,
    Client,
    FakePackager,
    Step,
    accepted,
    complete,
    failed,
    make_docset,
    progress,
)


@pytest.fixture
def packager(broker: InMemoryBroker, request: pytest.FixtureRequest) -> Iterator[FakePackager]:
    script: list[Step] = getattr(request, "param", [accepted, progress, complete])
    fake = FakePackager(broker, script).start()
    yield fake
    fake.stop()


def test_first_poll_requests_the_package(client: Client, broker: InMemoryBroker) -> None:
    docset_id = make_docset(client)
    response = client.get(f"/api/docsets/{docset_id}/dump")
    assert response.status == 202
    body = response.json()
    assert body["state"] == "requested"
    assert body["requested_now"] is True
    assert int(response.headers["retry-after"]) >= 1
    sent = [decode(e) for e in broker.messages(PACKAGE_REQUESTS)]
    assert len(sent) == 1
    request = sent[0]
    assert isinstance(request, PackageRequest)
    assert request.docset_id == str(docset_id)
    assert request.docset_url == f"{PUBLIC_URL}/api/docsets/{docset_id}?fmt=meta,txt"
    # A second poll before the packager answers does not request again.
    again = client.get(f"/api/docsets/{docset_id}/dump")
    assert again.status == 202
    assert again.json()["requested_now"] is False
    assert len(broker.messages(PACKAGE_REQUESTS)) == 1


def test_accepted_progress_then_303(client: Client, packager: FakePackager) -> None:
    docset_id = make_docset(client)
    url = f"/api/docsets/{docset_id}/dump"
    assert client.get(url).status == 202
    packager.step()  # accepted, 30 s
    accepted_view = client.get(url)
    assert accepted_view.status == 202
    assert accepted_view.json()["state"] == "accepted"
    assert 1 <= int(accepted_view.headers["retry-after"]) <= 30
    packager.step()  # progress 50 %
    in_progress = client.get(url)
    assert in_progress.status == 202
    assert in_progress.json()["percent"] == 50.0
    assert in_progress.json()["items_done"] == 1
    packager.step()  # complete
    done = client.get(url)
    assert done.status == 303
    assert done.headers["location"] == f"{PUBLIC_URL}/archives/docset-{docset_id}.zip"
    assert done.json()["size_bytes"] == 1234
    assert done.json()["sha256"] == "ab" * 32
    # The status survives the poll: the next poll still says complete.
    assert client.get(url).status == 303
    assert len(packager.requests) == 1


@pytest.mark.parametrize("packager", [[accepted, failed]], indirect=True)
def test_failure_says_why_and_how_to_retry(client: Client, packager: FakePackager) -> None:
    docset_id = make_docset(client)
    url = f"/api/docsets/{docset_id}/dump"
    client.get(url)
    packager.step()
    packager.step()
    response = client.get(url)
    assert response.status == 502
    body = response.json()
    assert body["error"]["code"] == "package_failed"
    assert "storage is full" in body["error"]["message"]
    assert f"POST {PUBLIC_URL}{url}" in body["error"]["message"]
    assert body["retryable"] is True
    assert body["links"]["retry"] == f"{PUBLIC_URL}{url}?retry=true"
    # A plain GET does not silently retry; ?retry=true does, and the new request supersedes.
    assert client.get(url).status == 502
    retried = client.get(f"{url}?retry=true")
    assert retried.status == 202
    assert retried.json()["requested_now"] is True
    packager.step()
    packager.step()
    assert len(packager.requests) == 2
    assert packager.requests[1].request_id > packager.requests[0].request_id


@pytest.mark.parametrize("packager", [[accepted, failed]], indirect=True)
def test_post_requests_a_fresh_package(client: Client, packager: FakePackager) -> None:
    docset_id = make_docset(client)
    url = f"/api/docsets/{docset_id}/dump"
    client.get(url)
    packager.step()
    packager.step()
    response = client.post(url)
    assert response.status == 202
    assert response.json()["state"] == "requested"
    packager.step()
    assert client.get(url).json()["state"] == "accepted"
    packager.step()


def test_delete_dump_asks_the_packager(client: Client, packager: FakePackager) -> None:
    docset_id = make_docset(client)
    url = f"/api/docsets/{docset_id}/dump"
    client.get(url)
    for _ in range(3):
        packager.step()
    assert client.get(url).status == 303
    response = client.delete(url)
    assert response.status == 202
    assert response.json()["state"] == "delete_requested"
    packager.wait_delete()
    assert packager.deletes[0].archive_url == f"{PUBLIC_URL}/archives/docset-{docset_id}.zip"
    gone = client.get(url)
    assert gone.status == 410
    assert gone.json()["links"]["retry"].endswith("?retry=true")
    assert client.get(f"{url}?retry=true").status == 202


def test_delete_dump_without_package_is_404(client: Client, broker: InMemoryBroker) -> None:
    docset_id = make_docset(client)
    response = client.delete(f"/api/docsets/{docset_id}/dump")
    assert response.status == 404
    assert response.error_code == "no_package"
    assert broker.messages(DELETE_REQUESTS) == []


def test_broker_down_is_503_and_recovers(client: Client, broker: InMemoryBroker) -> None:
    docset_id = make_docset(client)
    url = f"/api/docsets/{docset_id}/dump"
    broker.disconnect()
    response = client.get(url)
    assert response.status == 503
    assert response.error_code == "broker_unavailable"
    assert response.headers["retry-after"] == "5"
    # The API itself keeps working without the broker.
    assert client.get(f"/api/docsets/{docset_id}").status == 200
    broker.reconnect()
    assert client.get(url).status == 202


def test_failed_send_is_503_and_nothing_is_lost(client: Client, broker: InMemoryBroker) -> None:
    docset_id = make_docset(client)
    broker.fail_next_send(BrokerUnavailableError("connection reset"))
    assert client.get(f"/api/docsets/{docset_id}/dump").status == 503
    response = client.get(f"/api/docsets/{docset_id}/dump")
    assert response.status == 202
    assert response.json()["state"] == "requested"
