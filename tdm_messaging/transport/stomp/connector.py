"""Opening and closing stomp.py connections: the listener it calls, CONNECT with TCP_NODELAY, a one-off declare."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
import uuid
from typing import Any, Protocol

import stomp
import stomp.exception
import stomp.protocol

from tdm_messaging.errors import BrokerUnavailableError, SendNotConfirmedError, TransportError
from tdm_messaging.transport.stomp.connect_log import held_back_connect_warnings
from tdm_messaging.transport.stomp.frames import PROBE_HEADER, is_late_delivery
from tdm_messaging.transport.stomp.passcode import install_passcode_filter
from tdm_messaging.transport.stomp.receive import install as install_fast_parse
from tdm_messaging.transport.stomp.settings import StompSettings
from tdm_messaging.transport.stomp.translate import (
    DRIVER_ERRORS,
    HINT,
    ErrorFrame,
    cannot_connect,
    error_frame,
    unavailable,
)

__all__ = [
    "LinkEvents",
    "Listener",
    "connect",
    "declare_elsewhere",
    "disconnect",
    "drop",
    "send_elsewhere",
    "tls_problem",
    "write_frame",
]

log = logging.getLogger(__name__)
install_passcode_filter()


class LinkEvents(Protocol):
    """What a :class:`Listener` tells the long-lived connection's owner (``StompLink``)."""

    def on_message(self, generation: int, headers: dict[str, str], body: bytes | str) -> None: ...
    def on_receipt(self, receipt_id: str, error: TransportError | None) -> None: ...
    def on_late_delivery(self, generation: int, details: str) -> None: ...
    def on_error(self, generation: int, receipt_id: str, error: ErrorFrame, text: str) -> None: ...
    def on_lost(self, generation: int, refusal: ErrorFrame | None, *, quiet: bool = False) -> None: ...


class Listener:
    """stomp.py calls these from its receiver thread; each forwards to the link with its generation.

    A plain object (stomp.py looks callbacks up by name), one per connection, so frames of a
    dropped connection can be told from those of its successor. Without a link (a short-lived
    connection, see :func:`declare_elsewhere`) it only records what happened.
    """

    def __init__(self, settings: StompSettings, link: LinkEvents | None, generation: int) -> None:
        self._settings = settings
        self._link = link
        self.generation = generation
        self.connected = threading.Event()
        self.answered = threading.Event()  # a RECEIPT or an ERROR came (short-lived connections)
        self.closed = threading.Event()  # the socket closed (the broker's answer to DISCONNECT)
        self.server = ""
        self.refusal: ErrorFrame | None = None
        self.receipted = False

    def on_connected(self, frame: Any) -> None:
        self.server = str(frame.headers.get("server", ""))
        self.connected.set()

    def on_message(self, frame: Any) -> None:
        if self._link is not None:
            self._link.on_message(self.generation, frame.headers, frame.body)

    def on_receipt(self, frame: Any) -> None:
        if self._link is not None:  # a link's receipts are awaited through the link alone
            self._link.on_receipt(str(frame.headers.get("receipt-id", "")), None)
            return
        self.receipted = True
        self.answered.set()

    def on_error(self, frame: Any) -> None:
        body = frame.body.decode("utf-8", "replace") if isinstance(frame.body, bytes) else str(frame.body)
        message = str(frame.headers.get("message", ""))
        if is_late_delivery(message, frame.headers.get("receipt-id")):
            # RabbitMQ: a delivery reached a read's subscription after its UNSUBSCRIBE. The
            # connection lives on, but holds that delivery unacknowledged until it closes.
            if self._link is not None:
                self._link.on_late_delivery(self.generation, body)
            return
        error = error_frame(message, body, self._settings)
        self.refusal = error
        self.connected.set()  # wake a connect() waiting for CONNECTED: it checks refusal
        self.answered.set()
        if self._link is None:
            return
        log.error("%s", error)
        self._link.on_error(self.generation, str(frame.headers.get("receipt-id", "")), error, f"{message} {body}")
        # A STOMP server closes the connection after an ERROR frame: stop using it now, so the
        # next call reconnects instead of writing into a connection that is going away.
        self._link.on_lost(self.generation, error, quiet=True)

    def on_disconnected(self) -> None:
        self.closed.set()
        self.connected.set()
        self.answered.set()
        if self._link is not None:
            self._link.on_lost(self.generation, self.refusal)

    def on_send(self, frame: Any) -> None:
        """Nothing to do; defined because stomp.py otherwise raises and catches AttributeError on every frame."""

    def on_heartbeat_timeout(self) -> None:
        log.warning("no heart-beat from the STOMP broker at %s; reconnecting", self._settings.address)


def connect(settings: StompSettings, listener: Listener) -> Any:
    """A new stomp.py connection, CONNECTED, with ``TCP_NODELAY`` (see docs/brokers.md, "Latency"),
    whose receiver parses frames with :func:`receive.parse_frame`."""
    s = settings
    conn = stomp.Connection12(
        host_and_ports=[(s.host, s.port)],
        prefer_localhost=False,
        try_loopback_connect=False,
        reconnect_attempts_max=1,
        timeout=s.connect_timeout,
        heartbeats=(s.heartbeat_ms, s.heartbeat_ms),
        vhost=s.vhost,
        auto_decode=False,
    )
    if s.tls:
        conn.set_ssl(
            for_hosts=[(s.host, s.port)],
            ca_certs=s.ca_file,
            cert_file=s.cert_file,
            key_file=s.key_file,
            verify=s.verify,
            ssl_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    conn.set_listener("tdm", listener)
    try:
        with held_back_connect_warnings() as failures:  # said once, in the error below
            conn.connect(s.username, s.password, wait=False)
    except DRIVER_ERRORS as exc:
        # stomp.py only logs why its connection attempt failed; for TLS, find out ourselves.
        problem = tls_problem(s) if s.tls else None
        if problem is not None:
            raise BrokerUnavailableError(f"cannot connect to the STOMP broker at {s.address} (TLS): {problem}") from exc
        raise cannot_connect(s.address, exc, tls=s.tls, reasons=failures.reasons) from exc
    if not listener.connected.wait(s.connect_timeout) or listener.refusal is not None or not conn.is_connected():
        drop(conn)
        if listener.refusal is not None:
            raise listener.refusal
        raise BrokerUnavailableError(
            f"the STOMP broker at {s.address} accepted a TCP connection but did not answer CONNECT "
            f"within {s.connect_timeout:g} s; {HINT}"
        )
    sock = getattr(conn.transport, "socket", None)
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:  # not fatal: only slower
            log.debug("could not set TCP_NODELAY: %s", exc)
    install_fast_parse(conn.transport)  # the same frames, parsed in a quarter of the time (see receive.py)
    return conn


def write_frame(conn: Any, frame: bytes) -> None:
    """Write an encoded frame (see :func:`frames.send_frame`) to ``conn`` as stomp.py's own frames go.

    Through the stomp.py transport's ``send`` (its socket lock, which its heart-beats take too, so
    frames never interleave) or, on a TLS connection, which stomp.py makes non-blocking, its send
    queue for its I/O thread: what ``Transport.transmit`` does after encoding. Skipped from
    ``transmit``: the listeners' ``on_send`` (ours does nothing; stomp.py's heart-beat listener only
    postpones the next heart-beat, so one may go out between frames, which STOMP allows).

    Raises:
        stomp.exception.NotConnectedException, OSError: the connection is gone (as ``conn.send``).
    """
    transport = conn.transport
    if getattr(transport, "blocking", True):
        transport.send(frame)
        return
    outbox = transport.send_queue
    if outbox is None:  # stomp.py drops its send queue when the connection closes
        raise stomp.exception.NotConnectedException()
    outbox.put(frame)


def tls_problem(settings: StompSettings) -> str | None:
    """Why a TLS connection to the broker fails, in words, or ``None`` if TLS is not the problem.

    Repeats the handshake stomp.py makes (same CA file, client certificate, verification) on a
    socket of its own, after a failed connect: stomp.py logs the cause and raises only
    ``ConnectFailedException``. ``None`` when the TCP connection itself fails (no TLS reached)
    or the handshake succeeds.
    """
    s = settings
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        if s.ca_file:
            context.load_verify_locations(s.ca_file)
        else:
            context.load_default_certs()
        if s.cert_file:
            context.load_cert_chain(s.cert_file, s.key_file)
    except (OSError, ssl.SSLError) as exc:
        return (
            f"the TLS files could not be loaded ({exc}); check the ca_file / cert_file / key_file "
            "parameters name readable PEM files"
        )
    if not s.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((s.host, s.port), timeout=s.connect_timeout) as raw,
            context.wrap_socket(raw, server_hostname=s.host),
        ):
            return None
    except ssl.SSLCertVerificationError as exc:
        return (
            f"the broker's TLS certificate was refused ({exc.verify_message or exc}); check that ca_file "
            f"({s.ca_file or 'not given: the system CAs'}) is the CA that signed the broker's certificate "
            f"and that the certificate names the host {s.host!r}"
        )
    except ssl.SSLError as exc:
        return (
            f"the TLS handshake failed ({exc}); check that this port is the broker's STOMP TLS listener "
            "and that the client certificate (cert_file) is one the broker accepts"
        )
    except OSError:
        return None


def drop(conn: Any) -> None:
    """Close ``conn``'s socket at once (no DISCONNECT)."""
    try:
        conn.transport.disconnect_socket()
    except Exception as exc:  # the connection is being abandoned anyway
        log.debug("closing a failed STOMP connection: %s", exc)


def disconnect(conn: Any, closed: threading.Event | None = None) -> None:
    """DISCONNECT, wait (2 s at most) until the broker closed the socket, then drop it.

    With ``closed`` (the connection's :attr:`Listener.closed`), wait on it rather than polling.
    """
    try:
        # Protocol12.disconnect only sends the frame; stomp.py closes the socket on its
        # receipt. Connection12.disconnect would also join the receiver thread unbounded.
        stomp.protocol.Protocol12.disconnect(conn)
        if closed is not None:
            closed.wait(2.0)
        deadline = time.monotonic() + 2.0
        while conn.transport.socket is not None and time.monotonic() < deadline:
            time.sleep(0.001)
    except DRIVER_ERRORS as exc:  # the connection is being closed anyway
        log.debug("DISCONNECT failed: %s", exc)
    drop(conn)


def declare_elsewhere(settings: StompSettings, wire: str, headers: dict[str, str]) -> None:
    """Declare a RabbitMQ queue on a short-lived connection of its own: a probe SEND (receipt), DISCONNECT.

    The probe is an empty message with ``expiration: 0`` (RabbitMQ drops it at once unless a
    consumer is waiting; readers drop it too) and the declare headers, so the queue is declared
    with its arguments and a refusal is seen, yet nothing subscribes: a SUBSCRIBE here took
    messages a concurrent poll then missed (it read UNKNOWN). The transport's own connection is
    left alone, and a refusal closes only this one.

    Args:
        wire: the ``/queue/...`` destination; headers: the declare headers.

    Raises:
        BrokerRefusedError: the queue exists with other arguments (or another refusal).
        BrokerUnavailableError: no connection could be made.
        SendNotConfirmedError: no receipt within ``confirm_timeout``.
    """
    probe = {**headers, "expiration": "0", PROBE_HEADER: "1"}
    probe.pop("prefetch-count", None)
    send_elsewhere(settings, wire, b"", None, probe, what=f"declaring {wire}")


def send_elsewhere(
    settings: StompSettings, wire: str, body: bytes, content_type: str | None, headers: dict[str, str], *, what: str
) -> None:
    """SEND one frame (with a receipt) as the first frame of a short-lived connection, then DISCONNECT.

    On RabbitMQ a connection's first frame for a queue declares it, so a refusal (other
    arguments; the home node of a classic queue down) comes as an ERROR instead of a silent drop.

    Raises:
        BrokerRefusedError, BrokerUnavailableError: the broker's ERROR frame (see translate.error_frame),
            or no connection could be made.
        SendNotConfirmedError: no receipt within ``confirm_timeout``.
    """
    listener = Listener(settings, None, 0)
    conn = connect(settings, listener)
    try:
        receipt = f"tdm-once-{uuid.uuid4().hex}"
        try:
            conn.send(wire, body, content_type=content_type, headers={**headers, "receipt": receipt})
        except DRIVER_ERRORS as exc:
            raise unavailable(what, settings.address, exc) from exc
        if not listener.answered.wait(settings.confirm_timeout):
            raise SendNotConfirmedError(
                f"{what}: no receipt from the STOMP broker at {settings.address} within {settings.confirm_timeout:g} s"
            )
        if listener.refusal is not None:
            raise listener.refusal
        if not listener.receipted:
            raise BrokerUnavailableError(
                f"{what}: the connection to the STOMP broker at {settings.address} was lost first"
            )
    finally:
        if listener.refusal is None and conn.is_connected():
            disconnect(conn, listener.closed)
        else:
            drop(conn)
