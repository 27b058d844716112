"""Reliability with real processes: two packagers share one queue, a server crash loses nothing, two pollers agree."""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import pytest

from examples.harness import DumpResult, Service, read_log, validate_bag
from tests.bagit_check import bagit_validate
from tests.e2e.conftest import EMBEDDED, MakeStack

pytestmark = [pytest.mark.timeout(180)]


def wait_for_log(service: Service, pattern: str, *, timeout: float = 30.0) -> None:
    """Wait until ``service``'s log matches ``pattern``."""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, service.log_text()):
        assert service.running, f"{service.name} died:\n{service.log_tail()}"
        assert time.monotonic() < deadline, f"{service.name} never logged {pattern!r}:\n{service.log_tail()}"
        time.sleep(0.05)


@pytest.mark.broker
@pytest.mark.parametrize("broker", [EMBEDDED, "rabbitmq-amqp"])
def test_two_packagers_share_one_queue(make_stack: MakeStack, broker: str) -> None:
    # Six docsets of 8 theses of 20-60 KiB: each job lasts long enough for the other packager to take the next.
    stack = make_stack(broker, packagers=2, documents=48, min_kb=20, max_kb=60)
    prefix = stack.config.queue_prefix
    miner = stack.miner()
    ids = [miner.create_docset(f"part {n}", document_ids=list(range(n * 8 + 1, n * 8 + 9)))["id"] for n in range(6)]
    for docset_id in ids:  # request every dump before waiting for any
        assert miner.request("GET", f"/api/docsets/{docset_id}/dump").status_code in (202, 303)
    results = {docset_id: miner.wait_for_dump(docset_id, timeout=90, max_interval=0.5) for docset_id in ids}
    assert len({r.archive_url for r in results.values()}) == len(ids)

    built_by: dict[str, list[str]] = {}
    for packager in stack.packagers:
        for docset in re.findall(rf"package job for docset {re.escape(prefix)}(\d+) complete", packager.log_text()):
            built_by.setdefault(docset, []).append(packager.name)
    assert sorted(built_by, key=int) == [str(i) for i in ids], built_by
    assert all(len(names) == 1 for names in built_by.values()), f"a docset was packaged twice: {built_by}"
    workers = {names[0] for names in built_by.values()}
    assert workers == {"packager-1", "packager-2"}, f"only {workers} did any work: {built_by}"
    miner.close()


@pytest.mark.broker
@pytest.mark.parametrize("broker", [EMBEDDED, "rabbitmq-stomp"])
def test_server_crash_mid_job_loses_nothing(make_stack: MakeStack, broker: str, tmp_path: object) -> None:
    stack = make_stack(broker, documents=30, min_kb=20, max_kb=80)
    prefix = stack.config.queue_prefix
    packager = stack.packagers[0]
    miner = stack.miner()
    docset_id = miner.create_docset("crash", year_from=1900)["id"]
    first = miner.request("GET", f"/api/docsets/{docset_id}/dump")
    assert first.status_code == 202, first.text
    miner.close()

    # Freeze the packager once it has taken the job, so the crash lands mid-job for sure.
    wait_for_log(packager, rf"package job for docset {re.escape(prefix)}{docset_id} ")
    os.kill(packager.process.pid, signal.SIGSTOP)
    try:
        assert f"docset {prefix}{docset_id} complete" not in packager.log_text()
        old_pid = stack.server.process.pid
        stack.restart_server(crash=True)  # SIGKILL: no clean shutdown, then a new process on the same DB and port
        assert stack.server.process.pid != old_pid
    finally:
        os.kill(packager.process.pid, signal.SIGCONT)

    miner = stack.miner()
    result = miner.wait_for_dump(docset_id, timeout=60, max_interval=0.5)
    target = stack.config.work_dir / "after-crash.zip"
    assert miner.download(result.archive_url, target) == result.sha256
    assert validate_bag(target).documents == 30
    assert bagit_validate(target) == 60
    miner.close()
    # The new server found the status on the broker: it never requested the package again.
    assert "requested the package" not in read_log(stack.server.log_path)
    # One request, run to completion once. The packager fetches from the server it was frozen
    # with, so the crash may cut a fetch; that job is then retried as the same request (attempt
    # 2), which is the protocol working, not a duplicate request.
    jobs = re.findall(
        rf"package job for docset {re.escape(prefix)}{docset_id} \(request (\S+), attempt (\d+)/", packager.log_text()
    )
    assert len({request for request, _ in jobs}) == 1, jobs
    assert [int(attempt) for _, attempt in jobs] == list(range(1, len(jobs) + 1)), jobs
    assert len(re.findall(rf"docset {re.escape(prefix)}{docset_id} complete", packager.log_text())) == 1


def test_one_dump_polled_by_two_clients_at_once(make_stack: MakeStack) -> None:
    stack = make_stack(EMBEDDED, documents=20, min_kb=10, max_kb=40)
    prefix = stack.config.queue_prefix
    owner = stack.miner()
    docset_id = owner.create_docset("shared", year_from=1900)["id"]
    owner.close()
    barrier = threading.Barrier(2)
    results: list[DumpResult] = []
    errors: list[BaseException] = []

    def client() -> None:
        miner = stack.miner()  # same owner, two sessions: two browser tabs, or a script run twice
        try:
            barrier.wait(timeout=10)
            results.append(miner.wait_for_dump(docset_id, timeout=60, max_interval=0.3, min_interval=0.05))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            miner.close()

    threads = [threading.Thread(target=client) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not errors, errors
    assert len(results) == 2
    assert results[0].archive_url == results[1].archive_url
    assert results[0].sha256 == results[1].sha256

    # One server process serialises the polls of a docset (docs/server.md): however the two
    # clients' polls overlap, the second sees the first one's request, so exactly one is sent.
    requests_sent = read_log(stack.server.log_path).count(f"requested the package of docset {prefix}{docset_id} ")
    packager_log = stack.packagers[0].log_text()
    jobs = len(re.findall(rf"package job for docset {re.escape(prefix)}{docset_id} \(", packager_log))
    builds = len(re.findall(rf"built docset-{re.escape(prefix)}{docset_id}--", packager_log))
    assert requests_sent == 1, f"overlapping polls of one docset sent {requests_sent} package requests"
    assert jobs == 1
    assert builds == 1
