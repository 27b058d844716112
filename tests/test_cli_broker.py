"""The broker subcommands (request, delete, status, watch) over the in-memory transport, and their error lines."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from tdm_messaging import cli, cli_broker
from tdm_messaging.codec import decode
from tdm_messaging.destinations import DELETE_REQUESTS, PACKAGE_REQUESTS
from tdm_messaging.errors import BrokerUnavailableError
from tdm_messaging.models import DeleteRequest, PackageRequest
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport
from tdm_messaging.transport.base import Transport
from tdm_messaging.worker import Job, JobFailed, PackageResult, PackagerWorker

URL = "stomp://guest:s3cret@broker.example:61613/?dialect=rabbitmq"


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> InMemoryBroker:
    """Every broker URL opens a fresh transport on one in-memory broker; the URLs asked for are kept."""
    memory = InMemoryBroker()
    opened: list[str] = []

    def fake_open(url: str) -> Transport:
        opened.append(url)
        return InMemoryTransport(memory)

    monkeypatch.setattr(cli_broker, "open_transport", fake_open)
    monkeypatch.delenv(cli_broker.BROKER_URL_ENV, raising=False)
    memory.opened = opened  # type: ignore[attr-defined]
    return memory


@pytest.fixture
def worker(broker: InMemoryBroker) -> Iterator[list[Job]]:
    jobs: list[Job] = []

    def handler(job: Job) -> PackageResult:
        jobs.append(job)
        if job.request.docset_id.startswith("bad"):
            raise JobFailed("no such docset", retryable=False)
        job.accepted(30)
        job.progress(1, 2)
        return PackageResult(archive_url="https://b/x.zip", size_bytes=10)

    stop = threading.Event()
    loop = PackagerWorker(
        InMemoryTransport(broker), on_package=handler, on_delete=lambda request: None, retry_backoff_seconds=0
    )
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    yield jobs
    stop.set()
    thread.join(10)


def new_docset(prefix: str = "ds") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_request_takes_id_and_formats_from_the_url(broker: InMemoryBroker, capsys: pytest.CaptureFixture[str]) -> None:
    docset = new_docset()
    code = cli.main(["request", f"http://server/api/docsets/{docset}?fmt=meta,txt,pdf", "--broker", URL])
    out = capsys.readouterr().out
    assert code == 0
    printed = json.loads(out)
    assert printed["docset_id"] == docset and printed["formats"] == ["meta", "txt", "pdf"]
    sent = decode(broker.messages(PACKAGE_REQUESTS)[0])
    assert isinstance(sent, PackageRequest) and sent.request_id == printed["request_id"]
    assert broker.opened == [URL]  # type: ignore[attr-defined]


def test_request_with_explicit_id_formats_and_env_url(
    broker: InMemoryBroker, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(cli_broker.BROKER_URL_ENV, "redis://127.0.0.1:6379/0")
    code = cli.main(["request", "http://server/api/docsets/5/", "--docset-id", "my-5", "--formats", "meta"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["docset_id"] == "my-5" and printed["formats"] == ["meta"]
    assert broker.opened == ["redis://127.0.0.1:6379/0"]  # type: ignore[attr-defined]


def test_request_without_a_docset_in_the_url(broker: InMemoryBroker, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["request", "http://server", "--broker", URL]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--docset-id" in err and "Traceback" not in err


def test_no_broker_given(broker: InMemoryBroker, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status", "5"]) == 2
    assert capsys.readouterr().err == f"error: no broker given: pass --broker URL or set {cli_broker.BROKER_URL_ENV}\n"


def test_status_prints_json_and_keeps_the_status(broker: InMemoryBroker, capsys: pytest.CaptureFixture[str]) -> None:
    docset = new_docset()
    assert cli.main(["status", docset, "--broker", URL]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "unknown"
    cli.main(["request", f"http://s/api/docsets/{docset}", "--broker", URL])
    request_id = json.loads(capsys.readouterr().out)["request_id"]
    for _ in range(2):
        assert cli.main(["status", docset, "--broker", URL]) == 0
        printed = json.loads(capsys.readouterr().out)
        assert printed["state"] == "requested" and printed["request_id"] == request_id
        assert printed["progress"] is None and printed["requested_at"].endswith("Z")


def test_watch_until_complete(broker: InMemoryBroker, worker: list[Job], capsys: pytest.CaptureFixture[str]) -> None:
    docset = new_docset()
    cli.main(["request", f"http://s/api/docsets/{docset}", "--broker", URL])
    capsys.readouterr()
    assert cli.main(["watch", docset, "--broker", URL, "--interval", "0.01"]) == 0
    captured = capsys.readouterr()
    final = json.loads(captured.out)
    assert final["state"] == "complete" and final["result"]["archive_url"] == "https://b/x.zip"
    lines = captured.err.splitlines()
    assert lines[-1] == "[" + "#" * 30 + "] 100% complete"
    assert len(lines) == len(set(lines))  # one line per change, not per poll
    assert [j.request.docset_id for j in worker] == [docset]


def test_watch_failed_exits_1(broker: InMemoryBroker, worker: list[Job], capsys: pytest.CaptureFixture[str]) -> None:
    docset = new_docset("bad")
    cli.main(["request", f"http://s/api/docsets/{docset}", "--broker", URL])
    capsys.readouterr()
    assert cli.main(["watch", docset, "--broker", URL, "--interval", "0.01"]) == 1
    err = capsys.readouterr().err
    assert f"failed: docset {docset}: no such docset" in err


def test_watch_gives_up_after_timeout(broker: InMemoryBroker, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["watch", "nobody", "--broker", URL, "--interval", "0.01", "--timeout", "0"]) == 2
    err = capsys.readouterr().err
    assert "unknown, no request seen yet" in err
    assert err.splitlines()[-1] == "error: gave up watching docset nobody after 0 s; it is still unknown"


def test_watch_rejects_a_bad_interval(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["watch", "5", "--broker", URL, "--interval", "soon"]) == 2
    assert "not a number of seconds" in capsys.readouterr().err


def one_error_line(err: str) -> str:
    """The stderr of a refused command: exactly one ``error:`` line, no traceback."""
    errors = [line for line in err.splitlines() if "error: " in line]
    assert len(errors) == 1, err
    assert "Traceback" not in err
    return errors[0]


@pytest.mark.parametrize(
    ("interval", "fragment"),
    [("0", "more than zero"), ("-1", "zero or more"), ("inf", "finite"), ("nan", "finite")],
)
def test_watch_refuses_an_interval_of_zero_or_less(
    interval: str, fragment: str, broker: InMemoryBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 10: --interval 0 busy-looped on the broker.
    assert cli.main(["watch", "5", "--broker", URL, "--interval", interval]) == 2
    assert fragment in one_error_line(capsys.readouterr().err)
    assert broker.opened == []  # type: ignore[attr-defined]


def test_watch_gives_up_on_a_docset_nobody_requested(
    broker: InMemoryBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 10: watch of a docset nobody requested polled forever.
    argv = ["watch", new_docset(), "--broker", URL, "--interval", "0.01", "--give-up-after", "0.05"]
    assert cli.main(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "stayed unknown for 0.05 s" in line and "--give-up-after" in line
    assert cli_broker.DEFAULT_GIVE_UP_AFTER_SECONDS == 60


def test_watch_does_not_give_up_once_the_docset_is_known(
    broker: InMemoryBroker, worker: list[Job], capsys: pytest.CaptureFixture[str]
) -> None:
    docset = new_docset()
    cli.main(["request", f"http://s/api/docsets/{docset}", "--broker", URL])
    capsys.readouterr()
    assert cli.main(["watch", docset, "--broker", URL, "--interval", "0.01", "--give-up-after", "0"]) == 0


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["request", "file:///etc/passwd", "--docset-id", "5"], "docset_url must start with http:// or https://"),
        (["request", "HTTP://server/api/docsets/5"], "docset_url must start with http:// or https://"),
        (["request", "javascript:alert(1)", "--docset-id", "5"], "docset_url"),
        (["request", "http://server/api/docsets/5", "--formats", "../x"], "format '../x'"),
        (["request", "http://server/api/docsets/5?" + "a" * 2100], "at most 2048 characters"),
        (["request", "http://server/api/docsets/"], "names no docset"),
        (["request", "http://server/api/docsets"], "names no docset"),
        (["request", "http://[::1/api/docsets/5"], "names no docset"),
        (["request", "http://[::1/api/docsets/5", "--docset-id", "5"], "docset_url is not a valid URL"),
        (["request", "http://server/api/docsets/a%2Fb"], "docset id"),
    ],
)
def test_request_refuses_bad_input_in_one_line(
    argv: list[str], fragment: str, broker: InMemoryBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 10: these printed pydantic tracebacks (exit 1), or asked for docset "docsets" (exit 0).
    assert cli.main([*argv, "--broker", URL]) == 2
    captured = capsys.readouterr()
    assert fragment in one_error_line(captured.err)
    assert captured.out == ""
    assert broker.messages(PACKAGE_REQUESTS) == []


def test_broker_failure_is_one_redacted_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(url: str) -> Transport:
        raise BrokerUnavailableError(f"cannot connect to {url}: connection refused (password s3cret)")

    monkeypatch.setattr(cli_broker, "open_transport", refuse)
    assert cli.main(["status", "5", "--broker", URL]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    # The backend's message already names the URL: it is said once, not again as a prefix.
    assert err.count("broker.example:61613") == 1 and "stomp://guest:***@broker.example:61613/" in err
    assert "s3cret" not in err and "check that the broker is running" in err


def test_a_broker_error_without_the_url_gets_it_as_a_prefix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(url: str) -> Transport:
        raise BrokerUnavailableError("connection refused")

    monkeypatch.setattr(cli_broker, "open_transport", refuse)
    assert cli.main(["status", "5", "--broker", URL]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: broker stomp://guest:***@broker.example:61613/?dialect=rabbitmq: connection refused")


def test_unreachable_real_broker(capsys: pytest.CaptureFixture[str]) -> None:
    """No broker needed: nothing listens on port 1, and the STOMP backend must say so in one line."""
    pytest.importorskip("stomp")
    assert cli.main(["status", "5", "--broker", "stomp://guest:s3cret@127.0.0.1:1/?dialect=rabbitmq"]) == 2
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and "127.0.0.1:1" in error_lines[0]
    assert "s3cret" not in err and "Traceback" not in err


def test_delete_sends_a_delete_request_and_prints_it(
    broker: InMemoryBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    docset = new_docset()
    url = f"https://b/{docset}.zip"
    assert cli.main(["delete", docset, "--archive-url", url, "--broker", URL]) == 0
    printed = json.loads(capsys.readouterr().out)
    [envelope] = broker.messages(DELETE_REQUESTS)
    sent = decode(envelope)
    assert isinstance(sent, DeleteRequest)
    assert (sent.docset_id, sent.archive_url, sent.request_id) == (docset, url, printed["request_id"])
    assert printed["type"] == "delete_request" and printed["timestamp"].endswith("Z")


def test_delete_then_the_worker_answers_and_status_says_deleted(
    broker: InMemoryBroker, worker: list[Job], capsys: pytest.CaptureFixture[str]
) -> None:
    docset = new_docset()
    cli.main(["request", f"http://s/api/docsets/{docset}", "--broker", URL])
    capsys.readouterr()
    assert cli.main(["watch", docset, "--broker", URL, "--interval", "0.01"]) == 0
    capsys.readouterr()
    assert cli.main(["delete", docset, "--broker", URL]) == 0
    delete_id = json.loads(capsys.readouterr().out)["request_id"]
    deadline = time.monotonic() + 10
    while True:  # until the worker has answered the delete
        assert cli.main(["status", docset, "--broker", URL]) == 0
        printed = json.loads(capsys.readouterr().out)
        if printed["state"] == "deleted" or time.monotonic() > deadline:
            break
    # docs/status.md: Deleted carries the delete request's id; no package request has that id
    assert (printed["state"], printed["request_id"], printed["requested_at"]) == ("deleted", delete_id, None)


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["delete", "a/b"], "error: cannot delete this package: field 'docset_id'"),
        (["delete", "5", "--archive-url", "ftp://x/y"], "error: cannot delete this package: field '--archive-url'"),
    ],
)
def test_delete_refuses_bad_input_before_the_broker(
    broker: InMemoryBroker, argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([*argv, "--broker", URL]) == 2
    err = capsys.readouterr().err
    assert err.startswith(fragment) and err.count("\n") == 1, err
    assert broker.opened == []  # type: ignore[attr-defined]


def test_status_output_validates_against_the_published_schema(
    broker: InMemoryBroker, worker: list[Job], capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/status.schema.json describes what `status` prints, in every state a job goes through."""
    from tests.test_status_document import assert_valid

    good, bad = new_docset(), new_docset("bad")
    seen: set[str] = set()
    for docset in (good, bad):
        assert cli.main(["status", docset, "--broker", URL]) == 0
        printed = json.loads(capsys.readouterr().out)
        assert_valid(printed)
        seen.add(printed["state"])
        cli.main(["request", f"http://s/api/docsets/{docset}", "--broker", URL])
        capsys.readouterr()
        deadline = time.monotonic() + 10
        while printed["state"] not in {"complete", "failed"} and time.monotonic() < deadline:
            assert cli.main(["status", docset, "--broker", URL]) == 0
            printed = json.loads(capsys.readouterr().out)
            assert_valid(printed)
            seen.add(printed["state"])
    cli.main(["delete", good, "--broker", URL])
    capsys.readouterr()
    while printed["state"] != "deleted" and time.monotonic() < deadline:
        assert cli.main(["status", good, "--broker", URL]) == 0
        printed = json.loads(capsys.readouterr().out)
        assert_valid(printed)
    seen.add(printed["state"])
    assert {"unknown", "complete", "failed", "deleted"} <= seen, seen
