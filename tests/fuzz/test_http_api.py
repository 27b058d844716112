"""Issue 5, item 8: the reference server's HTTP API fuzzed from docs/openapi.json with schemathesis; no 500s."""

from __future__ import annotations

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
from tests.faults.reliability import Row, record

try:
    import schemathesis
except ImportError:  # a dev dependency; CI must have it
    if in_ci():
        raise
    pytest.skip("schemathesis is not installed: pip install schemathesis", allow_module_level=True)

pytestmark = [pytest.mark.timeout(300)]

SCHEMA = schemathesis.openapi.from_path(REPO_ROOT / "docs" / "openapi.json")
EXAMPLES_PER_OPERATION = 40
STATUSES: Counter[int] = Counter()
OPERATIONS: set[str] = set()
KNOWN_500: set[str] = set()


class RunningServer:
    """The reference server as a real process (waitress), on an embedded SQLite broker, with one miner key."""

    def __init__(self, service: Service, base_url: str, key: str) -> None:
        self.service = service
        self.base_url = base_url
        self.key = key


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    work = tmp_path_factory.mktemp("fuzz-server")
    db_url = f"sqlite:///{work / 'tdm.db'}"
    load_sample_theses(db_url, 6, min_kb=1, max_kb=4)
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
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_answers_a_server_error(case: Any, server: RunningServer) -> None:
    # Half the cases go without the key, so the 401 paths are fuzzed too.
    headers = {"X-API-Key": server.key} if hash(repr(case.path_parameters)) % 2 == 0 else {}
    response = case.call(base_url=server.base_url, headers=headers, timeout=30)
    OPERATIONS.add(case.operation.label)
    if response.status_code == 500 and "OverflowError: Python int too large to convert to SQLite INTEGER" in (
        server.service.log_tail(40)
    ):
        # Known and reported (docs/reliability.md, open findings); test_no_known_server_error_was_hit xfails.
        KNOWN_500.add(f"{case.method} {case.path}: a document id beyond SQLite's 64-bit INTEGER -> OverflowError")
        STATUSES[-500] += 1
        return
    STATUSES[response.status_code] += 1
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} answered {response.status_code}: {response.text[:300]}\n"
        f"{server.service.log_tail()}"
    )


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


def test_no_known_server_error_was_hit() -> None:
    """Fails (as xfail) while the fuzzing above still reaches a known, reported 500."""
    if KNOWN_500:
        pytest.xfail(f"known server bug, reported: {sorted(KNOWN_500)} ({STATUSES[-500]} requests)")


@pytest.fixture(scope="module", autouse=True)
def _row(request: pytest.FixtureRequest) -> Iterator[None]:
    yield None
    fuzzed = sum(n for code, n in STATUSES.items() if code > 0) + STATUSES[-500]
    if not fuzzed or any(code >= 500 for code in STATUSES):  # an unknown 5xx: the test failed, no row
        return
    codes = ", ".join(f"{code}: {n}" for code, n in sorted(STATUSES.items()) if code > 0)
    known = (
        f"; {STATUSES[-500]} answered 500 for a known bug (open finding: {'; '.join(sorted(KNOWN_500))})"
        if KNOWN_500
        else "; no 5xx"
    )
    early = "an announced 64 MiB body with none sent was answered 413 at once" if STATUSES[-413] else "not run"
    record(
        Row(
            id="fuzz-http-api",
            item="8 hostile input",
            done=f"schemathesis {schemathesis.__version__} generated requests from docs/openapi.json for every "
            f"operation (up to {EXAMPLES_PER_OPERATION} each, with and without an API key) against the reference "
            "server process over HTTP; a raw POST announcing a 64 MiB body",
            expected="no 5xx answer; oversize bodies refused early (413 before the body is read)",
            happened=f"{fuzzed} requests over {len(OPERATIONS)} operations; status codes {codes}{known}; "
            f"oversize: {early}",
            lost=0,
            duplicates=0,
            test=f"{Path(str(request.node.path)).relative_to(REPO_ROOT)}::*",
        )
    )
