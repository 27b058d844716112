"""Issue 5, item 9: the logs of a full run (server, packager, library) never show an API key or a broker password."""

from __future__ import annotations

import contextlib
import logging
import secrets
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

from examples.harness import StackConfig, start_stack, validate_bag
from examples.packager.secret import SECRET_NAME
from tdm_messaging.errors import MessagingError
from tdm_messaging.server import PackagingClient
from tdm_messaging.transport import open_transport
from tests.faults.conftest import PrivateRabbit
from tests.faults.reliability import Row, record

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]


def _forms(secret: str) -> set[str]:
    """The spellings a secret could take in a log line: as is, percent-encoded, and its first half."""
    return {secret, quote(secret, safe=""), secret[: len(secret) // 2]}


def test_no_secret_in_any_log_of_a_full_run(
    private_rabbit: PrivateRabbit, tmp_path: Path, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> None:
    user = f"tdmlog{uuid.uuid4().hex[:6]}"
    password = "pw-" + secrets.token_urlsafe(18)
    wrong_password = "wrong-" + secrets.token_urlsafe(18)
    wrong_key = "key-" + secrets.token_urlsafe(18)
    private_rabbit.run("ctl", "add_user", user, password)
    private_rabbit.run("ctl", "set_permissions", "-p", "/", user, ".*", ".*", ".*")
    amqp = private_rabbit.amqp_url().replace("guest:guest@", f"{user}:{quote(password, safe='')}@")
    stomp = private_rabbit.stomp_url().replace("guest:guest@", f"{user}:{quote(password, safe='')}@")
    caplog.set_level(logging.DEBUG)  # every library logger of this process, at its most talkative
    errors: list[str] = []
    try:
        config = StackConfig(
            work_dir=tmp_path / "stack",
            broker_url=amqp,
            queue_prefix=f"log{uuid.uuid4().hex[:8]}-",
            documents=8,
            min_kb=1,
            max_kb=4,
            packager_env={"TDM_LOG_LEVEL": "DEBUG"},
        )
        with start_stack(config) as stack:
            miner = stack.miner()
            docset_id = miner.create_docset("secrets", year_from=1900)["id"]
            result = miner.wait_for_dump(docset_id, timeout=60, max_interval=0.5)
            assert validate_bag_download(miner, result.archive_url, tmp_path) == 8
            assert stack.miner(wrong_key).request("GET", f"/api/docsets/{docset_id}/dump").status_code == 401
            miner.close()
            keys = [stack.miner_key, stack.packager_key]
            archive_secret = (config.archive_dir / SECRET_NAME).read_text(encoding="ascii").strip()
            log_files = sorted(stack.log_dir.glob("*"))
        # The library in this process, over STOMP: a poll, then connections with a wrong password.
        with contextlib.closing(open_transport(stomp)) as transport:
            PackagingClient(transport).status(f"log-{uuid.uuid4().hex[:8]}")
        for url in (stomp, amqp):
            bad = url.replace(quote(password, safe=""), quote(wrong_password, safe=""))
            try:
                open_transport(bad + ("&" if "?" in bad else "?") + "connect_timeout=3").close()
            except MessagingError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        with contextlib.suppress(RuntimeError):
            private_rabbit.run("ctl", "delete_user", user)

    texts = {str(p.name): p.read_text(encoding="utf-8", errors="replace") for p in log_files}
    ours = ("tdm_messaging", "examples", "tests")
    texts["in-process library loggers"] = "\n".join(
        f"{r.name}: {r.getMessage()}" for r in caplog.records if r.name.startswith(ours)
    )
    # The drivers' own loggers (stomp.py, amqp, kombu, urllib3) at DEBUG, which an application may turn on.
    drivers = "\n".join(f"{r.name}: {r.getMessage()}" for r in caplog.records if not r.name.startswith(ours))
    texts["error messages"] = "\n".join(errors)
    secrets_ = {"broker password": password, "wrong broker password": wrong_password, "wrong API key": wrong_key}
    secrets_ |= {f"API key {i + 1}": key for i, key in enumerate(keys)}
    secrets_["archive-name secret"] = archive_secret
    leaks = [
        f"{what} in {where}"
        for what, secret in secrets_.items()
        for where, text in texts.items()
        for form in _forms(secret)
        if form in text
    ]
    driver_leaks = sorted(
        {
            f"{what} in {line.split(':', 1)[0]}'s DEBUG log"
            for what, secret in secrets_.items()
            for line in drivers.splitlines()
            if secret in line or quote(secret, safe="") in line
        }
    )
    lines = sum(t.count("\n") for t in texts.values()) + drivers.count("\n")
    assert len(errors) == 2, errors  # both wrong-password connections were refused
    assert lines > 50, "too little was logged to prove anything"
    assert not leaks, leaks
    record(
        Row(
            id="log-secrets",
            item="9 security",
            done="a full run over AMQP on the private node with a broker user whose password is random: server and "
            "packager processes (packager at DEBUG), a miner's dump, a request with a wrong API key; in this "
            "process, the library at DEBUG polls over STOMP and connects with a wrong password on STOMP and AMQP",
            expected="no API key (miner, packager, wrong), no broker password (right or wrong) and not the secret "
            "that keys archive names in any log line or error message, as is, percent-encoded, or half of it",
            happened=f"{len(texts)} logs searched ({', '.join(sorted(texts))}), {lines} lines, {len(secrets_)} "
            "secrets x 3 "
            "spellings: no match in the process logs, the library's loggers or its errors; both wrong-password "
            "connections refused with a MessagingError"
            + (
                f". Open finding: the drivers' own DEBUG loggers leak ({'; '.join(driver_leaks)}): stomp.py logs "
                "the CONNECT frame with its passcode"
                if driver_leaks
                else "; the drivers' DEBUG loggers showed none either"
            ),
            lost=0,
            duplicates=0,
            test=request.node.nodeid,
        )
    )
    if driver_leaks:
        pytest.xfail(
            "the STOMP backend does not redact the passcode that stomp.py's DEBUG logger prints with the "
            f"CONNECT frame: {driver_leaks}; see docs/reliability.md, open findings"
        )


def validate_bag_download(miner: object, url: str, tmp_path: Path) -> int:
    """Download the archive with ``miner`` and return the number of documents in its bag."""
    target = tmp_path / "dump.zip"
    miner.download(url, target)  # type: ignore[attr-defined]
    return validate_bag(target).documents
