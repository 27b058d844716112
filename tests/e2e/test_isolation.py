"""Owner isolation on every docset endpoint, through real HTTP against a server process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from examples.harness import Miner, Stack, add_key, read_log
from tests.e2e.conftest import EMBEDDED, MakeStack

pytestmark = [pytest.mark.timeout(120)]

# (method, path template, JSON body): every endpoint that touches one docset.
DOCSET_ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/docsets/{id}", None),
    ("GET", "/api/docsets/{id}?fmt=meta,txt", None),
    ("GET", "/api/docsets/{id}/members", None),
    ("PATCH", "/api/docsets/{id}", {"name": "taken over"}),
    ("GET", "/api/docsets/{id}/dump", None),
    ("POST", "/api/docsets/{id}/dump", None),
    ("DELETE", "/api/docsets/{id}/dump", None),
    ("DELETE", "/api/docsets/{id}", None),
]
OTHER_ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/collections", None),
    ("GET", "/api/documents/1", None),
    ("GET", "/api/documents/1/text", None),
    ("GET", "/api/docsets", None),
    ("POST", "/api/docsets", {"name": "x", "document_ids": [1]}),
]


@pytest.fixture
def stack(make_stack: MakeStack) -> Stack:
    return make_stack(EMBEDDED, packagers=0, documents=4, min_kb=1, max_kb=2)


@pytest.fixture
def alice(stack: Stack) -> Iterator[Miner]:
    miner = stack.miner()
    yield miner
    miner.close()


def call(miner: Miner, method: str, template: str, body: dict[str, Any] | None, docset_id: int) -> tuple[int, Any]:
    response = miner.request(method, template.format(id=docset_id), json=body)
    assert response.headers["Content-Type"].startswith("application/json"), (method, template, response.text)
    return response.status_code, response.json()


def test_other_owner_gets_403_and_changes_nothing(stack: Stack, alice: Miner) -> None:
    docset = alice.create_docset("alice's", document_ids=[1, 2])
    bob = Miner(stack.base_url, add_key(stack.config.db_url, "bob"))
    for method, template, body in DOCSET_ENDPOINTS:
        status, answer = call(bob, method, template, body, docset["id"])
        assert status == 403, (method, template, status, answer)
        assert answer["error"]["code"] and answer["error"]["message"]
    assert bob.request("GET", "/api/docsets").json()["docsets"] == []
    bob.close()

    after = alice.request("GET", f"/api/docsets/{docset['id']}").json()
    assert (after["name"], after["version"], after["member_count"]) == ("alice's", docset["version"], 2)
    assert "requested" not in read_log(stack.server.log_path)  # no dump request, no delete request reached the broker


def test_no_key_or_unknown_key_gets_401_everywhere(stack: Stack, alice: Miner) -> None:
    docset_id = alice.create_docset("alice's", document_ids=[1])["id"]
    anonymous = Miner(stack.base_url, "")
    del anonymous.session.headers["X-API-Key"]
    stranger = Miner(stack.base_url, "not-a-key-anyone-has")
    for miner in (anonymous, stranger):
        for method, template, body in DOCSET_ENDPOINTS + OTHER_ENDPOINTS:
            status, answer = call(miner, method, template, body, docset_id)
            assert status == 401, (method, template, status, answer)
        miner.close()
    assert alice.request("GET", f"/api/docsets/{docset_id}").status_code == 200


def test_unknown_docset_is_404_for_everyone(stack: Stack, alice: Miner) -> None:
    for method, template, body in DOCSET_ENDPOINTS:
        status, _ = call(alice, method, template, body, 999_999)
        assert status == 404, (method, template, status)


def test_packager_key_reads_any_docset_but_changes_none(stack: Stack, alice: Miner) -> None:
    docset_id = alice.create_docset("alice's", document_ids=[1, 2, 3])["id"]
    packager = Miner(stack.base_url, stack.packager_key)
    for method, template, body in DOCSET_ENDPOINTS:
        status, answer = call(packager, method, template, body, docset_id)
        expected = 200 if method == "GET" and not template.endswith("/dump") else 403
        assert status == expected, (method, template, status, answer)
    listing = packager.request("GET", f"/api/docsets/{docset_id}?fmt=meta,txt").json()
    assert [m["id"] for m in listing["members"]] == [1, 2, 3]
    packager.close()
    assert "requested" not in read_log(stack.server.log_path)
