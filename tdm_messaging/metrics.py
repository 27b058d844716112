"""Prometheus metrics for the worker and the client: an Observer that counts what they tell it (``[metrics]`` extra).

``prometheus_client`` is imported when a :class:`PrometheusObserver` is made, never when this
module is, so ``import tdm_messaging`` works without it. Every metric is listed in
docs/helpers.md; labels are bounded (kinds, outcomes, states), never docset or request ids.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

from tdm_messaging.errors import ConfigurationError
from tdm_messaging.observe import (
    DeadLettered,
    DeleteRequested,
    Event,
    JobEnded,
    JobOutcome,
    JobStarted,
    Observer,
    PackageRequested,
    Polled,
    WorkerState,
    WorkerStateChanged,
)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["PrometheusObserver"]

_DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_POLL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_ATTEMPT_BUCKETS = (1, 2, 3, 4, 5, 7, 10, 20)
_FINAL = {JobOutcome.COMPLETED, JobOutcome.FAILED, JobOutcome.GAVE_UP, JobOutcome.REFUSED, JobOutcome.REJECTED}
_FAILED = {JobOutcome.FAILED, JobOutcome.GAVE_UP, JobOutcome.REFUSED, JobOutcome.REJECTED}


def _prometheus() -> ModuleType:
    try:
        return importlib.import_module("prometheus_client")
    except ImportError as exc:
        raise ConfigurationError("metrics need prometheus_client: pip install 'tdm-messaging[metrics]'") from exc


class PrometheusObserver(Observer):
    """Counts and times what a worker or a client tells it, as Prometheus metrics.

    Give the same observer to every worker and client of a process. Serve :meth:`exposition`
    (or ``registry`` with ``prometheus_client``'s own tools) on ``/metrics``.

    Args:
        registry: where the metrics are registered; default a new one of this observer's own
            (pass ``prometheus_client.REGISTRY`` to join the process's default registry).
        namespace: the metrics' name prefix.

    Raises:
        ConfigurationError: ``prometheus_client`` is not installed (the message says how to install it).
    """

    def __init__(self, *, registry: CollectorRegistry | None = None, namespace: str = "tdm") -> None:
        prom = _prometheus()
        self.registry: CollectorRegistry = prom.CollectorRegistry() if registry is None else registry
        self._prom = prom
        reg = self.registry

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Any:
            return prom.Counter(name, doc, labels, namespace=namespace, registry=reg)

        def histogram(name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> Any:
            return prom.Histogram(name, doc, labels, namespace=namespace, registry=reg, buckets=buckets)

        self._started = counter("worker_jobs_started", "Job attempts started", ("kind",))
        self._completed = counter("worker_jobs_completed", "Jobs completed (Complete or Deleted sent)", ("kind",))
        self._failed = counter(
            "worker_jobs_failed",
            "Jobs that failed for good: failed (handler said so), gave_up (attempts exhausted), refused (broker)",
            ("kind", "outcome"),
        )
        self._retried = counter(
            "worker_jobs_retried", "Job attempts that failed and were re-sent for another", ("kind",)
        )
        self._interrupted = counter(
            "worker_jobs_interrupted", "Job attempts stopped by a broker error (left for redelivery)", ("kind",)
        )
        self._redelivered = counter("worker_redeliveries", "Requests the broker delivered again", ("kind",))
        self._duration = histogram(
            "worker_job_duration_seconds", "How long a job attempt ran", ("kind", "outcome"), _DURATION_BUCKETS
        )
        self._attempts = histogram(
            "worker_job_attempts", "Attempts a job took, observed when it ended for good", ("kind",), _ATTEMPT_BUCKETS
        )
        self._dead_letters = counter("dead_letters", "Messages parked on docsets/dead-letter", ("role",))
        self._state = prom.Gauge(
            "worker_state",
            "1 for the worker loop's current state, 0 for the others",
            ("state",),
            namespace=namespace,
            registry=reg,
        )
        self._polls = counter("client_polls", "Polls of a reply queue, by the state they found", ("state",))
        self._poll_latency = histogram("client_poll_duration_seconds", "How long a poll took", (), _POLL_BUCKETS)
        self._requests = counter("client_requests", "Requests sent", ("kind",))

    def notify(self, event: Event) -> None:
        if isinstance(event, JobStarted):
            self._started.labels(event.kind.value).inc()
            if event.redelivered:
                self._redelivered.labels(event.kind.value).inc()
        elif isinstance(event, JobEnded):
            kind, outcome = event.kind.value, event.outcome
            self._duration.labels(kind, outcome.value).observe(event.duration_seconds)
            if outcome is JobOutcome.COMPLETED:
                self._completed.labels(kind).inc()
            elif outcome in _FAILED:
                self._failed.labels(kind, outcome.value).inc()
            elif outcome is JobOutcome.RETRIED:
                self._retried.labels(kind).inc()
            else:
                self._interrupted.labels(kind).inc()
            if outcome in _FINAL:
                self._attempts.labels(kind).observe(event.attempt)
        elif isinstance(event, DeadLettered):
            self._dead_letters.labels(event.role).inc()
        elif isinstance(event, WorkerStateChanged):
            for state in WorkerState:
                self._state.labels(state.value).set(1 if state is event.state else 0)
        elif isinstance(event, Polled):
            self._polls.labels(event.state.value).inc()
            self._poll_latency.observe(event.duration_seconds)
        elif isinstance(event, PackageRequested):
            self._requests.labels("package").inc()
        elif isinstance(event, DeleteRequested):
            self._requests.labels("delete").inc()

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, and its content type: a ``/metrics`` response."""
        body: bytes = self._prom.generate_latest(self.registry)
        content_type: str = self._prom.CONTENT_TYPE_LATEST
        return body, content_type
