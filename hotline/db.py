"""The database: one engine per process, one session per unit of work, Alembic migrations."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from hotline import search  # noqa: F401 - registers the search index's flush hook on every Session
from hotline.errors import EX_CONFIG, Unavailable

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "Database",
    "DatabaseMisconfigured",
    "DatabaseUnavailable",
    "alembic_config",
    "database_for",
    "scratch_postgres",
    "unavailable",
    "upgrade",
]


class DatabaseUnavailable(Unavailable):
    """The database server cannot be reached (down, restarting, wrong URL): exit status 3,
    systemd starts the command again."""


class DatabaseMisconfigured(DatabaseUnavailable):
    """The server answers but refuses us for good (wrong password, no such role or
    database): waiting does not help, a person must fix the URL or the server. Still a
    DatabaseUnavailable, so a running service answers 503 as when the server is down."""

    exit_status = EX_CONFIG  # 78: systemd does not restart it (RestartPreventExitStatus)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Take transactions into our own hands (see _sqlite_begin) and set the pragmas
    # the service relies on: WAL so readers never block the writer, enforced foreign
    # keys, and a busy timeout so that concurrent writers queue instead of failing.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # BEGIN IMMEDIATE takes the write lock up front: a deferred transaction that reads
    # and then writes can fail with SQLITE_BUSY when another writer got in between,
    # and busy_timeout does not help there. Writes are short, so queueing is cheap.
    # A transaction begun on the driver's connection (ivr.store's hot path) is joined.
    if not conn.connection.driver_connection.in_transaction:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


#: Seconds a new PostgreSQL connection may take before the database counts as down
#: (libpq's connect_timeout, unless the URL sets its own).
CONNECT_SECONDS = 10
#: Seconds an open PostgreSQL connection may go without a sign of the server before it
#: counts as broken: data sent and not acknowledged, or no answer to the keepalive probes
#: that start after this much silence while a query runs (libpq's tcp_user_timeout and
#: keepalives_idle, unless the URL sets its own).
TCP_SECONDS = 10


def pg_timeouts(url: str) -> dict[str, int]:
    """libpq's time limits for a PostgreSQL connection to `url`, but those the URL sets.

    A server that never answers (a dropped SYN, a host that died, a network partition)
    is down, not slow: libpq alone would wait for the kernel's TCP retries, 2 minutes to
    connect and 15 on an open connection, holding the page, the webhook or the job.
    """
    timeouts = {
        "connect_timeout": CONNECT_SECONDS,
        "keepalives": 1,
        "keepalives_idle": TCP_SECONDS,
        "keepalives_interval": max(1, TCP_SECONDS // 5),
        "tcp_user_timeout": TCP_SECONDS * 1000,  # milliseconds
    }
    query = make_url(url).query
    return {name: value for name, value in timeouts.items() if name not in query}


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url` with the settings the hotline needs on each backend."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)  # survive a database restart
    kwargs["connect_args"] = {**pg_timeouts(url), **kwargs.get("connect_args", {})}
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn the driver's "no connection" errors into DatabaseUnavailable; others pass."""
    try:
        yield
    except DBAPIError as exc:
        down = unavailable(exc)
        if down is None:
            raise
        raise down from exc


class Database:
    """The engine and session factory of one process."""

    def __init__(self, url: str, **engine_kwargs: Any):
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with translate_errors(), self._sessions.begin() as session:
            yield session

    def ping(self) -> None:
        """Check that the database answers; DatabaseUnavailable if it does not."""
        # A raw connection: no transaction, so SQLite's BEGIN IMMEDIATE never waits on a writer.
        try:
            with translate_errors():
                conn = self.engine.raw_connection()  # PostgreSQL: checked by pool_pre_ping
            try:
                cursor = conn.cursor()
                cursor.execute("SELECT 1")
                cursor.close()
            finally:
                conn.close()
        except self.engine.dialect.loaded_dbapi.Error as exc:  # SELECT 1 fails only for want of a server
            raise database_error(str(exc)) from exc

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A Core connection in one transaction (no ORM session): for hot paths."""
        with translate_errors(), self.engine.begin() as conn:
            yield conn

    def upgrade(self) -> tuple[str | None, str | None] | None:
        """Apply the migrations; a database already at the head costs one query, no Alembic.

        Returns (the revision it was at, the one it is at now) when it migrated, else None."""
        with translate_errors():
            head = head_revision()
            before = current_revision(self.engine)
            if head is not None and before == head:
                return None
            upgrade(self.engine)
            after = current_revision(self.engine)
            return None if after == before else (before, after)

    def dispose(self) -> None:
        self.engine.dispose()


_databases: dict[str, Database] = {}
_databases_lock = threading.Lock()


def database_for(url: str) -> Database:
    """This process's database for `url`, made on first use: one engine (and one pool) per
    process, shared by `hotline serve`'s HTTP threads, its services and its queued jobs."""
    with _databases_lock:
        database = _databases.get(url)
        if database is None:
            database = _databases[url] = Database(url)
        return database


#: Lower-case fragments of driver messages that mean "no connection", not "bad SQL".
_CONNECTION_ERRORS = (
    "connection refused",
    "could not connect",
    "server closed",
    "terminating connection",
    "connection failed",
    "connection is closed",
    "connection already closed",
    "connection timed out",
    "timeout expired",
    "could not translate host name",
    "no route to host",
    "network is unreachable",
    "the database system is starting up",
    "the database system is shutting down",
    "ssl syscall error",
    "consuming input failed",
    "unable to open database file",  # SQLite: the disk or folder is gone
)


#: Fragments of PostgreSQL's refusals that no wait cures, with what to fix.
_REFUSALS = (
    ("password authentication failed", "fix the user name or password in HOTLINE_DATABASE_URL"),
    ("no password supplied", "put the password in HOTLINE_DATABASE_URL"),
    ("authentication failed", "fix the user name or password in HOTLINE_DATABASE_URL, or pg_hba.conf"),
    ("no pg_hba.conf entry", "allow this host and user in the server's pg_hba.conf"),
    ("role", "create the role (createuser -P hotline) or fix the user in HOTLINE_DATABASE_URL"),
    ("database", "create the database (createdb -O hotline hotline) or fix its name in HOTLINE_DATABASE_URL"),
    ("permission denied for database", "grant the user CONNECT on the database"),
)


def database_error(message: str) -> DatabaseUnavailable:
    """DatabaseMisconfigured if the driver's `message` is a refusal for good, else
    DatabaseUnavailable; one line either way."""
    first_line = " ".join(message.strip().splitlines()[0].split()) if message.strip() else "no answer"
    lowered = first_line.lower()
    for fragment, fix in _REFUSALS:
        if fragment in {"role", "database"}:
            if f'fatal: {fragment} "' not in lowered or "does not exist" not in lowered:
                continue
        elif fragment not in lowered:
            continue
        # Keep the server's own words: "FATAL: role "x" does not exist".
        reason = first_line[lowered.index("fatal:") :] if "fatal:" in lowered else first_line
        return DatabaseMisconfigured(f"database refused the connection: {reason}; {fix}")
    return DatabaseUnavailable(f"database unavailable: {first_line}")


def unavailable(exc: DBAPIError) -> DatabaseUnavailable | None:
    """The DatabaseUnavailable that `exc` means, or None if it is another database error."""
    text = str(exc.orig).lower()
    if exc.connection_invalidated or any(s in text for s in _CONNECTION_ERRORS):
        return database_error(str(exc.orig) or type(exc.orig).__name__)
    return None


@contextmanager
def scratch_postgres(server_url: str, prefix: str = "hotline_scratch") -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database on the server of `server_url`,
    dropped afterwards (the tests' databases and the benchmarks' are made here)."""
    import uuid

    server = make_url(server_url).set(drivername="postgresql+psycopg")
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def alembic_config(engine: Engine | None = None, url: str | None = None) -> Config:
    """An Alembic config pointing at the migrations shipped in this package."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(files("hotline") / "migrations"))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the migrations up to `revision`."""
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, None for an empty database."""
    # One query, no schema inspection (which imports a good part of SQLAlchemy again).
    with engine.connect() as conn:
        try:
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        except DBAPIError as exc:
            if unavailable(exc) is not None:
                raise
            return None  # no such table: an empty database


_REVISION = re.compile(r"^(down_)?revision\s*=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)


@cache
def head_revision() -> str | None:
    """The last revision shipped, read from the migration files without importing Alembic
    (which costs a command a third of a second); None if it cannot be told that way."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (files("hotline") / "migrations" / "versions").iterdir():
        if not path.name.endswith(".py"):
            continue
        for down, value in _REVISION.findall(path.read_text(encoding="utf-8")):
            (parents if down else revisions).add(value)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None
