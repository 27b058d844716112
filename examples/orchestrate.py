"""Run the reference apps end to end: start server and packager processes, act as a miner, check the bag."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests

from examples.sampledata.generate import generate_documents
from examples.server.db import Database
from examples.server.repo import insert_document, upsert_api_key
from tdm_messaging.errors import MessagingError

__all__ = [
    "REPO_ROOT",
    "BagReport",
    "DemoError",
    "DumpProgress",
    "DumpResult",
    "Miner",
    "Service",
    "Stack",
    "StackConfig",
    "add_key",
    "load_sample_theses",
    "log_tail",
    "read_log",
    "start_packager",
    "start_server",
    "start_stack",
    "unique_namespace",
    "validate_bag",
    "with_namespace",
]

log = logging.getLogger(__name__)

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
"""The checkout the child processes run from (``python -m examples.server`` needs it on ``sys.path``)."""

_READ_CHUNK: Final = 1024 * 1024
# Variables a child must not inherit from the caller's shell: the orchestrator sets each one it means.
_CHILD_SETTINGS: Final = (
    "TDM_SERVER_DB",
    "TDM_ARCHIVE_DIR",
    "TDM_PUBLIC_URL",
    "TDM_SERVER_HOST",
    "TDM_SERVER_PORT",
    "TDM_SERVER_API_KEYS",
    "TDM_PACKAGER_API_KEY",
    "TDM_QUEUE_PREFIX",
    "TDM_API_BASE",
    "TDM_PUBLIC_BASE_URL",
    "TDM_WORK_DIR",
)


class DemoError(MessagingError):
    """The end-to-end flow went wrong; the message says where, and ``log_tail`` holds the relevant log's end."""

    def __init__(self, message: str, *, log_name: str | None = None, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_name = log_name
        self.log_tail = log_tail


# ---- child processes ----------------------------------------------------------------------


@dataclass
class Service:
    """A child process started by this module, with its log files.

    Attributes:
        name: a short name for messages (``server``, ``packager-1``).
        process: the process.
        log_path: where its stderr (its logging) goes.
        stdout_path: where its stdout goes.
    """

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    stdout_path: Path

    @property
    def running(self) -> bool:
        """Whether the process is still alive."""
        return self.process.poll() is None

    def log_text(self) -> str:
        """Everything the process logged so far (its stderr)."""
        return read_log(self.log_path)

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of its log."""
        return log_tail(self.log_path, lines)

    def stop(self, *, timeout: float = 10.0) -> int:
        """Ask it to stop (SIGTERM), wait up to ``timeout`` seconds, then kill it; return its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killing it", self.name, timeout)
                self.process.kill()
                self.process.wait(timeout=timeout)
        return int(self.process.returncode)

    def kill(self) -> None:
        """Kill it at once (SIGKILL), as a crash would, and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def error(self, message: str) -> DemoError:
        """A :class:`DemoError` carrying this service's log tail."""
        return DemoError(message, log_name=str(self.log_path), log_tail=self.log_tail())


def read_log(path: Path) -> str:
    """The text of log file ``path`` (empty if it does not exist yet)."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of log file ``path``."""
    return "\n".join(read_log(path).splitlines()[-lines:])


def _child_env(settings: Mapping[str, str], extra_env: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CHILD_SETTINGS}
    env.update(extra_env or {})
    env.update(settings)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _spawn(name: str, module: str, args: Sequence[str], env: dict[str, str], log_dir: Path) -> Service:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path, stdout_path = log_dir / f"{name}.log", log_dir / f"{name}.out"
    with log_path.open("ab") as err, stdout_path.open("ab") as out:
        process = subprocess.Popen(  # our own interpreter and module, no shell
            [sys.executable, "-m", module, *args],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    log.debug("started %s (pid %d)", name, process.pid)
    return Service(name=name, process=process, log_path=log_path, stdout_path=stdout_path)


def start_server(
    *,
    log_dir: Path,
    db_url: str,
    broker_url: str,
    archive_dir: Path,
    queue_prefix: str = "",
    port: int = 0,
    name: str = "server",
    extra_env: Mapping[str, str] | None = None,
    ready_timeout: float = 20.0,
) -> tuple[Service, str]:
    """Start ``python -m examples.server`` on ``port`` (0: any free one); return it and its base URL once it listens.

    Keys are not passed: store them first with :func:`add_key` (they live in the database,
    so a restarted server on the same database knows them).

    Raises:
        DemoError: it exited or did not print ``listening on URL`` within ``ready_timeout`` seconds.
    """
    settings = {"TDM_BROKER_URL": broker_url}
    args = [
        "serve",
        *("--db", db_url, "--archive-dir", str(archive_dir), "--host", "127.0.0.1", "--port", str(port)),
        *("--queue-prefix", queue_prefix),
    ]
    service = _spawn(name, "examples.server", args, _child_env(settings, extra_env), log_dir)
    deadline = time.monotonic() + ready_timeout
    try:
        while True:
            first = service.stdout_path.read_text(encoding="utf-8", errors="replace").partition("\n")
            if first[1] and first[0].startswith("listening on "):
                return service, first[0].removeprefix("listening on ").strip()
            if not service.running:
                raise service.error(f"the server exited with status {service.process.returncode} before listening")
            if time.monotonic() > deadline:
                raise service.error(f"the server did not start listening within {ready_timeout:.0f} s")
            time.sleep(0.05)
    except BaseException:  # also Ctrl-C: never leave a half-started child behind
        service.kill()
        raise


def start_packager(
    *,
    log_dir: Path,
    broker_url: str,
    api_base: str,
    api_key: str,
    storage: str,
    queue_prefix: str = "",
    work_dir: Path | None = None,
    name: str = "packager",
    extra_env: Mapping[str, str] | None = None,
    ready_timeout: float = 20.0,
) -> Service:
    """Start ``python -m examples.packager``; return it once it logged that it is up.

    The API key goes through the environment (``TDM_PACKAGER_API_KEY``), never the command
    line, which other users can read in ``ps``. ``extra_env`` may carry ``TDM_S3_ENDPOINT``,
    ``AWS_*`` and the like.

    Raises:
        DemoError: it exited or did not come up within ``ready_timeout`` seconds.
    """
    settings = {
        "TDM_BROKER_URL": broker_url,
        "TDM_API_BASE": api_base,
        "TDM_PACKAGER_API_KEY": api_key,
        "TDM_STORAGE": storage,
        "TDM_QUEUE_PREFIX": queue_prefix,
    }
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
        settings["TDM_WORK_DIR"] = str(work_dir)
    service = _spawn(name, "examples.packager", [], _child_env(settings, extra_env), log_dir)
    deadline = time.monotonic() + ready_timeout
    try:
        while "packager up" not in service.log_text():
            if not service.running:
                raise service.error(f"{name} exited with status {service.process.returncode} before coming up")
            if time.monotonic() > deadline:
                raise service.error(f"{name} did not come up within {ready_timeout:.0f} s")
            time.sleep(0.05)
    except BaseException:  # also Ctrl-C: never leave a half-started child behind
        service.kill()
        raise
    return service


# ---- set-up: data and keys ----------------------------------------------------------------


def load_sample_theses(db_url: str, count: int, *, seed: int = 0, min_kb: int = 4, max_kb: int = 40) -> int:
    """Create the server's schema and store ``count`` synthetic theses; return their text bytes."""
    db = Database(db_url)
    db.migrate()
    size = 0
    try:
        with db.connect() as conn:
            for doc in generate_documents(count, seed=seed, min_text_kb=min_kb, max_text_kb=max_kb):
                insert_document(conn, doc)
                size += len(doc.full_text.encode("utf-8"))
    finally:
        db.close()
    return size


def add_key(db_url: str, owner: str, *, role: str = "miner") -> str:
    """Store a new random API key for ``owner`` with ``role`` (``miner`` or ``packager``); return it."""
    key = secrets.token_urlsafe(24)
    db = Database(db_url)
    db.migrate()
    try:
        with db.connect() as conn:
            upsert_api_key(conn, owner=owner, key=key, role=role)
    finally:
        db.close()
    return key


# ---- the miner ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DumpProgress:
    """One poll's answer while the dump is not ready: what the progress bar shows."""

    state: str
    percent: float | None
    items_done: int | None
    items_total: int | None
    eta_seconds: float | None
    retry_after: float


@dataclass(frozen=True)
class DumpResult:
    """The dump's final answer: the 303's archive location and what the server said of it."""

    archive_url: str
    size_bytes: int | None
    sha256: str | None
    polls: int
    body: Mapping[str, Any]


class Miner:
    """A TDM API client with one key, as a text miner would use the API (``requests`` over real HTTP).

    Args:
        base_url: the server's base URL, e.g. ``http://127.0.0.1:41234``.
        api_key: the miner's key (sent as ``X-API-Key``).
        timeout: per-request timeout, seconds.
    """

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["X-API-Key"] = api_key

    def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send ``method path`` (relative to the base URL, or absolute); redirects are not followed.

        Raises:
            DemoError: the server could not be reached.
        """
        url = path if path.startswith("http") else self.base_url + path
        try:
            return self.session.request(method, url, timeout=self.timeout, allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            raise DemoError(f"{method} {url} failed: {exc}") from exc

    def create_docset(self, name: str, **query: Any) -> dict[str, Any]:
        """Create a docset from a query (``query``, ``year_from``, ``year_to``, ``department``) or ``document_ids``.

        Raises:
            DemoError: the server refused it (its JSON error is quoted).
        """
        response = self.request("POST", "/api/docsets", json={"name": name, **query})
        if response.status_code != 201:
            raise DemoError(f"creating the docset failed: HTTP {response.status_code} {response.text[:300]}")
        body: dict[str, Any] = response.json()
        return body

    def wait_for_dump(
        self,
        docset_id: int | str,
        *,
        timeout: float = 60.0,
        max_interval: float = 2.0,
        min_interval: float = 0.1,
        on_progress: Callable[[DumpProgress], None] | None = None,
    ) -> DumpResult:
        """Request the docset's dump (the first ``GET .../dump``) and poll until it is ready.

        Each wait honours ``Retry-After``, capped to [``min_interval``, ``max_interval``].

        Returns:
            The 303's archive URL and details.

        Raises:
            DemoError: packaging failed (502), the package is gone (410), any other unexpected
                answer, or no 303 within ``timeout`` seconds.
        """
        path = f"/api/docsets/{docset_id}/dump"
        deadline = time.monotonic() + timeout
        polls = 0
        while True:
            response = self.request("GET", path)
            polls += 1
            body = _json(response)
            if response.status_code == 303:
                location = response.headers.get("Location")
                if not location:
                    raise DemoError(f"GET {path} answered 303 without a Location header")
                return DumpResult(
                    archive_url=location,
                    size_bytes=body.get("size_bytes"),
                    sha256=body.get("sha256"),
                    polls=polls,
                    body=body,
                )
            if response.status_code != 202:
                message = body.get("error", {}).get("message") if isinstance(body.get("error"), dict) else None
                raise DemoError(f"GET {path}: HTTP {response.status_code}: {message or response.text[:300]}")
            retry_after = _retry_after(response, default=1.0)
            if on_progress is not None:
                on_progress(
                    DumpProgress(
                        state=str(body.get("state", "?")),
                        percent=body.get("percent"),
                        items_done=body.get("items_done"),
                        items_total=body.get("items_total"),
                        eta_seconds=body.get("eta_seconds"),
                        retry_after=retry_after,
                    )
                )
            if time.monotonic() > deadline:
                raise DemoError(f"the dump of docset {docset_id} was not ready within {timeout:.0f} s ({polls} polls)")
            time.sleep(min(max(retry_after, min_interval), max_interval))

    def download(self, url: str, target: Path) -> str:
        """Download ``url`` (without the API key if it is not on the API's host) to ``target``; return its SHA-256.

        Raises:
            DemoError: the download failed.
        """
        # A presigned S3 URL is its own credential: never send our key to another host.
        same_host = url.startswith(self.base_url + "/")
        getter = self.session.get if same_host else requests.get
        digest = hashlib.sha256()
        try:
            with getter(url, stream=True, timeout=self.timeout) as response:
                if response.status_code != 200:
                    raise DemoError(f"downloading {url} failed: HTTP {response.status_code} {response.text[:200]}")
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("wb") as out:
                    for chunk in response.iter_content(_READ_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        except requests.RequestException as exc:
            raise DemoError(f"downloading {url} failed: {exc}") from exc
        return digest.hexdigest()


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(response: requests.Response, *, default: float) -> float:
    raw = response.headers.get("Retry-After", "")
    try:
        return max(float(raw), 0.0)
    except ValueError:
        return default  # an HTTP date, or nothing: our server sends seconds, so just poll again soon


# ---- the bag ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BagReport:
    """What :func:`validate_bag` checked.

    Attributes:
        bag_name: the bag's top directory in the zip.
        payload_files: files under ``data/`` (each checked against the manifest).
        payload_octets: their total size.
        documents: distinct document folders under ``data/``.
        bag_info: the ``bag-info.txt`` elements.
    """

    bag_name: str
    payload_files: int
    payload_octets: int
    documents: int
    bag_info: Mapping[str, str] = field(default_factory=dict)


def validate_bag(path: Path) -> BagReport:
    """Check a zipped BagIt bag: every manifest line recomputed, no payload file unlisted, Payload-Oxum, tag manifest.

    Raises:
        DemoError: the archive is not a zip, not one bag, or a check failed (the message names the file).
    """
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise DemoError(f"{path} is not a readable zip archive: {exc}") from exc
    with archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        roots = {n.split("/", 1)[0] for n in names}
        if len(roots) != 1:
            raise DemoError(f"{path}: expected one bag directory at the top, found {sorted(roots)}")
        root = roots.pop()

        def read(relative: str) -> bytes:
            try:
                return archive.read(f"{root}/{relative}")
            except KeyError as exc:
                raise DemoError(f"{path}: the bag has no {relative}") from exc

        if not read("bagit.txt").startswith(b"BagIt-Version: "):
            raise DemoError(f"{path}: bagit.txt does not declare a BagIt-Version")
        manifest = _parse_manifest(read("manifest-sha256.txt").decode("utf-8"), "manifest-sha256.txt")
        payload = {n[len(root) + 1 :] for n in names if n.startswith(f"{root}/data/")}
        if set(manifest) != payload:
            missing, extra = sorted(set(manifest) - payload), sorted(payload - set(manifest))
            raise DemoError(f"{path}: manifest and payload differ (listed but absent: {missing}; unlisted: {extra})")
        octets = 0
        for relative, expected in manifest.items():
            actual, size = _member_sha256(archive, f"{root}/{relative}")
            if actual != expected:
                raise DemoError(f"{path}: checksum mismatch for {relative}: manifest {expected}, content {actual}")
            octets += size
        info = _parse_bag_info(read("bag-info.txt").decode("utf-8"))
        oxum = f"{octets}.{len(manifest)}"
        if info.get("Payload-Oxum") != oxum:
            raise DemoError(f"{path}: Payload-Oxum is {info.get('Payload-Oxum')!r}, the payload is {oxum}")
        tags = _parse_manifest(read("tagmanifest-sha256.txt").decode("utf-8"), "tagmanifest-sha256.txt")
        for relative, expected in tags.items():
            if _member_sha256(archive, f"{root}/{relative}")[0] != expected:
                raise DemoError(f"{path}: tag file {relative} does not match tagmanifest-sha256.txt")
    documents = {p.split("/")[1] for p in payload if p.count("/") >= 2}
    return BagReport(
        bag_name=root, payload_files=len(manifest), payload_octets=octets, documents=len(documents), bag_info=info
    )


def _parse_manifest(text: str, name: str) -> dict[str, str]:
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        digest, sep, encoded = line.partition(" ")
        relative = encoded.lstrip(" ")
        if not sep or len(digest) != 64 or not relative:
            raise DemoError(f"{name} line {number} is not '<sha256> <path>': {line!r}")
        relative = relative.replace("%0A", "\n").replace("%0D", "\r").replace("%25", "%")
        entries[relative] = digest.lower()
    return entries


def _parse_bag_info(text: str) -> dict[str, str]:
    info: dict[str, str] = {}
    for line in text.splitlines():
        label, sep, value = line.partition(":")
        if sep:
            info[label.strip()] = value.strip()
    return info


def _member_sha256(archive: zipfile.ZipFile, name: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with archive.open(name) as member:
        while chunk := member.read(_READ_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


# ---- a whole stack ------------------------------------------------------------------------

_NAMESPACE_PARAM: Final = "namespace"


def unique_namespace(stem: str) -> str:
    """A queue namespace no other run will pick: ``<stem>-<12 hex digits>``."""
    return f"{stem}-{secrets.token_hex(6)}"


def with_namespace(url: str, namespace: str) -> str:
    """``url`` with the broker-URL parameter ``namespace=<namespace>``: every queue becomes ``<namespace>/<queue>``.

    A URL that already names a namespace keeps it as a stem: ``<theirs>-<namespace>``, so a run
    stays apart from other runs inside a deployment's namespace too.
    """
    base, sep, query = url.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True) if sep else []
    theirs = [value for name, value in pairs if name == _NAMESPACE_PARAM]
    if not theirs:
        joiner = "&" if query else ("" if sep else "?")
        return f"{url}{joiner}{_NAMESPACE_PARAM}={namespace}"
    rest = [(name, value) for name, value in pairs if name != _NAMESPACE_PARAM]
    return f"{base}?{urlencode([*rest, (_NAMESPACE_PARAM, f'{theirs[0]}-{namespace}')])}"


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
