"""A whole stack: one server and its packagers on one broker and database, started and stopped together."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from examples.harness.miner import Miner
from examples.harness.namespaces import with_namespace
from examples.harness.processes import Service, start_packager, start_server
from examples.harness.seed import add_key, load_sample_theses

__all__ = ["Stack", "StackConfig", "start_stack"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StackConfig:
    """A server and its packagers, set up in ``work_dir``.

    Attributes:
        work_dir: holds the database, logs, archives (created; not emptied).
        broker_url: the transport URL; ``None`` means the embedded default, the native SQLite
            transport over ``<work_dir>/broker.db`` (``sqlite://``).
        storage: the packager's ``TDM_STORAGE``; ``None`` means ``local:<work_dir>/archives``,
            the directory the server serves.
        namespace: the queue namespace of every process of the stack (see :func:`with_namespace`):
            a unique one per run keeps runs sharing a broker from ever seeing each other's
            queues, permanent request queues included. ``None``: the broker URL as given.
        queue_prefix: put before docset ids on the broker (the apps' ``TDM_QUEUE_PREFIX``); it only
            renames reply queues, so it does not isolate runs: use ``namespace`` for that.
        packagers: how many packager processes.
        documents: how many synthetic theses to load.
        min_kb, max_kb: the size range of their full texts.
        packager_env: extra environment of the packagers (``TDM_S3_ENDPOINT``, ``AWS_*``, ...).
    """

    work_dir: Path
    broker_url: str | None = None
    storage: str | None = None
    namespace: str | None = None
    queue_prefix: str = ""
    packagers: int = 1
    documents: int = 40
    min_kb: int = 4
    max_kb: int = 40
    packager_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def db_url(self) -> str:
        """The server's database (an absolute SQLite path in the work dir)."""
        return f"sqlite:///{(self.work_dir / 'tdm-server.db').resolve()}"

    @property
    def archive_dir(self) -> Path:
        """The directory the server serves under ``/archives/``."""
        return (self.work_dir / "archives").resolve()

    @property
    def effective_broker_url(self) -> str:
        """The broker URL every process of the stack uses, namespace included."""
        url = self.broker_url or f"sqlite:///{(self.work_dir / 'broker.db').resolve()}"
        return with_namespace(url, self.namespace) if self.namespace else url

    @property
    def effective_storage(self) -> str:
        """The packager's storage in use."""
        return self.storage or f"local:{self.archive_dir}"


@dataclass
class Stack:
    """A running server and packagers (see :func:`start_stack`), and the keys to use them."""

    config: StackConfig
    server: Service
    base_url: str
    packagers: list[Service]
    miner_key: str
    packager_key: str
    text_bytes: int

    @property
    def log_dir(self) -> Path:
        """Where every process logs."""
        return self.config.work_dir / "logs"

    def restart_server(self, *, crash: bool = True) -> None:
        """Stop the server (``crash``: SIGKILL, else SIGTERM) and start a new one on the same database and port.

        The port stays the same because the packagers (and the docset URLs in package requests)
        know the server by its URL.
        """
        port = urlsplit(self.base_url).port or 0
        if crash:
            self.server.kill()
        else:
            self.server.stop()
        self.server, self.base_url = start_server(
            log_dir=self.log_dir,
            db_url=self.config.db_url,
            broker_url=self.config.effective_broker_url,
            archive_dir=self.config.archive_dir,
            queue_prefix=self.config.queue_prefix,
            port=port,
            name=f"server-{len(list(self.log_dir.glob('server*.log'))) + 1}",
        )

    def miner(self, key: str | None = None) -> Miner:
        """An API client with the miner's key (or ``key``)."""
        return Miner(self.base_url, key or self.miner_key)

    def add_packager(self) -> Service:
        """Start one more packager process."""
        index = len(self.packagers) + 1
        service = start_packager(
            log_dir=self.log_dir,
            broker_url=self.config.effective_broker_url,
            api_base=self.base_url,
            api_key=self.packager_key,
            storage=self.config.effective_storage,
            queue_prefix=self.config.queue_prefix,
            work_dir=self.config.work_dir / f"build-{index}",
            name=f"packager-{index}",
            extra_env=self.config.packager_env,
        )
        self.packagers.append(service)
        return service

    def services(self) -> list[Service]:
        """Every process, server first."""
        return [self.server, *self.packagers]

    def failing_service(self) -> Service:
        """The first process that died, else the server (whose log usually says most)."""
        return next((s for s in self.services() if not s.running), self.server)


@contextmanager
def start_stack(config: StackConfig, *, miner_owner: str = "miner") -> Iterator[Stack]:
    """Set up ``config.work_dir``, load theses, store keys, start the server and packagers; stop them on exit.

    Whatever happens in the block (an error, Ctrl-C), every process started is stopped:
    SIGTERM, then SIGKILL after a bounded wait.

    Raises:
        DemoError: a process did not come up (the message carries its log tail).
    """
    config.work_dir.mkdir(parents=True, exist_ok=True)
    config.archive_dir.mkdir(parents=True, exist_ok=True)
    text_bytes = load_sample_theses(config.db_url, config.documents, min_kb=config.min_kb, max_kb=config.max_kb)
    miner_key = add_key(config.db_url, miner_owner)
    packager_key = add_key(config.db_url, "packager", role="packager")
    with ExitStack() as cleanup:
        server, base_url = start_server(
            log_dir=config.work_dir / "logs",
            db_url=config.db_url,
            broker_url=config.effective_broker_url,
            archive_dir=config.archive_dir,
            queue_prefix=config.queue_prefix,
        )
        stack = Stack(
            config=config,
            server=server,
            base_url=base_url,
            packagers=[],
            miner_key=miner_key,
            packager_key=packager_key,
            text_bytes=text_bytes,
        )
        cleanup.callback(_stop_all, stack)
        for _ in range(config.packagers):
            stack.add_packager()
        yield stack


def _stop_all(stack: Stack) -> None:
    # Packagers first, so none is left mid-request against a server that is gone.
    for service in [*stack.packagers, stack.server]:
        try:
            service.stop(timeout=10.0)
        except Exception:  # stop the others whatever happens to one
            log.exception("stopping %s failed", service.name)
