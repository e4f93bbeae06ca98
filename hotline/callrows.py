"""Call rows: the one write path of the `calls` table and its `call_events`.

`CallRows` is the small protocol: find a call by its backend id, insert one, update
the columns that changed, insert events; and a step's write checked against the row
it ran on (`move`; `make` for a new call), which on PostgreSQL is one statement run
without a transaction (`CallRowStore.autocommit`): a webhook there is a read and a
write, two round trips, plus the pool's ping. Two implementations hold to it (one contract
test, on SQLite and PostgreSQL): `CoreRows` with SQLAlchemy Core on any database, and
`SqliteRows` on the sqlite3 driver's own cursor, with the columns' own conversions,
because every webhook and FastAGI step writes a call row and Core's per-statement
overhead was most of their cost. `call_rows(conn)` picks the right one.

`start_call` is the find-or-make rule every writer of a call shares (the store, the
AMI log, call-backs through `hotline.calllog`). `CallRowStore` opens the transaction
these statements run in: on SQLite one writer at a time (`WriterLock`) and a
transaction begun on the driver (`driver_transaction`).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import lru_cache
from typing import Any, Protocol, cast

from sqlalchemy import (
    CTE,
    Connection,
    Dialect,
    Engine,
    Select,
    Table,
    bindparam,
    insert,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import JSON

from hotline.cleaning import clean_line
from hotline.models import Call, CallEvent, utcnow
from hotline.phones import stored_phone

CALLS = cast(Table, Call.__table__)
EVENTS = cast(Table, CallEvent.__table__)
EVENT_COLUMNS = ("call_id", "at", "kind", "detail", "data")
EVENTS_PER_STATEMENT = 20  # 100 parameters, far below SQLite's limit
FIND_CALL = select(*CALLS.c).where(
    CALLS.c.backend == bindparam("backend"), CALLS.c.backend_call_id == bindparam("call_id")
)
_FIND_CALL_LOCKED = FIND_CALL.with_for_update()
_INSERT_CALL = insert(CALLS)
_INSERT_EVENTS = insert(EVENTS)
# PostgreSQL: the events as one JSON document, read as rows: one statement and one
# parameter for any number of them (an executemany is a statement a row, pipelined or
# not: three quarters of the Twilio call-log writer's time with 300 events a batch;
# arrays a column were dumped element by element in Python). `n` keeps their order.
_PG_INSERT_EVENTS = text(
    "INSERT INTO call_events (call_id, at, kind, detail, data) SELECT call_id, at, kind, detail, data"
    " FROM ROWS FROM (json_to_recordset(CAST(:events AS JSON)) AS (call_id INTEGER,"
    " at TIMESTAMP WITH TIME ZONE, kind VARCHAR, detail TEXT, data JSON))"
    " WITH ORDINALITY AS e(call_id, at, kind, detail, data, n) ORDER BY n"
)
# The SET clause follows the parameters given (the columns a step changed).
_UPDATE_CALL = update(CALLS).where(CALLS.c.id == bindparam("call_id_"))


class CallRows(Protocol):
    """The call rows and their events on one connection, inside its transaction."""

    def find(self, backend: str, backend_call_id: str) -> dict[str, Any] | None:
        """The call's columns by key, None if there is no such call (locked on PostgreSQL)."""

    def insert_call(self, values: dict[str, Any]) -> int:
        """Insert a call (`values` has every column; a None id is the database's); its id."""

    def update_call(self, id_: int, changed: dict[str, Any]) -> None:
        """Set these columns of the call."""

    def insert_events(self, events: list[dict[str, Any]]) -> None:
        """Insert events, each with the keys of EVENT_COLUMNS."""

    def move(self, loaded: dict[str, Any], changed: dict[str, Any], events: list[dict[str, Any]]) -> bool:
        """Write a step run on the call row `loaded` (as read, every column), if the row
        is still that: set the `changed` columns and insert the `events` (of this call). False, and
        nothing written, if the row changed meanwhile (another step of the call won)."""

    def make(self, values: dict[str, Any], events: list[dict[str, Any]]) -> int | None:
        """Insert a call and its `events` (their call ids are set), unless a call with its
        backend id exists: its id, or None and nothing written."""


@lru_cache
def _move_statement(dialect: str, changed: tuple[str, ...], events: int) -> Any:
    """The statement of `CallRows.move` for these changed columns and this many events,
    made once (and compiled once: SQLAlchemy caches its SQL by the statement's shape).

    PostgreSQL: one statement, atomic by itself, so it runs without BEGIN and COMMIT
    (one round trip): `WITH moved AS (UPDATE calls … WHERE <unchanged> RETURNING id),
    logged AS (INSERT INTO call_events … SELECT … FROM moved) SELECT id FROM moved`.
    Elsewhere the UPDATE alone (its events follow it in the same transaction).
    """
    unchanged = []
    for c in CALLS.c:
        old = bindparam(f"old_{c.key}", type_=c.type)
        if c.primary_key or isinstance(c.type, JSON) and dialect != "postgresql":
            unchanged.append(c == old)  # `=` on the key: IS NOT DISTINCT FROM takes no index
        elif isinstance(c.type, JSON):  # json has no `=`, jsonb has
            unchanged.append(sql_cast(c, JSONB) == sql_cast(old, JSONB))
        else:
            unchanged.append(c.is_not_distinct_from(old))
    sets: dict[str, Any] = {k: bindparam(f"new_{k}", type_=CALLS.c[k].type) for k in changed}
    sets = sets or {"id": CALLS.c.id}  # nothing changed: the check alone
    moving = update(CALLS).where(*unchanged).values(sets)
    if dialect != "postgresql":
        return moving
    return _with_events(moving.returning(CALLS.c.id).cte("moved"), events)


@lru_cache
def _make_statement(events: int) -> Any:
    """`CallRows.make` on PostgreSQL as one statement, like `_move_statement`:
    `WITH made AS (INSERT INTO calls … ON CONFLICT DO NOTHING RETURNING id), logged AS
    (INSERT INTO call_events … SELECT … FROM made) SELECT id FROM made`."""
    values = {c.key: bindparam(f"new_{c.key}", type_=c.type) for c in CALLS.c if c.key != "id"}
    making = (
        pg_insert(CALLS).values(values).on_conflict_do_nothing(index_elements=["backend", "backend_call_id"])
    )
    return _with_events(making.returning(CALLS.c.id).cte("made"), events)


def _with_events(written: CTE, events: int) -> Select[Any]:
    """`SELECT id FROM written` that inserts this many events of that call (parameters
    `at_0`, `kind_0`, … in EVENT_COLUMNS' order) if there is a row."""
    found: Select[Any] = select(written.c.id)
    if not events:
        return found
    rows = [
        select(
            written.c.id,
            *(
                sql_cast(bindparam(f"{k}_{i}", type_=EVENTS.c[k].type), EVENTS.c[k].type)
                for k in EVENT_COLUMNS[1:]
            ),
        )
        for i in range(events)
    ]
    logged = insert(EVENTS).from_select(EVENT_COLUMNS, union_all(*rows) if events > 1 else rows[0])
    return found.add_cte(logged.cte("logged"))


def _event_params(params: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    for i, event in enumerate(events):
        params.update((f"{k}_{i}", event[k]) for k in EVENT_COLUMNS[1:])
    return params


def _make_in_transaction(rows: CallRows, values: dict[str, Any], events: list[dict[str, Any]]) -> int | None:
    """`CallRows.make` inside a write transaction that serialises writers (SQLite's)."""
    if rows.find(values["backend"], values["backend_call_id"]) is not None:
        return None
    id_ = rows.insert_call(values)
    rows.insert_events([{**e, "call_id": id_} for e in events])
    return id_


class CoreRows:
    """Call rows through SQLAlchemy Core (any database)."""

    def __init__(self, conn: Connection, *, lock: bool = True):
        self.conn = conn
        # The row lock serialises the steps of one call on PostgreSQL (webhooks of one
        # call may arrive together); SQLite's BEGIN IMMEDIATE already serialises writers.
        self.find_call = _FIND_CALL_LOCKED if lock and conn.dialect.name != "sqlite" else FIND_CALL

    def find(self, backend: str, backend_call_id: str) -> dict[str, Any] | None:
        found = self.conn.execute(self.find_call, {"backend": backend, "call_id": backend_call_id})
        row = found.mappings().first()
        return dict(row) if row is not None else None

    def find_many(self, backend: str, backend_call_ids: list[str]) -> dict[str, dict[str, Any] | None]:
        """`find` for many calls in one statement (locked as `find` locks): every id asked,
        None for a call not made yet."""
        query = select(*CALLS.c).where(
            CALLS.c.backend == backend, CALLS.c.backend_call_id.in_(backend_call_ids)
        )
        if self.find_call is _FIND_CALL_LOCKED:
            query = query.with_for_update()
        found: dict[str, dict[str, Any] | None] = dict.fromkeys(backend_call_ids)
        for row in self.conn.execute(query).mappings():
            found[row["backend_call_id"]] = dict(row)
        return found

    def insert_call(self, values: dict[str, Any]) -> int:
        given = {k: v for k, v in values.items() if v is not None}  # the id comes from the database
        return cast(int, self.conn.execute(_INSERT_CALL, given).inserted_primary_key[0])  # type: ignore[index]

    def update_call(self, id_: int, changed: dict[str, Any]) -> None:
        if changed:
            self.conn.execute(_UPDATE_CALL, {**changed, "call_id_": id_})

    def insert_events(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        if self.conn.dialect.name != "postgresql":
            self.conn.execute(_INSERT_EVENTS, events)
            return
        self.conn.execute(_PG_INSERT_EVENTS, {"events": _json_rows(self.conn.dialect, EVENTS, events)})

    def move(self, loaded: dict[str, Any], changed: dict[str, Any], events: list[dict[str, Any]]) -> bool:
        dialect = self.conn.dialect.name
        params = {f"old_{k}": v for k, v in loaded.items()}
        params.update((f"new_{k}", v) for k, v in changed.items())
        if dialect != "postgresql":
            if self.conn.execute(_move_statement(dialect, tuple(changed), 0), params).rowcount != 1:
                return False
            self.insert_events(events)
            return True
        statement = _move_statement(dialect, tuple(changed), len(events))
        return self.conn.execute(statement, _event_params(params, events)).first() is not None

    def make(self, values: dict[str, Any], events: list[dict[str, Any]]) -> int | None:
        if self.conn.dialect.name != "postgresql":
            return _make_in_transaction(self, values, events)
        params = _event_params({f"new_{k}": v for k, v in values.items()}, events)
        return cast(int | None, self.conn.execute(_make_statement(len(events)), params).scalar())


class BatchRows:
    """CallRows for many calls written in one transaction (the call-log writers'
    batches): their rows read in one statement; on PostgreSQL what the batch writes
    goes at its end (`write`) in a statement a kind (the calls changed, the calls made,
    their events), not one a call: a round trip each, the writer's time under load. A
    call made here takes its id from the sequence at once (one statement for the batch)."""

    def __init__(self, rows: CoreRows, backend: str, backend_call_ids: list[str]):
        self.rows = rows
        self.found = rows.find_many(backend, backend_call_ids)
        self.defer = rows.conn.dialect.name == "postgresql"
        new = sum(values is None for values in self.found.values()) if self.defer else 0
        self.ids = list(rows.conn.execute(_PG_NEW_CALL_IDS, {"n": new}).scalars()) if new else []
        self.ids.reverse()  # taken from the end: in the order the calls come
        self.made: dict[int, dict[str, Any]] = {}
        self.changed: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []

    def find(self, backend: str, backend_call_id: str) -> dict[str, Any] | None:
        if backend_call_id in self.found:
            return self.found.pop(backend_call_id)  # read once: a call made since is found again
        self.write()  # (a call twice in a batch: its first part is written, then read)
        return self.rows.find(backend, backend_call_id)

    def insert_call(self, values: dict[str, Any]) -> int:
        if not self.defer:
            return self.rows.insert_call(values)
        id_ = self.ids.pop() if self.ids else self.rows.conn.execute(_PG_NEW_CALL_IDS, {"n": 1}).scalar_one()
        self.made[id_] = {**values, "id": id_}
        return cast(int, id_)

    def update_call(self, id_: int, changed: dict[str, Any]) -> None:
        if not self.defer:
            self.rows.update_call(id_, changed)
        elif id_ in self.made:
            self.made[id_].update(changed)
        else:
            self.changed.setdefault(id_, {}).update(changed)

    def insert_events(self, events: list[dict[str, Any]]) -> None:
        if self.defer:
            self.events += events
        else:
            self.rows.insert_events(events)

    def move(self, loaded: dict[str, Any], changed: dict[str, Any], events: list[dict[str, Any]]) -> bool:
        self.write()  # in the order written
        return self.rows.move(loaded, changed, events)

    def make(self, values: dict[str, Any], events: list[dict[str, Any]]) -> int | None:
        self.write()
        return self.rows.make(values, events)

    def write(self) -> None:
        """Send what was deferred: a renamed call out of the way before its new one is made."""
        conn = self.rows.conn
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for id_, changed in self.changed.items():
            by_columns.setdefault(tuple(sorted(changed)), []).append({**changed, "id": id_})
        for columns, rows in by_columns.items():
            document = _json_rows(conn.dialect, CALLS, rows)
            conn.execute(_pg_update_calls(conn.dialect, columns), {"rows": document})
        if self.made:
            document = _json_rows(conn.dialect, CALLS, list(self.made.values()))
            conn.execute(_pg_insert_calls(conn.dialect), {"rows": document})
        self.rows.insert_events(self.events)
        self.made, self.changed, self.events = {}, {}, []


_PG_NEW_CALL_IDS = text("SELECT nextval(pg_get_serial_sequence('calls', 'id')) FROM generate_series(1, :n)")


def _record(dialect: Dialect, columns: tuple[str, ...]) -> str:
    """`json_to_recordset`'s column list for these columns of the calls table."""
    quote = dialect.identifier_preparer.quote
    return ", ".join(f"{quote(CALLS.c[k].name)} {CALLS.c[k].type.compile(dialect)}" for k in columns)


@lru_cache
def _pg_update_calls(dialect: Dialect, columns: tuple[str, ...]) -> Any:
    quote = dialect.identifier_preparer.quote
    sets = ", ".join(f"{quote(CALLS.c[k].name)} = r.{quote(CALLS.c[k].name)}" for k in columns)
    return text(
        f"UPDATE calls SET {sets} FROM json_to_recordset(CAST(:rows AS JSON))"
        f" AS r({_record(dialect, ('id', *columns))}) WHERE calls.id = r.id"
    )


@lru_cache
def _pg_insert_calls(dialect: Dialect) -> Any:
    names = ", ".join(dialect.identifier_preparer.quote(c.name) for c in CALLS.c)
    return text(
        f"INSERT INTO calls ({names}) SELECT {names} FROM json_to_recordset(CAST(:rows AS JSON))"
        f" AS r({_record(dialect, tuple(c.key for c in CALLS.c))})"
    )


def _json_rows(dialect: Dialect, table: Table, rows: list[dict[str, Any]]) -> str:
    """Rows of `table` as one JSON document, each value as its column binds it."""
    binds = _binds(dialect, table)
    return json.dumps([{k: _json_value(binds[k], v) for k, v in row.items()} for row in rows])


def _json_value(bind: Any, value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return bind(value).isoformat()  # UTCDateTime: aware, in UTC (a naive one is refused)
    return value


@lru_cache
def _binds(dialect: Dialect, table: Table) -> dict[str, Any]:
    """The columns' own conversions to the driver's values (SQLAlchemy's), by key."""
    return {c.key: c.type.dialect_impl(dialect).bind_processor(dialect) for c in table.c}


class _SqliteStatements:
    """The statements as SQL for the sqlite3 driver, with the columns' own conversions
    (SQLAlchemy's bind and result processors), made once per dialect."""

    def __init__(self, dialect: Dialect):
        quote = dialect.identifier_preparer.quote
        self.keys = [c.key for c in CALLS.c]
        names = ", ".join(quote(c.name) for c in CALLS.c)
        self.find = f"SELECT {names} FROM calls WHERE backend = ? AND backend_call_id = ?"
        self.insert_call = f"INSERT INTO calls ({names}) VALUES ({', '.join('?' for _ in CALLS.c)})"
        event_names = ", ".join(quote(EVENTS.c[k].name) for k in EVENT_COLUMNS)
        # One statement for a step's few events: every statement is a trip out of the
        # interpreter lock, made while every process waits for this writer.
        self.insert_events = [
            f"INSERT INTO call_events ({event_names}) VALUES " + ", ".join(["(?, ?, ?, ?, ?)"] * n)
            for n in range(1 + EVENTS_PER_STATEMENT)
        ]
        self.quote = quote
        self.results = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in CALLS.c]
        self.binds = _binds(dialect, CALLS)
        self.event_binds = [_binds(dialect, EVENTS)[k] for k in EVENT_COLUMNS]
        self.names = {c.key: c.name for c in CALLS.c}
        self.unchanged = " AND ".join(f"{quote(c.name)} {'=' if c.primary_key else 'IS'} ?" for c in CALLS.c)

    def bind(self, key: str, value: Any) -> Any:
        process = self.binds[key]
        return process(value) if process is not None and value is not None else value


_statements: dict[int, _SqliteStatements] = {}


class SqliteRows:
    """Call rows on the sqlite3 connection under SQLAlchemy's (or the driver's) transaction."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        key = id(conn.dialect)
        if key not in _statements:  # a dialect lives as long as its engine
            _statements[key] = _SqliteStatements(conn.dialect)
        self.s = _statements[key]

    def _run(self, sql: str, params: Any, many: bool = False) -> Any:
        try:
            return (self.cursor.executemany if many else self.cursor.execute)(sql, params)
        except self.conn.dialect.loaded_dbapi.Error as exc:  # as Core would raise it
            raise driver_error(self.conn, sql, params, exc) from exc

    def find(self, backend: str, backend_call_id: str) -> dict[str, Any] | None:
        row = self._run(self.s.find, (backend, backend_call_id)).fetchone()
        if row is None:
            return None
        return {
            key: process(value) if process is not None else value
            for key, process, value in zip(self.s.keys, self.s.results, row, strict=True)
        }

    def insert_call(self, values: dict[str, Any]) -> int:
        self._run(self.s.insert_call, [self.s.bind(k, values.get(k)) for k in self.s.keys])
        return cast(int, self.cursor.lastrowid)

    def update_call(self, id_: int, changed: dict[str, Any]) -> None:
        if not changed:
            return
        sets = ", ".join(f"{self.s.quote(self.s.names[k])} = ?" for k in changed)
        params = [self.s.bind(k, v) for k, v in changed.items()]
        self._run(f"UPDATE calls SET {sets} WHERE id = ?", [*params, id_])

    def insert_events(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        binds = self.s.event_binds
        values = [
            p(e[k]) if p is not None and e[k] is not None else e[k]
            for e in events
            for k, p in zip(EVENT_COLUMNS, binds, strict=True)
        ]
        width = len(EVENT_COLUMNS) * EVENTS_PER_STATEMENT
        for start in range(0, len(values), width):
            chunk = values[start : start + width]
            self._run(self.s.insert_events[len(chunk) // len(EVENT_COLUMNS)], chunk)

    def move(self, loaded: dict[str, Any], changed: dict[str, Any], events: list[dict[str, Any]]) -> bool:
        q, names = self.s.quote, self.s.names
        sets = ", ".join(f"{q(names[k])} = ?" for k in changed) or "id = id"
        params = [self.s.bind(k, v) for k, v in changed.items()]
        params += [self.s.bind(k, loaded[k]) for k in self.s.keys]
        if self._run(f"UPDATE calls SET {sets} WHERE {self.s.unchanged}", params).rowcount != 1:
            return False
        self.insert_events(events)
        return True

    def make(self, values: dict[str, Any], events: list[dict[str, Any]]) -> int | None:
        return _make_in_transaction(self, values, events)


def call_rows(conn: Connection, *, lock: bool = True) -> CallRows:
    """The fastest CallRows for this connection's database (in a transaction already)."""
    return SqliteRows(conn) if conn.dialect.name == "sqlite" else CoreRows(conn, lock=lock)


def new_call(
    backend: str,
    backend_call_id: str,
    *,
    from_number: str | None = None,
    to_number: str | None = None,
    caller_name: str | None = None,
    started_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """A call's columns before its insert: every column, the id still None."""
    values: dict[str, Any] = {c.key: None for c in CALLS.c}
    values.update(
        backend=backend,
        backend_call_id=backend_call_id,
        from_number=from_number,
        to_number=to_number,
        caller_name=caller_name,
        started_at=started_at or utcnow(),
        flow_state={},
    )
    return values


def start_call(
    rows: CallRows,
    backend: str,
    backend_call_id: str,
    *,
    from_number: str | None = None,
    to_number: str | None = None,
    caller_name: str | None = None,
    started_at: dt.datetime | None = None,
    starts: bool = False,
) -> dict[str, Any]:
    """The call with this backend id, made on first sight (webhooks and AMI repeat
    themselves); a number or name that comes late fills its gap.

    What the backend says is untrusted: phones are stored as `hotline.phones` keeps
    them (E.164, or the cleaned text), the name cleaned to one line. `starts`: the
    backend says a call begins; a call with this id that has ended is an old one (a
    reused id), renamed out of the way so the new call starts afresh.
    """
    from_number, to_number = stored_phone(from_number), stored_phone(to_number)
    caller_name = clean_line(caller_name, 200) or None
    values = rows.find(backend, backend_call_id)
    if values is not None and starts and values["ended_at"] is not None:
        rows.update_call(values["id"], {"backend_call_id": f"{backend_call_id}#{values['id']}"[:120]})
        values = None
    if values is None:
        values = new_call(
            backend,
            backend_call_id,
            from_number=from_number,
            to_number=to_number,
            caller_name=caller_name,
            started_at=started_at,
        )
        values["id"] = rows.insert_call(values)
        return values
    given = {"from_number": from_number, "to_number": to_number, "caller_name": caller_name}
    gaps = {k: v for k, v in given.items() if v and not values[k]}
    if gaps:
        rows.update_call(values["id"], gaps)
        values.update(gaps)
    return values


def driver_error(conn: Connection, sql: str, params: Any, exc: Exception) -> DBAPIError:
    """A driver's error as SQLAlchemy would raise it."""
    return cast(DBAPIError, DBAPIError.instance(sql, params, exc, conn.dialect.loaded_dbapi.Error))


@contextmanager
def driver_transaction(conn: Connection) -> Iterator[None]:
    """One SQLite transaction begun and ended on the driver's connection.

    SQLAlchemy's begin and commit cost as much as a step's statements; a session
    made later in it joins it (see `hotline.db`) and then commits through SQLAlchemy.
    """
    driver = conn.connection.driver_connection
    assert driver is not None
    try:
        driver.execute("BEGIN IMMEDIATE")
    except conn.dialect.loaded_dbapi.Error as exc:
        raise driver_error(conn, "BEGIN IMMEDIATE", (), exc) from exc
    try:
        yield
    except BaseException:
        driver.rollback()
        raise
    try:
        if conn.in_transaction():
            conn.commit()
        else:
            driver.commit()
    except conn.dialect.loaded_dbapi.Error as exc:
        driver.rollback()
        raise driver_error(conn, "COMMIT", (), exc) from exc


class WriterLock:
    """One SQLite writer at a time among this process's threads and, for a database
    file, every process using it (an flock on a file beside it)."""

    def __init__(self, database: str | None):
        self._threads = threading.Lock()
        self._path = f"{database}.writer-lock" if database and database != ":memory:" else None
        self._fd: int | None = None

    def __enter__(self) -> None:
        self._threads.acquire()
        if self._path is None:
            return
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()


class CallRowStore:
    """Transactions for call rows on one engine: `with store.transaction() as (conn, rows)`."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        # SQLite has one writer at a time and makes the others sleep and poll
        # (busy_timeout), which turns contention into second-long stalls; queueing
        # the writers of every process on a lock is much fairer and faster.
        self.writer_lock: AbstractContextManager[object] = (
            WriterLock(engine.url.database) if self.sqlite else nullcontext()
        )

    @contextmanager
    def transaction(
        self, *, lock: bool = True, conn: Connection | None = None
    ) -> Iterator[tuple[Connection, CallRows]]:
        """A connection (`conn`, or one from the pool) in one write transaction and the
        call rows on it; committed on success."""
        # The connection is taken from the pool before queueing for the writer lock,
        # which every step of every process waits for: keep the work under it short.
        with (
            self.engine.connect() if conn is None else nullcontext(conn) as conn,
            self.writer_lock,
            driver_transaction(conn) if self.sqlite else conn.begin(),
        ):
            yield conn, call_rows(conn, lock=lock)

    @contextmanager
    def autocommit(self, conn: Connection) -> Iterator[None]:
        """`conn` without a transaction of its own for a while: each read sees the
        latest commit and `move` is one statement, both without BEGIN and COMMIT
        (round trips on PostgreSQL; SQLite's driver is in autocommit already)."""
        if self.sqlite:
            yield
            return
        conn.execution_options(isolation_level="AUTOCOMMIT")
        yield  # on an error the pool restores the connection's isolation level
        conn.commit()  # SQLAlchemy's side only: the driver has nothing open
        conn.execution_options(isolation_level=conn.default_isolation_level)

    def move(
        self, conn: Connection, loaded: dict[str, Any], changed: dict[str, Any], events: list[dict[str, Any]]
    ) -> bool:
        """`CallRows.move` committed: on SQLite in its own write transaction, on
        PostgreSQL as one statement (`conn` in `autocommit`)."""
        if not self.sqlite:
            return call_rows(conn, lock=False).move(loaded, changed, events)
        with self.transaction(conn=conn) as (_, rows):
            return rows.move(loaded, changed, events)

    def make(self, conn: Connection, values: dict[str, Any], events: list[dict[str, Any]]) -> int | None:
        """`CallRows.make` committed, as `move` is."""
        if not self.sqlite:
            return call_rows(conn, lock=False).make(values, events)
        with self.transaction(conn=conn) as (_, rows):
            return rows.make(values, events)
