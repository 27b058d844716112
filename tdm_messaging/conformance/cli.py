"""The ``tdm-messaging conformance`` command: run the kit against a packager or a server under test."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from typing import Any

from tdm_messaging.errors import ConfigurationError, TransportError
from tdm_messaging.transport.base import Transport
from tdm_messaging.transport.urls import redact_url, scrub

__all__ = ["register"]

_BROKER_ENV = "TDM_BROKER_URL"
_DEFAULT_API_LISTEN = "127.0.0.1:8790"


def register(subparsers: Any) -> None:
    """Add ``conformance`` to the ``tdm-messaging`` subcommands."""
    cmd = subparsers.add_parser(
        "conformance",
        help="check a packager or a server of another team against the protocol (see docs/conformance.md)",
        description="Play one side of the protocol against the other side under test and print a report of "
        "numbered cases, each with the docs/protocol.md sections it checks. Exit 0 when no MUST case failed, "
        "1 when one did, 2 on bad arguments or an unusable broker.",
    )
    cmd.add_argument("--role", required=True, choices=("packager", "server"), help="the role of the peer under test")
    cmd.add_argument("--broker", help=f"the broker URL the peer uses, namespace included (default: ${_BROKER_ENV})")
    cmd.add_argument(
        "--timeout", type=_seconds, default=60.0, help="seconds to wait for the peer at each step (default: 60)"
    )
    cmd.add_argument("--json", action="store_true", help="print the report as JSON")
    packager = cmd.add_argument_group("--role packager (the kit plays the server)")
    packager.add_argument(
        "--api-listen",
        default=_DEFAULT_API_LISTEN,
        metavar="HOST:PORT",
        help=f"where the kit serves the docsets the packager fetches (default: {_DEFAULT_API_LISTEN}); "
        "give the packager this as its API base",
    )
    packager.add_argument("--api-url", help="the URL the packager reaches --api-listen at (default: http://HOST:PORT)")
    packager.add_argument(
        "--fetch-archives",
        action="store_true",
        help="download each archive: check its size and sha256, and 404 after delete",
    )
    packager.add_argument(
        "--run-id", default="", help="the stem of the docset ids the kit uses (default: conf-<random>)"
    )
    server = cmd.add_argument_group("--role server (the kit plays the packager)")
    server.add_argument("--docset", help="the docset the triggers act on (required with --role server)")
    for action, example in (
        ("request", "curl -fsS -X POST http://server/api/docsets/{docset}/dump"),
        ("poll", "curl -sS -o /dev/null http://server/api/docsets/{docset}/dump"),
        ("delete", "curl -fsS -X DELETE http://server/api/docsets/{docset}/dump"),
    ):
        server.add_argument(
            f"--trigger-{action}",
            metavar="COMMAND",
            help=f"shell command that makes the server {action} ({{docset}} is replaced), e.g. '{example}'; "
            "without it the kit prints what to do and waits",
        )
    server.add_argument(
        "--trigger-timeout",
        type=_seconds,
        default=30.0,
        help="seconds before a trigger command is killed (default: 30)",
    )
    cmd.set_defaults(func=_cmd_conformance)


def _cmd_conformance(args: argparse.Namespace) -> int:
    from tdm_messaging.conformance.report import Report  # noqa: PLC0415 - the kit loads only when it runs

    url = args.broker or os.environ.get(_BROKER_ENV)
    if not url:
        raise ConfigurationError(f"no broker given: pass --broker URL or set {_BROKER_ENV}")
    report = Report(args.role, redact_url(url))
    run = _run_packager_role if args.role == "packager" else _run_server_role
    stomp_log = logging.getLogger("stomp.py")
    level = stomp_log.level
    if not args.verbose:  # stomp.py logs a failed connect at WARNING: the error line says it once
        stomp_log.setLevel(logging.ERROR)
    try:
        run(args, url, report)
    except TransportError as exc:
        raise TransportError(f"broker {redact_url(url)}: {scrub(str(exc), url)}") from exc
    finally:
        stomp_log.setLevel(level)
    sys.stdout.write(report.to_json() if args.json else report.render())
    return report.exit_status


def _run_packager_role(args: argparse.Namespace, url: str, report: Any) -> None:
    from tdm_messaging.conformance.fixture_api import DocsetApi, parse_listen  # noqa: PLC0415
    from tdm_messaging.conformance.packager_run import PackagerRun, run_packager_role  # noqa: PLC0415

    if args.docset or args.trigger_request or args.trigger_poll or args.trigger_delete:
        raise ConfigurationError("--docset and --trigger-* are for --role server; a packager needs no triggers")
    host, port = parse_listen(args.api_listen)
    run = PackagerRun(timeout=args.timeout, fetch_archives=args.fetch_archives, run_id=args.run_id)
    if args.run_id:
        from tdm_messaging.destinations import validate_docset_id  # noqa: PLC0415

        validate_docset_id(args.run_id + "-after-poison")
    with DocsetApi(host, port, public_url=args.api_url) as api, _open(url) as transport:
        run_packager_role(transport, api, run, report)


def _run_server_role(args: argparse.Namespace, url: str, report: Any) -> None:
    from tdm_messaging.conformance.server_run import ServerRun, Triggers, run_server_role  # noqa: PLC0415
    from tdm_messaging.conformance.triggers import ManualTrigger, ShellTrigger, Trigger  # noqa: PLC0415
    from tdm_messaging.destinations import validate_docset_id  # noqa: PLC0415

    if not args.docset:
        raise ConfigurationError("--role server needs --docset ID: the docset the server under test requests")
    validate_docset_id(args.docset)

    def trigger(action: str) -> Trigger:
        command = getattr(args, f"trigger_{action}")
        if command is None:
            return ManualTrigger(action, timeout=max(args.timeout, 120.0))
        return ShellTrigger(action, command, timeout=args.trigger_timeout)

    triggers = Triggers(trigger("request"), trigger("poll"), trigger("delete"))
    with _open(url) as transport, _open(url) as consumer:
        run_server_role(transport, consumer, triggers, ServerRun(args.docset, timeout=args.timeout), report)


def _open(url: str) -> Transport:
    from tdm_messaging.transport.registry import open_transport  # noqa: PLC0415

    return open_transport(url)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number of seconds above zero")
    return value
