"""Command line: `python -m examples.server [serve] ...` runs the API under waitress; also `add-key`, `openapi`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import sys
from collections.abc import Mapping, Sequence
from types import FrameType

from examples.server.db import Database, DatabaseError
from examples.server.openapi import build_openapi
from examples.server.repo import upsert_api_key
from examples.server.settings import Settings
from tdm_messaging import ConfigurationError, MessagingError, configure_logging, open_transport

log = logging.getLogger("examples.server")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; an option not given is absent, so the ``TDM_*`` variable or the default applies."""
    parser = argparse.ArgumentParser(prog="python -m examples.server", description="The reference TDM API server.")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the API server (the default command)")
    Settings.add_arguments(serve, exclude=("api_keys",))  # --api-key repeats: added below
    serve.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        default=argparse.SUPPRESS,
        metavar="OWNER=KEY",
        help="provision a miner key (repeatable; adds to TDM_SERVER_API_KEYS=owner=key,owner=key)",
    )
    add_key = sub.add_parser("add-key", help="store an API key (a new random one unless --key) and print it")
    add_key.add_argument("--db", dest="db_url", default=argparse.SUPPRESS, help="sqlite:///path.db [TDM_SERVER_DB]")
    add_key.add_argument("--owner", required=True)
    add_key.add_argument("--role", choices=["miner", "packager"], default="miner")
    add_key.add_argument("--key", help="the key to store; default: a new random key")
    sub.add_parser("openapi", help="print the OpenAPI document (docs/openapi.json is this output)")
    return parser


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """The :class:`Settings` of parsed options over ``environ``'s ``TDM_*`` variables over defaults.

    Raises:
        ConfigurationError: an option or variable is wrong (the message names it and what it accepts).
    """
    flags = {name: value for name, value in vars(args).items() if name in Settings.model_fields}
    return Settings.load_with_keys(flags, environ)


def serve(settings: Settings) -> int:
    """Run the server until SIGTERM or Ctrl-C; print ``listening on URL`` as the first stdout line."""
    from examples.server.app import create_app
    from examples.server.serving import create_json_server

    settings.archive_dir.mkdir(parents=True, exist_ok=True)
    try:  # fail fast on a wrong broker URL; a broker that is merely down is only a warning
        open_transport(settings.broker_url).close()
    except ConfigurationError:
        raise
    except MessagingError as exc:
        log.warning("the broker is not reachable yet (%s); dump requests will answer 503 until it is", exc)
    app = create_app(settings)
    server = create_json_server(
        app,
        host=settings.host,
        port=settings.port,
        threads=settings.threads,
        max_request_body_size=settings.max_body_bytes,
        ident="tdm-server",
    )
    host = settings.host if ":" not in settings.host else f"[{settings.host}]"
    url = f"http://{host}:{server.effective_port}"
    print(f"listening on {url}", flush=True)
    log.info("serving on %s (database %s, public URL %s)", url, settings.db_url, settings.public_url or "from Host")

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.run()
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        server.close()
        app.config["tdm.close"]()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for a usage or configuration error, with no traceback)."""
    environ = dict(os.environ)
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0].startswith("-") and args_list[0] not in ("-h", "--help")):
        args_list.insert(0, "serve")
    args = build_parser().parse_args(args_list)
    if args.command == "openapi":
        print(json.dumps(build_openapi(), indent=2, ensure_ascii=False))
        return 0
    try:
        settings = settings_from(args, environ)
        configure_logging(settings.log_level, settings.log_format)
        if args.command == "add-key":
            key = args.key or secrets.token_urlsafe(24)
            db = Database(settings.db_url)
            db.migrate()
            with db.connect() as conn:
                upsert_api_key(conn, owner=args.owner, key=key, role=args.role)
            print(key)
            return 0
        return serve(settings)
    except (DatabaseError, ConfigurationError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
