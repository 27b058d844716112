"""The dump endpoints over real brokers: the server's transport pool, request and poll, with unique queue names."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import bottle
import pytest

from examples.server import ApiKeySpec, Settings, create_app
from examples.server.repo import insert_document
from tests.conftest import broker_url
from tests.examples.server.conftest import SAMPLE_DOCS, Client, make_docset

pytestmark = pytest.mark.broker


@pytest.fixture(params=["rabbitmq-stomp", "activemq-stomp", "rabbitmq-amqp", "redis"])
def real_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[bottle.Bottle]:
    url = broker_url(request.param)
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'b.db'}",
        broker_url=url,
        archive_dir=tmp_path,
        public_url="http://127.0.0.1:9",
        api_keys=(ApiKeySpec("alice", "alice-key"),),
        queue_prefix=f"t{uuid.uuid4().hex[:12]}-",
    )
    app = create_app(settings)
    with app.config["tdm.db"].connect() as conn:
        insert_document(conn, SAMPLE_DOCS[0])
    yield app
    app.config["tdm.close"]()


def test_request_then_poll_over_a_real_broker(real_app: bottle.Bottle) -> None:
    client = Client(real_app, "alice-key")
    docset_id = make_docset(client, [1])
    url = f"/api/docsets/{docset_id}/dump"
    first = client.get(url)
    assert first.status == 202, first.body
    assert first.json()["requested_now"] is True
    assert first.json()["state"] == "requested"
    # Polling again answers from the reply queue (whether or not this backend shows the
    # first request back at once, the answer stays "pending", never "unknown").
    again = client.get(url)
    assert again.status == 202
    assert again.json()["state"] in {"requested", "accepted", "in_progress"}
    # A second request while the first is being built queues nothing: 429 with Retry-After.
    busy = client.post(url)
    assert busy.status == 429, busy.body
    assert busy.json()["error"]["code"] == "dump_in_progress"
    assert int(busy.headers["retry-after"]) >= 1
