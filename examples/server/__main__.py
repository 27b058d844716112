"""Command line: `python -m examples.server [serve] ...` runs the API under waitress; also `add-key`, `openapi`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from examples.server.db import Database, DatabaseError
from examples.server.openapi import build_openapi
from examples.server.repo import upsert_api_key
from examples.server.settings import ApiKeySpec, Settings, env_defaults, parse_api_keys
from tdm_messaging import ConfigurationError, MessagingError, configure_logging, open_transport

log = logging.getLogger("examples.server")


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], env: dict[str, str]) -> None:
    serve = sub.add_parser("serve", help="run the API server (the default command)")
    d = Settings()
    serve.add_argument("--db", default=env.get("db", d.db_url), help="sqlite:///path.db [TDM_SERVER_DB]")
    serve.add_argument("--broker", default=env.get("broker", d.broker_url), help="transport URL [TDM_BROKER_URL]")
    serve.add_argument("--archive-dir", default=env.get("archive_dir", str(d.archive_dir)), help="[TDM_ARCHIVE_DIR]")
    serve.add_argument("--public-url", default=env.get("public_url"), help="base URL clients see [TDM_PUBLIC_URL]")
    serve.add_argument("--host", default=env.get("host", d.host), help="[TDM_SERVER_HOST]")
    serve.add_argument("--port", type=int, default=int(env.get("port", d.port)), help="0: any free [TDM_SERVER_PORT]")
    serve.add_argument("--threads", type=int, default=int(env.get("threads", d.threads)), help="[TDM_SERVER_THREADS]")
    serve.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="OWNER=KEY",
        help="provision a miner key (repeatable) [TDM_SERVER_API_KEYS=owner=key,owner=key]",
    )
    serve.add_argument(
        "--packager-key", default=env.get("packager_key"), help="the packager's key [TDM_PACKAGER_API_KEY]"
    )
    serve.add_argument(
        "--queue-prefix",
        default=env.get("queue_prefix", ""),
        help="prefix of docset ids on the broker [TDM_QUEUE_PREFIX]",
    )
    serve.add_argument(
        "--search-timeout",
        type=float,
        default=float(env.get("search_timeout", d.search_timeout_seconds)),
        help="seconds one full-text search may run [TDM_SEARCH_TIMEOUT]",
    )
    serve.add_argument(
        "--max-dumps-in-flight",
        type=int,
        default=int(env.get("max_dumps_in_flight", d.max_dumps_in_flight)),
        help="per owner: packages being built at once [TDM_MAX_DUMPS_IN_FLIGHT]",
    )
    serve.add_argument(
        "--max-stored-archives",
        type=int,
        default=int(env.get("max_stored_archives", d.max_stored_archives)),
        help="per owner: archives kept [TDM_MAX_STORED_ARCHIVES]",
    )
    serve.add_argument(
        "--log-level", default=env.get("log_level", "INFO"), help="DEBUG, INFO, WARNING or ERROR [TDM_LOG_LEVEL]"
    )
    serve.add_argument(
        "--log-format", default=env.get("log_format", "text"), help="text or json, one object a line [TDM_LOG_FORMAT]"
    )


def build_parser(environ: dict[str, str]) -> argparse.ArgumentParser:
    """The argument parser; defaults come from the ``TDM_*`` variables in ``environ``."""
    env = env_defaults(environ)
    parser = argparse.ArgumentParser(prog="python -m examples.server", description="The reference TDM API server.")
    sub = parser.add_subparsers(dest="command")
    _serve_parser(sub, env)
    add_key = sub.add_parser("add-key", help="store an API key (a new random one unless --key) and print it")
    add_key.add_argument("--db", default=env.get("db", Settings().db_url))
    add_key.add_argument("--owner", required=True)
    add_key.add_argument("--role", choices=["miner", "packager"], default="miner")
    add_key.add_argument("--key", help="the key to store; default: a new random key")
    sub.add_parser("openapi", help="print the OpenAPI document (docs/openapi.json is this output)")
    return parser


def settings_from(args: argparse.Namespace, environ: dict[str, str]) -> Settings:
    """Turn parsed ``serve`` options into :class:`Settings`.

    Raises:
        ValueError: a malformed API key option.
    """
    keys = list(parse_api_keys(environ.get("TDM_SERVER_API_KEYS", "")))
    for option in args.api_key:
        keys.extend(parse_api_keys(option))
    if args.packager_key:
        keys.append(ApiKeySpec("packager", args.packager_key, "packager"))
    return Settings(
        db_url=args.db,
        broker_url=args.broker,
        archive_dir=Path(args.archive_dir),
        public_url=args.public_url,
        host=args.host,
        port=args.port,
        threads=args.threads,
        api_keys=tuple(keys),
        queue_prefix=args.queue_prefix,
        search_timeout_seconds=args.search_timeout,
        max_dumps_in_flight=args.max_dumps_in_flight,
        max_stored_archives=args.max_stored_archives,
    )


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
    args = build_parser(environ).parse_args(args_list)
    if args.command == "openapi":
        print(json.dumps(build_openapi(), indent=2, ensure_ascii=False))
        return 0
    try:
        configure_logging(
            getattr(args, "log_level", environ.get("TDM_LOG_LEVEL") or "INFO"),
            getattr(args, "log_format", environ.get("TDM_LOG_FORMAT") or "text"),
        )
        if args.command == "add-key":
            key = args.key or secrets.token_urlsafe(24)
            db = Database(args.db)
            db.migrate()
            with db.connect() as conn:
                upsert_api_key(conn, owner=args.owner, key=key, role=args.role)
            print(key)
            return 0
        return serve(settings_from(args, environ))
    except (DatabaseError, ConfigurationError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
