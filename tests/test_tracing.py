"""W3C trace context on messages: parsing as the spec says, kept by polls, carried request -> job -> every reply."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tdm_messaging import (
    OpenTelemetryTracer,
    PackagerWorker,
    PackagingClient,
    SpanKind,
    SpanStart,
    State,
    TraceContext,
)
from tdm_messaging.codec import JSON_CONTENT_TYPE, encode
from tdm_messaging.destinations import PACKAGE_REQUESTS, reply_queue
from tdm_messaging.models import Accepted, PackageRequest
from tdm_messaging.poll_plan import BatchAction, plan_poll
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport, running_worker, wait_until
from tdm_messaging.tracing import trace_of, with_trace
from tdm_messaging.worker import Job, PackageResult

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
RID = "0190a000-0000-7000-8000-000000000001"
hexes = st.text(alphabet="0123456789abcdef", min_size=1, max_size=1)


def test_parse_accepts_the_spec_example_and_keeps_tracestate() -> None:
    trace = TraceContext.parse(PARENT, " congo=t61rcWkgMzE ")
    assert trace == TraceContext(PARENT, "congo=t61rcWkgMzE")
    assert (trace.trace_id, trace.parent_id) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    assert trace.headers() == {"traceparent": PARENT, "tracestate": "congo=t61rcWkgMzE"}


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff is invalid
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
        PARENT + "-extra",  # version 00 has exactly four fields
    ],
)
def test_parse_ignores_what_the_spec_says_to_ignore(value: str | None) -> None:
    assert TraceContext.parse(value, "a=b") is None


def test_a_future_version_may_carry_more_fields_and_an_overlong_tracestate_is_dropped() -> None:
    future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-whatever"
    trace = TraceContext.parse(future, "x" * 513)
    assert trace is not None and trace.traceparent == future and trace.tracestate == ""


@given(st.text())
def test_parse_never_raises_on_any_text(value: str) -> None:
    trace = TraceContext.parse(value, value)
    assert trace is None or trace.traceparent == value.strip()


@given(st.lists(hexes, min_size=32, max_size=32), st.lists(hexes, min_size=16, max_size=16), st.booleans())
def test_every_valid_traceparent_round_trips_through_an_envelope(
    trace_digits: list[str], parent_digits: list[str], sampled: bool
) -> None:
    trace_id, parent_id = "".join(trace_digits), "".join(parent_digits)
    value = f"00-{trace_id}-{parent_id}-{'01' if sampled else '00'}"
    trace = TraceContext.parse(value)
    if set(trace_id) == {"0"} or set(parent_id) == {"0"}:
        assert trace is None
        return
    assert trace is not None
    envelope = with_trace(encode(_request()), trace)
    assert trace_of(envelope.headers) == trace
    assert envelope.header("tdm-type") == "package_request"  # the message's own headers are kept


def _request() -> PackageRequest:
    return PackageRequest(
        docset_id="5",
        request_id=RID,
        timestamp=NOW,
        reply_to="package/5",
        docset_url="http://server/api/docsets/5",
        requested_at=NOW,
    )


def test_with_trace_none_leaves_the_envelope_and_replaces_an_older_trace() -> None:
    envelope = encode(_request())
    assert with_trace(envelope, None) is envelope
    first = with_trace(envelope, TraceContext(PARENT, "a=1"))
    second = with_trace(first, TraceContext(PARENT.replace("00f0", "11f0")))
    assert trace_of(second.headers) == TraceContext(PARENT.replace("00f0", "11f0"))
    assert "tracestate" not in second.headers


def test_a_poll_re_sends_each_message_with_the_trace_it_was_read_with() -> None:
    request_trace = TraceContext(PARENT)
    reply_trace = TraceContext(PARENT.replace("00f067aa0ba902b7", "1111111111111111"), "v=1")
    accepted = Accepted(docset_id="5", request_id=RID, sequence=1, timestamp=NOW, estimate_seconds=5)
    read = [with_trace(encode(_request()), request_trace), with_trace(encode(accepted), reply_trace)]
    plan = plan_poll(read, docset_id="5", content_type=JSON_CONTENT_TYPE, queue_expiry=False, now=NOW)
    assert [trace_of(e.headers) for e in plan.resend] == [request_trace, reply_trace]
    # where the broker expires whole queues, a queue already holding exactly that is left alone
    kept = plan_poll(read, docset_id="5", content_type=JSON_CONTENT_TYPE, queue_expiry=True, now=NOW)
    assert kept.action is BatchAction.RELEASE


RESULT = PackageResult(archive_url="https://bucket/package/5.zip", size_bytes=10)


def _docset() -> str:
    return "tr-" + uuid.uuid4().hex[:10]


def test_without_a_tracer_the_worker_passes_the_requests_trace_to_every_reply() -> None:
    broker = InMemoryBroker()
    ds = _docset()
    request = _request().model_copy(update={"docset_id": ds, "reply_to": reply_queue(ds).name})
    client_transport = InMemoryTransport(broker)
    client_transport.send(PACKAGE_REQUESTS, with_trace(encode(request), TraceContext(PARENT, "k=v")))

    def handler(job: Job) -> PackageResult:
        job.accepted(1)
        job.progress(1, 1)
        return RESULT

    with running_worker(PackagerWorker(InMemoryTransport(broker), on_package=handler)):
        wait_until(lambda: len(broker.messages(reply_queue(ds))) == 3, what="three replies")
    assert {trace_of(e.headers) for e in broker.messages(reply_queue(ds))} == {TraceContext(PARENT, "k=v")}


@pytest.fixture
def spans() -> Iterator[tuple[OpenTelemetryTracer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield OpenTelemetryTracer(tracer_provider=provider), exporter
    provider.shutdown()


def _by_name(finished: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in finished if s.name == name]


def test_one_trace_from_the_callers_span_through_request_and_job_to_the_complete(
    spans: tuple[OpenTelemetryTracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    broker = InMemoryBroker()
    ds = _docset()
    client = PackagingClient(InMemoryTransport(broker), tracer=tracer)

    def handler(job: Job) -> PackageResult:
        job.accepted(1)
        return RESULT

    worker = PackagerWorker(InMemoryTransport(broker), on_package=handler, tracer=tracer)
    with running_worker(worker):
        with tracer.span(SpanStart("POST /dump", SpanKind.SERVER)) as http:
            assert http is not None
            client.request_package(ds, "http://server/api/docsets/1")
        wait_until(lambda: client.status(ds).state is State.COMPLETE, what="the Complete")
    finished = exporter.get_finished_spans()
    (root,) = _by_name(finished, "POST /dump")
    (request_span,) = _by_name(finished, "tdm.request_package")
    (job,) = _by_name(finished, "tdm.job.package")
    trace_id = root.context.trace_id
    assert request_span.context.trace_id == trace_id and request_span.parent is not None
    assert request_span.parent.span_id == root.context.span_id
    assert job.context.trace_id == trace_id and job.parent is not None
    assert job.parent.span_id == request_span.context.span_id
    assert job.attributes is not None and job.attributes["tdm.docset_id"] == ds
    assert job.attributes["tdm.attempt"] == 1
    complete = [e for e in broker.messages(reply_queue(ds)) if e.header("tdm-type") == "complete"]
    assert complete, "the Complete was not kept by the poll"
    trace = trace_of(complete[0].headers)
    assert trace is not None and trace.trace_id == f"{trace_id:032x}"
    assert trace.parent_id == f"{job.context.span_id:016x}"  # the reply says the job sent it
    assert _by_name(finished, "tdm.poll"), "no span for the polls"


def test_a_job_that_gives_up_still_continues_its_requests_trace(
    spans: tuple[OpenTelemetryTracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    broker = InMemoryBroker()
    ds = _docset()

    def broken(job: Job) -> PackageResult:
        raise RuntimeError("boom")

    worker = PackagerWorker(
        InMemoryTransport(broker), on_package=broken, tracer=tracer, max_attempts=1, retry_backoff_seconds=0
    )
    with running_worker(worker):
        PackagingClient(InMemoryTransport(broker), tracer=tracer).request_package(ds, "http://server/api/docsets/1")
        wait_until(lambda: bool(_by_name(exporter.get_finished_spans(), "tdm.job.package")), what="the job span")
    (job,) = _by_name(exporter.get_finished_spans(), "tdm.job.package")
    # the job ended (Failed sent, request dead-lettered) inside the request's trace
    assert job.context.trace_id == _by_name(exporter.get_finished_spans(), "tdm.request_package")[0].context.trace_id


def test_with_the_api_alone_no_trace_is_invented() -> None:
    from opentelemetry.trace import NoOpTracerProvider

    tracer = OpenTelemetryTracer(tracer_provider=NoOpTracerProvider())
    with tracer.span(SpanStart("x", SpanKind.INTERNAL, parent=TraceContext(PARENT, "a=b"))) as trace:
        assert trace == TraceContext(PARENT, "a=b")  # a no-op span passes its parent's context on as it was
    with tracer.span(SpanStart("x", SpanKind.INTERNAL)) as trace:
        assert trace is None  # no parent, nothing recorded: messages carry no made-up trace
