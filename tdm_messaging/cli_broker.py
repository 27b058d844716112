"""Broker subcommands of ``tdm-messaging``: request or delete a package, print a docset's status, watch a job."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import ValidationError

from tdm_messaging.errors import ConfigurationError, LocalProtocolError, TransportError
from tdm_messaging.models import LEGACY_REQUEST_ID, DeleteRequest, PackageRequest
from tdm_messaging.progress_bar import ProgressBar, render_progress
from tdm_messaging.server import PackagingClient
from tdm_messaging.status import DocsetStatus, State
from tdm_messaging.status_document import status_document
from tdm_messaging.transport.base import Transport
from tdm_messaging.transport.registry import open_transport
from tdm_messaging.transport.urls import redact_url, scrub
from tdm_messaging.wire_json import describe_validation_error
from tdm_messaging.wire_text import docset_id_from_url

__all__ = [
    "BROKER_URL_ENV",
    "DEFAULT_GIVE_UP_AFTER_SECONDS",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_TROUBLE",
    "broker_error_line",
    "register",
    "status_as_json",
]

BROKER_URL_ENV = "TDM_BROKER_URL"
"""Environment variable read when ``--broker`` is not given."""

EXIT_OK = 0
EXIT_FAILED = 1
"""``watch``: the job failed (or its package was deleted)."""
EXIT_TROUBLE = 2
"""Bad arguments, or the broker could not be used (the same status ``tdm-messaging`` uses for errors)."""

DEFAULT_GIVE_UP_AFTER_SECONDS = 60.0
"""``watch``: how long a docset may stay ``unknown`` (nobody requested it) before watching stops."""

_LOCAL_SCHEMES = frozenset({"sqlite", "sqla+sqlite", "memory", "inmemory"})
"""Brokers that are a file or live in the process: no host, port or credentials to check."""
_DEFAULT_FORMATS = "meta,txt"


def register(subparsers: Any) -> None:
    """Add ``request``, ``delete``, ``status`` and ``watch`` to the ``tdm-messaging`` subcommands.

    Args:
        subparsers: what ``ArgumentParser.add_subparsers()`` returned; each command sets
            ``func`` to a callable taking the parsed arguments and returning the exit status.
    """
    broker_help = f"broker URL, e.g. stomp://user:pass@host:61613/?dialect=rabbitmq (default: ${BROKER_URL_ENV})"

    req = subparsers.add_parser(
        "request",
        help="ask the packager for a docset's archive",
        description="Send a package request for DOCSET_URL and print it as JSON. The docset id is the "
        "URL's last path segment unless --docset-id is given; formats come from its fmt= parameter.",
    )
    req.add_argument("docset_url", metavar="DOCSET_URL", help="e.g. http://server/api/docsets/5?fmt=meta,txt")
    req.add_argument("--broker", help=broker_help)
    req.add_argument("--docset-id", help="the docset id, when the URL's last path segment is not it")
    req.add_argument("--formats", help=f"comma-separated formats (default: the URL's fmt=, else {_DEFAULT_FORMATS})")
    req.set_defaults(func=_cmd_request)

    delete = subparsers.add_parser(
        "delete",
        help="ask the packager to delete a docset's package",
        description="Send a delete request for DOCSET_ID to docsets/delete and print it as JSON. Once the "
        "packager answers, the docset's status is 'deleted' (see docs/status.md).",
    )
    delete.add_argument("docset_id", metavar="DOCSET_ID")
    delete.add_argument("--broker", help=broker_help)
    delete.add_argument("--archive-url", help="the archive to delete, when known (an http:// or https:// URL)")
    delete.set_defaults(func=_cmd_delete)

    stat = subparsers.add_parser(
        "status",
        help="poll a docset once and print its status as JSON",
        description="Read the docset's reply queue once, print the folded status as JSON (the status stays readable).",
    )
    stat.add_argument("docset_id", metavar="DOCSET_ID")
    stat.add_argument("--broker", help=broker_help)
    stat.set_defaults(func=_cmd_status)

    watch = subparsers.add_parser(
        "watch",
        help="follow a docset's job with a progress bar until it is complete or failed",
        description="Poll the docset every --interval seconds, drawing a progress bar on stderr. "
        "Exit 0 when complete (the final status is printed as JSON on stdout), 1 when failed or deleted, "
        "2 on errors, when --timeout passes, or when the docset stays unknown (nobody requested it) "
        "for --give-up-after seconds.",
    )
    watch.add_argument("docset_id", metavar="DOCSET_ID")
    watch.add_argument("--broker", help=broker_help)
    watch.add_argument(
        "--interval", type=_positive_seconds, default=2.0, help="seconds between polls, > 0 (default: 2)"
    )
    watch.add_argument("--timeout", type=_seconds, help="give up after this many seconds (default: never)")
    watch.add_argument(
        "--give-up-after",
        type=_seconds,
        default=DEFAULT_GIVE_UP_AFTER_SECONDS,
        help=f"give up when the docset stays unknown this long (default: {DEFAULT_GIVE_UP_AFTER_SECONDS:g})",
    )
    watch.set_defaults(func=_cmd_watch)


def status_as_json(status: DocsetStatus) -> dict[str, object]:
    """A docset status as the status document of docs/status.schema.json (date-times with ``Z``)."""
    return status_document(status)


# -- commands ------------------------------------------------------------------------------


def _cmd_request(args: argparse.Namespace) -> int:
    url: str = args.docset_url
    docset_id = args.docset_id or _docset_id_from_url(url)
    formats = _formats(args.formats, url)
    _check_request(docset_id, url, formats)  # before any broker is opened: bad input sends nothing
    return _with_client(
        args, lambda client: _print_json(client.request_package(docset_id, url, formats=formats).request)
    )


def _cmd_delete(args: argparse.Namespace) -> int:
    docset_id: str = args.docset_id
    _check_delete(docset_id, args.archive_url)  # before any broker is opened: bad input sends nothing
    return _with_client(
        args, lambda client: _print_json(client.request_delete(docset_id, archive_url=args.archive_url))
    )


def _cmd_status(args: argparse.Namespace) -> int:
    return _with_client(args, lambda client: _print_json(status_as_json(client.status(args.docset_id))))


def _cmd_watch(args: argparse.Namespace) -> int:
    def follow(client: PackagingClient) -> int:
        started = time.monotonic()
        deadline = None if args.timeout is None else started + args.timeout
        bar = ProgressBar(sys.stderr)
        while True:
            status = client.status(args.docset_id)
            if status.state is State.UNKNOWN and time.monotonic() + args.interval > started + args.give_up_after:
                bar.close()
                raise LocalProtocolError(
                    f"gave up watching docset {args.docset_id}: it stayed unknown for {args.give_up_after:g} s "
                    "(nobody requested it; run 'tdm-messaging request' first, or raise --give-up-after)"
                )
            bar.draw(_progress_line(status))
            if not status.state.is_pending and status.state is not State.UNKNOWN:
                bar.close()
                if status.state is State.COMPLETE:
                    _print_json(status_as_json(status))
                    return EXIT_OK
                why = status.failure.reason if status.failure else "its package was deleted"
                sys.stderr.write(f"failed: docset {status.docset_id}: {why}\n")
                return EXIT_FAILED
            if deadline is not None and time.monotonic() + args.interval > deadline:
                bar.close()
                raise LocalProtocolError(
                    f"gave up watching docset {args.docset_id} after {args.timeout:g} s; "
                    f"it is still {status.state.value}"
                )
            time.sleep(args.interval)

    return _with_client(args, follow)


# -- helpers -------------------------------------------------------------------------------


def _with_client(args: argparse.Namespace, body: Callable[[PackagingClient], int | None]) -> int:
    """Open the broker, run ``body``, close; a broker failure becomes one ``error:`` line."""
    url = args.broker or os.environ.get(BROKER_URL_ENV)
    if not url:
        raise ConfigurationError(f"no broker given: pass --broker URL or set {BROKER_URL_ENV}")
    try:
        transport: Transport = open_transport(url)
        try:
            code = body(PackagingClient(transport))
        finally:
            transport.close()
    except TransportError as exc:
        sys.stderr.write(f"error: {broker_error_line(exc, url)}\n")
        return EXIT_TROUBLE
    except ConfigurationError as exc:
        raise ConfigurationError(scrub(str(exc), url)) from exc
    return EXIT_OK if code is None else code


def broker_error_line(exc: TransportError, url: str) -> str:
    """The one line to print for a broker failure: the URL once (password hidden), and what to check.

    Backends usually say what to check; for a network broker that did not, the usual suspects are
    added. A file or in-process broker has no host, port or credentials to check.
    """
    message = scrub(str(exc), url)
    shown = redact_url(url)
    # Backends quote the URL they were given, which open_transport gave without namespace=.
    if shown.split("?", 1)[0] not in message:
        message = f"broker {shown}: {message}"
    scheme = urlsplit(url).scheme.lower()
    if "check" not in message.lower() and scheme not in _LOCAL_SCHEMES:
        message += "; check that the broker is running and reachable, and the URL's host, port and credentials"
    return message


def _docset_id_from_url(url: str) -> str:
    docset_id = docset_id_from_url(url)
    if docset_id is None:
        raise ConfigurationError(
            f"the URL {url[:100]!r} names no docset (its last path segment is missing or is the "
            "'docsets' collection); give a docset URL such as http://server/api/docsets/5, or pass --docset-id"
        )
    return docset_id


def _check_request(docset_id: str, url: str, formats: list[str]) -> None:
    """Refuse what the package request's model would refuse, as one line, without a broker."""
    now = datetime.now(UTC)
    try:
        PackageRequest(
            docset_id=docset_id,
            request_id=LEGACY_REQUEST_ID,
            timestamp=now,
            docset_url=url,
            formats=tuple(formats),
            reply_to=f"package/{docset_id}",
            requested_at=now,
        )
    except ValidationError as exc:
        raise ConfigurationError(describe_validation_error(exc, prefix="cannot request this package")) from None


def _check_delete(docset_id: str, archive_url: str | None) -> None:
    """Refuse what the delete request's model would refuse, as one line, without a broker."""
    try:
        DeleteRequest(
            docset_id=docset_id, request_id=LEGACY_REQUEST_ID, timestamp=datetime.now(UTC), archive_url=archive_url
        )
    except ValidationError as exc:
        message = describe_validation_error(exc, prefix="cannot delete this package")
        raise ConfigurationError(message.replace("archive_url", "--archive-url")) from None


def _formats(option: str | None, url: str) -> list[str]:
    raw = option
    if raw is None:
        try:
            fmt = parse_qs(urlsplit(url).query).get("fmt")
        except ValueError:  # an unparsable URL: _check_request says what is wrong with it
            fmt = None
        raw = fmt[0] if fmt else _DEFAULT_FORMATS
    formats = [f.strip() for f in raw.split(",") if f.strip()]
    if not formats:
        raise ConfigurationError(f"no formats in {raw!r}; give e.g. --formats meta,txt")
    return formats


def _print_json(value: object) -> None:
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def _progress_line(status: DocsetStatus) -> str:
    state = status.state
    progress = status.progress if state is State.IN_PROGRESS else None
    note = None
    if state is State.ACCEPTED and status.estimate_seconds is not None:
        note = f"estimate {status.estimate_seconds:.0f} s"
    elif state is State.UNKNOWN:
        note = "no request seen yet"
    return render_progress(
        state.value,
        percent=status.progress.percent if status.progress is not None else None,
        items_done=progress.items_done if progress is not None else None,
        items_total=progress.items_total if progress is not None else None,
        eta_seconds=progress.eta_seconds if progress is not None else None,
        note=note,
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (value >= 0 and math.isfinite(value)):  # inf would overflow time.sleep, nan compares false
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number of seconds, zero or more")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value <= 0:  # a zero interval would poll the broker in a busy loop
        raise argparse.ArgumentTypeError(f"{text!r} must be more than zero seconds")
    return value
