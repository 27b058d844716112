"""The Celery + Redis peer's durability claim, with real processes: a result survives kill -9 of its redis-server.

Not timed. Needs the redis-server binary (the bench starts its own, as here) but no shared broker;
marked ``broker`` because it runs a real server process.
"""

from __future__ import annotations

import shutil
import uuid

import pytest

pytest.importorskip("celery")
pytest.importorskip("redis")

import redis

from bench import celery_peer
from bench.private_redis import PrivateRedis
from tests.conftest import in_ci

pytestmark = [pytest.mark.broker]


@pytest.fixture(autouse=True)
def _redis_server_binary() -> None:
    """In CI the binary must be there (`scripts/brokers.sh up` installs it): a missing one fails, not skips."""
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed: run `bash scripts/brokers.sh up` (Debian package redis-server)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)


def _store_and_crash(fsync: str) -> tuple[PrivateRedis, str, str]:
    """Start a private Redis as the bench does, store a Celery result in it through the Redis backend, kill -9."""
    server = PrivateRedis(fsync).start()
    app = celery_peer.make_app("memory://", "q", backend=server.url, keyprefix="tdm-test-")
    task_id = str(uuid.uuid4())
    archive_url = f"https://example.org/{task_id}.zip"
    try:
        app.backend.store_result(task_id, {"archive_url": archive_url, "size": 1}, "SUCCESS")
    finally:
        app.close()
    server.kill()
    return server, task_id, archive_url


def test_a_result_survives_kill_9_of_the_private_redis() -> None:
    server, task_id, archive_url = _store_and_crash("always")
    try:
        with pytest.raises(redis.ConnectionError):
            redis.Redis.from_url(server.url, socket_connect_timeout=1).ping()
        server.start()  # the same directory and port: Redis replays the append-only file
        app = celery_peer.make_app("memory://", "q", backend=server.url, keyprefix="tdm-test-")
        try:
            result = app.AsyncResult(task_id)
            assert result.state == "SUCCESS"
            assert result.result == {"archive_url": archive_url, "size": 1}
            # Read again, by another client: a Redis result is not consumed by reading it.
            assert app.backend.get_task_meta(task_id)["result"]["archive_url"] == archive_url
        finally:
            app.close()
    finally:
        server.stop()
    assert not server.directory.exists()


def test_the_private_redis_runs_with_an_fsynced_append_only_file() -> None:
    with PrivateRedis("always") as server:
        client = redis.Redis.from_url(server.url)
        try:
            config = client.config_get("*")
        finally:
            client.close()
        assert (config["appendonly"], config["appendfsync"], config["save"]) == ("yes", "always", "")
        assert server.directory.exists()
    assert not server.directory.exists()


def test_without_the_append_only_file_the_result_would_be_lost() -> None:
    """The control: the same crash on a Redis that keeps nothing on disk (as the shared one) loses the result,
    so the test above can fail."""
    server = PrivateRedis("always")
    argv = server.argv()
    argv[argv.index("--appendonly") + 1] = "no"
    server.argv = lambda: argv  # type: ignore[method-assign]
    try:
        server.start()
        client = redis.Redis.from_url(server.url)
        try:
            client.set("tdm-test-key", "1")
        finally:
            client.close()
        server.kill()
        server.start()
        client = redis.Redis.from_url(server.url)
        try:
            assert client.get("tdm-test-key") is None
        finally:
            client.close()
    finally:
        server.stop()
