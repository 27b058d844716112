"""The ``tdm-messaging`` command: decode and encode wire bodies, print the AsyncAPI document (offline commands).

Broker commands live in ``tdm_messaging.cli_broker`` and operator commands in
``tdm_messaging.cli_ops`` (when present); each exposes ``register(subparsers) -> None``;
each subcommand sets ``func``, a callable taking the parsed arguments and returning the exit
status. A :class:`~tdm_messaging.errors.MessagingError` raised by ``func`` is printed as
``error: <message>`` with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic import ValidationError

from tdm_messaging.asyncapi import asyncapi_document
from tdm_messaging.codec import (
    DEFAULT_MAX_BODY_BYTES,
    EPOCH_UTC,
    HEADER_DOCSET_ID,
    JSON_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    DecodeContext,
    decode,
    encode,
    guess_content_type,
)
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import DecodeError, LocalProtocolError, MessagingError
from tdm_messaging.models import LEGACY_REQUEST_ID, PROTOCOL_VERSION
from tdm_messaging.wire_json import describe_validation_error

__all__ = ["EXIT_ERROR", "build_parser", "main"]

logger = logging.getLogger(__name__)

EXIT_ERROR = 2
"""Exit status for bad input or any other reported error (argparse uses 2 for usage errors too)."""

Command = Callable[[argparse.Namespace], int]


def _read_stdin() -> bytes:
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        data: bytes = buffer.read()
        return data
    return sys.stdin.read().encode()


def _write_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _aware_datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date-time") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone; add one, e.g. 'Z' or '+00:00'")
    return value


def _package_version() -> str:
    try:
        return version("tdm-messaging")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name.strip().lower(), value


def _cmd_decode(args: argparse.Namespace) -> int:
    body = _read_stdin()
    content_type = args.content_type or guess_content_type(body)
    context = DecodeContext(docset_id=args.docset_id, request_id=args.request_id, received_at=args.received_at)
    envelope = Envelope(body, content_type, dict(args.header))
    try:
        message = decode(envelope, context=context, max_body_bytes=args.max_body_bytes)
    except DecodeError:
        _explain_missing_docset(envelope, context, args)
        raise
    _write_stdout(message.model_dump_json(indent=2) + "\n")
    return 0


_PLACEHOLDER_DOCSET = "docset"


def _explain_missing_docset(envelope: Envelope, context: DecodeContext, args: argparse.Namespace) -> None:
    """Say which flag is missing when the only trouble with a text reply is that it names no docset."""
    if args.docset_id is not None or envelope.header(HEADER_DOCSET_ID) is not None:
        return
    try:
        message = decode(
            envelope, context=replace(context, docset_id=_PLACEHOLDER_DOCSET), max_body_bytes=args.max_body_bytes
        )
    except DecodeError:
        return  # something else is wrong too: the decoder's own message says what
    raise LocalProtocolError(
        f"this text/plain {message.type!r} reply does not say its docset (the seed takes it from the reply "
        "queue's name): pass --docset-id ID, or --header tdm-docset-id=ID"
    ) from None


def _cmd_encode(args: argparse.Namespace) -> int:
    body = _read_stdin()
    message = decode(Envelope(body, JSON_CONTENT_TYPE), max_body_bytes=args.max_body_bytes)
    envelope = encode(message, args.content_type)
    if args.headers:
        for name, value in envelope.headers.items():
            sys.stderr.write(f"{name}: {value}\n")
    text = envelope.body.decode()
    _write_stdout(text + "\n" if sys.stdout.isatty() else text)
    return 0


def render_asyncapi(output_format: str) -> str:
    """The AsyncAPI document as text: YAML with sorted keys (needs pyyaml) or JSON (always available).

    Raises:
        LocalProtocolError: YAML was asked for and pyyaml is not installed.
    """
    document = asyncapi_document()
    if output_format == "json":
        return json.dumps(document, indent=2, sort_keys=True) + "\n"
    try:
        yaml: Any = importlib.import_module("yaml")
    except ImportError:
        if output_format == "yaml":
            raise LocalProtocolError(
                "YAML output needs pyyaml: pip install pyyaml, or pass --format json (YAML is a superset of JSON)"
            ) from None
        return json.dumps(document, indent=2, sort_keys=True) + "\n"
    text: str = yaml.safe_dump(document, sort_keys=True, allow_unicode=True, default_flow_style=False, width=100)
    return text


def _cmd_asyncapi(args: argparse.Namespace) -> int:
    _write_stdout(render_asyncapi(args.format))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with the offline subcommands, and the broker ones when ``cli_broker`` is importable."""
    parser = argparse.ArgumentParser(
        prog="tdm-messaging",
        description="Tools for the TDM docset packaging protocol.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr")
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {_package_version()} (protocol {PROTOCOL_VERSION})",
        help="print the library's version and the protocol version it speaks, then exit",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dec = subparsers.add_parser(
        "decode",
        help="read a wire body on stdin, print the message as JSON",
        description="Read a wire body on stdin and print the message it holds as JSON.",
    )
    dec.add_argument(
        "--content-type",
        help=f"{JSON_CONTENT_TYPE} or {TEXT_CONTENT_TYPE}; guessed from the body when absent",
    )
    dec.add_argument("--docset-id", help="docset of a text/plain reply (the reply queue's docset id)")
    dec.add_argument("--request-id", default=LEGACY_REQUEST_ID, help="request id of a text/plain body (default: '')")
    dec.add_argument(
        "--received-at",
        type=_aware_datetime,
        default=EPOCH_UTC,
        help="timestamp of a text/plain body, ISO 8601 with a time zone (default: 1970-01-01T00:00:00Z)",
    )
    dec.add_argument(
        "--header",
        type=_header,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an envelope header such as tdm-docset-id=5 (repeatable)",
    )
    dec.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES, help="refuse larger bodies")
    dec.set_defaults(func=_cmd_decode)

    enc = subparsers.add_parser(
        "encode",
        help="read a message as JSON on stdin, print its wire body",
        description="Read a message as JSON on stdin and print its wire body in the chosen format.",
    )
    enc.add_argument("--content-type", choices=(TEXT_CONTENT_TYPE, JSON_CONTENT_TYPE), default=JSON_CONTENT_TYPE)
    enc.add_argument("--headers", action="store_true", help="also print the envelope headers on stderr")
    enc.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES, help="refuse larger inputs")
    enc.set_defaults(func=_cmd_encode)

    spec = subparsers.add_parser(
        "asyncapi",
        help="print the AsyncAPI 3.0 document of the protocol",
        description="Print the AsyncAPI 3.0 document (YAML when pyyaml is installed, else JSON).",
    )
    spec.add_argument("--format", choices=("auto", "yaml", "json"), default="auto")
    spec.set_defaults(func=_cmd_asyncapi)

    _register_broker_commands(subparsers)
    _register_conformance_command(subparsers)
    return parser


_COMMAND_MODULES = ("tdm_messaging.cli_broker", "tdm_messaging.cli_ops")
"""Modules adding broker-facing subcommands, imported only when the parser is built."""


def _register_broker_commands(subparsers: Any) -> None:
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                logger.warning("broker commands unavailable: %s", exc)
            continue
        except ImportError as exc:
            logger.warning("broker commands unavailable: %s", exc)
            continue
        module.register(subparsers)


def _register_conformance_command(subparsers: Any) -> None:
    from tdm_messaging.conformance.cli import register  # noqa: PLC0415 - the kit's modules load only when it runs

    register(subparsers)


def _one_line(text: str) -> str:
    # "one error line" holds even when a message quotes a value with a line break in it.
    return " ".join(text.split()) or "unknown error"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input or usage).

    Args:
        argv: the arguments without the program name; ``sys.argv[1:]`` when ``None``.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exc:  # argparse exits on --help (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    command: Command = args.func
    try:
        return command(args)
    except MessagingError as exc:
        sys.stderr.write(f"error: {_one_line(str(exc))}\n")
        return EXIT_ERROR
    except ValidationError as exc:  # a value a model refused, from a command that did not check it first
        sys.stderr.write(f"error: {describe_validation_error(exc, prefix='invalid value')}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
