"""The call log of calls in progress, written by a process of its own.

`ivr.livecalls.LiveCallStore` queues each step's call-log writes as data (`LogWrite`);
its writer thread hands a batch of calls to `LogWriterProcess`, which writes it in
one transaction (`write_batch`, through `hotline.callrows` as every writer of a call
does) in a child process and answers with the calls' row ids.

Why a process: in the serving process every Python line of the writer takes the GIL
from the event loop, which gives it up at every socket read and write and then waits
for the writer's next pause (the convoy effect); under a burst of calls that was a
silence of hundreds of milliseconds on every line. The child has a GIL of its own:
the event loop only pickles each step's writes (microseconds) and the writer thread
only waits on a pipe. A child that dies is started again and the batch retried.

Why behind on the CPU: the child runs at NICE and, where it may come back from it,
in Linux's idle class (`_behind`): with 2,000 callers pressing «#» together, the event
loops answer them first and the call log is written after the burst.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import functools
import multiprocessing
import os
import pickle
import threading
import traceback
from dataclasses import dataclass
from typing import Any, cast

from hotline import calllog, callrows
from hotline.db import Database, DatabaseUnavailable, translate_errors
from hotline.models import Call, utcnow
from hotline.vocabulary import CallEventKind
from ivr import flow
from ivr.speech import Segment, render_text
from ivr.store import _CallRow, _OpenCall

#: How much lower the child's CPU priority is than the serving process's.
NICE = 5
#: How long a batch may wait for a free core before the child is moved from Linux's idle
#: scheduling class to the normal one (`_behind`): the longest a lock it holds waits.
BEHIND_SECONDS = 0.5
#: Seconds to wait for the child to write what it was sent when it is told to stop.
STOP_SECONDS = 30.0


@dataclass(frozen=True)
class LogWrite:
    """One step's writes to its call's row and events, as data."""

    at: dt.datetime
    events: tuple[tuple[str, str, dict[str, Any]], ...] = ()  # kind, detail, data
    said: tuple[tuple[Segment, ...], ...] = ()  # what the caller heard, rendered when written
    state: dict[str, Any] | None = None  # the flow's state after the step
    outcome: str | None = None
    answered: dt.datetime | None = None  # the call was answered then (kept if set already)
    ended: bool = False  # the flow ended the call at `at` (kept if ended already)
    end: dict[str, Any] | None = None  # the backend's report of the end: `calllog.end_call`'s keywords


#: One call's part of a batch: its id, numbers, whether a call starts with it, its pickled writes.
CallWrites = tuple[str, str | None, str | None, bool, list[bytes]]


def _instant(at: dt.datetime | None) -> float | dt.datetime | None:
    """A UTC datetime as its timestamp (pickling a datetime costs ~6 µs, a float 0.3; a
    float holds today's microseconds exactly)."""
    if at is None or at.tzinfo is not dt.UTC:
        return at  # naive or another zone: as it is
    return at.timestamp()


def _datetime(at: float | dt.datetime | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(at, dt.UTC) if isinstance(at, float) else at


def _plain(value: Any) -> Any:
    """A StrEnum member as its str (pickling an enum member runs Python; its JSON is the same)."""
    return str.__str__(value) if isinstance(value, enum.Enum) and isinstance(value, str) else value


@functools.lru_cache(maxsize=1024)  # a call says the same few hundred prompts
def _said(said: tuple[tuple[Segment, ...], ...]) -> bytes:
    return pickle.dumps(said, protocol=pickle.HIGHEST_PROTOCOL)


def pack(write: LogWrite) -> bytes:
    """A write as the bytes queued for the child, in microseconds on the loop.

    Pickling the dataclasses themselves took ~45 µs a step (every frozen dataclass,
    datetime and enum member goes through Python), five steps a call: under a burst,
    the greeting of the last calls waited for it. So: plain values, datetimes as
    integers, and the segments said (the same few prompts in every call) pickled once.
    """
    state = write.state
    if state is not None and isinstance(state.get("step"), enum.Enum):  # CallState.to_json()
        state = dict(state)
        for key in ("step", "outcome"):
            if key in state:
                state[key] = _plain(state[key])
    events = tuple((_plain(kind), detail, data) for kind, detail, data in write.events)
    return _dumps(write.at, events, write.said, state, write.outcome, write.answered, write.ended, write.end)


def pack_step(
    step: flow.Step, answered: dt.datetime | None = None, end: dict[str, Any] | None = None
) -> bytes:
    """What one step of the flow writes (its events, what the caller heard, its state),
    packed as `pack` packs its `LogWrite`, without building one or copying the state
    twice: the event loop packs every step of every call (tests/ivr/test_livecalls.py
    compares the two)."""
    state = step.state
    values = state.__dict__.copy()  # `to_json()`'s keys; pickled now, so nothing in it is copied
    values["step"], values["outcome"] = _plain(state.step), _plain(state.outcome)
    events = tuple((_plain(entry.kind), entry.detail, entry.data) for entry in step.log)
    said = tuple(a.segments for a in step.actions if isinstance(a, flow.Speak))
    ended = state.step == flow.StepName.ENDED
    return _dumps(utcnow(), events, said, values, state.outcome, answered, ended, end)


def _dumps(
    at: dt.datetime,
    events: tuple[tuple[str, str, dict[str, Any]], ...],  # kinds plain already
    said: tuple[tuple[Segment, ...], ...],
    state: dict[str, Any] | None,
    outcome: str | None,
    answered: dt.datetime | None,
    ended: bool,
    end: dict[str, Any] | None,
) -> bytes:
    """The bytes `unpack` reads: a write's parts as plain values (see `pack`)."""
    if end is not None and "ended_at" in end:
        end = {**end, "ended_at": _instant(end["ended_at"])}
    return pickle.dumps(
        (
            _instant(at),
            events,
            _said(said) if said else b"",
            state,
            _plain(outcome),
            _instant(answered),
            ended,
            end,
        ),
        protocol=pickle.HIGHEST_PROTOCOL,
    )


def unpack(raw: bytes) -> LogWrite:
    """The write `pack` made (in the child)."""
    at, events, said, state, outcome, answered, ended, end = pickle.loads(raw)
    if end is not None and "ended_at" in end:
        end["ended_at"] = _datetime(end["ended_at"])
    return LogWrite(
        cast(dt.datetime, _datetime(at)),
        events=events,
        said=pickle.loads(said) if said else (),
        state=state,
        outcome=outcome,
        answered=_datetime(answered),
        ended=ended,
        end=end,
    )


def apply(opened: _OpenCall, write: LogWrite) -> None:
    """Apply one write to its call, open in the batch's transaction."""
    call = opened.call
    if write.answered is not None:
        call.answered_at = call.answered_at or write.answered
    said: tuple[tuple[str, str, dict[str, Any]], ...] = tuple(
        (CallEventKind.SAID, render_text(segments), {})
        for segments in write.said  # as CallStore._apply
    )
    for kind, detail, data in (*write.events, *said):
        event = {"call_id": call.id, "at": write.at, "kind": kind, "detail": detail, "data": data}
        opened.events.append(event)
    # A state older than the row's is a step repeated late (a webhook Twilio sent
    # again): it does not take the call back.
    if write.state is not None and write.state.get("seq", 0) >= (call.flow_state or {}).get("seq", 0):
        call.flow_state = write.state
        if write.outcome:
            call.outcome = write.outcome
    if write.ended and call.ended_at is None:
        calllog.end_call(opened.session, call, ended_at=write.at)
    if write.end is not None:
        calllog.end_call(opened.session, call, **write.end)


def write_batch(rows: callrows.CallRowStore, backend: str, batch: list[CallWrites]) -> list[int]:
    """Write every call of the batch in one transaction; their row ids, in order.

    The events of every call go in one insert at the end (on PostgreSQL a round trip a
    statement: one for the batch instead of one a call)."""
    ids = []
    with translate_errors(), rows.transaction() as (conn, call_rows):
        opened_calls: list[_OpenCall] = []
        events: list[dict[str, Any]] = []
        if isinstance(call_rows, callrows.CoreRows):
            # A round trip a statement: the batch's calls are read at once, written at the end.
            call_rows = callrows.BatchRows(call_rows, backend, [call[0] for call in batch])
        try:
            for call_id, from_number, to_number, starts, writes in batch:
                values = callrows.start_call(
                    call_rows, backend, call_id, from_number=from_number, to_number=to_number, starts=starts
                )
                opened = _OpenCall(conn, call_rows, cast(Call, _CallRow(values)), dict(values))
                opened_calls.append(opened)
                for raw in writes:
                    apply(opened, unpack(raw))
                events += opened.events
                opened.events = []
                opened.write()
                ids.append(values["id"])
            call_rows.insert_events(events)
            if isinstance(call_rows, callrows.BatchRows):
                call_rows.write()
        finally:
            for opened in opened_calls:
                if opened._session is not None:
                    opened._session.close()
    return ids


def serve(url: str, backend: str, conn: Any) -> None:
    """The child: write each batch it is sent, answer ("ok", ids), ("down", why) or ("error", text)."""
    with contextlib.suppress(OSError):
        # Behind the callers: on a busy machine the event loop that answers them goes
        # first; the call log catches up in larger batches (a step that writes a request
        # waits for its call's log, up to ivr.livecalls.WAIT_SECONDS). See `_behind`.
        os.nice(NICE)
    idle = _may_leave_idle()
    db = Database(url)
    rows = callrows.CallRowStore(db.engine)
    try:
        while True:
            _behind(idle)
            try:
                batch = conn.recv()
            except (EOFError, OSError):
                return  # the serving process is gone
            if batch is None:
                return
            try:
                answer: tuple[str, Any] = ("ok", write_batch(rows, backend, batch))
            except DatabaseUnavailable as exc:
                answer = ("down", str(exc))
            except Exception:  # noqa: BLE001 - the parent logs it and writes the calls one by one
                answer = ("error", traceback.format_exc())
            try:
                conn.send(answer)
            except OSError:
                return  # the serving process is gone (killed): the batch is written, no one to tell
    finally:
        db.dispose()


def _behind(idle: bool) -> None:
    """Wait for the next batch and write it in Linux's idle class (if `idle`).

    The child then runs only on a core the event loops leave free: a burst's steps
    (2,000 callers pressing «#» together) are answered first, and the call log catches
    up after it, in larger batches. A write that holds a lock (SQLite's writer lock,
    PostgreSQL's row locks) must not wait for a free core for long: the serving process
    moves the child to the normal class once a batch has waited BEHIND_SECONDS
    (`LogWriterProcess.write`), and it comes back here after that batch."""
    if idle:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def _catch_up(pid: int) -> None:
    """Move the child `pid` to the normal class (at its nice value, NICE)."""
    with contextlib.suppress(OSError, AttributeError):  # it ended meanwhile; not Linux
        os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))


def _may_leave_idle() -> bool:
    """Whether this process may be moved back from the idle class to the normal one (by
    itself or its parent, the same user): as root, with CAP_SYS_NICE, or with an
    RLIMIT_NICE that allows its nice value (systemd's `LimitNICE=+0`, deploy/systemd).
    Elsewhere the child stays in the normal class at NICE. The kernel answers: a thread
    of its own tries both ways and ends, whichever class it is left in."""
    if not hasattr(os, "sched_setscheduler"):  # not Linux
        return False
    answer: list[bool] = []

    def attempt() -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        except OSError:
            answer.append(False)
        else:
            answer.append(True)

    thread = threading.Thread(target=attempt, name="idle-class probe")
    thread.start()
    thread.join()
    return answer == [True]


class WriterFailed(Exception):
    """The child could not write a batch for a reason other than the database being down."""


class LogWriterProcess:
    """The serving process's handle on the child: `write(batch)` blocks until it is written."""

    def __init__(self, url: str, backend: str):
        self.url, self.backend = url, backend
        self._process: Any = None
        self._conn: Any = None

    def start(self) -> None:
        """Start the child now (it imports for about a second: better before the calls come)."""
        if self._process is None or not self._process.is_alive():
            self._start()

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        parent, child = context.Pipe()
        process = context.Process(
            target=serve, args=(self.url, self.backend, child), name="call-log writer", daemon=True
        )
        process.start()
        child.close()
        self._process, self._conn = process, parent

    def write(self, batch: list[CallWrites]) -> list[int]:
        """Write the batch in the child (started on first use, again if it died); the row ids.

        DatabaseUnavailable when the database (or the child) is down, WriterFailed otherwise.
        """
        self.start()
        try:
            self._conn.send(batch)
            if not self._conn.poll(BEHIND_SECONDS):
                _catch_up(self._process.pid)  # a no-op if it is not in the idle class
            kind, value = self._conn.recv()
        except (EOFError, OSError) as exc:
            self._stop_child()
            raise DatabaseUnavailable(f"the call-log writer process ended ({exc!r})") from exc
        if kind == "down":
            raise DatabaseUnavailable(value)
        if kind == "error":
            raise WriterFailed(value)
        return cast(list[int], value)

    def close(self) -> None:
        """Let the child finish and end."""
        if self._process is None:
            return
        with contextlib.suppress(OSError, ValueError):
            self._conn.send(None)
        self._process.join(STOP_SECONDS)
        self._stop_child()

    def _stop_child(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None
