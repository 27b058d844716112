"""The flat public API: a sorted, pinned __all__, every name importable, one error root."""

from __future__ import annotations

import inspect

import tdm_messaging
from tdm_messaging import errors

PINNED = {
    "Accepted", "BodyTooLargeError", "BrokerRefusedError", "BrokerUnavailableError", "Capabilities", "Complete",
    "ConfigurationError", "DEAD_LETTER", "DEFAULT_MAX_BODY_BYTES", "DELETE_REQUESTS", "DecodeContext", "DecodeError",
    "DeleteRequest", "Deleted", "Delivery", "Destination", "DestinationKind", "Dialect", "DocsetLocks", "DocsetStatus",
    "EncodeError", "Envelope", "Failed", "HttpView", "InvalidArgumentError", "InvalidDestinationError",
    "JSON_CONTENT_TYPE", "Job", "JobFailed", "LocalProtocolError", "Message", "MessagingError", "PACKAGE_REQUESTS",
    "PROTOCOL_VERSION",
    "PackageRequest", "PackageResult", "PackagerWorker", "PackagingClient", "Progress", "RemoteProtocolError",
    "Requested",
    "SendNotConfirmedError", "State", "TEXT_CONTENT_TYPE", "Transport", "TransportClosedError", "TransportError",
    "UnknownMessageTypeError", "UnsupportedVersionError", "__version__", "compact", "decode", "encode", "fold",
    "guess_content_type", "http_view", "new_request_id", "open_transport", "redact_url", "register_scheme",
    "reply_queue",
    "validate_docset_id",
    # observing: events and observers (metrics, health), tracing, structured logs
    "DeadLettered", "DeleteRequested", "Event", "HealthReport", "JobEnded", "JobKind", "JobOutcome", "JobStarted",
    "JsonFormatter", "Observer", "Observers", "OpenTelemetryTracer", "PackageRequested", "Polled",
    "PrometheusObserver", "SpanKind", "SpanStart", "TraceContext", "Tracer", "WorkerHealth", "WorkerState",
    "WorkerStateChanged", "configure_logging",
    # one progress-bar style (tdm-messaging watch, the demo)
    "ProgressBar", "render_progress",
}  # fmt: skip


def test_all_is_pinned_and_sorted() -> None:
    assert set(tdm_messaging.__all__) == PINNED
    upper = [n for n in tdm_messaging.__all__ if n.isupper()]
    rest = [n for n in tdm_messaging.__all__ if not n.isupper()]
    assert upper == sorted(upper)
    assert rest == sorted(rest)
    assert len(tdm_messaging.__all__) == len(set(tdm_messaging.__all__))


def test_every_name_is_importable() -> None:
    for name in tdm_messaging.__all__:
        assert getattr(tdm_messaging, name) is not None, name


def test_every_exception_shares_the_root() -> None:
    classes = [obj for _, obj in inspect.getmembers(errors, inspect.isclass) if issubclass(obj, BaseException)]
    assert len(classes) >= 10
    for cls in classes:
        assert issubclass(cls, tdm_messaging.MessagingError), cls
    # the peer's faults and ours are kept apart
    assert not issubclass(errors.DecodeError, errors.LocalProtocolError)
    assert not issubclass(errors.EncodeError, errors.RemoteProtocolError)
    assert not issubclass(errors.TransportError, errors.LocalProtocolError | errors.RemoteProtocolError)
