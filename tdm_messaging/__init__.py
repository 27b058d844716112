"""tdm-messaging: typed messages, wire formats and broker transports for the TDM docset packaging protocol.

The flat public API. Importing it loads no broker driver: backends are imported
lazily by :func:`open_transport` when a URL names them.
"""

from tdm_messaging.codec import (
    DEFAULT_MAX_BODY_BYTES,
    JSON_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    DecodeContext,
    decode,
    encode,
    guess_content_type,
)
from tdm_messaging.destinations import (
    DEAD_LETTER,
    DELETE_REQUESTS,
    PACKAGE_REQUESTS,
    Destination,
    DestinationKind,
    reply_queue,
    validate_docset_id,
)
from tdm_messaging.docset_locks import DocsetLocks
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import (
    BodyTooLargeError,
    BrokerRefusedError,
    BrokerUnavailableError,
    ConfigurationError,
    DecodeError,
    EncodeError,
    InvalidArgumentError,
    InvalidDestinationError,
    LocalProtocolError,
    MessagingError,
    RemoteProtocolError,
    SendNotConfirmedError,
    TransportClosedError,
    TransportError,
    UnknownMessageTypeError,
    UnsupportedVersionError,
)
from tdm_messaging.health import HealthReport, WorkerHealth
from tdm_messaging.http_view import HttpView, http_view
from tdm_messaging.ids import new_request_id
from tdm_messaging.logging_json import JsonFormatter, configure_logging
from tdm_messaging.metrics import PrometheusObserver
from tdm_messaging.models import (
    PROTOCOL_VERSION,
    Accepted,
    Complete,
    Deleted,
    DeleteRequest,
    Failed,
    Message,
    PackageRequest,
    Progress,
)
from tdm_messaging.observe import (
    DeadLettered,
    DeleteRequested,
    Event,
    JobEnded,
    JobKind,
    JobOutcome,
    JobStarted,
    Observer,
    Observers,
    PackageRequested,
    Polled,
    WorkerState,
    WorkerStateChanged,
)
from tdm_messaging.otel import OpenTelemetryTracer
from tdm_messaging.progress_bar import ProgressBar, render_progress
from tdm_messaging.server import PackagingClient, Requested
from tdm_messaging.status import DocsetStatus, State, compact, fold
from tdm_messaging.tracing import SpanKind, SpanStart, TraceContext, Tracer
from tdm_messaging.transport import Capabilities, Delivery, Transport, open_transport, register_scheme
from tdm_messaging.transport.stomp.dialect import Dialect
from tdm_messaging.transport.urls import redact_url
from tdm_messaging.worker import Job, JobFailed, PackageResult, PackagerWorker

__version__ = "0.1.0"

__all__ = [
    "DEAD_LETTER",
    "DEFAULT_MAX_BODY_BYTES",
    "DELETE_REQUESTS",
    "JSON_CONTENT_TYPE",
    "PACKAGE_REQUESTS",
    "PROTOCOL_VERSION",
    "TEXT_CONTENT_TYPE",
    "Accepted",
    "BodyTooLargeError",
    "BrokerRefusedError",
    "BrokerUnavailableError",
    "Capabilities",
    "Complete",
    "ConfigurationError",
    "DeadLettered",
    "DecodeContext",
    "DecodeError",
    "DeleteRequest",
    "DeleteRequested",
    "Deleted",
    "Delivery",
    "Destination",
    "DestinationKind",
    "Dialect",
    "DocsetLocks",
    "DocsetStatus",
    "EncodeError",
    "Envelope",
    "Event",
    "Failed",
    "HealthReport",
    "HttpView",
    "InvalidArgumentError",
    "InvalidDestinationError",
    "Job",
    "JobEnded",
    "JobFailed",
    "JobKind",
    "JobOutcome",
    "JobStarted",
    "JsonFormatter",
    "LocalProtocolError",
    "Message",
    "MessagingError",
    "Observer",
    "Observers",
    "OpenTelemetryTracer",
    "PackageRequest",
    "PackageRequested",
    "PackageResult",
    "PackagerWorker",
    "PackagingClient",
    "Polled",
    "Progress",
    "ProgressBar",
    "PrometheusObserver",
    "RemoteProtocolError",
    "Requested",
    "SendNotConfirmedError",
    "SpanKind",
    "SpanStart",
    "State",
    "TraceContext",
    "Tracer",
    "Transport",
    "TransportClosedError",
    "TransportError",
    "UnknownMessageTypeError",
    "UnsupportedVersionError",
    "WorkerHealth",
    "WorkerState",
    "WorkerStateChanged",
    "__version__",
    "compact",
    "configure_logging",
    "decode",
    "encode",
    "fold",
    "guess_content_type",
    "http_view",
    "new_request_id",
    "open_transport",
    "redact_url",
    "register_scheme",
    "render_progress",
    "reply_queue",
    "validate_docset_id",
]
