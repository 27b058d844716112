"""Sample data: the generator is deterministic and realistic; the loader reads a directory or says what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from examples.sampledata import LoadError, generate_documents, read_directory
from examples.sampledata.__main__ import main
from examples.sampledata.generate import DEPARTMENTS
from examples.server import ApiKeySpec, Settings, create_app
from tests.examples.server.conftest import Client


@given(seed=st.integers(0, 10_000), count=st.integers(0, 4))
@settings(max_examples=20, deadline=None)
def test_generator_is_deterministic_and_in_range(seed: int, count: int) -> None:
    first = list(generate_documents(count, seed=seed, min_text_kb=1, max_text_kb=3))
    assert first == list(generate_documents(count, seed=seed, min_text_kb=1, max_text_kb=3))
    assert len(first) == count
    for doc in first:
        assert 1950 <= doc.year <= 2025
        assert doc.department in DEPARTMENTS
        assert doc.degree in DEPARTMENTS[doc.department][0]
        assert doc.authors
        assert all(" " in author for author in doc.authors)
        assert doc.title[0].isupper()
        assert 1024 <= len(doc.full_text.encode()) <= 3 * 1024 + 2000
        assert doc.abstract in doc.full_text


def test_default_sizes_are_tens_to_hundreds_of_kb() -> None:
    sizes = [len(d.full_text.encode()) for d in generate_documents(40, seed=1)]
    assert min(sizes) >= 20 * 1024
    assert max(sizes) <= 300 * 1024 + 4096
    assert max(sizes) > 100 * 1024


def test_different_seeds_differ() -> None:
    assert list(generate_documents(2, seed=1)) != list(generate_documents(2, seed=2))


@pytest.mark.parametrize(("count", "low", "high"), [(-1, 1, 2), (1, 0, 2), (1, 3, 2)])
def test_generator_rejects_bad_arguments(count: int, low: int, high: int) -> None:
    with pytest.raises(ValueError):
        list(generate_documents(count, min_text_kb=low, max_text_kb=high))


def test_generate_command_then_search(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'g.db'}"
    assert main(["generate", "--count", "25", "--seed", "3", "--min-kb", "2", "--max-kb", "8", "--db", db]) == 0
    assert "stored 25 documents" in capsys.readouterr().out
    # Loading the same seed again replaces by handle instead of duplicating.
    assert main(["generate", "--count", "25", "--seed", "3", "--min-kb", "2", "--max-kb", "8", "--db", db]) == 0
    # The broker in tmp_path too: creating a docset prepares its reply queue (the default broker is a file in the cwd).
    broker = f"sqlite:///{tmp_path / 'broker.db'}"
    app = create_app(Settings(db_url=db, archive_dir=tmp_path, api_keys=(ApiKeySpec("a", "k"),), broker_url=broker))
    client = Client(app, "k")
    assert client.get("/api/collections").json()["collections"][0]["document_count"] == 25
    docset = client.post("/api/docsets", {"name": "all", "query": "analysis"}).json()
    assert 0 < docset["member_count"] <= 25


def _write(directory: Path, name: str, meta: object, text: str | None = "Full text.\n") -> None:
    (directory / f"{name}.json").write_text(json.dumps(meta), encoding="utf-8")
    if text is not None:
        (directory / f"{name}.txt").write_text(text, encoding="utf-8")


META = {
    "title": "A thesis",
    "authors": ["Ann Author"],
    "department": "Department of Physics",
    "degree": "Ph.D.",
    "year": 1988,
    "abstract": "Short.",
    "handle": "1721.1/42",
}


def test_load_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path, "one", META, "Résumé of quarks.\n")
    _write(tmp_path, "two", {**META, "handle": "1721.1/43", "text_file": "other.txt"}, None)
    (tmp_path / "other.txt").write_text("Other text", encoding="utf-8")
    docs = read_directory(tmp_path)
    assert [d.full_text for d in docs] == ["Résumé of quarks.\n", "Other text"]
    db = f"sqlite:///{tmp_path / 'l.db'}"
    assert main(["load", str(tmp_path), "--db", db]) == 0
    assert "stored 2 documents" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("meta", "text", "words"),
    [
        ({**META, "year": "soon"}, "t", "year"),
        ({k: v for k, v in META.items() if k != "title"}, "t", "title"),
        ({**META, "authors": []}, "t", "authors"),
        ({**META, "colour": "red"}, "t", "colour"),
        (META, None, "missing"),
        ({**META, "text_file": "../escape.txt"}, "t", "same directory"),
    ],
)
def test_load_names_the_file_and_problem(tmp_path: Path, meta: object, text: str | None, words: str) -> None:
    _write(tmp_path, "bad", meta, text)
    with pytest.raises(LoadError) as info:
        read_directory(tmp_path)
    assert "bad.json" in str(info.value)
    assert words in str(info.value)


def test_load_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["load", str(tmp_path / "absent")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert main(["load", str(tmp_path)]) == 2
    (tmp_path / "x.json").write_text("{not json")
    assert main(["load", str(tmp_path)]) == 2
    assert "x.json" in capsys.readouterr().err
