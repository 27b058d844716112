"""Issue 5, item 9: TLS to the private RabbitMQ node (stomp+ssl://, amqps://) with a generated test CA."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest

from tdm_messaging.destinations import PACKAGE_REQUESTS, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import MessagingError
from tdm_messaging.server import PackagingClient
from tdm_messaging.status import State
from tdm_messaging.transport import open_transport
from tdm_messaging.transport.base import Transport
from tdm_messaging.worker import Job, PackageResult, PackagerWorker
from tests.faults.conftest import PrivateRabbit
from tests.faults.helpers import drain, run_worker, wait_until
from tests.faults.reliability import Row, record

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]


def _tls_url(node: PrivateRabbit, protocol: str, ca: str) -> str:
    """A TLS URL to ``node`` trusting only ``ca`` (a PEM file), by host name ``localhost`` (in the certificate)."""
    if protocol == "stomp":
        return f"stomp+ssl://guest:guest@localhost:{node.stomps_port}/?dialect=rabbitmq&ca_file={ca}&connect_timeout=5"
    return f"amqps://guest:guest@localhost:{node.amqps_port}//?connect_timeout=5&ssl_ca_certs={ca}"


@pytest.fixture
def closing() -> Iterator[list[Transport]]:
    opened: list[Transport] = []
    yield opened
    for transport in opened:
        with contextlib.suppress(Exception):
            transport.close()


@pytest.mark.parametrize("protocol", ["stomp", "amqp"])
def test_a_job_over_tls_with_the_test_ca(
    private_rabbit: PrivateRabbit,
    protocol: str,
    closing: list[Transport],
    request: pytest.FixtureRequest,
) -> None:
    url = _tls_url(private_rabbit, protocol, str(private_rabbit.tls_dir / "ca.pem"))
    client_side, worker_side = open_transport(url), open_transport(url)
    closing += [client_side, worker_side]
    drain(client_side)
    client = PackagingClient(client_side)
    docset = f"tls-{uuid.uuid4().hex[:10]}"

    def handler(job: Job) -> PackageResult:
        return PackageResult(archive_url=f"https://archives.test/{job.request.docset_id}.zip", size_bytes=1)

    with run_worker(PackagerWorker(worker_side, on_package=handler, retry_backoff_seconds=0)):
        client.request_package(docset, f"http://api.test/api/docsets/{docset}")
        wait_until(lambda: client.status(docset).state is State.COMPLETE, timeout=60, what="the job over TLS")
    scheme = url.split("://", 1)[0]
    record(
        Row(
            id=f"tls-{protocol}",
            item="9 security",
            done=f"{scheme}:// to the private node's TLS listener, server certificate for localhost/127.0.0.1 "
            "signed by a CA the test generated with openssl; verification on (the default); "
            + ("CA given as ?ca_file=" if protocol == "stomp" else "CA given as ?ssl_ca_certs=")
            + "; a server and a worker transport run a job",
            expected="the connection is verified against the test CA and the job completes over it",
            happened=f"connected with verification; the job's status COMPLETE over {scheme}",
            lost=0,
            duplicates=0,
            test=request.node.nodeid,
        )
    )


@pytest.mark.parametrize("protocol", ["stomp", "amqp"])
def test_a_broker_certificate_from_another_ca_is_refused(
    private_rabbit: PrivateRabbit, protocol: str, request: pytest.FixtureRequest
) -> None:
    url = _tls_url(private_rabbit, protocol, str(private_rabbit.tls_dir / "other-ca.pem"))
    with pytest.raises(Exception) as refused:  # which type it is, is what this test reports
        transport = open_transport(url)
        try:
            transport.send(PACKAGE_REQUESTS, Envelope(b"must not arrive", "text/plain", {}), confirm=True)
        finally:
            transport.close()
    error = refused.value
    chain = [error, *([error.__cause__] if error.__cause__ else [])]
    names_certificate = any("certif" in str(e).lower() for e in chain)
    in_library_root = isinstance(error, MessagingError)
    record(
        Row(
            id=f"tls-wrong-ca-{protocol}",
            item="9 security",
            done=f"{url.split('://', 1)[0]}:// to the private node trusting only a second test CA that did not "
            "sign the broker's certificate",
            expected="the connection is refused (certificate verification on) with a clear error",
            happened=f"refused: {type(error).__name__}: {str(error)[:160]}"
            + ("" if in_library_root else " (not under MessagingError: open finding)")
            + ("" if names_certificate else " (the message does not name the certificate: open finding)"),
            lost=0,
            duplicates=0,
            test=request.node.nodeid,
        )
    )
    assert in_library_root, f"a certificate refusal escaped as {type(error).__name__}: {error}"
    assert names_certificate, f"the error does not name the certificate: {error}"
    text = str(error)
    assert "check the broker runs" not in text and "listens for STOMP" not in text, text
    assert ("ca_file" if protocol == "stomp" else "ssl_ca_certs") in text, text


def test_amqps_ca_file_in_the_url(
    private_rabbit: PrivateRabbit, closing: list[Transport], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever OpenSSL's own variable says, the URL's CA is the one trusted.
    monkeypatch.setenv("SSL_CERT_FILE", str(private_rabbit.tls_dir / "other-ca.pem"))
    ca = private_rabbit.tls_dir / "ca.pem"
    transport = open_transport(
        f"amqps://guest:guest@localhost:{private_rabbit.amqps_port}//?ssl_ca_certs={ca}&ssl_cert_reqs=CERT_REQUIRED"
    )
    closing.append(transport)
    transport.declare(PACKAGE_REQUESTS)
    destination = reply_queue(f"tls-url-{uuid.uuid4().hex[:10]}")
    transport.send(destination, Envelope(b"over TLS", "text/plain", {}), confirm=True)
    batch = transport.read(destination)
    assert [e.body for e in batch.envelopes] == [b"over TLS"]
    batch.ack()
    transport.delete(destination)


def test_amqps_by_ip_address_is_checked_against_the_certificate(
    private_rabbit: PrivateRabbit, closing: list[Transport]
) -> None:
    # The certificate names localhost and 127.0.0.1: the host name check is on, and passes for both.
    ca = private_rabbit.tls_dir / "ca.pem"
    transport = open_transport(f"amqps://guest:guest@127.0.0.1:{private_rabbit.amqps_port}//?ssl_ca_certs={ca}")
    closing.append(transport)
    transport.declare(PACKAGE_REQUESTS)
