"""The operator subcommands (dead-letters list/show/replay/purge, queues) on SQLite and on the real brokers."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tdm_messaging import cli, cli_ops
from tdm_messaging.cli_broker import BROKER_URL_ENV
from tdm_messaging.dead_letter import dead_letter
from tdm_messaging.dead_letters import letter_id
from tdm_messaging.destinations import DEAD_LETTER, DELETE_REQUESTS, PACKAGE_REQUESTS, reply_queue
from tdm_messaging.envelope import Envelope
from tdm_messaging.headers import DEAD_LETTER_REASON
from tdm_messaging.testing import InMemoryBroker, InMemoryTransport
from tdm_messaging.transport import open_transport
from tests.conftest import broker_url
from tests.transport.conftest import unique_namespace, with_query

BODIES = (b'{"docset": "5"}', "t\u00e9l\u00e9charg\u00e9 \U0001f4da".encode(), b"\xff\xfe not utf-8")


def _park_three(url: str) -> list[str]:
    """Three dead letters from three queues; their ids, oldest first."""
    with open_transport(url) as transport:
        for body, source, reason in zip(
            BODIES,
            (PACKAGE_REQUESTS, DELETE_REQUESTS, reply_queue("7")),
            ("bad json", "no such\ndocset", "x" * 50),
            strict=True,
        ):
            headers = {"tdm-type": "package-request", "tdm-docset-id": "5"} if source is PACKAGE_REQUESTS else {}
            dead_letter(transport, Envelope(body, "application/json", headers), source=source, reason=reason)
        with transport.read(DEAD_LETTER) as batch:
            return [letter_id(e) for e in batch.envelopes]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv(BROKER_URL_ENV, raising=False)
    return f"sqlite:///{tmp_path}/broker.db"


def _cleanup(url: str) -> None:
    with contextlib.suppress(Exception), open_transport(url) as transport:
        for queue in (DEAD_LETTER, PACKAGE_REQUESTS, DELETE_REQUESTS, reply_queue("7")):
            transport.delete(queue)


@pytest.fixture(params=["sqlite-native", "rabbitmq-amqp", "rabbitmq-stomp", "activemq-stomp", "redis"])
def any_url(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[str]:
    """A broker URL of a namespace of this test's own (the brokers are shared)."""
    if request.param == "sqlite-native":
        yield sqlite_url
        return
    url = with_query(broker_url(request.param), namespace=unique_namespace())
    try:
        yield url
    finally:
        _cleanup(url)


def test_list_show_replay_purge_end_to_end(any_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    ids = _park_three(any_url)
    code, out, err = _run(capsys, "dead-letters", "list", "--broker", any_url)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "SOURCE", "TYPE", "DOCSET", "SIZE", "REASON"]
    assert [line.split()[0] for line in lines[1:]] == ids  # ids stable across reads, oldest first
    assert lines[1].split()[1:5] == ["docsets/package", "package-request", "5", str(len(BODIES[0]))]
    assert lines[2].endswith("no such docset")  # one line whatever the reason holds

    code, out, _ = _run(capsys, "dead-letters", "list", "--json", "--broker", any_url)
    listed = json.loads(out)
    assert [x["id"] for x in listed] == ids and listed[2]["source"] == "package/7"

    code, out, _ = _run(capsys, "dead-letters", "show", ids[1][:8], "--broker", any_url)
    shown = json.loads(out)
    assert shown["body"] == BODIES[1].decode() and shown["headers"][DEAD_LETTER_REASON] == "no such docset"
    code, out, _ = _run(capsys, "dead-letters", "show", ids[2], "--broker", any_url)
    assert "body_base64" in json.loads(out)

    code, out, err = _run(capsys, "dead-letters", "replay", ids[0], "--broker", any_url)
    assert code == 0 and f"replayed {ids[0]} to docsets/package" in err
    with open_transport(any_url) as transport, transport.read(PACKAGE_REQUESTS) as batch:
        assert [e.body for e in batch.envelopes] == [BODIES[0]]
        assert DEAD_LETTER_REASON not in batch.envelopes[0].headers
        batch.ack()

    code, out, _ = _run(capsys, "queues", "--json", "--broker", any_url)
    depths = json.loads(out)
    assert set(depths) == {"docsets/package", "docsets/delete", "docsets/dead-letter"}
    if any_url.startswith("stomp"):
        assert depths["docsets/dead-letter"] is None
    else:
        assert depths["docsets/dead-letter"] == 2 and depths["docsets/package"] == 0

    code, out, err = _run(capsys, "dead-letters", "purge", "--yes", "--broker", any_url)
    assert code == 0 and "purged 2" in err
    code, out, _ = _run(capsys, "dead-letters", "list", "--json", "--broker", any_url)
    assert json.loads(out) == []


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "code", "left"), [("y\n", 0, 0), ("\n", 1, 3), ("no\n", 1, 3)])
def test_purge_asks_on_a_terminal(  # noqa: PLR0917 - pytest passes fixtures and parameters by name
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    answer: str,
    code: int,
    left: int,
) -> None:
    _park_three(sqlite_url)
    monkeypatch.setattr("sys.stdin", _Terminal(answer))
    result, _, err = _run(capsys, "dead-letters", "purge", "--broker", sqlite_url)
    assert result == code and "remove 3 dead letter(s) from docsets/dead-letter for good? [y/N]" in err
    with open_transport(sqlite_url) as transport:
        assert transport.depth(DEAD_LETTER) == left


def test_purge_without_a_terminal_or_yes_refuses(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _park_three(sqlite_url)
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # piped "y" is not a confirmation
    code, _, err = _run(capsys, "dead-letters", "purge", "--broker", sqlite_url)
    assert code == 2 and err.count("\n") == 1 and "pass --yes" in err
    with open_transport(sqlite_url) as transport:
        assert transport.depth(DEAD_LETTER) == 3


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["dead-letters", "show", "12"], "at least 6"),
        (["dead-letters", "show", "abcdef0123"], "no dead letter abcdef0123"),
        (["dead-letters", "replay", "not-hex!"], "not a dead-letter id"),
        (["queues", "package/a b"], "invalid docset id"),
        (["queues", "elsewhere"], "not a destination of this protocol"),
        (["dead-letters", "list", "--limit", "0"], "at least 1"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    code, out, err = _run(capsys, *argv, "--broker", sqlite_url)
    assert code == 2 and out == ""
    assert words in err and "Traceback" not in err
    # Our errors are one "error:" line; argparse's own (a bad --limit) end in "PROG: error: ..." after usage.
    assert len([line for line in err.splitlines() if "error: " in line]) == 1, err


def test_no_broker_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(BROKER_URL_ENV, raising=False)
    code, _, err = _run(capsys, "queues")
    assert code == 2 and err == f"error: no broker given: pass --broker URL or set {BROKER_URL_ENV}\n"


def test_the_broker_url_comes_from_the_environment(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(BROKER_URL_ENV, sqlite_url)
    code, out, _ = _run(capsys, "queues", "package/7")
    assert code == 0 and out.split() == ["QUEUE", "DEPTH", "package/7", "0"]


def test_an_unreachable_broker_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "queues", "--broker", "amqp://guest:s3cret@127.0.0.1:1//?connect_timeout=2")
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and "s3cret" not in err


def test_stomp_queues_says_it_cannot_count(capsys: pytest.CaptureFixture[str]) -> None:
    url = with_query(broker_url("rabbitmq-stomp"), namespace=unique_namespace())
    code, out, err = _run(capsys, "queues", "--broker", url)
    assert code == 0 and out.splitlines()[1].split() == ["docsets/package", "unknown"]
    assert "cannot say a queue's depth" in err


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=st.lists(st.tuples(st.text(max_size=30), st.text(max_size=30), st.binary(max_size=40)), max_size=4))
def test_the_table_keeps_one_line_per_letter_whatever_the_headers_hold(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fields: list[tuple[str, str, bytes]]
) -> None:
    """Headers of a foreign message may hold any text, line breaks included: one row each all the same."""
    broker = InMemoryBroker()
    monkeypatch.setattr(cli_ops, "open_transport", lambda url: InMemoryTransport(broker))
    with InMemoryTransport(broker) as transport:
        for reason, docset, body in fields:
            headers = {DEAD_LETTER_REASON: reason, "tdm-docset-id": docset, "tdm-type": docset[::-1]}
            transport.send(DEAD_LETTER, Envelope(body, "application/octet-stream", headers))
    code, out, _ = _run(capsys, "dead-letters", "list", "--broker", "inmemory://x")
    assert code == 0
    rows = out.splitlines()
    assert len(rows) == 1 + len(fields)
    expected = [letter_id(e) for e in broker.messages(DEAD_LETTER)]
    assert [row.split(" ", 1)[0] for row in rows[1:]] == expected
