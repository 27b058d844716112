"""PrometheusObserver: each event moves the metric it should, with bounded labels; a worker and client feed it."""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime

import pytest

from tdm_messaging import (
    ConfigurationError,
    DeadLettered,
    JobEnded,
    JobKind,
    JobOutcome,
    JobStarted,
    PackagerWorker,
    PackagingClient,
    Polled,
    PrometheusObserver,
    State,
    WorkerState,
    WorkerStateChanged,
)
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport, running_worker, wait_until
from tdm_messaging.worker import PackageResult

NOW = datetime(2026, 12, 6, tzinfo=UTC)


def value(observer: PrometheusObserver, name: str, **labels: str) -> float:
    found = observer.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_job_events_count_started_completed_failed_retried_and_time_them() -> None:
    metrics = PrometheusObserver()
    metrics.notify(JobStarted(JobKind.PACKAGE, "5", "r", 1, redelivered=True))
    metrics.notify(JobEnded(JobKind.PACKAGE, "5", "r", 1, JobOutcome.RETRIED, 0.2))
    metrics.notify(JobStarted(JobKind.PACKAGE, "5", "r", 2))
    metrics.notify(JobEnded(JobKind.PACKAGE, "5", "r", 2, JobOutcome.COMPLETED, 3.0))
    metrics.notify(JobEnded(JobKind.DELETE, "6", "s", 3, JobOutcome.GAVE_UP, 1.0))
    metrics.notify(JobEnded(JobKind.PACKAGE, "7", "t", 1, JobOutcome.INTERRUPTED, 1.0))
    assert value(metrics, "tdm_worker_jobs_started_total", kind="package") == 2
    assert value(metrics, "tdm_worker_redeliveries_total", kind="package") == 1
    assert value(metrics, "tdm_worker_jobs_retried_total", kind="package") == 1
    assert value(metrics, "tdm_worker_jobs_completed_total", kind="package") == 1
    assert value(metrics, "tdm_worker_jobs_failed_total", kind="delete", outcome="gave_up") == 1
    assert value(metrics, "tdm_worker_jobs_interrupted_total", kind="package") == 1
    assert value(metrics, "tdm_worker_job_duration_seconds_count", kind="package", outcome="completed") == 1
    assert value(metrics, "tdm_worker_job_duration_seconds_sum", kind="package", outcome="completed") == 3.0
    # attempts are observed once per job, when it ends for good: 2 for the package, 3 for the delete
    assert value(metrics, "tdm_worker_job_attempts_count", kind="package") == 1
    assert value(metrics, "tdm_worker_job_attempts_sum", kind="package") == 2
    assert value(metrics, "tdm_worker_job_attempts_sum", kind="delete") == 3


def test_state_dead_letters_and_polls() -> None:
    metrics = PrometheusObserver(namespace="x")
    metrics.notify(WorkerStateChanged(WorkerState.CONSUMING, NOW))
    metrics.notify(WorkerStateChanged(WorkerState.BROKER_TROUBLE, NOW, "refused"))
    metrics.notify(DeadLettered("client", "package/5", "bad"))
    metrics.notify(Polled("5", State.ACCEPTED, read=2, resent=2, dead_lettered=0, duration_seconds=0.01))
    metrics.notify(Polled("5", State.COMPLETE, read=3, resent=2, dead_lettered=0, duration_seconds=0.02))
    assert value(metrics, "x_worker_state", state="broker_trouble") == 1
    assert value(metrics, "x_worker_state", state="consuming") == 0
    assert value(metrics, "x_dead_letters_total", role="client") == 1
    assert value(metrics, "x_client_polls_total", state="accepted") == 1
    assert value(metrics, "x_client_polls_total", state="complete") == 1
    assert value(metrics, "x_client_poll_duration_seconds_count") == 2


def test_a_worker_and_a_client_feed_one_observer_and_the_exposition_shows_it() -> None:
    broker, metrics = InMemoryBroker(), PrometheusObserver()
    result = PackageResult(archive_url="https://bucket/a.zip", size_bytes=1)
    client = PackagingClient(InMemoryTransport(broker), observer=metrics)
    worker = PackagerWorker(InMemoryTransport(broker), on_package=lambda job: result, observer=metrics)
    ds = "m-" + uuid.uuid4().hex[:8]
    with running_worker(worker):
        client.request_package(ds, "http://server/api/docsets/1")
        wait_until(lambda: client.status(ds).state is State.COMPLETE, what="the Complete")
    assert value(metrics, "tdm_worker_jobs_completed_total", kind="package") == 1
    assert value(metrics, "tdm_client_requests_total", kind="package") == 1
    assert value(metrics, "tdm_client_polls_total", state="complete") == 1
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain")
    assert b'tdm_worker_jobs_completed_total{kind="package"} 1.0' in body
    assert ds.encode() not in body  # no docset id ever becomes a label


def test_without_prometheus_client_the_error_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'tdm-messaging\[metrics\]'"):
        PrometheusObserver()
