"""Tests for examples.orchestrate: bag validator, progress bar, namespaces, the embedded default broker URL,
and one whole flow on kombu's SQLite transport (the embedded default before ``sqlite://``), so it stays covered."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from examples.demo import ProgressBar
from examples.orchestrate import (
    DemoError,
    DumpProgress,
    StackConfig,
    start_stack,
    unique_namespace,
    validate_bag,
    with_namespace,
)
from examples.packager.bag import BagWriter
from tdm_messaging.transport.namespace import split_namespace

Payload = dict[str, bytes]

payloads = st.dictionaries(
    keys=st.from_regex(r"[a-z0-9]{1,8}/(meta\.json|text\.txt)", fullmatch=True),
    values=st.binary(max_size=2048),
    min_size=1,
    max_size=8,
)


def write_bag(path: Path, payload: Payload) -> Path:
    with path.open("wb") as handle:
        bag = BagWriter(handle, bag_name="docset-5", now=datetime(2030, 1, 1, tzinfo=UTC))
        for name, body in payload.items():
            bag.add_file(name, [body])
        bag.finish({"TDM-Docset-Id": "5"})
    return path


def rewrite(source: Path, target: Path, change: Callable[[str, bytes], bytes | None]) -> Path:
    """Copy a zip, passing each member through ``change`` (``None`` drops it)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            body = change(info.filename, old.read(info))
            if body is not None:
                new.writestr(info.filename, body)
    return target


@settings(max_examples=40, deadline=None)
@given(payload=payloads)
def test_every_bag_the_packager_writes_is_valid(tmp_path_factory: pytest.TempPathFactory, payload: Payload) -> None:
    path = write_bag(tmp_path_factory.mktemp("bag") / "bag.zip", payload)
    report = validate_bag(path)
    assert report.bag_name == "docset-5"
    assert report.payload_files == len(payload)
    assert report.payload_octets == sum(len(b) for b in payload.values())
    assert report.documents == len({name.split("/")[0] for name in payload})
    assert report.bag_info["TDM-Docset-Id"] == "5"


@settings(max_examples=40, deadline=None)
@given(payload=payloads, data=st.data())
def test_any_changed_payload_byte_is_caught(
    tmp_path_factory: pytest.TempPathFactory, payload: Payload, data: st.DataObject
) -> None:
    victim = data.draw(st.sampled_from(sorted(name for name, body in payload.items() if body) or ["-"]))
    if victim == "-":
        return  # every file is empty: nothing to flip
    index = data.draw(st.integers(0, len(payload[victim]) - 1))
    directory = tmp_path_factory.mktemp("bag")
    good = write_bag(directory / "good.zip", payload)

    def flip(name: str, body: bytes) -> bytes:
        if name != f"docset-5/data/{victim}":
            return body
        return body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]

    bad = rewrite(good, directory / "bad.zip", flip)
    with pytest.raises(DemoError, match=re.escape(f"checksum mismatch for data/{victim}")):
        validate_bag(bad)


def test_an_unlisted_or_missing_payload_file_is_caught(tmp_path: Path) -> None:
    good = write_bag(tmp_path / "good.zip", {"1/text.txt": b"one", "2/text.txt": b"two"})
    with zipfile.ZipFile(good, "a") as archive:
        archive.writestr("docset-5/data/3/text.txt", b"smuggled")
    with pytest.raises(DemoError, match=r"unlisted: \['data/3/text.txt'\]"):
        validate_bag(good)
    fresh = write_bag(tmp_path / "fresh.zip", {"1/text.txt": b"one", "2/text.txt": b"two"})
    dropped = rewrite(fresh, tmp_path / "dropped.zip", lambda n, b: None if n.endswith("2/text.txt") else b)
    with pytest.raises(DemoError, match=r"listed but absent: \['data/2/text.txt'\]"):
        validate_bag(dropped)


def test_a_wrong_payload_oxum_is_caught(tmp_path: Path) -> None:
    good = write_bag(tmp_path / "good.zip", {"1/text.txt": b"one"})

    def lie(name: str, body: bytes) -> bytes:
        return body.replace(b"Payload-Oxum: 3.1", b"Payload-Oxum: 4.1") if name.endswith("bag-info.txt") else body

    with pytest.raises(DemoError, match=r"Payload-Oxum is '4.1', the payload is 3.1"):
        validate_bag(rewrite(good, tmp_path / "bad.zip", lie))


def test_a_changed_tag_file_is_caught(tmp_path: Path) -> None:
    good = write_bag(tmp_path / "good.zip", {"1/text.txt": b"one"})

    def edit(name: str, body: bytes) -> bytes:
        return body + b"Contact-Name: someone\n" if name.endswith("bag-info.txt") else body

    with pytest.raises(DemoError, match=r"tag file bag-info\.txt"):
        validate_bag(rewrite(good, tmp_path / "bad.zip", edit))


def test_not_a_zip_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "x.zip"
    path.write_bytes(b"<html>not found</html>")
    with pytest.raises(DemoError, match="is not a readable zip archive"):
        validate_bag(path)


def test_progress_bar_draws_one_line_per_change_off_a_terminal() -> None:
    out = io.StringIO()
    bar = ProgressBar(out, width=10)
    bar.update(DumpProgress("requested", None, None, None, None, 1.0))
    bar.update(DumpProgress("requested", None, None, None, None, 1.0))  # unchanged: not drawn again
    bar.update(DumpProgress("in_progress", 50.0, 5, 10, 2.0, 1.0))
    bar.done()
    lines = out.getvalue().splitlines()
    assert lines == [
        "  [..........]   0.0% requested",
        "  [#####.....]  50.0% in_progress 5/10, about 2 s left",
        "  [##########] 100.0% complete",
    ]


@pytest.mark.parametrize(
    "url",
    [
        "amqp://guest:guest@127.0.0.1:5672//",
        "stomp://127.0.0.1:61623/?dialect=activemq",
        "redis://127.0.0.1:6379/15?",
        "sqla+sqlite:////tmp/broker.db",
        "sqlite:////tmp/broker.db?visibility_timeout=3",
    ],
)
def test_with_namespace_adds_the_parameter_and_keeps_the_rest(url: str) -> None:
    namespaced = with_namespace(url, "e2e-0a1b")
    rest, namespace = split_namespace(namespaced)
    assert namespace == "e2e-0a1b"
    assert rest == url.rstrip("?")


def test_with_namespace_nests_inside_a_namespace_the_url_already_names() -> None:
    namespaced = with_namespace("amqp://h//?namespace=prod&heartbeat=2", "demo-ff")
    assert split_namespace(namespaced) == ("amqp://h//?heartbeat=2", "prod-demo-ff")


@given(st.lists(st.sampled_from(["demo", "e2e", "x"]), min_size=2, max_size=20))
@settings(max_examples=20)
def test_unique_namespaces_are_valid_and_never_repeat(stems: list[str]) -> None:
    names = [unique_namespace(stem) for stem in stems]
    assert len(set(names)) == len(names)
    for name, stem in zip(names, stems, strict=True):
        assert name.startswith(stem + "-")
        assert split_namespace(with_namespace("memory://", name))[1] == name


def test_the_embedded_default_is_the_native_sqlite_file(tmp_path: Path) -> None:
    config = StackConfig(work_dir=tmp_path, namespace="e2e-0a1b")
    assert config.effective_broker_url == f"sqlite:///{tmp_path.resolve() / 'broker.db'}?namespace=e2e-0a1b"


@pytest.mark.timeout(120)
def test_the_whole_flow_still_runs_on_kombus_sqlite(tmp_path: Path) -> None:
    pytest.importorskip("kombu")
    config = StackConfig(
        work_dir=tmp_path / "stack",
        broker_url=f"sqla+sqlite:///{(tmp_path / 'kombu-broker.db').resolve()}",
        namespace=unique_namespace("e2e-kombu"),
        documents=6,
        min_kb=1,
        max_kb=4,
    )
    with start_stack(config) as stack:
        miner = stack.miner()
        docset_id = miner.create_docset("kombu sqlite", year_from=1900)["id"]
        result = miner.wait_for_dump(docset_id, timeout=60, max_interval=0.5)
        archive = tmp_path / "archive.zip"
        assert miner.download(result.archive_url, archive) == result.sha256
        miner.close()
    assert validate_bag(archive).documents == 6
