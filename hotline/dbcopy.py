"""Copying the hotline's data into another database: SQLite → PostgreSQL to scale out.

The target is brought to the current schema by the migrations, then every table of
the models is copied in foreign-key order, in batches, in one transaction on the
target: a copy that fails leaves the target as empty as it was. The source is read
in one transaction too (a snapshot, also while the service writes to it). Afterwards
PostgreSQL's id sequences continue after the highest copied id, or after the source's
own sequence when the source is PostgreSQL too and has given out more (rows deleted at
the end: their ids, in old /requests/<id> links, must not name another row), and the
request counter after the highest copied number, so no number a customer holds is
issued again.

Passwords: a URL with a password on the command line shows in `ps` and the shell's
history. Leave it out (`postgresql://hotline@db-host/hotline`): psycopg connects
through libpq, which then reads PGPASSWORD or ~/.pgpass (mode 0600).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from hotline import search
from hotline.db import Database, current_revision, head_revision, make_engine, translate_errors, unavailable
from hotline.errors import HotlineError, UserError
from hotline.models import Base, Counter, Request
from hotline.numbers import FIRST_SEQUENCE, make_request_number

__all__ = ["BATCH", "CopyFailed", "CopyReport", "copy_database"]

#: Rows read and written at a time: memory stays bounded, however large a table is.
BATCH = 1000
REQUEST_COUNTER = "request"


class CopyFailed(HotlineError):
    """A row could not be written to the target (the target is left without data)."""


@dataclass
class CopyReport:
    """What was copied: rows per table, in the order copied, and the next request number."""

    rows: dict[str, int]
    next_number: str
    seconds: float


def _normal_url(url: str) -> str:
    """`url` with psycopg 3 as the PostgreSQL driver, as HOTLINE_DATABASE_URL is read."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def copy_database(source_url: str, target_url: str, *, batch: int = BATCH) -> CopyReport:
    """Copy every row of `source_url` into `target_url`, which must hold no data yet."""
    source_url, target_url = _normal_url(source_url), _normal_url(target_url)
    if make_url(source_url) == make_url(target_url):
        raise UserError("the source and the target are the same database")
    started = time.monotonic()
    source = _source_engine(source_url)
    target = Database(target_url)
    try:
        with translate_errors():
            _check_schema(source)
            target.upgrade()
            with _snapshot(source) as reader, target.engine.begin() as writer:
                _refuse_data(writer)
                rows = {table.name: _copy_table(reader, writer, table, batch) for table in _tables()}
                _verify(reader, writer, rows)
                next_number = _continue_numbers(writer)
                _continue_ids(writer, _next_ids(reader))
                if writer.dialect.name == "sqlite":
                    search.rebuild_index(writer)  # SQLite's word index is a table outside the models
    finally:
        source.dispose()
        target.dispose()
    return CopyReport(rows, next_number, time.monotonic() - started)


def _tables() -> list[Table]:
    # Alembic's version table is not in the models: the target has its own.
    return list(Base.metadata.sorted_tables)


def _source_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return make_engine(url, pool_size=1, max_overflow=0)
    if not parsed.database or not Path(parsed.database).is_file():
        raise UserError(f"no database to copy from: {parsed.database or url} does not exist")
    engine = create_engine(url, connect_args={"timeout": 30})

    # A deferred BEGIN, not hotline.db's BEGIN IMMEDIATE: a read transaction sees one
    # snapshot of the database (WAL) and takes no write lock from the running service.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA busy_timeout=30000")

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection that reads the source as it was at one moment, and writes nothing."""
    options: dict[str, Any] = {}
    if engine.dialect.name == "postgresql":
        options = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
    with engine.connect().execution_options(**options) as conn, conn.begin():
        yield conn


def _check_schema(source: Engine) -> None:
    revision = current_revision(source)
    if revision is None:
        raise UserError(f"no hotline database to copy from at {_shown(source)}")
    head = head_revision()
    if head is not None and revision != head:
        raise UserError(
            f"the source database is at migration {revision}, this version needs {head}: "
            "run `hotline db upgrade` on it first"
        )


def _refuse_data(writer: Connection) -> None:
    """UserError unless the target holds nothing but what the migrations put there."""
    for table in _tables():
        if table.name == Counter.__tablename__:
            continue
        if writer.execute(select(1).select_from(table).limit(1)).first() is not None:
            raise UserError(
                f"the target database already holds data (table {table.name}): "
                f"copy only into an empty database, not {_shown(writer)}"
            )
    # The migrations seed the request counter below the first number.
    counters = writer.execute(select(Counter.name, Counter.value)).all()
    if any(name != REQUEST_COUNTER or value >= FIRST_SEQUENCE for name, value in counters):
        raise UserError(f"the target database already issued request numbers: {_shown(writer)}")
    writer.execute(delete(Counter))  # the source's counters replace the seeded ones


def _copy_table(reader: Connection, writer: Connection, table: Table, batch: int) -> int:
    copied = 0
    rows = reader.execute(
        select(table).order_by(*table.primary_key.columns), execution_options={"yield_per": batch}
    )
    for part in rows.partitions():
        try:
            writer.execute(insert(table), [row._asdict() for row in part])
        except DBAPIError as exc:
            if unavailable(exc) is not None:
                raise  # translate_errors makes it DatabaseUnavailable
            first_line = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else ""
            span = f"row {copied + 1}" if len(part) == 1 else f"rows {copied + 1}–{copied + len(part)}"
            raise CopyFailed(
                f"copy failed in table {table.name} ({span}): {first_line}; the target holds no data"
            ) from exc
        copied += len(part)
    return copied


def _verify(reader: Connection, writer: Connection, copied: dict[str, int]) -> None:
    for table in _tables():
        count = select(func.count()).select_from(table)
        there, here = reader.execute(count).scalar_one(), writer.execute(count).scalar_one()
        if not there == here == copied[table.name]:
            raise CopyFailed(
                f"table {table.name}: {there} rows in the source, {copied[table.name]} copied, "
                f"{here} in the target; the target holds no data"
            )


def _continue_numbers(writer: Connection) -> str:
    """Set the request counter past every copied number; the next number it will issue."""
    # Numbers are digits only, so the longest and then the greatest string is the highest.
    highest = writer.execute(
        select(Request.number).order_by(func.length(Request.number).desc(), Request.number.desc()).limit(1)
    ).scalar()
    counter = writer.execute(select(Counter.value).where(Counter.name == REQUEST_COUNTER)).scalar()
    value = max(FIRST_SEQUENCE - 1, counter or 0, int(highest[:-1]) if highest else 0)  # no check digit
    if counter is None:
        writer.execute(insert(Counter).values(name=REQUEST_COUNTER, value=value))
    elif value != counter:
        writer.execute(update(Counter).where(Counter.name == REQUEST_COUNTER).values(value=value))
    return make_request_number(value + 1)


def _serial_sequences(conn: Connection) -> Iterator[tuple[Table, Any, str]]:
    """PostgreSQL: each table with an id sequence, its id column and the sequence's name."""
    quote = conn.dialect.identifier_preparer
    for table in _tables():
        column = table.autoincrement_column
        if column is None:
            continue
        sequence = conn.execute(
            select(func.pg_get_serial_sequence(quote.format_table(table), column.name))
        ).scalar()
        if sequence is not None:
            yield table, column, sequence


def _next_ids(reader: Connection) -> dict[str, int]:
    """The id each of a PostgreSQL source's sequences would give next, by table (SQLite: none)."""
    if reader.dialect.name != "postgresql":
        return {}  # SQLite's tables have no AUTOINCREMENT: max(rowid) + 1 is all it remembers
    out: dict[str, int] = {}
    for table, _, sequence in _serial_sequences(reader):
        # The name comes from pg_get_serial_sequence, quoted; a sequence is read like a table.
        last, called = reader.execute(text(f"SELECT last_value, is_called FROM {sequence}")).one()
        out[table.name] = last + 1 if called else last
    return out


def _continue_ids(writer: Connection, source_next: dict[str, int]) -> None:
    """PostgreSQL: each id sequence continues after the highest copied id and the source's."""
    if writer.dialect.name != "postgresql":
        return  # SQLite gives max(rowid) + 1 by itself
    for table, column, sequence in list(_serial_sequences(writer)):
        copied_next = writer.execute(select(func.coalesce(func.max(column), 0) + 1)).scalar_one()
        writer.execute(select(func.setval(sequence, max(copied_next, source_next.get(table.name, 1)), False)))


def _shown(conn: Connection | Engine) -> str:
    return conn.engine.url.render_as_string(hide_password=True)
