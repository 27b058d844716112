"""The API's catalogue and docset endpoints through WSGI: auth, owner isolation, pagination, search, bad bodies."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.server import repo
from tdm_messaging.destinations import reply_queue
from tdm_messaging.transport.memory.broker import InMemoryBroker
from tests.examples.server.conftest import ALICE, BOB, PACKAGER, PUBLIC_URL, Client, make_docset

# Every docset endpoint, as (method, path with {id}, JSON body or None).
DOCSET_ENDPOINTS = [
    ("GET", "/api/docsets/{id}", None),
    ("GET", "/api/docsets/{id}?fmt=meta,txt", None),
    ("PATCH", "/api/docsets/{id}", {"name": "renamed"}),
    ("DELETE", "/api/docsets/{id}", None),
    ("GET", "/api/docsets/{id}/members", None),
    ("GET", "/api/docsets/{id}/dump", None),
    ("POST", "/api/docsets/{id}/dump", None),
    ("DELETE", "/api/docsets/{id}/dump", None),
]


def test_collections_list_counts(client: Client) -> None:
    body = client.get("/api/collections").json()
    counts = {c["name"]: c["document_count"] for c in body["collections"]}
    assert counts == {"theses": 3, "eecs-theses": 1}


def test_document_metadata_and_text(client: Client) -> None:
    doc = client.get("/api/documents/2").json()
    assert doc["title"] == "Neural networks for protein folding"
    assert doc["authors"] == ["Grace Hopper", "Alan Turing"]
    assert doc["year"] == 1999
    assert doc["links"]["text"] == f"{PUBLIC_URL}/api/documents/2/text"
    assert "full_text" not in doc
    text = client.get("/api/documents/2/text")
    assert text.status == 200
    assert text.headers["content-type"] == "text/plain; charset=utf-8"
    assert text.body.decode() == "Protein folding with neural networks. " * 100
    assert doc["text_bytes"] == len(text.body)


@pytest.mark.parametrize("path", ["/api/documents/99", "/api/documents/99/text", "/api/documents/99999999999999999999"])
def test_unknown_document_is_json_404(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status == 404
    assert response.json()["error"]["code"] in {"document_not_found", "not_found"}


@pytest.mark.parametrize("path", ["/api/collections", "/api/documents/1", "/api/documents/1/text", "/api/docsets"])
def test_catalogue_needs_a_known_key(client: Client, path: str) -> None:
    missing = client.get(path, key=None)
    assert missing.status == 401
    assert missing.error_code == "missing_api_key"
    assert "X-API-Key" in missing.headers["www-authenticate"]
    unknown = client.get(path, key="nope")
    assert unknown.status == 401
    assert unknown.error_code == "invalid_api_key"


def test_create_from_ids_then_read(client: Client) -> None:
    response = client.post("/api/docsets", {"name": " my set ", "document_ids": [3, 1, 1]})
    assert response.status == 201
    docset = response.json()
    assert response.headers["location"] == f"{PUBLIC_URL}/api/docsets/{docset['id']}"
    assert docset["name"] == "my set"
    assert docset["owner"] == "alice"
    assert docset["member_count"] == 2
    assert docset["query"] is None
    assert docset["version"] == 1
    assert client.get(f"/api/docsets/{docset['id']}").json() == docset


def test_creating_a_docset_prepares_its_reply_queue(client: Client, broker: InMemoryBroker) -> None:
    before = set(broker.queue_names())
    docset_id = make_docset(client)
    created = set(broker.queue_names()) - before
    assert len(created) == 1
    (name,) = created
    assert name.startswith(reply_queue("x").name[:-1]) and name.endswith(str(docset_id))
    assert broker.messages(name) == []  # prepared, and nothing in it for a poll to read


def test_a_docset_is_created_when_its_reply_queue_cannot_be(client: Client, broker: InMemoryBroker) -> None:
    broker.disconnect()
    try:
        response = client.post("/api/docsets", {"name": "offline", "document_ids": [1]})
    finally:
        broker.reconnect()
    assert response.status == 201, response.body
    docset = response.json()
    assert client.get(f"/api/docsets/{docset['id']}").json() == docset


def test_create_from_fts_query(client: Client) -> None:
    docset = client.post("/api/docsets", {"name": "ocean", "query": "ocean"}).json()
    members = client.get(f"/api/docsets/{docset['id']}/members").json()["members"]
    # "ocean" is in 1 (title), 3 (full text only) and 4 (title): FTS covers title, abstract and text.
    assert [m["id"] for m in members] == [1, 3, 4]
    assert docset["query"] == {"query": "ocean"}


def test_fts_query_with_filters(client: Client) -> None:
    body = {"name": "q", "query": "turbulence", "year_from": 2000, "year_to": 2025}
    docset = client.post("/api/docsets", body).json()
    assert docset["member_count"] == 1
    dept = "department of electrical engineering and computer science"
    by_dept = client.post("/api/docsets", {"name": "d", "department": dept}).json()
    assert by_dept["member_count"] == 2
    years = client.post("/api/docsets", {"name": "y", "year_to": 1999}).json()
    assert years["member_count"] == 2
    phrase = client.post("/api/docsets", {"name": "p", "query": '"protein folding" AND neural'}).json()
    assert phrase["member_count"] == 1


def test_fts_stemming(client: Client) -> None:
    # The porter tokenizer: "networks" in the text matches the query "network".
    assert client.post("/api/docsets", {"name": "s", "query": "network"}).json()["member_count"] == 2


@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [
        ({"name": "x"}, 422, "invalid_body", "document_ids"),
        ({"name": "x", "document_ids": [1], "query": "a"}, 422, "invalid_body", "not both"),
        ({"document_ids": [1]}, 422, "invalid_body", "name"),
        ({"name": "", "document_ids": [1]}, 422, "invalid_body", "name"),
        ({"name": "x", "document_ids": [0]}, 422, "invalid_body", "document_ids.0"),
        ({"name": "x", "document_ids": "1,2"}, 422, "invalid_body", "document_ids"),
        ({"name": "x", "year_from": 2000, "year_to": 1990}, 422, "invalid_body", "year_from"),
        ({"name": "x", "document_ids": [1], "owner": "bob"}, 422, "invalid_body", "owner"),
        ({"name": "x", "document_ids": [1, 77]}, 422, "unknown_documents", "77"),
        ({"name": "x", "query": 'unbalanced "quote'}, 422, "invalid_query", "fts5"),
        ([1, 2], 422, "invalid_body", "(body)"),
    ],
)
def test_bad_create_bodies(client: Client, body: object, status: int, code: str, words: str) -> None:
    response = client.post("/api/docsets", body)
    assert response.status == status
    error = response.json()["error"]
    assert error["code"] == code
    assert words in error["message"]


def test_not_json_and_wrong_content_type(client: Client) -> None:
    bad = client.request("POST", "/api/docsets", body=b"{nope", content_type="application/json")
    assert bad.status == 400
    assert bad.error_code == "invalid_json"
    form = client.request("POST", "/api/docsets", body=b"name=x", content_type="application/x-www-form-urlencoded")
    assert form.status == 415
    assert "application/json" in form.json()["error"]["message"]


def test_oversize_body_is_413(client: Client) -> None:
    big = b'{"name": "' + b"x" * (1 << 20) + b'"}'
    response = client.request("POST", "/api/docsets", body=big, content_type="application/json")
    assert response.status == 413
    assert response.error_code == "body_too_large"


def test_list_docsets_is_per_owner_and_paginated(client: Client) -> None:
    ids = [make_docset(client, name=f"set {i}") for i in range(3)]
    make_docset(Client(client.app, BOB), name="bob's")
    first = client.get("/api/docsets?per_page=2").json()
    assert [d["id"] for d in first["docsets"]] == ids[:2]
    assert first["total"] == 3
    second = client.get(first["links"]["next"].removeprefix(PUBLIC_URL)).json()
    assert [d["id"] for d in second["docsets"]] == ids[2:]
    assert second["links"]["next"] is None
    bob = Client(client.app, BOB).get("/api/docsets").json()
    assert [d["name"] for d in bob["docsets"]] == ["bob's"]


def test_patch_renames_and_changes_members(client: Client) -> None:
    docset_id = make_docset(client, [1, 2])
    patched = client.patch(
        f"/api/docsets/{docset_id}", {"name": "new", "add_document_ids": [3, 4], "remove_document_ids": [1]}
    )
    assert patched.status == 200
    body = patched.json()
    assert body["name"] == "new"
    assert body["member_count"] == 3
    assert body["version"] == 2
    members = client.get(f"/api/docsets/{docset_id}/members").json()["members"]
    assert [m["id"] for m in members] == [2, 3, 4]
    renamed_only = client.patch(f"/api/docsets/{docset_id}", {"name": "again"}).json()
    assert renamed_only["version"] == 2


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "invalid_body"),
        ({"add_document_ids": [1], "remove_document_ids": [1]}, "invalid_body"),
        ({"add_document_ids": [404]}, "unknown_documents"),
    ],
)
def test_bad_patch_bodies(client: Client, body: object, code: str) -> None:
    docset_id = make_docset(client)
    response = client.patch(f"/api/docsets/{docset_id}", body)
    assert response.status == 422
    assert response.error_code == code


def test_delete_docset(client: Client) -> None:
    docset_id = make_docset(client)
    assert client.delete(f"/api/docsets/{docset_id}").status == 204
    assert client.get(f"/api/docsets/{docset_id}").status == 404
    # Ids are never reused: they also name reply queues and packages.
    assert make_docset(client) == docset_id + 1


def test_members_page_mode(client: Client) -> None:
    docset_id = make_docset(client, [1, 2, 3, 4])
    page = client.get(f"/api/docsets/{docset_id}/members?per_page=3").json()
    assert [m["id"] for m in page["members"]] == [1, 2, 3]
    assert (page["total"], page["pages"], page["page"]) == (4, 2, 1)
    assert page["links"]["prev"] is None
    last = client.get(page["links"]["next"].removeprefix(PUBLIC_URL))
    assert last.status == 200
    assert [m["id"] for m in last.json()["members"]] == [4]
    assert last.json()["links"]["next"] is None
    assert "link" not in last.headers
    beyond = client.get(f"/api/docsets/{docset_id}/members?page=9&per_page=3").json()
    assert beyond["members"] == []


def test_members_cursor_mode(client: Client) -> None:
    docset_id = make_docset(client, [1, 2, 3, 4])
    seen: list[int] = []
    url: str | None = f"/api/docsets/{docset_id}/members?after=0&per_page=3"
    while url:
        response = client.get(url.removeprefix(PUBLIC_URL))
        body = response.json()
        seen += [m["id"] for m in body["members"]]
        url = body["links"]["next"]
        if url:
            assert response.headers["link"] == f'<{url}>; rel="next"'
    assert seen == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "query",
    [
        "per_page=0",
        "per_page=1001",
        "page=0",
        "page=x",
        "after=-1",
        "per_page=",
        "page=+2",
        "per_page=\u0665",
        "page=1_0",
    ],
)
def test_bad_pagination_is_400(client: Client, query: str) -> None:
    docset_id = make_docset(client)
    response = client.get(f"/api/docsets/{docset_id}/members?{query}")
    assert response.status == 400
    assert response.error_code == "invalid_parameter"


def test_package_source_streams_pages_for_the_packager(client: Client) -> None:
    docset_id = make_docset(client, [4, 2, 1])
    packager = Client(client.app, PACKAGER)
    url: str | None = f"/api/docsets/{docset_id}?fmt=meta,txt&limit=2"
    members = []
    while url:
        body = packager.get(url.removeprefix(PUBLIC_URL)).json()
        assert body["docset"]["id"] == docset_id
        assert body["formats"] == ["meta", "txt"]
        members += body["members"]
        url = body["next"]
    assert [m["id"] for m in members] == [1, 2, 4]
    assert members[0]["title"].startswith("Turbulent")
    assert members[0]["links"]["text"] == f"{PUBLIC_URL}/api/documents/1/text"
    text_only = packager.get(f"/api/docsets/{docset_id}?fmt=txt").json()["members"][0]
    assert set(text_only) == {"id", "text_bytes", "links"}
    meta_only = packager.get(f"/api/docsets/{docset_id}?fmt=meta").json()["members"][0]
    assert "text" not in meta_only["links"]
    assert packager.get(f"/api/docsets/{docset_id}?fmt=pdf").status == 400


def test_packager_reads_but_never_writes(client: Client) -> None:
    docset_id = make_docset(client)
    packager = Client(client.app, PACKAGER)
    assert packager.get(f"/api/docsets/{docset_id}").status == 200
    assert packager.get(f"/api/docsets/{docset_id}/members").status == 200
    assert packager.patch(f"/api/docsets/{docset_id}", {"name": "x"}).status == 403
    assert packager.delete(f"/api/docsets/{docset_id}").status == 403
    assert packager.get(f"/api/docsets/{docset_id}/dump").status == 403


@pytest.mark.parametrize(("method", "template", "body"), DOCSET_ENDPOINTS)
def test_owner_isolation(client: Client, method: str, template: str, body: object) -> None:
    docset_id = make_docset(client)
    path = template.format(id=docset_id)
    assert client.request(method, path, json_body=body, key=None).status == 401
    assert client.request(method, path, json_body=body, key="wrong").status == 401
    other = client.request(method, path, json_body=body, key=BOB)
    assert other.status == 403
    assert other.error_code == "forbidden"
    unknown = client.request(method, template.format(id=docset_id + 100), json_body=body, key=ALICE)
    assert unknown.status == 404
    assert unknown.error_code == "docset_not_found"
    assert client.get(f"/api/docsets/{docset_id}").json()["name"] == "mine"


def test_unknown_route_and_method_are_json(client: Client) -> None:
    missing = client.get("/api/nothing")
    assert missing.status == 404
    assert missing.error_code == "not_found"
    wrong = client.request("PUT", "/api/docsets")
    assert wrong.status == 405
    assert wrong.error_code == "method_not_allowed"


def test_unexpected_error_is_logged_json_500(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(*args: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(repo, "list_collections", boom)
    response = client.get("/api/collections")
    assert response.status == 500
    assert response.error_code == "internal_error"
    assert b"disk on fire" not in response.body
    assert b"Traceback" not in response.body
    assert "disk on fire" in caplog.text
    assert ALICE not in caplog.text


def test_archives_are_served_safely(client: Client, settings: object, tmp_path: Path) -> None:
    archives = tmp_path / "archives"
    archives.mkdir(exist_ok=True)
    (archives / "docset-1.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    (tmp_path / "secret.txt").write_text("secret")
    ok = client.get("/archives/docset-1.zip", key=None)
    assert ok.status == 200
    assert ok.headers["content-type"] == "application/zip"
    assert ok.body.startswith(b"PK")
    for bad in [
        "/archives/../secret.txt",
        "/archives/..%2Fsecret.txt",
        "/archives/.hidden",
        "/archives/nope.zip",
        "/archives/a%00b.zip",
        "/archives/sub/../../secret.txt",
    ]:
        response = client.get(bad, key=None)
        assert response.status == 404, bad
        assert b"secret" not in response.body


def test_openapi_needs_no_key(client: Client) -> None:
    response = client.get("/api/openapi.json", key=None)
    assert response.status == 200
    assert response.json()["openapi"] == "3.1.0"
