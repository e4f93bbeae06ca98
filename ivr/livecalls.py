"""Calls in progress held in memory, their call log written behind them.

`LiveCallStore` is the `CallStore` of a backend whose calls stay with one process
from start to end (FastAGI: the call is one socket). It keeps each call's flow state
in memory and runs the flow there, so a caller never waits on a database write
between two prompts: a step's call-log writes (events, flow state, outcome, the end
of the call) are queued, and one writer thread per store writes the queue of every
call in one transaction at a time (with 500 calls arriving at once, tens of
transactions instead of thousands, and no caller queued behind another's commit).

What still reaches the database on the caller's path is what the caller waits for
anyway: reading a request's status (a read, no write lock), and the rare steps that
write a request or store a recording — those wait for the call's queued log, then
run as one `CallStore` transaction, as every step did before. The call log survives
a hang-up at any step: the hang-up is one more queued write; the queue is written
before the process exits (`close`, also at interpreter exit), and while the database
is down the writer keeps the queue and tries again.

The writes are data (`ivr.logwriter.LogWrite`, pickled on the loop) and the writer
thread hands each batch to a child process that writes it (`ivr.logwriter`): the
database work never holds this process's GIL, which the event loop needs between
every two socket calls. The call's own reads (the status lookup) stay here.
"""

from __future__ import annotations

import asyncio
import atexit
import datetime as dt
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from sqlalchemy import ARRAY, JSON, Connection, Dialect, String, any_, bindparam, func, make_url, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from hotline.db import Database, DatabaseUnavailable, pg_timeouts, translate_errors
from hotline.models import Call, CallEvent, Request, utcnow
from hotline.phones import stored_phone
from hotline.settings import Settings
from hotline.vocabulary import CallEventKind, Outcome
from ivr import flow
from ivr.flow import CallState, Recording, RequestInfo
from ivr.logwriter import CallWrites, LogWrite, LogWriterProcess, WriterFailed, pack, pack_step
from ivr.store import (
    _FIND_REQUEST,
    _LOOKUPS_BY_NUMBER,
    _LOOKUPS_OF_CALL,
    _LOOKUPS_WITHHELD,
    CallStore,
    DbCallPort,
    _CallRow,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Calls written in one transaction at most (the writer lock is held that long).
BATCH_CALLS = 500
#: Seconds the writer lets writes gather after a transaction.
GATHER_SECONDS = 0.02
#: Seconds between two tries while the database is down.
RETRY_SECONDS = 1.0
#: Seconds a writing step waits for its call's queued writes.
WAIT_SECONDS = 30.0
#: Seconds before the lookups' PostgreSQL connection is opened ahead again after it failed.
WARM_RETRY_SECONDS = 5.0
#: Seconds a batch of status lookups waits for PostgreSQL (connecting included): then its
#: callers hear the database's apology and the connection is dropped. A server or a
#: network that hangs sends no error: without it the callers waited in silence.
ANSWER_SECONDS = 10.0
#: Seconds the reads of a status lookup asked ahead (`LiveCallStore.read_ahead`, while the
#: caller presses «#») stay good for the step: the status heard is at most this old.
READ_AHEAD_SECONDS = 5.0
#: Callers' numbers whose lookups the writer counts (`_Writer.lookup_mark`) before it starts again.
MARKED_NUMBERS = 10_000

Op = bytes  # a pickled LogWrite


@dataclass(eq=False)
class LiveCall:
    """One call in progress: what the flow needs between steps, and its unwritten log."""

    call_id: str
    from_number: str | None
    to_number: str | None
    state: CallState = field(default_factory=lambda: CallState.from_json({}))  # flow.handle never changes it
    id: int | None = None  # the row's id, once written
    ops: list[Op] = field(default_factory=list)  # queued writes, in order
    queued: int = 0  # writes queued so far
    written: int = 0  # writes committed so far
    pending_lookups: int = 0  # status lookups queued, not yet committed
    fetched: dict[tuple[Any, ...], Any] = field(default_factory=dict)  # the step's reads
    #: The reads of a status lookup asked ahead (`LiveCallStore.read_ahead`): when, the
    #: caller's lookups mark then (`_Writer.lookup_mark`), the answers to come by key.
    ahead: tuple[float, tuple[int, int], dict[tuple[Any, ...], asyncio.Future[Any]]] | None = None
    #: Its first write is queued: a call with its id that has ended is an old one (a reused
    #: id). Every call in memory is a session begun here (a FastAGI call stays with its process).
    starts: bool = True


class _DriverQuery:
    """A Core SELECT as SQL for the driver itself, with its columns' own conversions."""

    def __init__(self, statement: Select[Any], dialect: Dialect):
        self.compiled = statement.compile(dialect=dialect)
        self.sql = str(self.compiled)
        self.names = list(self.compiled.positiontup or [])  # empty: named parameters
        self.binds: dict[str, Any] = dict(self.compiled._bind_processors)
        self.results = [
            c.type._cached_result_processor(dialect, None)  # type: ignore[attr-defined]
            for c in statement.selected_columns
        ]

    def args(self, params: dict[str, Any]) -> Any:
        """The driver's parameters: a list in order (sqlite3), else a dict by name (psycopg)."""
        values = self.compiled.construct_params(params)
        for name, value in values.items():
            process = self.binds.get(name)
            if process is not None and value is not None:
                values[name] = process(value)
        return [values[name] for name in self.names] if self.names else values

    def row(self, raw: Any) -> tuple[Any, ...] | None:
        if raw is None:
            return None
        return tuple(p(v) if p is not None else v for p, v in zip(self.results, raw, strict=True))

    def run(self, cursor: Any, params: dict[str, Any]) -> tuple[Any, ...] | None:
        return self.row(cursor.execute(self.sql, self.args(params)).fetchone())


@dataclass(frozen=True)
class _ManyQuery:
    """A read by number as one statement over many numbers (its first column the number),
    and what one number's row (None: no row) answers for the single read."""

    query: _DriverQuery
    answer: Callable[[tuple[Any, ...] | None], tuple[Any, ...] | None]

    def args(self, asked: list[dict[str, Any]]) -> Any:
        """The driver's parameters for the single reads' parameters `asked`."""
        params: dict[str, Any] = {"numbers": list({a["number"] for a in asked})}
        if "since" in asked[0]:
            params["since"] = min(a["since"] for a in asked)  # the oldest hour: never fewer lookups
        return self.query.args(params)

    def answers(self, raws: list[Any], asked: list[dict[str, Any]]) -> list[tuple[Any, ...] | None]:
        """The single reads' rows, from the driver's rows of the statement."""
        found = {row[0]: row for row in map(self.query.row, raws) if row is not None}
        return [self.answer(found.get(a["number"])) for a in asked]


def _by_numbers(column: Any, dialect: Dialect) -> Any:
    """`column` is one of the parameter `numbers` (a list): an array on PostgreSQL, a JSON
    array on SQLite (one parameter however many numbers, no expanding IN)."""
    if dialect.name == "sqlite":
        numbers = func.json_each(bindparam("numbers", type_=JSON)).table_valued("value")
        return column.in_(select(numbers.c.value))
    return column == any_(bindparam("numbers", type_=ARRAY(String)))


class _Reads:
    """The status lookup's statements, made once for the driver."""

    def __init__(self, dialect: Dialect):
        self.find_request = _DriverQuery(_FIND_REQUEST, dialect)  # type: ignore[arg-type]
        self.counts = {
            id(query): _DriverQuery(query, dialect)
            for query in (_LOOKUPS_BY_NUMBER, _LOOKUPS_OF_CALL, _LOOKUPS_WITHHELD)
        }
        # Every status lookup's two reads, as statements over many numbers at once.
        find_requests = select(*_FIND_REQUEST.selected_columns).where(_by_numbers(Request.number, dialect))
        lookups_by_numbers = (
            select(Call.from_number, func.count(CallEvent.id))
            .join(Call)
            .where(
                CallEvent.kind.concat("") == CallEventKind.LOOKUP.value,
                CallEvent.at >= bindparam("since"),
                _by_numbers(Call.from_number, dialect),
            )
            .group_by(Call.from_number)
        )
        self.many = {
            id(self.find_request): _ManyQuery(_DriverQuery(find_requests, dialect), lambda row: row),
            id(self.counts[id(_LOOKUPS_BY_NUMBER)]): _ManyQuery(
                _DriverQuery(lookups_by_numbers, dialect),  # type: ignore[arg-type]
                lambda row: (row[1] if row else 0,),
            ),
        }

    @staticmethod
    def by_query(batch: list[tuple[_DriverQuery, dict[str, Any], asyncio.Future[Any]]]) -> list[list[int]]:
        """The indexes of a batch's reads, by statement."""
        indexes: dict[int, list[int]] = {}
        for i, (query, _, _) in enumerate(batch):
            indexes.setdefault(id(query), []).append(i)
        return list(indexes.values())


class _SqliteReads(_Reads):
    """The status lookup's reads on one sqlite3 connection (the event loop's): the reads
    asked for in one pass of the loop are read together after it, one statement a query
    (with 500 calls at once, a thousand statements one by one took ~40 ms of the loop)."""

    def __init__(self, driver: Any, dialect: Dialect):
        super().__init__(dialect)
        self.cursor = driver.cursor()
        self._asked: list[tuple[_DriverQuery, dict[str, Any], asyncio.Future[Any]]] = []

    def ask(self, query: _DriverQuery, params: dict[str, Any]) -> asyncio.Future[Any]:
        """The read's answer to come (a row, or None): read with the others asked now."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        if not self._asked:
            loop.call_soon(self._read)  # after the steps that are ready now have asked theirs
        self._asked.append((query, params, answer))
        return answer

    def _read(self) -> None:
        batch, self._asked = self._asked, []
        rows: list[Any] = [None] * len(batch)
        try:
            for indexes in self.by_query(batch):
                query = batch[indexes[0]][0]
                asked = [batch[i][1] for i in indexes]
                many = self.many.get(id(query))
                if many is not None:
                    raws = self.cursor.execute(many.query.sql, many.args(asked)).fetchall()
                    answers = many.answers(raws, asked)
                else:
                    answers = [query.run(self.cursor, a) for a in asked]
                for i, row in zip(indexes, answers, strict=True):
                    rows[i] = row
        except Exception as exc:
            for _, _, answer in batch:
                if not answer.done():
                    answer.set_exception(exc)
            return
        for (_, _, answer), row in zip(batch, rows, strict=True):
            if not answer.done():
                answer.set_result(row)


class _PgReads(_Reads):
    """The status lookup's reads for the event loop on PostgreSQL, on one psycopg async
    connection in autocommit: a server's round trip never stops the loop, and the reads
    asked for while one batch is out go in the next one together.
    With 500 calls at once, six threads doing one read each queued them by seconds.

    Under a burst every wait for the server is a turn of the loop, and a turn is long (a
    thousand calls' steps): a batch's statements go in one pipeline (one wait, not one a
    statement), and the connection is opened at the first call (`warm`), not at the
    first lookup (a first burst's lookups waited ~0.3 s for it). A batch with no answer
    in ANSWER_SECONDS fails (`_hung`)."""

    def __init__(self, url: str, dialect: Dialect):
        super().__init__(dialect)
        from psycopg.conninfo import make_conninfo

        # With the engines' time limits (hotline.db): a connect that hangs ends by itself,
        # and a connection whose server went away breaks within seconds.
        plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.conninfo = make_conninfo(plain, **pg_timeouts(url))
        self._conn: Any = None
        self._connecting: asyncio.Task[Any] | None = None
        self._warm_failed = -WARM_RETRY_SECONDS  # when connecting ahead last failed (monotonic)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._asked: list[tuple[_DriverQuery, dict[str, Any], asyncio.Future[Any]]] = []
        self._reader: asyncio.Task[None] | None = None

    def warm(self) -> None:
        """Open the connection now, on the running loop, if it is not (and connecting
        ahead has not failed in the last WARM_RETRY_SECONDS: a lookup still tries)."""
        loop = self._own_loop()
        if self._conn is not None or self._connecting is not None:
            return
        if time.monotonic() - self._warm_failed >= WARM_RETRY_SECONDS:
            self._connection(loop)

    def ask(self, query: _DriverQuery, params: dict[str, Any]) -> asyncio.Future[Any]:
        """The read's answer to come (a row, or None): read in the next batch."""
        loop = self._own_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        self._asked.append((query, params, answer))
        if self._reader is None or self._reader.done():
            self._reader = loop.create_task(self._read())
        return answer

    def _own_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a connection belongs to its loop
            self.close()
            self._loop = loop
        return loop

    def _connection(self, loop: asyncio.AbstractEventLoop) -> asyncio.Task[Any]:
        """The connection being opened (one at a time); `_connected` keeps it."""
        if self._connecting is None:
            self._connecting = loop.create_task(self._connect())
            self._connecting.add_done_callback(self._connected)
        return self._connecting

    def _connected(self, task: asyncio.Task[Any]) -> None:
        failed = None if task.cancelled() else task.exception()
        if task is not self._connecting:  # closed while it connected
            if not task.cancelled() and failed is None:
                task.result().pgconn.finish()
            return
        self._connecting = None
        if failed is not None:
            self._warm_failed = time.monotonic()  # a lookup tries again, and says why
        elif not task.cancelled():
            self._conn = task.result()

    async def _read(self) -> None:
        import psycopg

        while self._asked:
            batch, self._asked = self._asked, []
            hung = asyncio.get_running_loop().call_later(ANSWER_SECONDS, self._hung, batch)
            try:
                if self._conn is None:
                    await self._connection(asyncio.get_running_loop())  # its callback keeps it first
                    if self._conn is None:
                        raise psycopg.OperationalError("the connection was closed while it opened")
                rows: list[Any] = [None] * len(batch)
                async with self._conn.pipeline() as pipeline:
                    sent: list[tuple[list[int], list[dict[str, Any]], _ManyQuery | _DriverQuery, Any]] = []
                    for indexes in self.by_query(batch):
                        query = batch[indexes[0]][0]
                        asked = [batch[i][1] for i in indexes]
                        many = self.many.get(id(query))
                        if many is not None:  # the burst's reads: one statement for the batch
                            cursor = await self._conn.execute(many.query.sql, many.args(asked))
                            sent.append((indexes, asked, many, cursor))
                            continue
                        # Another statement: one executemany, its reads' answers in turn.
                        cursor = self._conn.cursor()
                        await cursor.executemany(query.sql, [query.args(a) for a in asked], returning=True)
                        sent.append((indexes, asked, query, cursor))
                    await pipeline.sync()  # every statement's answer in one wait
                    for indexes, asked, how, cursor in sent:
                        if isinstance(how, _ManyQuery):
                            answers = how.answers(await cursor.fetchall(), asked)
                        else:
                            answers = []
                            for _ in indexes:
                                answers.append(how.row(await cursor.fetchone()))
                                cursor.nextset()
                        for i, row in zip(indexes, answers, strict=True):
                            rows[i] = row
            except psycopg.Error as exc:
                if asyncio.current_task() is not self._reader:
                    return  # dropped by `_hung`, its batch failed: the next reader's connection stays
                self.close()
                failed: Exception = exc
                if isinstance(exc, psycopg.OperationalError):
                    failed = DatabaseUnavailable(f"database unavailable: {exc}")
                for _, _, answer in batch:
                    if not answer.done():
                        answer.set_exception(failed)
                continue
            finally:
                hung.cancel()
            for (_, _, answer), row in zip(batch, rows, strict=True):
                if not answer.done():
                    answer.set_result(row)

    def _hung(self, batch: list[tuple[_DriverQuery, dict[str, Any], asyncio.Future[Any]]]) -> None:
        """No answer in ANSWER_SECONDS: the batch fails, its reader and connection go; the
        reads asked meanwhile go out on a new connection."""
        log.error("status lookups: no answer from the database in %g s; connection dropped", ANSWER_SECONDS)
        reader, self._reader = self._reader, None
        self.close()  # first: a reader cancelled in psycopg's pipeline then finds it closed, not waits
        if reader is not None:
            reader.cancel()
        failed = DatabaseUnavailable(f"database unavailable: no answer in {ANSWER_SECONDS:g} s")
        for _, _, answer in batch:
            if not answer.done():
                answer.set_exception(failed)
        if self._asked:
            self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _connect(self) -> Any:
        import psycopg

        conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        # No parallel workers for a batch: once `calls` outgrows min_parallel_table_scan_size
        # the planner scanned it with two workers, 16-21 ms a batch against ~3 ms through
        # its number index (19,500 calls), the workers' CPU taken from the event loop's.
        try:
            await conn.execute("SET max_parallel_workers_per_gather = 0")
        except BaseException:  # cancelled too: the loop ended while it connected
            conn.pgconn.finish()
            raise
        return conn

    def close(self) -> None:
        """Close the connection (at once, whichever loop is running or none)."""
        self._connecting = None  # one being opened is closed when it is (`_connected`)
        if self._conn is not None:
            self._conn.pgconn.finish()  # libpq's own close: needs no event loop
        self._conn = None


#: A read the step asked for: its key in `LiveCall.fetched`, the statement, its parameters.
_Asked = dict[tuple[Any, ...], tuple[_DriverQuery, dict[str, Any]]]


class _NeedsRead(Exception):
    """The step reads the database: the loop reads every read it asked for together, with
    the other steps' reads (batched), then runs the step again."""

    def __init__(self, live: LiveCall, missing: _Asked):
        super().__init__(list(missing))
        self.live, self.missing = live, missing


class _NeedsIO(Exception):
    """The step reads or writes the database: it runs in a thread, not on the event loop."""


class _NeedsWrite(Exception):
    """The step writes a request or a file: it runs in a transaction of its own."""


class _LivePort(DbCallPort):
    """The port of an in-memory step: reads through a read-only session, no writes."""

    def __init__(self, store: LiveCallStore, live: LiveCall, session: Callable[[], Session], io: bool):
        row = _CallRow({"id": live.id, "from_number": live.from_number, "backend": store.backend})
        super().__init__(session, store.settings, row)  # type: ignore[arg-type]
        self.store = store
        self.live = live
        self.io = io
        self.missing: _Asked = {}  # the reads asked for and not read yet (see _read)

    def find_request(self, number: str) -> RequestInfo | None:
        if self.io:
            return super().find_request(number)
        row = self._read(self.store._reads.find_request, {"number": number})
        return None if row is None else self._request_info(*row)

    def ask_lookup(self, number: str) -> None:
        """Note the reads of a status lookup of `number` (`flow.looked_up`) as `missing`."""
        self.recent_lookups()  # a withheld number's: the shared count and the call's own
        self.find_request(number)  # read even if the count is over the limit: one read too many

    def _read(self, query: _DriverQuery, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """A read on the event loop: read before, batched with other calls' reads (see run).

        A read not made yet is noted and answers None (no request, no lookups) so that the
        step goes on and asks for its other reads too: the loop reads them all at once.
        Such a step's result is never used (`LiveCallStore._in_memory` raises _NeedsRead).
        """
        if self.store._batched_reads() is None:
            raise _NeedsIO  # closed, or neither SQLite nor PostgreSQL: a thread's session reads
        # Whom it is about (the reads of ivr.store), not since when (the hour moves on).
        key = (id(query), params.get("number"), params.get("call_id"))
        try:
            return self.live.fetched[key]
        except KeyError:
            self.missing.setdefault(key, (query, params))
            return None

    def _count(self, query: Select[Any], **params: Any) -> int:
        # Lookups still in the queue count too (read first: at worst one is counted twice).
        if query is _LOOKUPS_BY_NUMBER:
            queued = self.store.writer.queued_lookups(params["number"])
        elif query is _LOOKUPS_WITHHELD:
            queued = self.store.writer.queued_lookups(None)
        else:
            queued = self.live.pending_lookups
        if self.io:
            return queued + super()._count(query, **params)
        row = self._read(self.store._reads.counts[id(query)], params)
        return queued + ((row[0] if row else 0) or 0)

    def open_voice_request(self, kind: str, recording: Recording) -> str:
        raise _NeedsWrite

    def add_information(self, number: str, recording: Recording) -> None:
        raise _NeedsWrite

    def attach_recording(self, number: str, recording: Recording) -> None:
        raise _NeedsWrite


class LiveCallStore(CallStore):
    """A `CallStore` whose calls run in memory and whose call log is written behind."""

    def __init__(self, db: Database, settings: Settings, backend: str):
        super().__init__(db, settings, backend)
        self._calls: dict[str, LiveCall] = {}
        self._lock = threading.Lock()
        self._loop_conn: Any = None  # a pooled DBAPI connection, the loop's alone
        self._loop_reads: _SqliteReads | None = None
        self._pg_reads: _PgReads | None = None
        self._reads: _Reads
        dialect = self.db.engine.dialect
        if self.rows.sqlite:
            # Opened now, not at the first lookup: connecting sets WAL, which can wait
            # for the writer, and the event loop must never wait (measured: 0.5 s).
            self._loop_conn = self.db.engine.raw_connection()
            self._reads = self._loop_reads = _SqliteReads(self._loop_conn.driver_connection, dialect)
        elif dialect.name == "postgresql":
            self._reads = self._pg_reads = _PgReads(db.url, dialect)
        else:
            self._reads = _Reads(dialect)  # read in a thread
        self.writer = _Writer(self)
        stored_phone(settings.support_number)  # libphonenumber loads its metadata now, not under a burst

    # --- the CallStore interface ----------------------------------------------------

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a store method for the event loop: a step that needs no I/O (most of them)
        runs right there; one that reads or writes the database goes to a thread."""
        if fn in (self.handle, self.hang_up):
            if self._pg_reads is not None:
                self._pg_reads.warm()  # at a call's first step, before its first lookup
            fetched: LiveCall | None = None
            live = self._calls.get(args[0] if args else kwargs["call_id"])
            ahead = self._read_ahead_for(live) if live is not None else {}
            if live is not None and ahead and all(answer.done() for answer in ahead.values()):
                # Answered while the caller pressed «#»: the step finds them and runs once
                # (a step that asks for others reads those below).
                fetched = live
                live.fetched.update((key, answer.result()) for key, answer in ahead.items())
                ahead = {}
            try:
                while True:
                    try:
                        return cast(T, fn(*args, _io=False, **kwargs))
                    except _NeedsIO:
                        break
                    except _NeedsRead as read:  # read them, then the step again (the flow is pure)
                        reads = self._batched_reads()
                        assert reads is not None
                        fetched = read.live
                        # Every read the step asked for, in the same batch: one wait, one re-run
                        # (those asked ahead, while the caller pressed «#», are awaited, not asked).
                        asked = [
                            (key, ahead.get(key) or reads.ask(*what)) for key, what in read.missing.items()
                        ]
                        ahead = {}
                        await _answers(fetched, asked)
            finally:
                if fetched is not None:
                    fetched.fetched.clear()  # read again at the next step
        elif fn == self.log:
            return fn(*args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)

    def _batched_reads(self) -> _SqliteReads | _PgReads | None:
        return self._loop_reads or self._pg_reads

    def read_ahead(self, call_id: str, event: flow.Event) -> None:
        """The caller has typed what would be a status lookup if the step came now (a
        whole request number, its check digit right): ask its reads now, with this pass's
        batch, so that the step after «#» finds them answered instead of waiting for the
        database between the caller and the status (with 2,000 calls on PostgreSQL that
        wait was the tail). Only while none of the caller's lookups is queued in this
        process: the lookups counted must be the database's alone. The step takes them if
        none was queued since and they are under READ_AHEAD_SECONDS old (`_read_ahead_for`)."""
        reads = self._batched_reads()
        live = self._calls.get(call_id)
        if reads is None or live is None or live.fetched:
            return
        number = flow.looked_up(live.state, event)
        if number is None or live.pending_lookups or self.writer.queued_lookups(live.from_number):
            return
        port = _LivePort(self, live, _no_session, False)
        port.ask_lookup(number)
        if live.ahead is not None and live.ahead[2].keys() == port.missing.keys():
            return  # asked already (the same number typed again)
        asked = {key: reads.ask(*what) for key, what in port.missing.items()}
        for answer in asked.values():
            answer.add_done_callback(_retrieved)  # an answer never used logs nothing
        live.ahead = (time.monotonic(), self.writer.lookup_mark(live.from_number), asked)

    def _read_ahead_for(self, live: LiveCall) -> dict[tuple[Any, ...], asyncio.Future[Any]]:
        """The reads asked ahead for this step, if still good (then dropped either way)."""
        ahead, live.ahead = live.ahead, None
        if ahead is None:
            return {}
        at, mark, asked = ahead
        if time.monotonic() - at > READ_AHEAD_SECONDS or mark != self.writer.lookup_mark(live.from_number):
            return {}
        # A read that failed (the database was down a moment ago) is asked again.
        return {key: a for key, a in asked.items() if not (a.done() and (a.cancelled() or a.exception()))}

    def log(self, call_id: str, kind: str, detail: str = "", **data: object) -> None:
        """Queue an event of the call."""
        live = self._live(call_id)
        self.writer.submit(live, pack(LogWrite(utcnow(), events=((kind, detail, data),))))

    def handle(
        self,
        call_id: str,
        event: flow.Event,
        *,
        from_number: str | None = None,
        to_number: str | None = None,
        seq: int | None = None,
        _io: bool = True,
    ) -> flow.Step:
        """Apply one event in memory; its writes are queued (a writing step runs at once)."""
        live = self._live(call_id, from_number, to_number)
        if seq is None:
            step = self._in_memory(live, event, _io)
            if step is not None:
                answered = utcnow() if isinstance(event, flow.CallStarted) else None
                self._queue_step(live, step, answered=answered)
                return step
        if not _io:
            raise _NeedsIO
        self._wait_written(live)
        step = super().handle(call_id, event, from_number=from_number, to_number=to_number, seq=seq)
        live.state = step.state
        return step

    def hang_up(
        self,
        call_id: str,
        *,
        backend_status: str | None = None,
        duration_seconds: int | None = None,
        hangup_cause: str | None = None,
        from_number: str | None = None,
        to_number: str | None = None,
        outcome: str | None = None,
        _io: bool = True,
    ) -> flow.Step:
        """The end of the call: its last writes are queued, and memory lets it go.

        `outcome` as in `CallStore.hang_up`: it replaces only no outcome or `abandoned`.
        """
        live = self._live(call_id, from_number, to_number)
        try:
            step = self._in_memory(live, flow.Hangup(), _io)
        except (_NeedsIO, _NeedsRead):
            raise  # tried again (in a thread, or after the read): the call stays
        except BaseException:
            self._forget(call_id)
            raise
        try:
            if step is None:
                self._wait_written(live)
                return super().hang_up(
                    call_id,
                    backend_status=backend_status,
                    duration_seconds=duration_seconds,
                    hangup_cause=hangup_cause,
                    from_number=from_number,
                    to_number=to_number,
                    outcome=outcome,
                )
            if outcome and step.state.outcome in (None, Outcome.ABANDONED):
                step.state.outcome = outcome
            end = {
                "backend_status": backend_status,
                "duration_seconds": duration_seconds,
                "hangup_cause": hangup_cause,
                "ended_at": utcnow(),
            }
            self._queue_step(live, step, end=end)
            return step
        finally:
            self._forget(call_id)

    def save_recording(self, call_id: str, recording: Recording) -> flow.Step:
        live = self._calls.get(call_id)
        if live is not None:
            self._wait_written(live)
        step = super().save_recording(call_id, recording)
        if live is not None:
            live.state = step.state
        return step

    def known(self, call_id: str) -> bool:
        """True if a call with this id was ever seen: in memory, queued, or in the log."""
        with self._lock:
            if call_id in self._calls:
                return True
        return self.writer.has_queued(call_id) or super().known(call_id)

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until every write queued so far is committed; False if the time ran out."""
        return self.writer.flush(None, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued (trying for `timeout` seconds) and stop the writer."""
        self.writer.close(timeout)
        if self._loop_conn is not None:
            self._loop_conn.close()
            self._loop_conn = self._loop_reads = None
        if self._pg_reads is not None:
            self._pg_reads.close()

    # --- in memory --------------------------------------------------------------------

    def _wait_written(self, live: LiveCall) -> None:
        """Before a step of its own transaction: the call's queued writes, committed."""
        if not self.writer.flush(live, WAIT_SECONDS):
            raise self.writer.down or DatabaseUnavailable("database unavailable: the call log is not written")

    def _live(self, call_id: str, from_number: str | None = None, to_number: str | None = None) -> LiveCall:
        live = self._calls.get(call_id)  # most steps: a call in memory, its numbers known
        if live is None or (from_number and not live.from_number) or (to_number and not live.to_number):
            live = self._new_numbers(call_id, from_number, to_number)
        return live

    def _new_numbers(self, call_id: str, from_number: str | None, to_number: str | None) -> LiveCall:
        """The call, made if new, with the numbers it did not have yet."""
        # As the call row will hold them (hotline.callrows cleans them again, at no cost).
        from_number, to_number = stored_phone(from_number), stored_phone(to_number)
        with self._lock:
            live = self._calls.get(call_id)
            if live is None:
                live = self._calls[call_id] = LiveCall(call_id, from_number, to_number)
        live.from_number = live.from_number or from_number
        live.to_number = live.to_number or to_number
        return live

    def _forget(self, call_id: str) -> None:
        with self._lock:
            self._calls.pop(call_id, None)

    def _in_memory(self, live: LiveCall, event: flow.Event, io: bool) -> flow.Step | None:
        """The step run in memory, reading through its own session; None if it must write.

        Without `io` (on the event loop) a status lookup (`flow.looked_up`) raises
        _NeedsRead with its reads before it runs, and runs once they are made; a step that
        still asks a read not made goes on without its answer and raises _NeedsRead with
        every read it asked (its result dropped: the flow is pure); one that would read
        otherwise, or write, raises _NeedsIO.
        """
        if not io:  # on the loop: no session (a read goes through _LivePort._read)
            port = _LivePort(self, live, _no_session, io)
            # A status lookup's reads are known before it runs: read them, then run it once.
            number = None if live.fetched else flow.looked_up(live.state, event)
            if number is not None:
                port.ask_lookup(number)
                if port.missing:
                    raise _NeedsRead(live, port.missing)
            try:
                step = flow.handle(live.state, event, port, self.config)
            except Exception as exc:
                if port.missing:  # it went on without a read's answer: read first, then see
                    raise _NeedsRead(live, port.missing) from None
                if isinstance(exc, _NeedsWrite):
                    raise _NeedsIO from None
                raise
            if port.missing:  # the step went on without a read's answer: not this step
                raise _NeedsRead(live, port.missing)
        else:
            with _read_session(self.db) as session:
                port = _LivePort(self, live, session, io)
                try:
                    step = flow.handle(live.state, event, port, self.config)
                except _NeedsWrite:
                    return None
        live.state = step.state
        return step

    def _queue_step(
        self,
        live: LiveCall,
        step: flow.Step,
        answered: dt.datetime | None = None,
        end: dict[str, Any] | None = None,
    ) -> None:
        lookups = sum(1 for entry in step.log if entry.kind == CallEventKind.LOOKUP)
        self.writer.submit(live, pack_step(step, answered=answered, end=end), lookups)


async def _answers(live: LiveCall, asked: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
    """The answers of reads asked together, into `live.fetched`.

    They are in one batch, answered at once: awaited in turn, the first wakes the step
    and the rest are done by then (asyncio.gather woke it a turn of the loop later, its
    own callbacks first; under a burst a turn is long).
    """
    try:
        for key, answer in asked:
            live.fetched[key] = await answer
    except BaseException:
        for _, answer in asked:
            if answer.done() and not answer.cancelled():
                answer.exception()  # the batch's error is raised once, not logged for every read
        raise


def _no_session() -> Session:
    raise _NeedsIO


def _retrieved(answer: asyncio.Future[Any]) -> None:
    if not answer.cancelled():
        answer.exception()


@contextmanager
def _read_session(db: Database) -> Iterator[Callable[[], Session]]:
    """What makes a read-only session on first use (most steps read nothing), closed after.

    On SQLite the transaction is begun deferred on the driver, so a reader never waits
    for the write lock the writer holds (WAL lets readers read beside it).
    """
    made: list[tuple[Connection, Session]] = []

    def session() -> Session:
        if not made:
            conn = db.engine.connect()
            if conn.dialect.name == "sqlite":
                driver = conn.connection.driver_connection
                assert driver is not None
                driver.execute("BEGIN")  # SQLAlchemy's "begin" then joins it (hotline.db)
            made.append((conn, Session(bind=conn, expire_on_commit=False)))
        return made[0][1]

    try:
        with translate_errors():
            yield session
    finally:
        for conn, s in made:
            s.close()
            conn.rollback()
            conn.close()


def _close_at_exit(ref: weakref.ref[_Writer]) -> None:
    writer = ref()
    if writer is not None:
        writer.close()


class _Writer:
    """The one thread that writes a store's queued call-log writes, many calls a transaction."""

    def __init__(self, store: LiveCallStore):
        self.store = store
        self._cond = threading.Condition()
        self._dirty: dict[LiveCall, None] = {}  # calls with queued writes, in arrival order
        self._writing: list[LiveCall] = []  # the calls of the transaction under way
        self._stopping = False
        self._idle = False  # the writer waits for work (a submit wakes it)
        self._thread: threading.Thread | None = None
        self._lookups: dict[str | None, int] = {}  # queued, uncommitted lookups by number (None: withheld)
        self._marks: dict[str | None, int] = {}  # lookups queued ever, by number (see lookup_mark)
        self._marks_made = 0  # times `_marks` started again
        self.down: DatabaseUnavailable | None = None  # why the last write failed, until one succeeds
        self.batches = 0
        self._process = LogWriterProcess(store.db.url, store.backend)
        self._process.start()  # its imports would compete with the first calls for the CPU
        # The queue is written before the interpreter exits, however the process stops.
        atexit.register(_close_at_exit, weakref.ref(self))

    def submit(self, live: LiveCall, op: Op, lookups: int = 0) -> None:
        with self._cond:
            live.ops.append(op)
            live.queued += 1
            live.pending_lookups += lookups
            if lookups:
                number = live.from_number
                self._lookups[number] = self._lookups.get(number, 0) + lookups
                if len(self._marks) >= MARKED_NUMBERS and number not in self._marks:
                    self._marks.clear()
                    self._marks_made += 1
                self._marks[number] = self._marks.get(number, 0) + lookups
            self._dirty[live] = None
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="call-log writer", daemon=True)
                self._thread.start()
            if self._idle:  # a busy writer takes it with its next batch: no wake-up per write
                self._idle = False
                self._cond.notify_all()

    def queued_lookups(self, number: str | None) -> int:
        """Lookups queued and not yet committed by this number (None: by withheld numbers)."""
        with self._cond:
            return self._lookups.get(number, 0)

    def lookup_mark(self, number: str | None) -> tuple[int, int]:
        """What changes whenever a lookup by this number (None: withheld) is queued."""
        with self._cond:
            return self._marks_made, self._marks.get(number, 0)

    def has_queued(self, call_id: str) -> bool:
        """True if writes of a call with this id are queued or being written."""
        with self._cond:
            return any(c.call_id == call_id for c in [*self._dirty, *self._writing])

    def flush(self, live: LiveCall | None, timeout: float = 60.0) -> bool:
        """Wait until the call's (or every call's) queued writes are committed."""
        with self._cond:
            if live is not None:
                target = live.queued
                return self._cond.wait_for(
                    lambda: live.written >= target or self.down is not None, timeout
                ) and (live.written >= target)
            targets = [(c, c.queued) for c in [*self._dirty, *self._writing]]
            return self._cond.wait_for(lambda: all(c.written >= n for c, n in targets), timeout)

    def close(self, timeout: float = 30.0) -> None:
        self.flush(None, timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._process.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._dirty and not self._stopping:
                    self._idle = True
                    self._cond.wait_for(lambda: self._dirty or self._stopping)
                    self._idle = False
                if not self._dirty:
                    return
                batch = list(self._dirty)[:BATCH_CALLS]
                taken = []
                for live in batch:
                    del self._dirty[live]
                    taken.append((live, live.ops, live.pending_lookups, live.starts))
                    live.ops = []
                self._writing = batch
            try:
                self._write(taken)
            except DatabaseUnavailable as exc:
                log.warning("call log not written yet (%s); trying again", exc)
                self._requeue(taken, exc)
                with self._cond:
                    if self._cond.wait_for(lambda: self._stopping, RETRY_SECONDS):
                        queued = sum(len(c.ops) for c in self._dirty)
                        log.error("stopping with %d call-log writes unwritten: %s", queued, exc)
                        return
                continue
            except WriterFailed as exc:  # one bad call must not keep the others from the log
                log.error("call-log batch failed; writing its calls one by one: %s", exc)
                for one in taken:
                    try:
                        self._write([one])
                    except DatabaseUnavailable as down:
                        self._requeue([one], down)
                    except WriterFailed as failed:  # as the same step would have failed in line
                        log.error("call %s: call-log writes lost: %s", one[0].call_id, failed)
                        self._done([one])
                continue
            self._done(taken)
            if self._stopping:
                continue
            time.sleep(GATHER_SECONDS)  # let writes gather: fewer, larger transactions

    def _write(self, taken: list[tuple[LiveCall, list[Op], int, bool]]) -> None:
        """Write a batch in one transaction, in the writer process (ivr.logwriter)."""
        batch: list[CallWrites] = [
            (live.call_id, live.from_number, live.to_number, starts, ops) for live, ops, _, starts in taken
        ]
        ids = self._process.write(batch)
        for (live, *_), id_ in zip(taken, ids, strict=True):
            live.id = id_
        self.batches += 1

    def _requeue(self, taken: list[tuple[LiveCall, list[Op], int, bool]], down: DatabaseUnavailable) -> None:
        with self._cond:
            for live, ops, _, _ in taken:
                live.ops[:0] = ops
                self._dirty[live] = None
            self._writing = []
            self.down = down
            self._cond.notify_all()

    def _done(self, taken: list[tuple[LiveCall, list[Op], int, bool]]) -> None:
        with self._cond:
            for live, ops, lookups, starts in taken:
                live.written += len(ops)
                live.pending_lookups -= lookups
                if starts:
                    live.starts = False  # written: the row is this call's now
                if lookups:
                    left = self._lookups.get(live.from_number, 0) - lookups
                    if left > 0:
                        self._lookups[live.from_number] = left
                    else:
                        self._lookups.pop(live.from_number, None)
            self._writing = []
            self.down = None
            self._cond.notify_all()
