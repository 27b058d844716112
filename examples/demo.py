"""`make demo`: the whole TDM flow on real processes, from an empty work dir to a validated BagIt archive."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from examples.harness import (
    REPO_ROOT,
    DemoError,
    DumpProgress,
    StackConfig,
    start_stack,
    unique_namespace,
    validate_bag,
)
from tdm_messaging import ProgressBar

__all__ = ["DemoOptions", "main", "options_from", "run_demo", "show_dump_progress"]

log = logging.getLogger(__name__)

DEFAULT_WORK_DIR = REPO_ROOT / ".work" / "demo"
DEFAULT_QUERY = "quantum OR protein OR market OR algorithm OR turbine OR catalyst"


@dataclass(frozen=True)
class DemoOptions:
    """What the demo does; see ``python -m examples.demo --help`` for the matching options and variables.

    Attributes:
        work_dir: recreated on each run; holds the databases, logs, archives and the download.
        broker_url: ``TDM_BROKER_URL``; ``None``: the native SQLite transport in the work dir (no daemon).
        storage: ``TDM_STORAGE``; ``None``: a local directory the server serves.
        packager_env: extra environment of the packager (``TDM_S3_ENDPOINT``, ``AWS_*``, ...).
        documents: synthetic theses to load.
        min_kb, max_kb: the size range of their full texts, KiB.
        query: the docset's full-text query.
        timeout: seconds to wait for the dump.
        max_poll_interval: the cap on a ``Retry-After`` wait.
    """

    work_dir: Path = DEFAULT_WORK_DIR
    broker_url: str | None = None
    storage: str | None = None
    packager_env: Mapping[str, str] | None = None
    documents: int = 40
    min_kb: int = 20
    max_kb: int = 300
    query: str = DEFAULT_QUERY
    timeout: float = 45.0
    max_poll_interval: float = 2.0


def options_from(argv: Sequence[str], environ: Mapping[str, str]) -> DemoOptions:
    """Parse the command line; ``TDM_BROKER_URL`` and ``TDM_STORAGE`` in ``environ`` pick real brokers and S3."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.demo",
        description=(
            "Start the reference server and a packager, load sample theses, create a docset as a miner, "
            "request its dump, download and validate the archive, stop everything. Embedded default: "
            "a SQLite file (sqlite://) and local archives. Environment: TDM_BROKER_URL (e.g. "
            "stomp://guest:guest@127.0.0.1:61613/?dialect=rabbitmq), TDM_STORAGE (s3://bucket/prefix), "
            "TDM_S3_ENDPOINT, TDM_S3_REGION, TDM_URL_TTL, AWS_* credentials."
        ),
    )
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR, help="recreated each run (.work/demo)")
    parser.add_argument("--documents", type=int, default=40, help="synthetic theses to load (default 40)")
    parser.add_argument("--query", default=DEFAULT_QUERY, help=f"the docset's query (default {DEFAULT_QUERY!r})")
    parser.add_argument("--timeout", type=float, default=45.0, help="seconds to wait for the dump (default 45)")
    args = parser.parse_args(list(argv))
    if args.documents < 1:
        parser.error("--documents must be at least 1")
    passed = ("TDM_S3_ENDPOINT", "TDM_S3_REGION", "TDM_URL_TTL", "TDM_LOG_LEVEL")
    return DemoOptions(
        work_dir=args.work_dir,
        broker_url=environ.get("TDM_BROKER_URL") or None,
        storage=environ.get("TDM_STORAGE") or None,
        packager_env={k: environ[k] for k in passed if environ.get(k)},
        documents=args.documents,
        query=args.query,
        timeout=args.timeout,
    )


def show_dump_progress(bar: ProgressBar, progress: DumpProgress) -> None:
    """Draw one poll's answer with the library's progress bar (the style of ``tdm-messaging watch``)."""
    bar.update(
        progress.state,
        percent=progress.percent,
        items_done=progress.items_done,
        items_total=progress.items_total,
        eta_seconds=progress.eta_seconds,
    )


def _describe(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{':' + str(parts.port) if parts.port else ''}{parts.path}"


def run_demo(options: DemoOptions, out: TextIO) -> Path:
    """Run the whole flow once, printing as it goes to ``out``; return the downloaded archive's path.

    Raises:
        DemoError: a step failed (the message says which; ``log_tail`` holds the relevant log's end).
    """
    started = time.monotonic()
    work_dir = options.work_dir.resolve()
    shutil.rmtree(work_dir, ignore_errors=True)
    # A shared broker outlives this run, and the fresh database numbers docsets from 1 again: a
    # namespace of our own keeps every queue of earlier (or concurrent) runs out of this one.
    namespace = unique_namespace("demo")
    config = StackConfig(
        work_dir=work_dir,
        broker_url=options.broker_url,
        storage=options.storage,
        namespace=namespace,
        packagers=1,
        documents=options.documents,
        min_kb=options.min_kb,
        max_kb=options.max_kb,
        packager_env=dict(options.packager_env or {}),
    )
    print(f"work dir   {work_dir}", file=out)
    print(f"broker     {_describe(config.effective_broker_url)} (queue namespace {namespace!r})", file=out)
    print(f"storage    {config.effective_storage}", file=out)
    print(f"loading {options.documents} synthetic theses, starting the server and a packager ...", file=out)
    with start_stack(config) as stack:
        print(f"server     {stack.base_url} (pid {stack.server.process.pid})", file=out)
        print(f"packager   pid {stack.packagers[0].process.pid}", file=out)
        miner = stack.miner()
        try:
            docset = miner.create_docset("demo docset", query=options.query)
            docset_id = docset["id"]
            members = docset.get("member_count")
            print(f"docset {docset_id}: {members} theses match {options.query!r}", file=out)
            if not members:
                raise DemoError(f"the query {options.query!r} matched no thesis; try another --query")
            print(f"requesting the dump: GET {stack.base_url}/api/docsets/{docset_id}/dump", file=out)
            bar = ProgressBar(out, indent="  ")
            try:
                result = miner.wait_for_dump(
                    docset_id,
                    timeout=options.timeout,
                    max_interval=options.max_poll_interval,
                    on_progress=lambda progress: show_dump_progress(bar, progress),
                )
            except DemoError as exc:
                bar.close()
                service = stack.failing_service()
                if service is stack.server:
                    service = stack.packagers[0]  # a dump that never comes is most often the packager's story
                raise DemoError(str(exc), log_name=str(service.log_path), log_tail=service.log_tail()) from exc
            bar.update("complete")
            bar.close()
            print(f"303 See Other -> {_describe(result.archive_url)} after {result.polls} polls", file=out)
            target = work_dir / "download" / (Path(urlsplit(result.archive_url).path).name or "archive.zip")
            digest = miner.download(result.archive_url, target)
        finally:
            miner.close()
        if result.sha256 and digest != result.sha256:
            raise DemoError(f"the download's SHA-256 {digest} differs from the server's {result.sha256}")
        size = target.stat().st_size
        if result.size_bytes is not None and size != result.size_bytes:
            raise DemoError(f"the download has {size} bytes; the server announced {result.size_bytes}")
        report = validate_bag(target)
        if report.documents != members:
            raise DemoError(f"the bag holds {report.documents} documents; the docset has {members}")
    elapsed = time.monotonic() - started
    print("bag valid: every manifest checksum recomputed, Payload-Oxum and tag manifest match", file=out)
    print(
        f"summary    {report.documents} theses, {report.payload_files} files, "
        f"{report.payload_octets / 1e6:.1f} MB of payload in a {size / 1e6:.1f} MB zip",
        file=out,
    )
    print(f"archive    {target}", file=out)
    print(f"sha256     {digest}", file=out)
    print(f"logs       {work_dir / 'logs'}", file=out)
    print(f"done in {elapsed:.1f} s; server and packager stopped", file=out)
    return target


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the demo; return 0 on success, 1 (with an ``error:`` line and a log tail) on failure, 130 on Ctrl-C."""
    options = options_from(sys.argv[1:] if argv is None else argv, os.environ if environ is None else environ)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        run_demo(options, sys.stdout)
    except DemoError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        if exc.log_tail:
            print(f"--- last lines of {exc.log_name} ---\n{exc.log_tail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: everything started was stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
