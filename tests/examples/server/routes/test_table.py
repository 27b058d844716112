"""Tests for examples.server.routes.table: handlers get the context, and out-of-range ids never reach them."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import bottle
import pytest

from examples.server.db import Database
from examples.server.dumps import DumpService, TransportPool
from examples.server.routes import ROUTES, AppContext, Route, install
from examples.server.routes.access import MAX_SQLITE_INT
from examples.server.settings import Settings
from examples.server.web import json_errors_plugin, json_response
from tdm_messaging import Transport


def call(app: bottle.Bottle, path: str) -> tuple[str, dict[str, Any]]:
    statuses: list[str] = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "wsgi.input": io.BytesIO(), "SERVER_NAME": "t"}
    environ.update({"SERVER_PORT": "80", "wsgi.url_scheme": "http", "wsgi.errors": io.StringIO()})
    body = b"".join(app(environ, lambda status, headers, exc_info=None: statuses.append(status)))
    return statuses[0], json.loads(body)


@pytest.fixture
def ctx(tmp_path: Path) -> AppContext:
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'db.sqlite'}", broker_url="memory://", archive_dir=tmp_path)

    def no_broker() -> Transport:
        raise AssertionError("these routes never reach the broker")

    return AppContext(
        settings=settings,
        db=Database(settings.db_url),
        dumps=DumpService(TransportPool(no_broker)),
        openapi={},
        archive_root=tmp_path,
    )


def test_a_handler_gets_the_context_and_its_path_parts(ctx: AppContext) -> None:
    seen: list[tuple[AppContext, int]] = []

    def handler(context: AppContext, item_id: int) -> bottle.HTTPResponse:
        seen.append((context, item_id))
        return json_response({"id": item_id})

    app = bottle.Bottle()
    app.install(json_errors_plugin)
    install(app, ctx, [Route("GET", "/items/<item_id:int>", handler)])
    assert call(app, "/items/7") == ("200 OK", {"id": 7})
    assert seen == [(ctx, 7)]


@pytest.mark.parametrize("item_id", [MAX_SQLITE_INT + 1, 10**30])
def test_an_id_sqlite_cannot_hold_is_a_404_before_the_handler_runs(ctx: AppContext, item_id: int) -> None:
    def handler(context: AppContext, item_id: int) -> bottle.HTTPResponse:
        raise AssertionError("the handler must not run")

    app = bottle.Bottle()
    app.install(json_errors_plugin)
    install(app, ctx, [Route("GET", "/items/<item_id:int>", handler)])
    status, body = call(app, f"/items/{item_id}")
    assert status.startswith("404")
    assert body["error"] == {"code": "not_found", "message": f"item id {item_id} does not exist"}


def test_every_route_is_listed_once() -> None:
    keys = [(route.method, route.path) for route in ROUTES]
    # 14 endpoints, HEAD on the dump refused, 3 operator endpoints, the miner's page's 3 files
    assert len(keys) == len(set(keys)) == 21
