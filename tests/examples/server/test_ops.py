"""The server's operator endpoints (/healthz, /readyz bounded, /metrics), its log options, and one trace per dump."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import bottle
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from examples.server import Settings, create_app
from examples.server.__main__ import build_parser, main, settings_from
from examples.server.repo import insert_document
from examples.server.routes import ops
from tdm_messaging import (
    BrokerUnavailableError,
    OpenTelemetryTracer,
    PackageResult,
    PackagerWorker,
    Transport,
    reply_queue,
)
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport, running_worker, wait_until
from tdm_messaging.tracing import trace_of
from tests.examples.server.conftest import SAMPLE_DOCS, Client, make_docset

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def test_healthz_needs_no_key_and_touches_nothing(client: Client) -> None:
    response = client.get("/healthz", key=None)
    assert response.status == 200 and response.json() == {"status": "ok"}


def test_readyz_is_200_when_database_and_broker_answer(client: Client) -> None:
    response = client.get("/readyz", key=None)
    assert response.status == 200, response.body
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}


def _app(settings: Settings, factory: object, **kw: object) -> bottle.Bottle:
    return create_app(settings, transport_factory=factory, **kw)  # type: ignore[arg-type]


def test_readyz_is_503_naming_the_broker_when_it_is_down(settings: Settings) -> None:
    def down() -> Transport:
        raise BrokerUnavailableError("cannot reach the broker at 127.0.0.1:1")

    app = _app(settings, down)
    try:
        response = Client(app).get("/readyz", key=None)
    finally:
        app.config["tdm.close"]()
    assert response.status == 503
    body = response.json()
    assert body["status"] == "not_ready" and body["checks"]["database"] == "ok"
    assert "cannot reach the broker at 127.0.0.1:1" in body["checks"]["broker"]


def test_readyz_is_bounded_and_never_piles_up_checks(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops, "READY_TIMEOUT_SECONDS", 0.2)
    release = threading.Event()
    opened: list[int] = []

    def hangs() -> Transport:
        opened.append(1)
        release.wait(30)
        raise BrokerUnavailableError("gave up")

    app = _app(settings, hangs)
    try:
        first = Client(app).get("/readyz", key=None)
        second = Client(app).get("/readyz", key=None)
    finally:
        release.set()
        app.config["tdm.close"]()
    assert first.status == 503 and first.json()["checks"]["broker"] == "no answer within 0.2 s"
    assert second.status == 503 and "earlier check has not answered" in second.json()["checks"]["broker"]
    assert len(opened) == 1


def test_metrics_count_the_dump_clients_polls_and_requests(client: Client) -> None:
    docset = make_docset(client)
    assert client.get(f"/api/docsets/{docset}/dump").status == 202
    assert client.get(f"/api/docsets/{docset}/dump").status == 202
    response = client.get("/metrics", key=None)
    assert response.status == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.body.decode()
    assert 'tdm_client_requests_total{kind="package"} 1.0' in text
    assert 'tdm_client_polls_total{state="unknown"} 1.0' in text
    assert 'tdm_client_polls_total{state="requested"} 1.0' in text
    assert "tdm_client_poll_duration_seconds_count 2.0" in text


def test_metrics_is_404_when_disabled(settings: Settings, broker: InMemoryBroker) -> None:
    app = _app(settings, lambda: InMemoryTransport(broker), metrics=None)
    try:
        response = Client(app).get("/metrics", key=None)
    finally:
        app.config["tdm.close"]()
    assert response.status == 404 and "prometheus_client" in response.json()["error"]["message"]


def test_the_log_options_come_from_the_environment_like_the_packagers() -> None:
    environ = {"TDM_LOG_LEVEL": "DEBUG", "TDM_LOG_FORMAT": "json"}
    settings = settings_from(build_parser().parse_args(["serve"]), environ)
    assert (settings.log_level, settings.log_format) == ("DEBUG", "json")
    flags = settings_from(build_parser().parse_args(["serve", "--log-level", "error"]), environ)
    assert flags.log_level == "ERROR"


@pytest.mark.parametrize(("name", "value"), [("TDM_LOG_LEVEL", "LOUD"), ("TDM_LOG_FORMAT", "xml")])
def test_a_bad_log_option_is_one_error_line_and_exit_2(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(name, value)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {name} must be one of ") and repr(value) in err and "Traceback" not in err
    assert err.count("\n") == 1


@pytest.fixture
def exporter() -> Iterator[tuple[OpenTelemetryTracer, InMemorySpanExporter]]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    yield OpenTelemetryTracer(tracer_provider=provider), spans
    provider.shutdown()


def test_one_trace_from_post_dump_to_the_complete(
    settings: Settings, broker: InMemoryBroker, exporter: tuple[OpenTelemetryTracer, InMemorySpanExporter]
) -> None:
    tracer, spans = exporter
    app = _app(settings, lambda: InMemoryTransport(broker), tracer=tracer)
    with app.config["tdm.db"].connect() as conn:
        for doc in SAMPLE_DOCS:
            insert_document(conn, doc)
    client = Client(app)
    result = PackageResult(archive_url="https://bucket/archive.zip", size_bytes=10)
    worker = PackagerWorker(InMemoryTransport(broker), on_package=lambda job: result, tracer=tracer)
    try:
        docset = make_docset(client)
        with running_worker(worker):
            posted = client.post(f"/api/docsets/{docset}/dump", headers={"traceparent": TRACEPARENT})
            assert posted.status == 202, posted.body
            wait_until(lambda: client.get(f"/api/docsets/{docset}/dump").status == 303, what="the 303")
    finally:
        app.config["tdm.close"]()
    finished = spans.get_finished_spans()
    (post,) = [s for s in finished if s.name == "POST /api/docsets/<docset_id:int>/dump"]
    (request,) = [s for s in finished if s.name == "tdm.request_package"]
    (job,) = [s for s in finished if s.name == "tdm.job.package"]
    assert {f"{s.context.trace_id:032x}" for s in (post, request, job)} == {TRACE_ID}
    assert post.parent is not None and post.parent.is_remote  # continued from the caller's header
    assert request.parent is not None and request.parent.span_id == post.context.span_id
    assert job.parent is not None and job.parent.span_id == request.context.span_id
    complete = [e for e in broker.messages(reply_queue(str(docset))) if e.header("tdm-type") == "complete"]
    trace = trace_of(complete[0].headers)
    assert trace is not None and trace.trace_id == TRACE_ID and trace.parent_id == f"{job.context.span_id:016x}"
    polls = [s for s in finished if s.name == "tdm.poll"]
    assert polls and all(s.parent is not None for s in polls)  # each inside its GET's span


def test_without_the_optional_libraries_the_server_runs_and_says_what_to_install(
    settings: Settings, broker: InMemoryBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.setitem(sys.modules, "opentelemetry.trace", None)
    app = create_app(settings, transport_factory=lambda: InMemoryTransport(broker))
    try:
        client = Client(app)
        docset = make_docset_with_documents(app, client)
        assert client.get(f"/api/docsets/{docset}/dump").status == 202  # the dump flow needs neither
        response = client.get("/metrics", key=None)
    finally:
        app.config["tdm.close"]()
    assert response.status == 404 and "[metrics] extra" in response.json()["error"]["message"]


def make_docset_with_documents(app: bottle.Bottle, client: Client) -> int:
    with app.config["tdm.db"].connect() as conn:
        for doc in SAMPLE_DOCS:
            insert_document(conn, doc)
    return make_docset(client)
