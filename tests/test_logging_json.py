"""Structured logs: one JSON object per line with the records' fields; the library's job records carry the ids."""

from __future__ import annotations

import io
import json
import logging
import sys
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tdm_messaging import ConfigurationError, JsonFormatter, PackagerWorker, PackagingClient, State, configure_logging
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport, running_worker, wait_until
from tdm_messaging.worker import PackageResult


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "tdm_messaging.worker", "levelname": "INFO", "msg": message})
    record.__dict__.update(extra)
    return record


def test_a_record_is_one_json_line_with_its_extra_fields() -> None:
    line = JsonFormatter().format(_record("job for %s", docset_id="5", request_id="r-1", attempt=2))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "job for %s"
    assert (entry["docset_id"], entry["request_id"], entry["attempt"]) == ("5", "r-1", 2)
    assert entry["level"] == "INFO" and entry["logger"] == "tdm_messaging.worker"
    assert entry["time"].endswith("+00:00")


@given(st.text(), st.text())
def test_any_text_stays_one_line_and_round_trips(message: str, docset: str) -> None:
    record = logging.makeLogRecord({"msg": "%s", "args": (message,)})
    record.docset_id = docset
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == message and entry["docset_id"] == docset


def test_unserialisable_fields_and_exceptions_are_written_not_raised() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        record = logging.makeLogRecord({"msg": "oops", "exc_info": sys.exc_info()})
    record.thing = object()
    entry = json.loads(JsonFormatter().format(record))
    assert entry["thing"].startswith("<object object")
    assert "ValueError: bad" in entry["exception"]


def test_configure_logging_writes_json_at_the_level_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    stream = io.StringIO()
    configure_logging("warning", "JSON", stream=stream)
    logging.getLogger("x").info("hidden")
    logging.getLogger("x").warning("shown", extra={"docset_id": "7"})
    (line,) = stream.getvalue().splitlines()
    assert json.loads(line)["docset_id"] == "7"


@pytest.mark.parametrize(("level", "fmt", "named"), [("LOUD", "text", "LOUD"), ("INFO", "xml", "xml")])
def test_configure_logging_names_a_bad_value_and_the_choices(level: str, fmt: str, named: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{named!r} is not one of"):
        configure_logging(level, fmt)


def test_the_worker_and_client_records_carry_docset_request_and_attempt(caplog: pytest.LogCaptureFixture) -> None:
    broker = InMemoryBroker()
    client = PackagingClient(InMemoryTransport(broker))
    result = PackageResult(archive_url="https://b/a.zip", size_bytes=1)
    ds = "log-" + uuid.uuid4().hex[:8]
    worker = PackagerWorker(InMemoryTransport(broker), on_package=lambda job: result)
    with caplog.at_level(logging.INFO, logger="tdm_messaging"), running_worker(worker):
        request = client.request_package(ds, "http://server/api/docsets/1").request
        wait_until(lambda: client.status(ds).state is State.COMPLETE, what="the Complete")
    jobs = [r for r in caplog.records if r.name == "tdm_messaging.worker" and getattr(r, "docset_id", None) == ds]
    assert len(jobs) >= 2  # started and complete
    assert all(getattr(r, "request_id", None) == request.request_id for r in jobs)
    assert all(getattr(r, "attempt", None) == 1 for r in jobs)
    requested = [r for r in caplog.records if r.name == "tdm_messaging.server" and getattr(r, "docset_id", None) == ds]
    assert requested and getattr(requested[0], "request_id", None) == request.request_id
