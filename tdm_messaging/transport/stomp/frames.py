"""Pure STOMP frame rules: queue-declare headers per dialect, envelope <-> headers, read markers, error texts."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from types import MappingProxyType

from tdm_messaging.destinations import Destination, DestinationKind
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import LocalProtocolError
from tdm_messaging.headers import DECLARE_PROBE, READ_MARKER, READ_MARKER_AT
from tdm_messaging.transport.markers import MARKER_TTL_MS
from tdm_messaging.transport.stomp.dialect import Dialect
from tdm_messaging.transport.stomp.settings import ReplyExpiry, StompSettings

__all__ = [
    "MARKER_AT_HEADER",
    "MARKER_HEADER",
    "PROBE_HEADER",
    "MARKER_TTL_MS",
    "envelope_from_headers",
    "explain_refusal",
    "header_frame",
    "is_late_delivery",
    "late_subscription",
    "marker_headers",
    "prefetch_headers",
    "queue_headers",
    "read_start_frames",
    "send_frame",
    "send_headers",
    "settle_frames",
]

MARKER_HEADER = READ_MARKER
"""Header naming the read that sent a marker message (see :meth:`StompTransport.read`)."""
MARKER_AT_HEADER = READ_MARKER_AT
"""When the marker was first sent, Unix epoch ms; a marker older than :data:`MARKER_TTL_MS` is stale."""
PROBE_HEADER = DECLARE_PROBE
"""Header of the empty message a RabbitMQ declare sends (``expiration: 0``): it declares the queue
without subscribing, so it never takes a message from a reader; readers that meet it drop it."""

# Frame headers that belong to STOMP or to a broker, not to the application: never copied
# into an Envelope, and refused in one (they would change how the broker treats the frame).
_BROKER_HEADERS = frozenset(
    {
        "ack",
        "amqp-message-id",
        "auto-delete",
        "content-encoding",
        "content-length",
        "content-type",
        "destination",
        "durable",
        "exclusive",
        "expiration",
        "expires",
        "id",
        "message-id",
        "original-destination",
        "persistent",
        "prefetch-count",
        "priority",
        "receipt",
        "receipt-id",
        "redelivered",
        "subscription",
        "timestamp",
        "transaction",
        MARKER_HEADER,
        MARKER_AT_HEADER,
        PROBE_HEADER,
    }
)


def _is_broker_header(name: str) -> bool:
    return name in _BROKER_HEADERS or name.startswith(("x-", "jmsx", "activemq."))


def queue_headers(destination: Destination, settings: StompSettings, dialect: Dialect) -> dict[str, str]:
    """The queue-declare headers for every SEND and SUBSCRIBE to ``destination``.

    RabbitMQ declares a queue from these and refuses a later declare with other
    arguments, so they depend only on the destination's kind and the settings:
    durable, non-exclusive, not auto-deleted; reply queues get ``x-expires``
    (``reply_ttl`` in ms) unless ``reply_expiry=policy``; permanent and dead-letter
    queues get ``x-queue-type: quorum`` when ``quorum`` is set (as the kombu backend declares them),
    reply queues when ``reply_queue_type`` is ``quorum``.
    ActiveMQ takes no such headers.
    """
    if dialect is not Dialect.RABBITMQ:
        return {}
    headers = {"durable": "true", "auto-delete": "false", "exclusive": "false"}
    if destination.kind is DestinationKind.REPLY and settings.reply_expiry is ReplyExpiry.ARGUMENTS:
        headers["x-expires"] = str(settings.reply_ttl * 1000)
    if destination.kind is not DestinationKind.REPLY and settings.quorum:
        headers["x-queue-type"] = "quorum"
    if destination.kind is DestinationKind.REPLY and settings.reply_queue_type == "quorum":
        headers["x-queue-type"] = "quorum"
    return headers


def send_headers(
    destination: Destination,
    envelope: Envelope,
    settings: StompSettings,
    dialect: Dialect,
    *,
    persistent: bool,
    now_ms: int,
    declare: bool = True,
) -> dict[str, str]:
    """All headers of a SEND of ``envelope`` (the content type travels separately).

    ``persistent=False`` gives a transient message on RabbitMQ and is ignored on ActiveMQ
    (see :func:`_fixed_send_headers`). ActiveMQ reply messages carry ``expires`` (absolute epoch
    ms, ``reply_ttl`` ahead): ActiveMQ cannot expire a queue, so the replies expire and the
    broker's GC policy removes the empty queue. ``declare=False`` leaves the queue-declare
    headers out (a RabbitMQ SEND through ``/amq/queue/``).

    Raises:
        LocalProtocolError: an envelope header would be taken as a STOMP/broker header.
    """
    headers = {_application_name(name): value for name, value in envelope.headers.items()}
    headers.update(_fixed_send_headers(destination.kind, settings, dialect, persistent, declare))
    if dialect is Dialect.ACTIVEMQ and destination.kind is DestinationKind.REPLY:
        headers["expires"] = str(now_ms + settings.reply_ttl * 1000)
    return headers


def header_frame(command: str, headers: dict[str, str]) -> bytes:
    """The bytes of a STOMP 1.2 frame without a body (BEGIN, ACK, NACK, COMMIT, UNSUBSCRIBE, ...).

    Several of them joined are written at once: one socket write for a read's whole settlement
    instead of one per frame through stomp.py (its per-frame work and a system call each).
    """
    pairs = sorted(headers.items())
    text = "".join([f"{name}:{value}\n" for name, value in pairs])
    if text.count(":") != len(pairs) or text.count("\n") != len(pairs) or "\\" in text or "\r" in text:
        text = "".join([f"{_escape(name)}:{_escape(value)}\n" for name, value in pairs])  # as send_frame
    return b"".join((command.encode("ascii"), b"\n", text.encode("utf-8", "replace"), b"\n\x00"))


def send_frame(destination: str, body: bytes, content_type: str, headers: dict[str, str]) -> bytes:
    """The bytes of the STOMP 1.2 SEND frame stomp.py's ``Connection12.send`` would write, made in one pass.

    Headers sorted by name as stomp.py writes them, names and values escaped, ``content-type``
    when given, ``content-length`` when the body is not empty (as stomp.py: ActiveMQ reads a
    frame with ``content-length`` as a bytes message, without as a text message). Takes
    ``headers`` over: the destination and content headers are added to it.
    """
    headers["destination"] = destination
    if content_type:
        headers["content-type"] = content_type
    if body:
        headers["content-length"] = str(len(body))
    pairs = sorted(headers.items())
    text = "".join([f"{name}:{value}\n" for name, value in pairs])
    # Escaping changes nothing unless a name or value holds one of the four characters: then the
    # text has more colons or line feeds than the one of each per header written above.
    if text.count(":") != len(pairs) or text.count("\n") != len(pairs) or "\\" in text or "\r" in text:
        text = "".join([f"{_escape(name)}:{_escape(value)}\n" for name, value in pairs])
    return b"".join((b"SEND\n", text.encode("utf-8", "replace"), b"\n", body, b"\x00"))


def _escape(text: str) -> str:
    """STOMP 1.2 header escaping, for names and values of every frame but CONNECT.

    stomp.py escapes values only, so an envelope header name with a colon would break its frame.
    """
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n").replace(":", "\\c")


@lru_cache(maxsize=256)
def _application_name(name: str) -> str:
    """``name`` lower-cased, checked once: the same few header names come on every send."""
    lowered = name.lower()
    if _is_broker_header(lowered):
        raise LocalProtocolError(
            f"envelope header {name!r} is reserved by STOMP or the broker; rename it (e.g. with a 'tdm-' prefix)"
        )
    return lowered


@lru_cache(maxsize=64)
def _fixed_send_headers(
    kind: DestinationKind, settings: StompSettings, dialect: Dialect, persistent: bool, declare: bool
) -> Mapping[str, str]:
    """The SEND headers that depend only on the queue's kind and the settings (computed once per combination)."""
    headers: dict[str, str] = {}
    if declare:
        headers.update(queue_headers(Destination("x", kind), settings, dialect))
    # RabbitMQ: no header is a transient message. "persistent:false" would also declare the
    # queue non-durable, and RabbitMQ refuses that for an existing durable queue.
    # ActiveMQ: always persistent. It keeps persistent and non-persistent messages in separate
    # cursors, so a mix is not delivered in send order, and read()'s end marker relies on it.
    if persistent or dialect is Dialect.ACTIVEMQ:
        headers["persistent"] = "true"
    return MappingProxyType(headers)


def prefetch_headers(dialect: Dialect, prefetch: int) -> dict[str, str]:
    """Subscription headers that cap unacknowledged deliveries at ``prefetch``."""
    if dialect is Dialect.ACTIVEMQ:
        return {"activemq.prefetchSize": str(prefetch)}
    return {"prefetch-count": str(prefetch)}


def read_start_frames(
    wire: str,
    declare: Mapping[str, str],
    dialect: Dialect,
    prefetch: int,
    *,
    marker: str,
    sent_at_ms: int,
    sub_id: str,
) -> bytes:
    """The one write that starts a read of queue ``wire``: its marker SEND and its SUBSCRIBE.

    RabbitMQ: the SUBSCRIBE first, with the queue-declare headers ``declare``, then the marker
    without them. The SUBSCRIBE declares the queue on a connection's first frame for it and the
    marker, a later frame of the same connection for the same queue, declares nothing anyway
    (docs/brokers.md; ``routes`` rule 1); without them it is a smaller message that RabbitMQ
    copies no declare arguments into. Every message in the queue when the SUBSCRIBE arrives still
    comes before the marker (queues are FIFO). ActiveMQ (no declare headers): the marker first.
    The same bytes as :func:`send_frame` and :func:`header_frame` make of those headers; the
    parts that never change for a queue are made once. ``marker`` and ``sub_id`` must hold none
    of the characters STOMP escapes (ours are hex digits, letters and dashes).
    """
    template = _read_template(wire, tuple(sorted(declare.items())), dialect, prefetch)
    if dialect is Dialect.ACTIVEMQ:
        return template.format(marker, sent_at_ms, sent_at_ms + MARKER_TTL_MS, sub_id).encode("utf-8", "replace")
    return template.format(marker, sent_at_ms, MARKER_TTL_MS, sub_id).encode("utf-8", "replace")


# Stand-ins the templates are written with: no STOMP escaping touches them, no header name holds them.
_MARKER, _SENT_AT, _EXPIRY, _SUB_ID = "\x01m\x01", "\x01t\x01", "\x01e\x01", "\x01s\x01"


@lru_cache(maxsize=256)
def _read_template(wire: str, declare: tuple[tuple[str, str], ...], dialect: Dialect, prefetch: int) -> str:
    """:func:`read_start_frames`' frames as a ``str.format`` template of marker, birth, expiry and subscription id."""
    marker = {MARKER_HEADER: _MARKER, MARKER_AT_HEADER: _SENT_AT}
    if dialect is Dialect.ACTIVEMQ:
        marker.update({"persistent": "true", "expires": _EXPIRY, **dict(declare)})
    else:
        marker["expiration"] = _EXPIRY
    subscribe = dict(declare)
    subscribe.update(prefetch_headers(dialect, prefetch))
    subscribe.update({"destination": wire, "id": _SUB_ID, "ack": "client-individual"})
    send = send_frame(wire, b"", "", marker)
    subscription = header_frame("SUBSCRIBE", subscribe)
    frames = send + subscription if dialect is Dialect.ACTIVEMQ else subscription + send
    text = frames.decode("utf-8").replace("{", "{{").replace("}", "}}")
    return text.replace(_MARKER, "{0}").replace(_SENT_AT, "{1}").replace(_EXPIRY, "{2}").replace(_SUB_ID, "{3}")


_SPECIAL = ("\\", "\r", "\n", ":")
"""What a header value must not hold to be written as it is (STOMP 1.2 escapes these)."""


def settle_frames(
    transaction: str, acks: Sequence[str], nacks: Sequence[str], unsubscribe: str | None, receipt: str
) -> bytes:
    """BEGIN, an ACK of each of ``acks`` and a NACK of each of ``nacks`` in ``transaction``, UNSUBSCRIBE
    ``unsubscribe`` (if given), COMMIT with ``receipt``: the bytes :func:`header_frame` makes of each, joined."""
    values = "".join((transaction, receipt, unsubscribe or "", *acks, *nacks))
    if any(special in values for special in _SPECIAL):  # escapes needed: the general way
        frames = [header_frame("BEGIN", {"transaction": transaction})]
        frames += [header_frame("ACK", {"id": ack, "transaction": transaction}) for ack in acks]
        frames += [header_frame("NACK", {"id": nack, "transaction": transaction}) for nack in nacks]
        if unsubscribe is not None:
            frames.append(header_frame("UNSUBSCRIBE", {"id": unsubscribe}))
        frames.append(header_frame("COMMIT", {"receipt": receipt, "transaction": transaction}))
        return b"".join(frames)
    in_tx = f"\ntransaction:{transaction}\n\n\x00"
    parts = [f"BEGIN{in_tx}"]
    parts += [f"ACK\nid:{ack}{in_tx}" for ack in acks]
    parts += [f"NACK\nid:{nack}{in_tx}" for nack in nacks]
    if unsubscribe is not None:
        parts.append(f"UNSUBSCRIBE\nid:{unsubscribe}\n\n\x00")
    parts.append(f"COMMIT\nreceipt:{receipt}{in_tx}")
    return "".join(parts).encode("utf-8", "replace")


def marker_headers(
    destination: Destination,
    settings: StompSettings,
    dialect: Dialect,
    *,
    marker: str,
    sent_at_ms: int,
    now_ms: int,
) -> dict[str, str] | None:
    """Headers of a (re-)sent read marker, or ``None`` when it is already stale.

    A marker lives :data:`MARKER_TTL_MS` from ``sent_at_ms``,
    whoever re-sends it (RabbitMQ ``expiration`` is relative, ActiveMQ ``expires`` absolute).
    """
    remaining = sent_at_ms + MARKER_TTL_MS - now_ms
    if remaining <= 0:
        return None
    headers = queue_headers(destination, settings, dialect)
    headers[MARKER_HEADER] = marker
    headers[MARKER_AT_HEADER] = str(sent_at_ms)
    if dialect is Dialect.ACTIVEMQ:
        # Persistent like the messages it follows: ActiveMQ keeps persistent and non-persistent
        # messages in separate cursors, and a non-persistent marker overtook a stored message.
        headers["persistent"] = "true"
        headers["expires"] = str(sent_at_ms + MARKER_TTL_MS)
    else:
        headers["expiration"] = str(remaining)
    return headers


def envelope_from_headers(headers: Mapping[str, str], body: bytes) -> Envelope:
    """The Envelope of a received MESSAGE frame: application headers only, names lower-case.

    A frame without ``content-type`` (a seed-style peer sends none) gives ``""``: the envelope
    says "not given", and the codec guesses the format from the body (docs/protocol.md § 3).
    Which names to keep is worked out once per list of names (a queue's frames share it).
    """
    content_type = headers.get("content-type") or ""
    names = tuple(headers)
    plan = _KEPT_NAMES.get(names)
    if plan is None:
        plan = tuple((name, lowered) for name in names if (lowered := _application_header(name)) is not None)
        if len(_KEPT_NAMES) >= 256:
            _KEPT_NAMES.clear()  # bounded: a burst of odd frames only starts afresh
        _KEPT_NAMES[names] = plan
    return Envelope(body, content_type, MappingProxyType({lowered: headers[name] for name, lowered in plan}))


_KEPT_NAMES: dict[tuple[str, ...], tuple[tuple[str, str], ...]] = {}
"""A frame's header names, in order -> the (name, lower-cased name) pairs an envelope keeps."""


@lru_cache(maxsize=1024)
def _application_header(name: str) -> str | None:
    """``name`` lower-cased if it is an application header, else ``None`` (the same few names recur)."""
    lowered = name.lower()
    return None if _is_broker_header(lowered) else lowered


def is_late_delivery(message: str, receipt_id: object) -> bool:
    """Whether an ERROR frame is RabbitMQ's notice of a delivery to a cancelled subscription.

    RabbitMQ 3.10 sends ``Subscription not found`` (no receipt id) for each message its
    channel delivers to a subscription after the UNSUBSCRIBE, even after the receipt; the
    connection stays open and the message stays unacknowledged on it until it closes.
    """
    return message.strip() == "Subscription not found" and not receipt_id


def late_subscription(details: str) -> str | None:
    """The subscription id a late delivery's ERROR body names, or None if it names none.

    RabbitMQ's body is ``There is no current subscription with tag 'T_<id>'.`` (the adapter's
    consumer tag is ``T_`` and the subscription id).
    """
    _, found, rest = details.partition("with tag 'T_")
    if not found:
        return None
    sub_id, closed, _ = rest.partition("'")
    return sub_id if closed and sub_id else None


def explain_refusal(message: str, details: str, settings: StompSettings) -> str:
    """A broker ERROR frame, as one sentence that says what to do about it."""
    parts = [message.strip(), " ".join(details.split())[:500]]
    text = ": ".join(p for p in parts if p) or "no reason given"
    hint = ""
    if "inequivalent arg 'x-expires'" in text:
        hint = (
            f"; the queue exists with another expiry: every declare must carry the same reply_ttl "
            f"(this transport uses reply_ttl={settings.reply_ttl} s), or use ?reply_expiry=policy with a "
            "RabbitMQ policy (see docs/brokers.md)"
        )
    elif "inequivalent arg" in text:
        hint = (
            "; the queue exists with other arguments (RabbitMQ queue arguments never change): declare it "
            "the same way everywhere, or delete it (rabbitmqctl delete_queue NAME) and let it be declared again"
        )
    elif re.search(r"(?<![a-z])access|login|credentials", text.lower()):  # not "inaccessible"
        hint = "; check the user name, password and ?vhost= (RabbitMQ's default virtual host is '/')"
    elif "not a valid queue destination" in text:
        hint = "; RabbitMQ refuses '/' inside queue names: use ?dialect=rabbitmq so names are percent-encoded"
    return f"STOMP broker at {settings.address} refused: {text}{hint}"
