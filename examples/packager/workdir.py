"""The work directory: archives built in locked ``.building-`` files, and a sweep of those whose packager died."""

from __future__ import annotations

import fcntl
import logging
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from examples.packager.errors import StorageError
from tdm_messaging import ConfigurationError

__all__ = ["BUILDING_PREFIX", "BUILDING_SUFFIX", "Swept", "building_file", "is_building_name", "open_work_dir", "sweep"]

log = logging.getLogger(__name__)

BUILDING_PREFIX: Final = ".building-"
BUILDING_SUFFIX: Final = ".zip"
# Exactly the names mkstemp gives our prefix and suffix, so a sweep of a shared directory (the
# default is the system's temp dir) never matches another program's files by accident.
_BUILDING_NAME: Final = re.compile(r"\.building-[A-Za-z0-9_]{6,}\.zip")
_CREATE_TRIES: Final = 5


@dataclass(frozen=True)
class Swept:
    """A temporary archive removed from the work directory because no live process held its lock.

    Attributes:
        path: where it was.
        size_bytes: its size when removed.
        age_seconds: seconds since it was last written.
    """

    path: Path
    size_bytes: int
    age_seconds: float


def is_building_name(name: str) -> bool:
    """Whether ``name`` is the name of a temporary archive that :func:`building_file` makes."""
    return _BUILDING_NAME.fullmatch(name) is not None


def open_work_dir(work_dir: str | os.PathLike[str] | None) -> Path:
    """Create the work directory if missing, check that archives can be built in it, and sweep it.

    Args:
        work_dir: the directory (``TDM_WORK_DIR``); ``None`` is the system's temporary directory.

    Returns:
        The directory.

    Raises:
        ConfigurationError: it cannot be created, written or listed (the message names it and the setting).
    """
    path = Path(work_dir) if work_dir is not None else Path(tempfile.gettempdir())
    fix = "set --work-dir / TDM_WORK_DIR to a directory on local disk that this user can write"
    try:
        path.mkdir(parents=True, exist_ok=True)
        with building_file(path):
            pass
        sweep(path, strict=True)
    except (OSError, StorageError) as exc:
        raise ConfigurationError(f"work directory {str(path)!r} is unusable ({exc}); {fix}") from exc
    return path


@contextmanager
def building_file(work_dir: str | os.PathLike[str] | None) -> Iterator[tuple[IO[bytes], Path]]:
    """A new ``.building-*.zip`` file in ``work_dir``, under an exclusive lock until the block ends.

    The lock (``flock``) is what tells a :func:`sweep` that the file's owner is alive: the kernel
    drops it when the process dies, however it dies. It is held on a descriptor of its own, so
    closing the yielded handle keeps it; leave the block only when the file is gone from its
    name (moved or no longer needed). On the way out the file is removed if still there, and only
    then is the lock released.

    Yields:
        The handle, open for writing and reading, and the file's path.

    Raises:
        StorageError: the file could not be created or locked (retryable: the disk may have filled).
    """
    directory = work_dir if work_dir is not None else tempfile.gettempdir()
    handle, path, lock_fd = _create_locked(directory)
    try:
        yield handle, path
    finally:
        handle.close()
        path.unlink(missing_ok=True)
        os.close(lock_fd)


def _create_locked(directory: str | os.PathLike[str]) -> tuple[IO[bytes], Path, int]:
    for _ in range(_CREATE_TRIES):
        try:
            fd, name = tempfile.mkstemp(dir=directory, prefix=BUILDING_PREFIX, suffix=BUILDING_SUFFIX)
        except OSError as exc:
            message = f"cannot create a temporary archive in {str(directory)!r}: {exc}"
            raise StorageError(message, retryable=True) from exc
        try:
            # A sweep may open the new file and take its lock before we do, and then remove it. So
            # lock (waiting out such a sweep), then check that the name still leads to this file.
            fcntl.flock(fd, fcntl.LOCK_EX)
            mine = os.fstat(fd)
            try:
                named = os.stat(name)
            except FileNotFoundError:
                os.close(fd)
                continue
            if (named.st_dev, named.st_ino) != (mine.st_dev, mine.st_ino):
                os.close(fd)
                continue
            lock_fd = os.dup(fd)  # the lock belongs to the open file, shared by both descriptors
        except OSError as exc:
            os.close(fd)
            Path(name).unlink(missing_ok=True)
            raise StorageError(f"cannot lock temporary archive {name!r}: {exc}", retryable=True) from exc
        return os.fdopen(fd, "w+b"), Path(name), lock_fd
    raise StorageError(
        f"could not keep a temporary archive in {str(directory)!r}: removed {_CREATE_TRIES} times as it was made; "
        "is something other than a tdm packager deleting .building-* files there?",
        retryable=True,
    )


def sweep(work_dir: str | os.PathLike[str] | None, *, strict: bool = False) -> list[Swept]:
    """Remove the ``.building-*.zip`` files in ``work_dir`` whose lock no live process holds.

    A packager holds the lock of its temporary archive for as long as the file exists under that
    name, so a file whose lock can be taken was left by a packager that died (SIGKILL, power cut,
    OOM killer). Packagers sharing the directory are safe: their files are locked. Each removal
    is logged at INFO with its size; files that cannot be opened or removed (another user's) are
    logged at WARNING and left.

    Args:
        work_dir: the directory; ``None`` is the system's temporary directory.
        strict: raise if the directory cannot be listed (at start), instead of logging a warning.

    Returns:
        What was removed.

    Raises:
        OSError: ``strict`` and the directory cannot be listed.
    """
    directory = Path(work_dir) if work_dir is not None else Path(tempfile.gettempdir())
    try:
        names = sorted(name for name in os.listdir(directory) if is_building_name(name))
    except OSError as exc:
        if strict:
            raise
        log.warning("could not list work directory %s to sweep it: %s", directory, exc)
        return []
    swept = [found for name in names if (found := _sweep_one(directory / name)) is not None]
    if swept:
        total = sum(s.size_bytes for s in swept)
        log.info("swept %d temporary archive(s), %d bytes, left by dead packagers in %s", len(swept), total, directory)
    return swept


def _sweep_one(path: Path) -> Swept | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None  # finished and removed by its owner since the listing
    except OSError as exc:
        log.warning("could not open %s to check its owner, left it: %s", path, exc)
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # a live packager is writing it
        try:
            path.unlink()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("could not remove %s, left by a dead packager: %s", path, exc)
            return None
        age = max(time.time() - info.st_mtime, 0.0)
        log.info("removed %s (%d bytes, last written %.0f s ago): its packager is gone", path, info.st_size, age)
        return Swept(path=path, size_bytes=info.st_size, age_seconds=age)
    finally:
        os.close(fd)  # also releases the lock we took
