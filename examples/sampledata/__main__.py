"""Command line: `python -m examples.sampledata generate|load ... --db sqlite:///path.db` fills a server database."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from examples.sampledata.generate import generate_documents
from examples.sampledata.load import LoadError, read_directory
from examples.server.db import Database, DatabaseError
from examples.server.repo import NewDocument, insert_document


def store(db_url: str, documents: Iterable[NewDocument]) -> tuple[int, int]:
    """Insert ``documents`` in one transaction (migrating the database first); return (count, text bytes)."""
    db = Database(db_url)
    db.migrate()
    count = size = 0
    with db.connect() as conn:
        for doc in documents:
            insert_document(conn, doc)
            count += 1
            size += len(doc.full_text.encode("utf-8"))
    db.close()
    return count, size


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 on bad input, with the reason and no traceback)."""
    parser = argparse.ArgumentParser(prog="python -m examples.sampledata", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    default_db = os.environ.get("TDM_SERVER_DB", "sqlite:///tdm-server.db")
    gen = sub.add_parser("generate", help="write N synthetic theses")
    gen.add_argument("--count", type=int, required=True)
    gen.add_argument("--seed", type=int, default=0, help="same seed, same documents")
    gen.add_argument("--min-kb", type=int, default=20, help="smallest full text, KiB")
    gen.add_argument("--max-kb", type=int, default=300, help="largest full text, KiB")
    gen.add_argument("--collection", default="theses")
    gen.add_argument("--db", default=default_db, help="sqlite:///path.db [TDM_SERVER_DB]")
    load = sub.add_parser("load", help="load a directory of <name>.json + <name>.txt theses")
    load.add_argument("directory", type=Path)
    load.add_argument("--db", default=default_db, help="sqlite:///path.db [TDM_SERVER_DB]")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        if args.command == "generate":
            docs: Iterable[NewDocument] = generate_documents(
                args.count, seed=args.seed, min_text_kb=args.min_kb, max_text_kb=args.max_kb, collection=args.collection
            )
        else:
            docs = read_directory(args.directory)
        count, size = store(args.db, docs)
    except (LoadError, DatabaseError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - started
    print(f"stored {count} documents ({size / 1e6:.1f} MB of text) in {args.db} in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
