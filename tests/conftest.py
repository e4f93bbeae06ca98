"""Shared fixtures: settings in a temporary data dir, databases built by the migrations.

- `db`: SQLite (the embedded default), a fresh file per test.
- `any_db`: the same test on SQLite and on PostgreSQL. PostgreSQL needs
  HOTLINE_TEST_POSTGRES_URL (a server URL; the run creates and drops its own
  database on it). Redis tests need HOTLINE_TEST_REDIS_URL. With
  HOTLINE_TEST_REQUIRE_SERVICES=1 (set by .ci/run) a missing server fails the test
  instead of skipping it.
- `pg_via_proxy`: a fresh migrated PostgreSQL database reached through a TCP proxy
  the test can cut (database down) and restore (tests/dbproxy.py).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from hotline.db import Database, scratch_postgres
from hotline.models import Base
from hotline.settings import Settings, load_settings
from tests.dbproxy import DbProxy

PG_URL = os.environ.get("HOTLINE_TEST_POSTGRES_URL")
REDIS_URL = os.environ.get("HOTLINE_TEST_REDIS_URL")
REQUIRE_SERVICES = os.environ.get("HOTLINE_TEST_REQUIRE_SERVICES") == "1"


def missing_service(reason: str) -> None:
    """Skip the test, or fail it where CI demands every service."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (HOTLINE_TEST_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "hotline.sqlite3"
    database = Database(f"sqlite:///{path}")
    database.upgrade()
    database.dispose()
    return path


@pytest.fixture(scope="session")
def _postgres_database() -> Iterator[str]:
    if not PG_URL:
        missing_service("HOTLINE_TEST_POSTGRES_URL is not set")
    with ExitStack() as stack:
        try:
            url = stack.enter_context(scratch_postgres(PG_URL, "hotline_test"))
        except Exception as exc:  # noqa: BLE001 - any failure here means "no server"
            missing_service(f"PostgreSQL at {PG_URL} is not usable: {exc}")
        database = Database(url)
        database.upgrade()
        database.dispose()
        yield url


def _reset_postgres(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables if t.name != "counters")
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        conn.execute(text("UPDATE counters SET value = 999 WHERE name = 'request'"))
    engine.dispose()


def _sqlite_url(template: Path, tmp_path: Path) -> str:
    path = tmp_path / "hotline.sqlite3"
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def db(_sqlite_template: Path, tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite database of this test's own."""
    database = Database(_sqlite_url(_sqlite_template, tmp_path))
    yield database
    database.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_db(request: pytest.FixtureRequest, _sqlite_template: Path, tmp_path: Path) -> Iterator[Database]:
    """A migrated database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        url = _sqlite_url(_sqlite_template, tmp_path)
    else:
        url = request.getfixturevalue("_postgres_database")
        _reset_postgres(url)
    database = Database(url)
    yield database
    database.dispose()


@pytest.fixture
def redis_url() -> str:
    """A Redis server URL; tests keep to their own key names."""
    if not REDIS_URL:
        missing_service("HOTLINE_TEST_REDIS_URL is not set")
    import redis

    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError as exc:
        missing_service(f"Redis at {REDIS_URL} is not reachable: {exc}")
    return REDIS_URL  # type: ignore[return-value]


@pytest.fixture
def make_settings(tmp_path: Path, db: Database):
    """Settings for a test: its own data dir and database, plus any variables given."""

    def make(**env: str) -> Settings:
        base = {
            "HOTLINE_DATA_DIR": str(tmp_path / "data"),
            "HOTLINE_DATABASE_URL": db.url,
            "HOTLINE_SECRET_KEY": "test-secret-key",
        }
        return load_settings({**base, **env})

    return make


@pytest.fixture
def settings(make_settings) -> Settings:
    return make_settings()


@dataclass
class ProxiedPostgres:
    """A PostgreSQL database behind a proxy: `url` goes through it, `proxy` cuts it."""

    url: str
    proxy: DbProxy

    def cut(self) -> None:
        self.proxy.cut()

    def restore(self) -> None:
        self.proxy.restore()

    def freeze(self) -> None:
        self.proxy.freeze()


@pytest.fixture
def pg_via_proxy(_postgres_database: str) -> Iterator[ProxiedPostgres]:
    """The emptied test PostgreSQL database, reached through a proxy that can be cut."""
    _reset_postgres(_postgres_database)
    direct = make_url(_postgres_database)
    proxy = DbProxy((direct.host or "127.0.0.1", direct.port or 5432))
    url = direct.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        yield ProxiedPostgres(url, proxy)
    finally:
        proxy.cut()


@pytest.fixture
def proxied_db(pg_via_proxy: ProxiedPostgres) -> Iterator[Database]:
    """A Database on `pg_via_proxy`; a module overrides `db` with it to run its tests there."""
    database = Database(pg_via_proxy.url)
    yield database
    database.dispose()
