"""Tests for examples.packager.bag: a zipped BagIt bag whose every checksum holds, written in bounded memory."""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import bagit
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from examples.packager.bag import ZIP_EPOCH, BagWriter, encode_manifest_path
from tdm_messaging.errors import LocalProtocolError
from tests.bagit_check import bagit_validate
from tests.examples.packager.stub_api import generated_text, validate_bag

NOW = datetime(2024, 5, 17, 12, 30, tzinfo=UTC)


def test_a_bag_validates_and_says_what_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "bag.zip"
    with path.open("wb") as handle:
        bag = BagWriter(handle, bag_name="docset-5", now=NOW)
        digest = bag.add_file("1/text.txt", [b"hello ", b"world"])
        bag.add_file("1/meta.json", [b"{}\n"])
        bag.add_file("2/text.txt", generated_text("2", 200_000))
        bag.finish({"Source-Organization": "MIT Libraries", "External-Identifier": "http://x/api/docsets/5"})
    assert digest == hashlib.sha256(b"hello world").hexdigest()
    found = validate_bag(str(path))
    assert found["root"] == "docset-5"
    assert found["payload"] == ["data/1/meta.json", "data/1/text.txt", "data/2/text.txt"]
    assert found["info"]["Payload-Oxum"] == f"{11 + 3 + 200_000}.3"
    assert found["info"]["Bagging-Date"] == "2024-05-17"
    assert found["info"]["Source-Organization"] == "MIT Libraries"
    assert bagit_validate(path) == 3
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist()[0] == "docset-5/bagit.txt"
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())
        assert zf.getinfo("docset-5/data/2/text.txt").compress_size < 200_000 / 10


def test_an_empty_bag_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "empty.zip"
    with path.open("wb") as handle:
        bag = BagWriter(handle, bag_name="docset-empty", now=NOW)
        bag.finish({})
    assert validate_bag(str(path))["info"]["Payload-Oxum"] == "0.0"
    assert bagit_validate(path) == 0


def test_a_tampered_bag_fails_validation(tmp_path: Path) -> None:
    path = tmp_path / "bag.zip"
    with path.open("wb") as handle:
        bag = BagWriter(handle, bag_name="b", now=NOW)
        bag.add_file("1/text.txt", [b"original"])
        bag.finish({})
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            body = b"changed!" if info.filename.endswith("text.txt") else src.read(info)
            dst.writestr(info.filename, body)
    with pytest.raises(AssertionError, match="checksum"):
        validate_bag(str(tampered))
    with pytest.raises(bagit.BagValidationError, match=re.escape("data/1/text.txt sha256 validation failed")):
        bagit_validate(tampered)


@pytest.mark.parametrize("path", ["../x", "/abs", "a\\b", "a/../../b", "", "a\x00b", "a/./b"])
def test_unsafe_payload_paths_are_refused(path: str) -> None:
    bag = BagWriter(io.BytesIO(), bag_name="b", now=NOW)
    with pytest.raises(LocalProtocolError):
        bag.add_file(path, [b"x"])
    bag.abort()


@pytest.mark.parametrize("name", ["..", "a/b", "", "/x", "a\\b"])
def test_unsafe_bag_names_are_refused(name: str) -> None:
    with pytest.raises(LocalProtocolError):
        BagWriter(io.BytesIO(), bag_name=name)


@pytest.mark.parametrize("info", [{"Label": "two\nlines"}, {"Bad: label": "x"}, {"X": "carriage\rreturn"}])
def test_bag_info_injection_is_refused(info: dict[str, str]) -> None:
    bag = BagWriter(io.BytesIO(), bag_name="b", now=NOW)
    with pytest.raises(LocalProtocolError):
        bag.finish(info)
    bag.abort()


def test_manifest_paths_are_percent_encoded() -> None:
    assert encode_manifest_path("data/100%/a\nb\rc") == "data/100%25/a%0Ab%0Dc"


def _bag_bytes(payload: list[tuple[str, bytes]], **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    bag = BagWriter(buffer, bag_name="docset-7", **kwargs)  # type: ignore[arg-type]
    for path, body in payload:
        bag.add_file(path, [body])
    bag.finish({"TDM-Docset-Id": "7"})
    return buffer.getvalue()


def test_an_undated_bag_has_fixed_member_stamps_and_no_bagging_date() -> None:
    data = _bag_bytes([("1/text.txt", b"one"), ("1/meta.json", b"{}")])
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            assert info.date_time == ZIP_EPOCH, info.filename
            assert info.create_system == 3, info.filename
            assert info.external_attr >> 16 == 0o644, info.filename
        assert b"Bagging-Date" not in zf.read("docset-7/bag-info.txt")


def test_an_empty_bag_directory_entry_is_stamped_too() -> None:
    with zipfile.ZipFile(io.BytesIO(_bag_bytes([]))) as zf:
        directory = zf.getinfo("docset-7/data/")
    assert directory.date_time == ZIP_EPOCH and directory.create_system == 3


@settings(max_examples=25, deadline=None)
@given(
    payload=st.lists(
        st.tuples(st.text(alphabet="abcdefghij", min_size=1, max_size=8), st.binary(max_size=2000)),
        unique_by=lambda item: item[0],
        max_size=5,
    )
)
def test_the_same_payload_always_gives_the_same_bytes(payload: list[tuple[str, bytes]]) -> None:
    files = [(f"{name}/text.txt", body) for name, body in payload]
    assert _bag_bytes(files) == _bag_bytes(files)
