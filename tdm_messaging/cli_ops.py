"""Operator subcommands of ``tdm-messaging``: ``dead-letters list | show | replay | purge`` and ``queues``."""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from tdm_messaging import dead_letters
from tdm_messaging.cli_broker import BROKER_URL_ENV, EXIT_FAILED, EXIT_OK, EXIT_TROUBLE, broker_error_line
from tdm_messaging.dead_letters import DEFAULT_LIMIT, DeadLetter
from tdm_messaging.destinations import DEAD_LETTER, DELETE_REQUESTS, PACKAGE_REQUESTS, Destination, known_destination
from tdm_messaging.errors import ConfigurationError, TransportError
from tdm_messaging.transport.base import Transport
from tdm_messaging.transport.registry import open_transport

__all__ = ["FIXED_QUEUES", "register"]

FIXED_QUEUES = (PACKAGE_REQUESTS, DELETE_REQUESTS, DEAD_LETTER)
"""What ``queues`` shows when no queue is named: a broker cannot list reply queues portably."""

_CANNOT_COUNT = (
    "this broker cannot say a queue's depth without taking its messages (STOMP has no such frame); "
    "ask the broker itself: rabbitmqctl list_queues name messages, or ActiveMQ's web console"
)


def register(subparsers: Any) -> None:
    """Add ``dead-letters`` (with ``list``, ``show``, ``replay``, ``purge``) and ``queues``.

    Args:
        subparsers: what ``ArgumentParser.add_subparsers()`` returned; each command sets ``func``.
    """
    broker = argparse.ArgumentParser(add_help=False)
    broker.add_argument("--broker", help=f"broker URL, e.g. amqp://user:pass@host:5672// (default: ${BROKER_URL_ENV})")
    limit = argparse.ArgumentParser(add_help=False)
    limit.add_argument(
        "--limit", type=_count, default=DEFAULT_LIMIT, help=f"read at most this many (default: {DEFAULT_LIMIT})"
    )

    dlq = subparsers.add_parser(
        "dead-letters",
        help="list, show, replay or purge the messages parked on docsets/dead-letter",
        description="Inspect and act on docsets/dead-letter. Each letter has an id (a hash of its content, "
        "the same on every broker and every read); commands take that id or its first 6+ hex digits.",
    )
    actions = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    show_all = actions.add_parser(
        "list", parents=[broker, limit], help="one line per dead letter (nothing is taken)", description=_LIST_HELP
    )
    show_all.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    show_all.set_defaults(func=_cmd_list)
    show = actions.add_parser(
        "show", parents=[broker, limit], help="print one dead letter as JSON, body included (nothing is taken)"
    )
    show.add_argument("letter_id", metavar="ID")
    show.set_defaults(func=_cmd_show)
    replay = actions.add_parser(
        "replay",
        parents=[broker, limit],
        help="put one dead letter back on its source queue",
        description="Send the letter, without its dead-letter headers and attempt count, to the queue it "
        "was taken from (confirmed), then remove it from docsets/dead-letter. A broker failure half way "
        "loses nothing: at worst the letter is on both queues.",
    )
    replay.add_argument("letter_id", metavar="ID")
    replay.set_defaults(func=_cmd_replay)
    purge = actions.add_parser(
        "purge",
        parents=[broker, limit],
        help="remove every dead letter, after confirmation",
        description="Show how many dead letters there are and remove exactly those after you confirm "
        "(letters arriving meanwhile stay). Without a terminal, --yes is required.",
    )
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    purge.set_defaults(func=_cmd_purge)

    queues = subparsers.add_parser(
        "queues",
        parents=[broker],
        help="print queue depths where the broker can say",
        description="Print how many messages wait in each queue: the protocol's permanent queues, or the "
        "queues named (e.g. package/5). Depth comes from AMQP passive declares, Redis LLEN and SQLite counts; "
        "STOMP brokers cannot say it (shown as 'unknown'). Nothing is created or taken.",
    )
    queues.add_argument("names", nargs="*", metavar="QUEUE", help="e.g. docsets/package or package/5")
    queues.add_argument("--json", action="store_true", help="print a JSON object instead of a table")
    queues.set_defaults(func=_cmd_queues)


_LIST_HELP = (
    "Print each dead letter, oldest first: its id, source queue, message type, docset, body size and the "
    "reason it was parked. The queue is read and given back: nothing is taken."
)


# -- commands ------------------------------------------------------------------------------


def _cmd_list(args: argparse.Namespace) -> int:
    def body(transport: Transport) -> None:
        letters = dead_letters.list_dead_letters(transport, limit=args.limit)
        if args.json:
            _print_json([_summary(letter) for letter in letters])
        else:
            _print_table(
                ("ID", "SOURCE", "TYPE", "DOCSET", "SIZE", "REASON"),
                [(x.id, x.source or "-", x.type or "-", x.docset_id or "-", str(x.size), x.reason) for x in letters],
            )
        if not letters:
            sys.stderr.write(f"{DEAD_LETTER.name} is empty\n")
        _note_limit(len(letters), args.limit)

    return _with_transport(args, body)


def _cmd_show(args: argparse.Namespace) -> int:
    def body(transport: Transport) -> None:
        letters = dead_letters.list_dead_letters(transport, limit=args.limit)
        letter = letters[dead_letters.find(letters, args.letter_id)]
        _print_json(_detail(letter))

    return _with_transport(args, body)


def _cmd_replay(args: argparse.Namespace) -> int:
    def body(transport: Transport) -> None:
        letter = dead_letters.replay(transport, args.letter_id, limit=args.limit)
        sys.stderr.write(f"replayed {letter.id} to {letter.source}\n")

    return _with_transport(args, body)


def _cmd_purge(args: argparse.Namespace) -> int:
    if not args.yes and not sys.stdin.isatty():
        raise ConfigurationError("purge needs confirmation and stdin is not a terminal: pass --yes to purge anyway")

    def body(transport: Transport) -> int:
        letters = dead_letters.list_dead_letters(transport, limit=args.limit)
        if not letters:
            sys.stderr.write(f"{DEAD_LETTER.name} is empty: nothing to purge\n")
            return EXIT_OK
        if not args.yes:
            sys.stderr.write(f"remove {len(letters)} dead letter(s) from {DEAD_LETTER.name} for good? [y/N] ")
            sys.stderr.flush()
            if sys.stdin.readline().strip().lower() not in {"y", "yes"}:
                sys.stderr.write("nothing purged\n")
                return EXIT_FAILED
        removed = dead_letters.purge(transport, letters, limit=args.limit)
        sys.stderr.write(f"purged {removed} dead letter(s)\n")
        _note_limit(len(letters), args.limit)
        return EXIT_OK

    return _with_transport(args, body)


def _cmd_queues(args: argparse.Namespace) -> int:
    wanted: list[Destination] = [known_destination(name) for name in args.names] or list(FIXED_QUEUES)

    def body(transport: Transport) -> None:
        depths = {queue.name: transport.depth(queue) for queue in wanted}
        if args.json:
            _print_json(depths)
        else:
            _print_table(("QUEUE", "DEPTH"), [(name, "unknown" if n is None else str(n)) for name, n in depths.items()])
        if None in depths.values():
            sys.stderr.write(f"note: {_CANNOT_COUNT}\n")

    return _with_transport(args, body)


# -- helpers -------------------------------------------------------------------------------


def _with_transport(args: argparse.Namespace, body: Callable[[Transport], int | None]) -> int:
    """Open the broker, run ``body``, close; a broker failure becomes one ``error:`` line."""
    url = args.broker or os.environ.get(BROKER_URL_ENV)
    if not url:
        raise ConfigurationError(f"no broker given: pass --broker URL or set {BROKER_URL_ENV}")
    try:
        with open_transport(url) as transport:
            code = body(transport)
    except TransportError as exc:
        sys.stderr.write(f"error: {broker_error_line(exc, url)}\n")
        return EXIT_TROUBLE
    return EXIT_OK if code is None else code


def _summary(letter: DeadLetter) -> dict[str, object]:
    return {
        "id": letter.id,
        "source": letter.source,
        "type": letter.type,
        "docset_id": letter.docset_id,
        "size": letter.size,
        "reason": letter.reason,
    }


def _detail(letter: DeadLetter) -> dict[str, object]:
    detail = _summary(letter)
    detail["content_type"] = letter.envelope.content_type
    detail["headers"] = dict(sorted(letter.envelope.headers.items()))
    try:
        detail["body"] = letter.envelope.body.decode("utf-8")
    except UnicodeDecodeError:
        detail["body_base64"] = base64.b64encode(letter.envelope.body).decode("ascii")
    return detail


def _print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def _print_table(titles: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    # One line per row whatever a field holds: a reason or docset id never breaks the table.
    cells = [titles, *[tuple(" ".join(cell.split()) or "-" for cell in row) for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(titles) - 1)]
    for row in cells:
        sys.stdout.write("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]) + "\n")


def _note_limit(count: int, limit: int) -> None:
    if count >= limit:
        sys.stderr.write(f"note: read the first {limit}; there may be more (raise --limit)\n")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value
