"""The database: URL rules, migrations applied once, API keys stored hashed."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.server import repo
from examples.server.db import MIGRATIONS, Database, DatabaseError


@pytest.mark.parametrize("url", ["postgres://x/y", "sqlite://relative.db", "sqlite:///", "sqlite:////no/such/dir/x.db"])
def test_bad_urls_say_what_to_use(url: str) -> None:
    with pytest.raises(DatabaseError, match="sqlite:///"):
        Database(url)


def test_migrations_apply_once(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    assert db.migrate() == len(MIGRATIONS)
    with db.connect() as conn:
        repo.upsert_api_key(conn, owner="a", key="k")
    assert Database(f"sqlite:///{tmp_path / 'm.db'}").migrate() == len(MIGRATIONS)
    with db.connect() as conn:
        assert repo.find_caller(conn, "k") == repo.Caller("a", "miner")


def test_memory_database_is_shared_between_connections() -> None:
    db = Database("sqlite:///:memory:")
    db.migrate()
    with db.connect() as conn:
        repo.upsert_api_key(conn, owner="a", key="k", role="packager")
    with db.connect() as conn:
        caller = repo.find_caller(conn, "k")
        assert caller is not None
        assert caller.is_packager
        stored = conn.execute("SELECT key_sha256 FROM api_keys").fetchone()[0]
    assert stored == repo.hash_key("k") != "k"
    db.close()


def test_bad_role_is_refused() -> None:
    db = Database("sqlite:///:memory:")
    db.migrate()
    with db.connect() as conn, pytest.raises(ValueError, match="role"):
        repo.upsert_api_key(conn, owner="a", key="k", role="admin")
    db.close()
