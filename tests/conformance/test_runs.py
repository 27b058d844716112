"""The kit against peers in this process (one in-memory broker): good peers pass, broken ones fail named cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdm_messaging.codec import JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE
from tdm_messaging.conformance.fixture_api import DocsetApi
from tdm_messaging.conformance.packager_run import PackagerRun, run_packager_role
from tdm_messaging.conformance.report import Outcome, Report
from tdm_messaging.conformance.server_run import ServerRun, run_server_role
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport
from tests.conformance.peers import (
    BROKEN_PACKAGERS,
    broken_packager,
    client_triggers,
    library_packager,
    reference_packager,
)

pytestmark = [pytest.mark.timeout(60)]


def outcomes(report: Report) -> dict[int, Outcome]:
    return {r.case.number: r.outcome for r in report.results}


def test_the_reference_packager_passes_every_case(api: DocsetApi, archive_dir: Path, archive_base: str) -> None:
    broker = InMemoryBroker()
    report = Report("packager", "inmemory")
    with reference_packager(
        InMemoryTransport(broker), api_base=api.base_url, archive_dir=archive_dir, archive_base=archive_base
    ):
        run_packager_role(InMemoryTransport(broker), api, PackagerRun(timeout=20, fetch_archives=True), report)
    assert set(outcomes(report).values()) == {Outcome.PASS}, report.render()
    assert report.exit_status == 0
    assert len(report.results) == 29


def test_without_fetching_the_archive_cases_are_skipped(api: DocsetApi, archive_dir: Path) -> None:
    broker = InMemoryBroker()
    report = Report("packager", "inmemory")
    with reference_packager(InMemoryTransport(broker), api_base=api.base_url, archive_dir=archive_dir):
        run_packager_role(InMemoryTransport(broker), api, PackagerRun(timeout=20), report)
    skipped = {n for n, o in outcomes(report).items() if o is Outcome.SKIP}
    assert skipped == {8, 17, 29}, report.render()
    assert report.exit_status == 0


@pytest.mark.parametrize("flaw", sorted(BROKEN_PACKAGERS))
def test_a_broken_packager_fails_the_cases_it_breaks(flaw: str, api: DocsetApi) -> None:
    broker = InMemoryBroker()
    report = Report("packager", "inmemory")
    with broken_packager(InMemoryTransport(broker), flaw):
        run_packager_role(InMemoryTransport(broker), api, PackagerRun(timeout=1.5), report)
    failed = {n for n, o in outcomes(report).items() if o is Outcome.FAIL}
    assert BROKEN_PACKAGERS[flaw] <= failed, report.render()
    assert report.exit_status == 1
    assert "FAILED:" in report.render()


def test_a_packager_that_never_answers_fails_and_skips_what_depends_on_answers(api: DocsetApi) -> None:
    report = Report("packager", "inmemory")
    run_packager_role(InMemoryTransport(InMemoryBroker()), api, PackagerRun(timeout=0.5), report)
    got = outcomes(report)
    assert got[1] is Outcome.FAIL and got[10] is Outcome.FAIL
    assert got[2] is Outcome.SKIP
    assert "nothing arrived on package/" in report.results[0].detail
    assert report.exit_status == 1


@pytest.mark.parametrize("content_type", [JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE])
def test_a_packager_on_packager_worker_passes_in_either_format(content_type: str, api: DocsetApi) -> None:
    broker = InMemoryBroker()
    report = Report("packager", "inmemory")
    with library_packager(InMemoryTransport(broker), content_type=content_type):
        run_packager_role(InMemoryTransport(broker), api, PackagerRun(timeout=20), report)
    assert {n for n, o in outcomes(report).items() if o is not Outcome.PASS} == {8, 17, 29}, report.render()
    assert report.exit_status == 0


@pytest.mark.parametrize("content_type", [JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE])
def test_a_packager_whose_worker_lingers_passes_with_its_outcomes_alone(content_type: str, api: DocsetApi) -> None:
    # Every job of the kit ends within an hour's linger: each replies with its complete or failed
    # alone (protocol § 1), and the kit's order cases accept it as they accept accepted-first.
    broker = InMemoryBroker()
    report = Report("packager", "inmemory")
    with library_packager(InMemoryTransport(broker), content_type=content_type, linger=3600):
        run_packager_role(InMemoryTransport(broker), api, PackagerRun(timeout=20), report)
    got = outcomes(report)
    assert got[3] is Outcome.PASS and got[12] is Outcome.PASS, report.render()
    assert {n for n, o in got.items() if o is not Outcome.PASS} == {8, 17, 29}, report.render()
    assert report.exit_status == 0


@pytest.mark.parametrize("content_type", [JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE])
def test_a_server_on_packaging_client_passes_every_case(content_type: str) -> None:
    broker = InMemoryBroker()
    report = Report("server", "inmemory")
    triggers = client_triggers(InMemoryTransport(broker), content_type=content_type)
    run_server_role(InMemoryTransport(broker), InMemoryTransport(broker), triggers, ServerRun("5", timeout=5), report)
    assert set(outcomes(report).values()) == {Outcome.PASS}, report.render()
    assert len(report.results) == 20


def test_a_server_that_never_reads_its_reply_queue_fails_the_poll_case() -> None:
    broker = InMemoryBroker()
    report = Report("server", "inmemory")
    triggers = client_triggers(InMemoryTransport(broker), poll=False)
    run_server_role(InMemoryTransport(broker), InMemoryTransport(broker), triggers, ServerRun("5", timeout=5), report)
    got = outcomes(report)
    assert got[8] is Outcome.FAIL, report.render()
    assert "still in the queue" in next(r.detail for r in report.results if r.case.number == 8)
    # What a queue shows without any poll: the seed replies never count, the garbage stays (SHOULDs: warnings).
    assert got[14] is Outcome.WARN and got[16] is Outcome.WARN
    assert report.exit_status == 1


def test_a_server_that_stores_no_request_copy_fails_case_7() -> None:
    broker = InMemoryBroker()
    report = Report("server", "inmemory")
    triggers = client_triggers(InMemoryTransport(broker), copy=False)
    run_server_role(InMemoryTransport(broker), InMemoryTransport(broker), triggers, ServerRun("5", timeout=5), report)
    assert outcomes(report)[7] is Outcome.FAIL, report.render()
    assert report.exit_status == 1


def test_a_server_that_sends_nothing_fails_case_1_and_skips_the_rest() -> None:
    broker = InMemoryBroker()
    report = Report("server", "inmemory")
    triggers = client_triggers(InMemoryTransport(broker))
    silent = type(triggers)(
        request=type(triggers.poll)("request", lambda docset_id: None), poll=triggers.poll, delete=triggers.delete
    )
    run_server_role(InMemoryTransport(broker), InMemoryTransport(broker), silent, ServerRun("5", timeout=0.5), report)
    got = outcomes(report)
    assert got[1] is Outcome.FAIL
    assert {o for n, o in got.items() if n != 1} == {Outcome.SKIP}
