"""Issue 10 (hostile input), the server's part: each case of the issue, answered with a 4xx, never a 500.

Expensive FTS5 queries, bodies nested too deep, undecodable keys, HEAD on a dump, the packager's
key trying to write, docset deletion, per-owner dump quotas, and the database files' mode.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import bottle
import pytest

from examples.harness import load_sample_theses
from examples.server import Settings, create_app, repo
from examples.server.db import Database
from examples.server.search_limits import (
    MAX_NEAR_DISTANCE,
    MAX_NEAR_GROUPS,
    MAX_NEAR_TERMS,
    MAX_PREFIX_TERMS,
    check_query,
    measure_query,
)
from tdm_messaging.codec import JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE, encode
from tdm_messaging.destinations import DEAD_LETTER, DELETE_REQUESTS, PACKAGE_REQUESTS, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport
from tests.examples.server.conftest import (
    ALICE,
    PACKAGER,
    PUBLIC_URL,
    Client,
    FakePackager,
    accepted,
    complete,
    failed,
    make_docset,
)

ISSUE_QUERY = "NEAR(" + " ".join(["t*"] * 248) + ", 99999)"


# --- full-text search ---------------------------------------------------------------------------


def test_the_issue_query_is_under_the_length_limit_but_over_the_term_limits() -> None:
    assert len(ISSUE_QUERY) == 756
    cost = measure_query(ISSUE_QUERY)
    assert (cost.prefix_terms, cost.near_groups, cost.largest_near, cost.largest_distance) == (248, 1, 248, 99999)


@pytest.mark.parametrize(
    ("query", "words"),
    [
        (" ".join(["a*"] * (MAX_PREFIX_TERMS + 1)), "prefix terms"),
        (" ".join(["NEAR(a b)"] * (MAX_NEAR_GROUPS + 1)), "NEAR groups"),
        ("NEAR(" + " ".join(["w"] * (MAX_NEAR_TERMS + 1)) + ")", "phrases in one NEAR group"),
        (f"NEAR(a b, {MAX_NEAR_DISTANCE + 1})", "NEAR distance"),
        (" OR ".join(f"w{i}" for i in range(65)), "words and phrases"),
    ],
)
def test_each_query_limit_is_a_422_naming_it(client: Client, query: str, words: str) -> None:
    response = client.post("/api/docsets", {"name": "q", "query": query})
    assert response.status == 422
    assert response.error_code == "query_too_complex"
    assert words in response.json()["error"]["message"]
    assert "limit" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "query",
    [
        '"a* b* c* d* e* f* g* h* i* j*"',  # inside a phrase, * is no prefix marker
        "NEAR(a b c, 100)",
        'title:ocean* AND {abstract title}:turbulence AND "protein folding"',
        " ".join(["a*"] * MAX_PREFIX_TERMS),
    ],
)
def test_queries_within_the_limits_pass(query: str) -> None:
    check_query(query)


def test_a_search_past_its_deadline_is_stopped_and_answered_422(
    settings: Settings, broker: InMemoryBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A deadline already passed and a check at every VM step: the first step stops the search.
    monkeypatch.setattr(repo, "_PROGRESS_STEPS", 1)
    app = create_app(settings.model_copy(update={"search_timeout_seconds": 0.0}), transport_factory=InMemoryBroker)
    with app.config["tdm.db"].connect() as conn:
        repo.insert_document(conn, repo.NewDocument("Ocean", ["A"], "D", "Ph.D.", 2000, "x", "ocean " * 50))
    response = Client(app).post("/api/docsets", {"name": "q", "query": "ocean"})
    assert response.status == 422, response.body
    assert response.error_code == "query_too_expensive"
    assert "0 s" in response.json()["error"]["message"]
    app.config["tdm.close"]()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The issue's setting: a 0.9 MB corpus (30 theses of 25-35 KiB)."""
    db_url = f"sqlite:///{tmp_path_factory.mktemp('corpus') / 'corpus.db'}"
    assert load_sample_theses(db_url, 30, min_kb=25, max_kb=35) > 800_000
    return db_url


def test_the_issue_query_ends_fast_through_the_api(corpus: str, tmp_path: Path) -> None:
    settings = Settings(db_url=corpus, broker_url="memory://", archive_dir=tmp_path, api_keys=())
    app = create_app(settings, transport_factory=lambda: InMemoryTransport(InMemoryBroker()))
    with app.config["tdm.db"].connect() as conn:
        repo.upsert_api_key(conn, owner="alice", key=ALICE)
    started = time.monotonic()
    response = Client(app).post("/api/docsets", {"name": "q", "query": ISSUE_QUERY})
    assert time.monotonic() - started < 1.0  # was 12.5 s of CPU
    assert response.status == 422
    assert response.error_code == "query_too_complex"
    app.config["tdm.close"]()


def test_the_deadline_interrupts_fts5_inside_the_virtual_table(corpus: str) -> None:
    """Past the validator (called directly): the deadline alone stops the issue's query."""
    started = time.monotonic()
    with Database(corpus).connect() as conn, pytest.raises(repo.SearchTimeoutError, match=r"0\.3 s"):
        repo.search_document_ids(conn, repo.SearchQuery(ISSUE_QUERY), timeout=0.3)
    assert time.monotonic() - started < 2.0  # 7.5 s uninterrupted here
    with Database(corpus).connect() as conn:  # a normal search afterwards is not interrupted
        assert repo.search_document_ids(conn, repo.SearchQuery("the"), timeout=5.0)


# --- bodies and keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 50_000, b'{"name": "x", "document_ids": ' + b"[" * 33])
@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_body_nested_too_deep_is_400(client: Client, body: bytes, method: str) -> None:
    path = "/api/docsets" if method == "POST" else f"/api/docsets/{make_docset(client)}"
    response = client.request(method, path, body=body, content_type="application/json")
    assert response.status == 400
    assert response.error_code == "json_too_deep"
    assert "32 levels" in response.json()["error"]["message"]


def test_brackets_inside_strings_are_no_nesting(client: Client) -> None:
    name = '[[[[{{{{\\"' * 10
    response = client.post("/api/docsets", {"name": name, "document_ids": [1]})
    assert response.status == 201, response.body


# Probes, scrapers, and the miner's page (static files; the page itself asks for the key).
_OPEN_TO_ALL = {"/api/openapi.json", "/healthz", "/readyz", "/metrics"}


def _every_endpoint(app: bottle.Bottle, docset_id: int) -> Iterator[tuple[str, str]]:
    for route in app.routes:
        path = route.rule.replace("<docset_id:int>", str(docset_id)).replace("<document_id:int>", "1")
        open_to_all = route.rule in _OPEN_TO_ALL or route.rule.startswith("/miner")
        if "<" not in path and not open_to_all and route.method != "HEAD":
            yield route.method, path


def test_an_undecodable_key_is_401_on_every_endpoint(client: Client) -> None:
    docset_id = make_docset(client)
    for method, path in _every_endpoint(client.app, docset_id):
        # WSGI gives header bytes as latin-1 text: the raw byte 0xFF arrives as "\xff".
        for key in ("\xff", "al\xe9ice", "\xc3"):
            response = client.request(method, path, json_body={"name": "x"}, key=key)
            assert response.status == 401, (method, path, response.status, response.body)
            assert response.error_code == "invalid_api_key"
            assert "X-API-Key" in response.headers["www-authenticate"]


def test_a_utf8_key_still_works(client: Client) -> None:
    with client.app.config["tdm.db"].connect() as conn:
        repo.upsert_api_key(conn, owner="zoë", key="clé-ü")
    response = client.get("/api/collections", key="clé-ü".encode().decode("latin-1"))
    assert response.status == 200


# --- HEAD, the packager's key, deletion ---------------------------------------------------------


def test_head_on_a_dump_reaches_no_broker(client: Client, broker: InMemoryBroker) -> None:
    docset_id = make_docset(client)
    response = client.request("HEAD", f"/api/docsets/{docset_id}/dump")
    assert response.status == 405
    assert response.headers["allow"] == "GET, POST, DELETE"
    assert broker.messages(PACKAGE_REQUESTS) == []
    assert client.get(f"/api/docsets/{docset_id}/dump").json()["requested_now"] is True  # GET still requests


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/docsets", {"name": "by the packager", "document_ids": [1]}),
        ("PATCH", "/api/docsets/{id}", {"name": "x"}),
        ("DELETE", "/api/docsets/{id}", None),
        ("GET", "/api/docsets/{id}/dump", None),
        ("POST", "/api/docsets/{id}/dump", None),
        ("DELETE", "/api/docsets/{id}/dump", None),
    ],
)
def test_the_packager_key_is_read_only(
    client: Client, broker: InMemoryBroker, method: str, path: str, body: object
) -> None:
    docset_id = make_docset(client)
    packager = Client(client.app, PACKAGER)
    response = packager.request(method, path.format(id=docset_id), json_body=body)
    assert response.status == 403
    assert response.error_code == "read_only_key"
    assert packager.get("/api/docsets").json()["total"] == 0
    assert broker.messages(PACKAGE_REQUESTS) == [] and broker.messages(DELETE_REQUESTS) == []
    assert packager.get(f"/api/docsets/{docset_id}?fmt=meta,txt").status == 200  # reading stays allowed


def test_deleting_a_docset_never_500s_even_when_the_broker_call_breaks(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> InMemoryTransport:
        raise RuntimeError("not a messaging error")

    app = create_app(settings, transport_factory=broken)
    with app.config["tdm.db"].connect() as conn:
        repo.insert_document(conn, repo.NewDocument("T", ["A"], "D", "Ph.D.", 2000, "x", "text"))
    client = Client(app)
    docset_id = make_docset(client, [1])
    assert client.delete(f"/api/docsets/{docset_id}").status == 204
    assert client.get(f"/api/docsets/{docset_id}").status == 404
    assert "not a messaging error" in caplog.text
    app.config["tdm.close"]()


def test_a_deleted_docsets_archive_is_no_longer_served(
    client: Client, broker: InMemoryBroker, settings: Settings
) -> None:
    packager = FakePackager(broker, []).start()
    try:
        kept, deleted = make_docset(client), make_docset(client)
        settings.archive_dir.mkdir(parents=True, exist_ok=True)
        for docset_id in (kept, deleted):
            (settings.archive_dir / f"docset-{docset_id}--{'ab' * 32}.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
        assert client.get(f"/archives/docset-{deleted}--{'ab' * 32}.zip", key=None).status == 200
        assert client.delete(f"/api/docsets/{deleted}").status == 204
        packager.wait_delete()
        assert [d.docset_id for d in packager.deletes] == [str(deleted)]  # asked, though never dumped
        gone = client.get(f"/archives/docset-{deleted}--{'ab' * 32}.zip", key=None)
        assert gone.status == 404
        assert gone.error_code == "archive_not_found"
        assert client.get(f"/archives/docset-{kept}--{'ab' * 32}.zip", key=None).status == 200
    finally:
        packager.stop()


# --- quotas -------------------------------------------------------------------------------------


@pytest.fixture
def tight(settings: Settings, broker: InMemoryBroker) -> Iterator[Client]:
    limited = settings.model_copy(update={"max_dumps_in_flight": 2, "max_stored_archives": 3})
    app = create_app(limited, transport_factory=lambda: InMemoryTransport(broker))
    with app.config["tdm.db"].connect() as conn:
        for n in range(4):
            repo.insert_document(conn, repo.NewDocument(f"T{n}", ["A"], "D", "Ph.D.", 2000, "x", "text"))
    yield Client(app)
    app.config["tdm.close"]()


def _assert_429(response: object, code: str) -> None:
    assert response.status == 429, response.body  # type: ignore[attr-defined]
    assert response.error_code == code  # type: ignore[attr-defined]
    assert int(response.headers["retry-after"]) > 0  # type: ignore[attr-defined]


def test_dumps_in_flight_per_owner_are_limited(tight: Client, broker: InMemoryBroker) -> None:
    ids = [make_docset(tight, [1]) for _ in range(3)]
    assert tight.get(f"/api/docsets/{ids[0]}/dump").status == 202
    assert tight.get(f"/api/docsets/{ids[1]}/dump").status == 202
    _assert_429(tight.get(f"/api/docsets/{ids[2]}/dump"), "too_many_dumps_in_flight")
    _assert_429(tight.post(f"/api/docsets/{ids[2]}/dump"), "too_many_dumps_in_flight")
    assert len(broker.messages(PACKAGE_REQUESTS)) == 2
    # Polling a docset already in flight is no new request, and is never refused.
    assert tight.get(f"/api/docsets/{ids[0]}/dump").status == 202
    # Another owner has a quota of their own.
    bob_set = make_docset(Client(tight.app, "bob-key"), [1])
    assert Client(tight.app, "bob-key").get(f"/api/docsets/{bob_set}/dump").status == 202


def test_a_burst_of_posts_on_one_docset_sends_one_request(tight: Client, broker: InMemoryBroker) -> None:
    docset_id = make_docset(tight, [1])
    answers = [tight.post(f"/api/docsets/{docset_id}/dump").status for _ in range(50)]
    assert answers[0] == 202 and set(answers[1:]) == {429}
    assert len(broker.messages(PACKAGE_REQUESTS)) == 1
    # Once the docset changes, the build in flight is stale and a new request is taken.
    assert tight.patch(f"/api/docsets/{docset_id}", {"add_document_ids": [2]}).status == 200
    assert tight.post(f"/api/docsets/{docset_id}/dump").status == 202


@pytest.mark.parametrize("packager", [[accepted, failed]], indirect=True)
def test_a_failed_build_frees_its_slot(tight: Client, packager: FakePackager) -> None:
    docset_id = make_docset(tight, [1])
    assert tight.get(f"/api/docsets/{docset_id}/dump").status == 202
    packager.step()
    packager.step()
    again = tight.post(f"/api/docsets/{docset_id}/dump")  # the POST reads the failure before judging
    assert again.status == 202, again.body
    assert again.json()["requested_now"] is True


@pytest.fixture
def packager(broker: InMemoryBroker, request: pytest.FixtureRequest) -> Iterator[FakePackager]:
    fake = FakePackager(broker, request.param).start()
    yield fake
    fake.stop()


def test_stored_archives_per_owner_are_limited(tight: Client) -> None:
    ids = [make_docset(tight, [1]) for _ in range(4)]
    with tight.app.config["tdm.db"].connect() as conn:  # two archives built and kept
        for docset_id in ids[:2]:
            conn.execute(
                "INSERT INTO dump_quota (docset_id, owner, state, version, requested_at) VALUES (?, ?, ?, 1, ?)",
                (docset_id, "alice", "stored", time.time()),
            )
    assert tight.get(f"/api/docsets/{ids[2]}/dump").status == 202  # 2 stored + 1 building = 3
    _assert_429(tight.get(f"/api/docsets/{ids[3]}/dump"), "too_many_archives")
    assert "DELETE" in tight.get(f"/api/docsets/{ids[3]}/dump").json()["error"]["message"]
    assert tight.delete(f"/api/docsets/{ids[0]}").status == 204  # deleting a docset frees its archive
    assert tight.get(f"/api/docsets/{ids[3]}/dump").status == 202


def test_a_stale_build_stops_counting(tight: Client) -> None:
    ids = [make_docset(tight, [1]) for _ in range(3)]
    with tight.app.config["tdm.db"].connect() as conn:
        for docset_id in ids[:2]:
            conn.execute(
                "INSERT INTO dump_quota (docset_id, owner, state, version, requested_at) VALUES (?, ?, ?, 1, ?)",
                (docset_id, "alice", "building", time.time() - 7200),
            )
    assert tight.get(f"/api/docsets/{ids[2]}/dump").status == 202


# --- files --------------------------------------------------------------------------------------


def test_database_files_are_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        db = Database(f"sqlite:///{tmp_path / 'tdm.db'}")
        db.migrate()
        with db.connect() as conn:  # WAL mode: a write creates -wal and -shm
            conn.execute("INSERT INTO collections (name) VALUES ('x')")
            files = sorted(p.name for p in tmp_path.iterdir())
            assert files == ["tdm.db", "tdm.db-shm", "tdm.db-wal"]
            for path in tmp_path.iterdir():
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        os.umask(old)


def test_an_existing_database_is_made_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    path.write_bytes(b"")
    path.chmod(0o644)
    Database(f"sqlite:///{path}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# --- poisoned and forged replies, through GET /dump --------------------------------------------


def test_poison_and_forged_replies_never_make_dump_a_500_or_pin_it(client: Client, broker: InMemoryBroker) -> None:
    """Issue 10, cases 1 and 3 at the HTTP boundary: poison in ``package/<id>`` made every ``/dump`` a 500,
    and an Accepted with request id ``zzzz`` pinned it at 202 though the real job had completed."""
    packager = FakePackager(broker, [accepted, complete]).start()
    try:
        docset_id = make_docset(client)
        url = f"/api/docsets/{docset_id}/dump"
        assert client.get(url).status == 202
        packager.step()
        packager.step()
        queue = reply_queue(str(docset_id))
        forged = json.loads(encode(accepted(packager.requests[0], datetime.now(UTC))).body)
        forged["request_id"] = "zzzz"
        poison = [
            Envelope(json.dumps(forged).encode(), JSON_CONTENT_TYPE, {}),
            Envelope(b"Complete: http://x/a.zip\nSize: \xc2\xb2", TEXT_CONTENT_TYPE, {}),
            Envelope(b"Accepted.", TEXT_CONTENT_TYPE, {"tdm-sequence": "1" * 5000}),
            Envelope(b'{"a":' * 100_000, JSON_CONTENT_TYPE, {}),
            Envelope(b'{"type": "accepted", "estimate_seconds": 1e400}', JSON_CONTENT_TYPE, {}),
            Envelope(b'{"type": "complete", "archive_url": "javascript:alert(1)"}', JSON_CONTENT_TYPE, {}),
        ]
        for envelope in poison:
            InMemoryTransport(broker).send(queue, envelope)
        for _ in range(3):  # and it stays right on the next polls
            done = client.get(url)
            assert done.status == 303, done.body
            assert done.headers["location"] == f"{PUBLIC_URL}/archives/docset-{docset_id}.zip"
        assert len(broker.messages(DEAD_LETTER)) == len(poison)
        assert len(packager.requests) == 1  # no re-request either
    finally:
        packager.stop()
