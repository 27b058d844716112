"""Issue 5, item 9: TLS to the private RabbitMQ node (stomp+ssl://, amqps://) with a generated test CA."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest

from tdm_messaging.destinations import PACKAGE_REQUESTS
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


def _tls_url(node: PrivateRabbit, protocol: str, ca: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A TLS URL to ``node`` trusting only ``ca`` (a PEM file), by host name ``localhost`` (in the certificate)."""
    if protocol == "stomp":
        return f"stomp+ssl://guest:guest@localhost:{node.stomps_port}/?dialect=rabbitmq&ca_file={ca}&connect_timeout=5"
    # The kombu backend has no working URL parameter for the CA yet (see test_amqps_ca_file_in_the_url),
    # so the CA goes through OpenSSL's own variable, which py-amqp's default context reads.
    monkeypatch.setenv("SSL_CERT_FILE", ca)
    return f"amqps://guest:guest@localhost:{node.amqps_port}//?connect_timeout=5"


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
    monkeypatch: pytest.MonkeyPatch,
    closing: list[Transport],
    request: pytest.FixtureRequest,
) -> None:
    url = _tls_url(private_rabbit, protocol, str(private_rabbit.tls_dir / "ca.pem"), monkeypatch)
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
            + ("CA given as ?ca_file=" if protocol == "stomp" else "CA given by SSL_CERT_FILE")
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
    private_rabbit: PrivateRabbit, protocol: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    url = _tls_url(private_rabbit, protocol, str(private_rabbit.tls_dir / "other-ca.pem"), monkeypatch)
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
    if not (names_certificate and in_library_root):
        pytest.xfail(
            f"{protocol}: a certificate refusal is reported as {type(error).__name__}"
            + ("" if in_library_root else ", outside MessagingError")
            + ("" if names_certificate else ", without naming the certificate")
            + "; see docs/reliability.md, open findings"
        )


@pytest.mark.xfail(
    raises=TypeError,
    strict=True,
    reason="kombu backend passes ssl_ca_certs/ssl_cert_reqs (its Redis TLS pass-through) to py-amqp, whose "
    "socket wrapper takes ca_certs/cert_reqs: TypeError, outside MessagingError; see docs/reliability.md",
)
def test_amqps_ca_file_in_the_url(private_rabbit: PrivateRabbit, closing: list[Transport]) -> None:
    ca = private_rabbit.tls_dir / "ca.pem"
    transport = open_transport(
        f"amqps://guest:guest@localhost:{private_rabbit.amqps_port}//?ssl_ca_certs={ca}&ssl_cert_reqs=CERT_REQUIRED"
    )
    closing.append(transport)
    transport.declare(PACKAGE_REQUESTS)
