"""Issues 5, 10 and 11: the reference server's HTTP API fuzzed from docs/openapi.json with schemathesis.

Positive and negative data, every check: no 500s, and every answer as the document says
(schemathesis's response-schema conformance); a request the document admits is never refused
as malformed; and every example request the document gives is taken by the running server,
request and answer both checked against the document with a Draft 2020-12 validator.
"""

from __future__ import annotations

import itertools
import json
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, Phase, settings

from examples.harness import REPO_ROOT, Service, add_key, load_sample_theses, start_server
from tests.conftest import in_ci
from tests.examples.server.openapi_check import check_answer, check_request_body, request_examples
from tests.faults.reliability import Row, record

try:
    import schemathesis
    from schemathesis.checks import positive_data_acceptance
    from schemathesis.generation.modes import GenerationMode
except ImportError:  # a dev dependency; CI must have it
    if in_ci():
        raise
    pytest.skip("schemathesis is not installed: pip install schemathesis", allow_module_level=True)

pytestmark = [pytest.mark.timeout(300)]

DOCUMENT = json.loads((REPO_ROOT / "docs" / "openapi.json").read_text(encoding="utf-8"))
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
EXAMPLES_PER_OPERATION = 100
# Both kinds of data: requests that fit the schema (which must not be refused as malformed, and
# whose answers must match the documented responses), and requests that break it (which must
# be refused with a 4xx). Every built-in check runs on every response (call_and_validate).
# Unknown query parameters are ignored by the server, as by most HTTP APIs: not "negative" data.
SCHEMA.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=EXAMPLES_PER_OPERATION,
    allow_extra_parameters=True,
)
STATUSES: Counter[int] = Counter()
MODES: Counter[str] = Counter()
OPERATIONS: set[str] = set()
CALLS = itertools.count()
AIMS = itertools.count()
DOCUMENTS = 6
EXAMPLES = list(request_examples(DOCUMENT))
EXAMPLES_TAKEN: list[str] = []


class RunningServer:
    """The reference server as a real process (waitress), on an embedded SQLite broker, with one miner key."""

    def __init__(self, service: Service, base_url: str, key: str) -> None:
        self.service = service
        self.base_url = base_url
        self.key = key

    def new_docset(self) -> int:
        """A fresh docset of the fuzzer's (so a DELETE or a dump of an earlier case leaves this one alone)."""
        import requests

        made = requests.post(
            f"{self.base_url}/api/docsets",
            json={"name": "fuzzed", "document_ids": list(range(1, DOCUMENTS + 1))},
            headers={"X-API-Key": self.key},
            timeout=30,
        )
        assert made.status_code == 201, made.text[:300]
        return int(made.json()["id"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    work = tmp_path_factory.mktemp("fuzz-server")
    db_url = f"sqlite:///{work / 'tdm.db'}"
    load_sample_theses(db_url, DOCUMENTS, min_kb=1, max_kb=4)
    key = add_key(db_url, "fuzzer")
    service, base_url = start_server(
        log_dir=work / "logs",
        db_url=db_url,
        broker_url=f"sqlite:///{work / 'broker.db'}",  # the server's embedded default
        archive_dir=work / "archives",
    )
    try:
        yield RunningServer(service, base_url, key)
    finally:
        service.stop()


@SCHEMA.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_conforms_to_the_openapi_document(case: Any, server: RunningServer) -> None:
    # A case that sends a key (schemathesis makes one up) sends the real one three times in four,
    # so the authorised paths are fuzzed as well as the 401s; a case meant to lack it lacks it.
    sends_key = any(name.lower() == "x-api-key" for name in (case.headers or {}))
    headers = {"X-API-Key": server.key} if sends_key and next(CALLS) % 4 != 3 else {}
    OPERATIONS.add(case.operation.label)
    MODES[str(case.meta.generation.mode) if case.meta is not None else "explicit"] += 1
    positive = case.meta is not None and case.meta.generation.mode is GenerationMode.POSITIVE
    if positive and next(AIMS) % 4 != 3:
        aim_at_real_rows(case, server)
    try:
        # positive_data_acceptance is replaced by accepted_as_valid below: the schema cannot say
        # which document ids exist, or that a HEAD on a dump is refused by design.
        response = case.call_and_validate(
            base_url=server.base_url, headers=headers, timeout=30, excluded_checks=[positive_data_acceptance]
        )
        if positive:
            accepted_as_valid(case, response)
    except Exception:
        STATUSES[-1] += 1  # a failed check: the test fails, and the row is not written
        raise
    STATUSES[response.status_code] += 1
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} answered {response.status_code}: {response.text[:300]}\n"
        f"{server.service.log_tail()}"
    )


def aim_at_real_rows(case: Any, server: RunningServer) -> None:
    """Point a schema-valid case at rows that exist, so its success answers are checked too, not only 404s.

    Random ids name no row nearly always; the case stays schema-valid, with ids the server holds.
    """
    params = case.path_parameters or {}
    if "docset_id" in params:
        params["docset_id"] = server.new_docset()
    if isinstance(params.get("document_id"), int):
        params["document_id"] = 1 + params["document_id"] % DOCUMENTS
    if isinstance(case.body, dict):
        for field in ("document_ids", "add_document_ids", "remove_document_ids"):
            ids = case.body.get(field)
            if isinstance(ids, list) and all(isinstance(i, int) for i in ids):
                case.body[field] = [1 + i % DOCUMENTS for i in ids]


# 422s a request that fits the schema may still get, for what JSON Schema cannot say.
SEMANTIC_422 = {"unknown_documents", "invalid_query", "query_too_complex", "query_too_expensive"}
SEMANTIC_BODY_PROBLEMS = ("both added and removed", "is after year_to")


def accepted_as_valid(case: Any, response: Any) -> None:
    """A schema-valid request is never refused as malformed (400, 415, or a 422 on a field the schema allows)."""
    status = response.status_code
    if case.method == "HEAD":
        assert status in (404, 405), status
        return
    assert status not in (400, 405, 413, 415), f"a schema-valid {case.method} {case.path} got {status}: {response.text}"
    if status == 422:
        error = response.json()["error"]
        semantic = error["code"] in SEMANTIC_422 or (
            error["code"] == "invalid_body" and any(p in error["message"] for p in SEMANTIC_BODY_PROBLEMS)
        )
        assert semantic, f"a schema-valid {case.method} {case.path} got 422: {response.text}"


@pytest.mark.parametrize(("path", "method", "name", "body"), EXAMPLES, ids=[f"{m} {p} {n}" for p, m, n, _ in EXAMPLES])
def test_every_documented_example_is_taken_by_the_running_server(
    server: RunningServer, path: str, method: str, name: str, body: Any
) -> None:
    import requests

    check_request_body(path, method, body, document=DOCUMENT)
    headers = {"X-API-Key": server.key}
    concrete = path
    if "{docset_id}" in path:
        made = requests.post(
            f"{server.base_url}/api/docsets",
            json={"name": f"for the example {name}", "document_ids": [1, 2, 3]},
            headers=headers,
            timeout=30,
        )
        assert made.status_code == 201, made.text[:300]
        concrete = path.replace("{docset_id}", str(made.json()["id"]))
    response = requests.request(method, server.base_url + concrete, json=body, headers=headers, timeout=30)
    assert 200 <= response.status_code < 300, f"example {name!r}: {response.status_code} {response.text[:300]}"
    check_answer(
        path, method, response.status_code, response.headers["Content-Type"], response.json(), document=DOCUMENT
    )
    EXAMPLES_TAKEN.append(f"{method} {path} {name}")


def test_an_oversize_body_is_refused_before_it_is_sent(server: RunningServer) -> None:
    """Headers announcing 64 MiB, and no body: the server must answer 413 at once, not wait to read it."""
    parts = urlsplit(server.base_url)
    announced = 64 * 1024 * 1024
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(
            (
                f"POST /api/docsets HTTP/1.1\r\nHost: {parts.netloc}\r\nX-API-Key: {server.key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {announced}\r\n\r\n"
            ).encode()
            + b'{"name": "x"'  # a few bytes of the body, then nothing
        )
        answer = sock.recv(4096).decode("latin-1")  # a timeout here means the server waited for the body
    status = int(answer.split(" ", 2)[1])
    assert status == 413, answer[:300]
    STATUSES[-413] += 1  # noted for the row: refused early


def test_a_huge_document_id_is_a_client_error(server: RunningServer) -> None:
    """Found by schemathesis: POST /api/docsets with a document id of 2**63."""
    import requests

    response = requests.post(
        server.base_url + "/api/docsets",
        json={"name": "huge id", "document_ids": [2**63]},
        headers={"X-API-Key": server.key},
        timeout=30,
    )
    assert response.status_code == 422, response.text[:300]
    for path in ("/api/documents/99999999999999999999", "/api/docsets/99999999999999999999/members"):
        got = requests.get(server.base_url + path, headers={"X-API-Key": server.key}, timeout=30)
        assert got.status_code == 404, (path, got.status_code, got.text[:300])


@pytest.fixture(scope="module", autouse=True)
def _row(request: pytest.FixtureRequest) -> Iterator[None]:
    yield None
    fuzzed = sum(n for code, n in STATUSES.items() if code > 0)
    if not fuzzed or STATUSES[-1] or any(code >= 500 for code in STATUSES):  # a failure: no row
        return
    codes = ", ".join(f"{code}: {n}" for code, n in sorted(STATUSES.items()) if code > 0)
    modes = ", ".join(f"{mode}: {n}" for mode, n in sorted(MODES.items()))
    early = "an announced 64 MiB body with none sent was answered 413 at once" if STATUSES[-413] else "not run"
    examples = f"{len(EXAMPLES_TAKEN)} of the document's {len(EXAMPLES)} example requests taken (2xx)"
    record(
        Row(
            id="fuzz-http-api",
            item="8 hostile input",
            done=f"schemathesis {schemathesis.__version__} generated positive and negative requests from "
            f"docs/openapi.json for every operation (up to {EXAMPLES_PER_OPERATION} each, with and without an "
            "API key) against the reference server process over HTTP, every response run through all its "
            "checks (status codes, content types, headers and bodies against the document; negative data "
            "refused; positive data accepted); each example request of the document sent, it and its answer "
            "validated against the document (Draft 2020-12); a raw POST announcing a 64 MiB body",
            expected="every answer as documented, no 5xx; every example taken; oversize bodies refused early "
            "(413 before the body is read)",
            happened=f"{fuzzed} requests over {len(OPERATIONS)} operations ({modes}); status codes {codes}; "
            f"no 5xx, no failed check; {examples}; oversize: {early}",
            lost=0,
            duplicates=0,
            test=f"{Path(str(request.node.path)).relative_to(REPO_ROOT)}::*",
        )
    )
