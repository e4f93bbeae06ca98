"""Calls in memory, call log written behind: the same call log as the in-line store."""

from __future__ import annotations

import asyncio
import re
import threading
from typing import Any

import pytest
import uvloop
from sqlalchemy import select

from hotline import registry
from hotline.db import CONNECT_SECONDS, TCP_SECONDS, Database, DatabaseUnavailable
from hotline.models import Call, Request
from hotline.numbers import make_request_number
from hotline.settings import Settings
from hotline.vocabulary import CallEventKind, Outcome, RequestStatus
from ivr import flow, logwriter
from ivr.asterisk.amilog import AGI_STARTED
from ivr.asterisk.fake_agi import HANGUP, CallTrace, FakeAsterisk, Record
from ivr.asterisk.fastagi import FastAgiServer
from ivr.asterisk.session import BACKEND, make_handler
from ivr.livecalls import LiveCallStore
from ivr.store import CallStore
from tests.conftest import _reset_postgres


def serve(
    store: CallStore, settings: Settings, *calls: dict[str, Any], prefix: str = "1700000000"
) -> list[CallTrace]:
    """Run a FastAGI server on `store` and the fake calls one after the other."""

    async def main() -> list[CallTrace]:
        server = FastAgiServer(make_handler(store, settings), "127.0.0.1", 0)
        port = await server.start()
        traces = []
        try:
            for i, c in enumerate(calls):
                fake = FakeAsterisk("127.0.0.1", port, **{"uniqueid": f"{prefix}.{i}", **c})
                traces.append(await fake.run(timeout=30))
        finally:
            await server.stop(grace=30)
        return traces

    return uvloop.run(main())


def call_log(db: Database, prefix: str) -> list[dict[str, Any]]:
    """The calls of one run with their events, comparable between runs (no ids, no times)."""

    def same(value: Any) -> Any:  # each run makes requests of its own (said in words too)
        if not isinstance(value, str):
            return value
        return SPOKEN_DIGIT.sub("D", REQUEST_NUMBER.sub("N", value.replace(prefix, "P")))

    with db.session() as session:
        calls = session.scalars(
            select(Call).where(Call.backend_call_id.startswith(prefix)).order_by(Call.backend_call_id)
        ).all()
        return [
            {
                "call": same(c.backend_call_id),
                "from": c.from_number,
                "outcome": c.outcome,
                "ended": c.ended_at is not None,
                "answered": c.answered_at is not None,
                "status": c.backend_status,
                "cause": c.hangup_cause,
                "state": {k: same(v) for k, v in c.flow_state.items() if k != "recorded"},
                "request": c.request is not None,
                "events": [
                    (e.kind, same(e.detail), {k: same(v) for k, v in e.data.items()})
                    for e in c.events
                    if e.kind != AGI_STARTED
                ],
            }
            for c in calls
        ]


def open_request(db: Database) -> str:
    with db.session() as session:
        return registry.open_request(session, kind="incident", channel="web", actor="system").number


REQUEST_NUMBER = re.compile(r"\b1\d{4,}\b")
DIGIT = re.compile(r"digit_\d$")
SPOKEN_DIGIT = re.compile(r"\b(?:ноль|один|два|три|четыре|пять|шесть|семь|восемь|девять)\b")

SCRIPTS = {
    "status": lambda number: ["1", number + "#"],
    "voice request": lambda number: ["2", "1", Record(2.0, "dtmf")],
    "information": lambda number: ["1", number + "#", "1", Record(2.0, "dtmf")],
    "wrong numbers": lambda number: ["1", "100#", "1", "12345#", "1", "99999#"],
}


@pytest.mark.parametrize("name", SCRIPTS)
def test_the_live_store_writes_the_call_log_the_inline_store_writes(name, any_db, make_settings):
    settings = make_settings(HOTLINE_DATABASE_URL=any_db.url)
    logs = []
    number = open_request(any_db)
    for prefix, make_store in (("1700000001", LiveCallStore), ("1700000002", CallStore)):
        store = make_store(any_db, settings, BACKEND)
        call = {"script": SCRIPTS[name](number), "callerid": "79001112233"}
        traces = serve(store, settings, call, prefix=prefix)
        if isinstance(store, LiveCallStore):
            assert store.flush(), "the queued call log was not written"
            store.close()
        heard = [[DIGIT.sub("digit", p) for p in t.heard] for t in traces]  # new requests' numbers
        logs.append((call_log(any_db, prefix), heard))
    (live, live_heard), (inline, inline_heard) = logs
    assert live_heard == inline_heard
    assert live == inline
    assert live[0]["ended"] and live[0]["outcome"]


def test_a_voice_request_is_stored_with_its_recording(any_db, make_settings):
    settings = make_settings(HOTLINE_DATABASE_URL=any_db.url)
    store = LiveCallStore(any_db, settings, BACKEND)
    [trace] = serve(store, settings, {"script": ["2", "1", Record(2.0, "dtmf")], "callerid": "79001112233"})
    store.flush()
    with any_db.session() as session:
        request = session.scalars(select(Request)).one()
        call = session.scalars(select(Call)).one()
        assert request.contact_phone == "+79001112233" or request.contact_phone.endswith("9001112233")
        assert [a.external_id for a in request.attachments] == [f"asterisk:{trace.recordings[0].stem}"]
        assert call.request_id == request.id and call.outcome == "request_created" and call.ended_at


def status_keys(number: str) -> list[str]:
    return ["1", *number, "#"]


def test_a_hang_up_at_any_step_leaves_a_closed_call_log(any_db, make_settings):
    settings = make_settings(HOTLINE_DATABASE_URL=any_db.url)
    store = LiveCallStore(any_db, settings, BACKEND)
    number = open_request(any_db)
    keys = status_keys(number)
    calls = [{"script": [*keys[:n], HANGUP], "callerid": f"7900111{n:04d}"} for n in range(len(keys) + 1)]
    traces = serve(store, settings, *calls)
    assert all(t.ended_by in {"hangup", "hotline"} for t in traces)
    store.close()
    with any_db.session() as session:
        rows = session.scalars(select(Call).order_by(Call.id)).all()
        assert len(rows) == len(calls)
        for row in rows:
            assert row.ended_at is not None and row.hangup_cause, row.backend_call_id
            assert row.events[0].kind == AGI_STARTED
            assert row.events[-1].kind == "hangup"


def test_queued_lookups_count_against_the_callers_limit(any_db, make_settings, monkeypatch):
    """Calls from one number, their lookups still in the queue, are held to the limit."""
    settings = make_settings(HOTLINE_DATABASE_URL=any_db.url, HOTLINE_LOOKUPS_PER_HOUR="2")
    store = LiveCallStore(any_db, settings, BACKEND)
    number = open_request(any_db)
    release = threading.Event()
    write = store.writer._write

    def held(taken):  # the database is slow: every write stays queued during the calls
        release.wait(30)
        write(taken)

    monkeypatch.setattr(store.writer, "_write", held)
    try:
        traces = serve(store, settings, *[{"script": ["1", number + "#"], "callerid": "79005550000"}] * 3)
    finally:
        release.set()
    heard = [[p.removeprefix("hotline/ru/") for p in t.heard] for t in traces]
    assert "lookup_limit" not in heard[0] and "lookup_limit" not in heard[1]
    assert "lookup_limit" in heard[2]
    store.close()
    with any_db.session() as session:
        outcomes = [c.outcome for c in session.scalars(select(Call).order_by(Call.id))]
    assert outcomes == ["status_heard", "status_heard", "lookup_limit"]


def test_close_writes_what_is_queued(any_db, make_settings):
    settings = make_settings(HOTLINE_DATABASE_URL=any_db.url)
    store = LiveCallStore(any_db, settings, BACKEND)
    store.log("c1", AGI_STARTED, "PJSIP/trunk-1")
    store.handle("c1", flow.CallStarted("79001112233"), from_number="79001112233")
    store.hang_up("c1", backend_status="completed", hangup_cause="caller hung up")
    store.close()
    with any_db.session() as session:
        call = session.scalars(select(Call)).one()
        assert call.ended_at and call.hangup_cause == "caller hung up" and call.answered_at
        assert [e.kind for e in call.events][:2] == [AGI_STARTED, "call_started"]


def test_a_reused_call_id_is_a_new_call(any_db, make_settings):
    settings = make_settings(HOTLINE_DATABASE_URL=any_db.url)
    store = LiveCallStore(any_db, settings, BACKEND)
    for _ in range(2):
        store.log("c1", AGI_STARTED, "PJSIP/trunk-1")  # a session's first write, written alone
        assert store.flush()
        store.handle("c1", flow.CallStarted("+79001112233"), from_number="+79001112233")
        store.hang_up("c1", backend_status="completed")
    store.close()
    with any_db.session() as session:
        rows = session.scalars(select(Call).order_by(Call.id)).all()
        assert [[e.kind for e in r.events][:2] for r in rows] == [[AGI_STARTED, "call_started"]] * 2
    assert len(rows) == 2 and all(r.ended_at is not None for r in rows)
    assert rows[0].backend_call_id != "c1" and rows[1].backend_call_id == "c1"


def test_a_hang_up_outcome_replaces_only_an_achieved_nothing(any_db, make_settings):
    settings = make_settings(HOTLINE_DATABASE_URL=any_db.url)
    store = LiveCallStore(any_db, settings, BACKEND)
    number = open_request(any_db)
    store.handle("c1", flow.CallStarted("+79001112233"), from_number="+79001112233")
    store.hang_up("c1", backend_status="completed", outcome=Outcome.SERVICE_RESTART)
    store.handle("c2", flow.CallStarted("+79001112244"), from_number="+79001112244")
    store.handle("c2", flow.DigitsEntered("1"))
    store.handle("c2", flow.DigitsEntered(number + "#"))
    store.hang_up("c2", backend_status="completed", outcome=Outcome.SERVICE_RESTART)
    store.close()
    with any_db.session() as session:
        outcomes = {c.backend_call_id: c.outcome for c in session.scalars(select(Call))}
    assert outcomes == {"c1": Outcome.SERVICE_RESTART, "c2": Outcome.STATUS_HEARD}


def test_the_log_says_what_the_caller_heard_and_numbers_are_stored_cleaned(any_db, make_settings):
    settings = make_settings(HOTLINE_DATABASE_URL=any_db.url)
    store = LiveCallStore(any_db, settings, BACKEND)
    store.handle("c1", flow.CallStarted("8 (900) 111-22-33"), from_number="8 (900) 111-22-33")
    assert store.known("c1") and not store.known("c2")  # in memory, not written yet
    store.close()
    assert store.known("c1")  # written
    with any_db.session() as session:
        call = session.scalars(select(Call)).one()
        said = [e.detail for e in call.events if e.kind == CallEventKind.SAID]
    assert call.from_number == "+79001112233"
    assert said and "Здравствуйте" in said[0]


def test_a_queued_write_comes_out_of_the_pipe_as_it_went_in():
    import datetime as dt

    from ivr.logwriter import LogWrite, pack, unpack
    from ivr.speech import Date, Number, Prompt

    at = dt.datetime(2026, 11, 29, 22, 24, 3, 954069, tzinfo=dt.UTC)
    state = flow.CallState(step=flow.StepName.MENU, caller="+79120000001", outcome=Outcome.STATUS_HEARD)
    write = LogWrite(
        at,
        events=((CallEventKind.LOOKUP, "10008", {"number": "10008"}),),
        said=((Prompt("status_new"), Number("10008"), Date(dt.date(2026, 11, 29))),),
        state=state.to_json(),
        outcome=Outcome.STATUS_HEARD,
        answered=at - dt.timedelta(microseconds=1),
        ended=True,
        end={"backend_status": "completed", "hangup_cause": None, "ended_at": at + dt.timedelta(seconds=3)},
    )
    assert unpack(pack(write)) == write
    naive = LogWrite(dt.datetime(2026, 1, 1, 12, 0), end={"ended_at": None})
    assert unpack(pack(naive)) == naive


def test_a_step_packed_at_once_is_the_step_packed_through_its_log_write(monkeypatch):
    import datetime as dt

    from ivr.fake import FakeCallPort

    at = dt.datetime(2026, 11, 29, 22, 24, 3, 954069, tzinfo=dt.UTC)
    monkeypatch.setattr(logwriter, "utcnow", lambda: at)
    port = FakeCallPort()
    number = port.add_request("incident", "awaiting_info", question="Какой цех?")
    state = flow.CallState()
    events: list[flow.Event] = [
        flow.CallStarted("+79001112233"),
        flow.DigitsEntered("1"),
        flow.DigitsEntered(number + "#"),
        flow.DigitsEntered("1"),  # recording information: `pending` set
        flow.RecordingFinished(flow.Recording("r1", 5.0)),  # `recorded` set
        flow.Hangup(),
    ]
    for event in events:
        step = flow.handle(state, event, port)
        for answered, end in ((None, None), (at, {"backend_status": "completed", "ended_at": at})):
            packed = logwriter.unpack(logwriter.pack_step(step, answered=answered, end=end))
            assert packed == logwriter.unpack(logwriter.pack(_log_write(step, at, answered, end)))
        state = step.state
    assert state.recorded and state.step == flow.StepName.ENDED


def _log_write(step: flow.Step, at, answered, end) -> logwriter.LogWrite:
    """What one step writes, field by field (what `pack_step` packs without building it)."""
    return logwriter.LogWrite(
        at,
        events=tuple((entry.kind, entry.detail, entry.data) for entry in step.log),
        said=tuple(a.segments for a in step.actions if isinstance(a, flow.Speak)),
        state=step.state.to_json(),
        outcome=step.state.outcome,
        answered=answered,
        ended=step.state.step == flow.StepName.ENDED,
        end=end,
    )


def test_status_lookups_at_once_each_hear_their_own_request(any_db, make_settings):
    # The lookups of calls at once are read together (one statement a query): each call
    # still hears the status of its own number, and the unknown number hears so.
    settings = make_settings(HOTLINE_DATABASE_URL=any_db.url)
    new, in_progress = open_request(any_db), open_request(any_db)
    with any_db.session() as session:
        registry.change_status(
            session, registry.get_request(session, in_progress), RequestStatus.IN_PROGRESS, actor="system"
        )
    store = LiveCallStore(any_db, settings, BACKEND)
    asked = {"1700000000.1": new, "1700000000.2": in_progress, "1700000000.3": make_request_number(999_999)}

    async def main() -> dict[str, list[str]]:
        server = FastAgiServer(make_handler(store, settings), "127.0.0.1", 0)
        port = await server.start()
        try:
            fakes = [
                FakeAsterisk(
                    "127.0.0.1", port, uniqueid=uid, callerid=f"7900123456{i}", script=["1", n + "#"]
                )
                for i, (uid, n) in enumerate(asked.items())
            ]
            traces = await asyncio.gather(*(f.run(timeout=30) for f in fakes))
        finally:
            await server.stop(grace=30)
        return {uid: t.heard for uid, t in zip(asked, traces, strict=True)}

    try:
        heard = uvloop.run(main())
    finally:
        store.close()
    statuses = {
        uid: [
            h
            for h in said
            if h.startswith(("hotline/ru/status_", "hotline/ru/number_")) and h != "hotline/ru/status_is"
        ]
        for uid, said in heard.items()
    }
    assert statuses == {
        "1700000000.1": ["hotline/ru/status_new"],
        "1700000000.2": ["hotline/ru/status_in_progress"],
        "1700000000.3": ["hotline/ru/number_unknown"],
    }


@pytest.mark.parametrize("caller", ["79001112233", None], ids=["number", "withheld"])
def test_a_status_lookup_step_reads_first_then_runs_once(any_db, make_settings, monkeypatch, caller):
    # The lookup step needs the caller's lookup count(s) and the request: on the event loop
    # they are read first, all in one batch (flow.looked_up names the number), and the step
    # runs once with the answers (it ran twice before: once to find its reads).
    settings = make_settings(HOTLINE_DATABASE_URL=any_db.url)
    number = open_request(any_db)
    store = LiveCallStore(any_db, settings, BACKEND)
    runs: list[flow.Event] = []
    handle = flow.handle

    def counted(state, event, port, config=None):
        runs.append(event)
        return handle(state, event, port, config)

    monkeypatch.setattr(flow, "handle", counted)
    reads = store._batched_reads()
    assert reads is not None
    ask = reads.ask
    asked: list[str] = []

    def noted(query, params):
        asked.append(query.sql)
        return ask(query, params)

    async def main() -> flow.Step:
        await store.run(store.handle, "c1", flow.CallStarted(caller), from_number=caller)
        await store.run(store.handle, "c1", flow.DigitsEntered("1"))
        runs.clear()
        reads.ask = noted  # type: ignore[method-assign]
        return await store.run(store.handle, "c1", flow.DigitsEntered(number + "#"))

    try:
        step = uvloop.run(main())
    finally:
        store.close()
    assert len(runs) == 1
    assert len(asked) == (2 if caller else 3)  # the count (a withheld number: two), the request
    said = [s for a in step.actions if isinstance(a, flow.Speak) for s in a.segments]
    assert flow.Prompt("status_new") in said and flow.Number(number) in said
    assert [e.kind for e in step.log] == ["digits", "lookup"] and step.log[-1].data["found"]


@pytest.mark.postgres
def test_the_loops_reads_on_postgresql_use_no_parallel_workers_and_the_engines_limits(request, make_settings):
    # A batch of lookups read by two parallel workers took 16-21 ms against ~3 ms through
    # the number index (docs/performance.md), the workers' CPU taken from the event loop.
    # Its connection breaks as the engines' do when the server's host goes away
    # (hotline.db.pg_timeouts), not after the kernel's 15 minutes of TCP retries.
    url = request.getfixturevalue("_postgres_database")
    _reset_postgres(url)
    pg = Database(url)
    settings = make_settings(HOTLINE_DATABASE_URL=pg.url)
    number = open_request(pg)
    store = LiveCallStore(pg, settings, BACKEND)
    reads = store._pg_reads
    assert reads is not None

    async def main() -> str:
        await store.run(store.handle, "c1", flow.CallStarted("+79001112233"), from_number="+79001112233")
        await store.run(store.handle, "c1", flow.DigitsEntered("1"))
        await store.run(store.handle, "c1", flow.DigitsEntered(number + "#"))
        cursor = await reads._conn.execute("SHOW max_parallel_workers_per_gather")
        return (await cursor.fetchone())[0], reads._conn.info.get_parameters()

    try:
        workers, parameters = uvloop.run(main())
        assert workers == "0"
        assert parameters["keepalives_idle"] == str(TCP_SECONDS)
        assert parameters["tcp_user_timeout"] == str(TCP_SECONDS * 1000)
        assert parameters["connect_timeout"] == str(CONNECT_SECONDS)
    finally:
        store.close()
        pg.dispose()


@pytest.mark.postgres
def test_the_loops_postgresql_connection_opens_at_a_calls_first_step(request, make_settings, monkeypatch):
    # Opened at the first lookup, a burst's first lookups waited ~0.3 s for it: it opens at
    # a call's first step. Opening ahead failed (the server restarting): not tried again at
    # every step; the lookup tries itself and answers, on the connection then kept.
    import psycopg

    url = request.getfixturevalue("_postgres_database")
    _reset_postgres(url)
    pg = Database(url)
    settings = make_settings(HOTLINE_DATABASE_URL=pg.url)
    number = open_request(pg)
    connect = psycopg.AsyncConnection.connect
    tries: list[str] = []

    async def connecting(*args, **kwargs):
        tries.append("refused" if len(tries) == fail_first else "ok")
        if tries[-1] == "refused":
            raise psycopg.OperationalError("connection refused")
        return await connect(*args, **kwargs)

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", connecting)

    async def call(store: LiveCallStore, call_id: str) -> list[str]:
        await store.run(store.handle, call_id, flow.CallStarted("+79001112233"), from_number="+79001112233")
        await store.run(store.handle, call_id, flow.DigitsEntered("1"))
        await asyncio.sleep(0.1)  # the caller types the number
        before_lookup = list(tries)
        step = await store.run(store.handle, call_id, flow.DigitsEntered(number + "#"))
        said = [s for a in step.actions if isinstance(a, flow.Speak) for s in a.segments]
        assert flow.Prompt("status_new") in said
        return before_lookup

    try:
        for fail_first, expected in ((-1, (["ok"], ["ok"])), (0, (["refused"], ["refused", "ok"]))):
            tries.clear()
            store = LiveCallStore(pg, settings, BACKEND)
            try:
                assert uvloop.run(call(store, f"c{fail_first}")) == expected[0]
                assert tries == expected[1]
            finally:
                store.close()
    finally:
        pg.dispose()


def test_a_failed_read_fails_the_lookup_step(any_db, make_settings):
    # The reads asked together (a withheld number: three) fail together, the database
    # down: the step raises the database's error, as a single read did.
    settings = make_settings(HOTLINE_DATABASE_URL=any_db.url)
    number = open_request(any_db)
    store = LiveCallStore(any_db, settings, BACKEND)
    reads = store._batched_reads()
    assert reads is not None
    asked: list[asyncio.Future[Any]] = []

    def down(query, params):
        answer = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(answer.set_exception, DatabaseUnavailable("down"))
        asked.append(answer)
        return answer

    async def main() -> None:
        await store.run(store.handle, "c1", flow.CallStarted(None), from_number=None)
        await store.run(store.handle, "c1", flow.DigitsEntered("1"))
        reads.ask = down  # type: ignore[method-assign]
        with pytest.raises(DatabaseUnavailable):
            await store.run(store.handle, "c1", flow.DigitsEntered(number + "#"))

    try:
        uvloop.run(main())
    finally:
        store.close()
    assert len(asked) == 3


def _spied_asks(store: LiveCallStore, monkeypatch) -> list[str]:
    """The reads the store's loop asks for (their SQL), as they are asked."""
    reads = store._batched_reads()
    assert reads is not None
    asked: list[str] = []
    ask = reads.ask

    def noted(query, params):
        asked.append(query.sql)
        return ask(query, params)

    monkeypatch.setattr(reads, "ask", noted)
    return asked


def _said(step: flow.Step) -> list[Any]:
    return [s for a in step.actions if isinstance(a, flow.Speak) for s in a.segments]


@pytest.mark.parametrize("caller", ["79001112233", None], ids=["number", "withheld"])
def test_a_number_typed_is_read_before_the_hash_and_its_step_asks_nothing(
    any_db, make_settings, monkeypatch, caller
):
    # The caller's last digit makes a whole request number (its check digit right): its
    # status lookup's reads go out then, while the caller presses «#», and the step after
    # «#» finds them answered. Shorter, not yet a number: nothing is read.
    settings = make_settings(HOTLINE_DATABASE_URL=any_db.url)
    number = open_request(any_db)
    store = LiveCallStore(any_db, settings, BACKEND)
    asked = _spied_asks(store, monkeypatch)

    async def main() -> tuple[int, int, flow.Step]:
        await store.run(store.handle, "c1", flow.CallStarted(caller), from_number=caller)
        await store.run(store.handle, "c1", flow.DigitsEntered("1"))
        for typed in range(1, len(number)):
            store.read_ahead("c1", flow.DigitsEntered(number[:typed]))
        before = len(asked)
        store.read_ahead("c1", flow.DigitsEntered(number))
        store.read_ahead("c1", flow.DigitsEntered(number))  # asked once
        ahead = len(asked)
        await asyncio.sleep(0.2)  # the caller reaches for «#»
        return before, ahead, await store.run(store.handle, "c1", flow.DigitsEntered(number + "#"))

    try:
        before, ahead, step = uvloop.run(main())
    finally:
        store.close()
    assert before == 0
    assert ahead == (2 if caller else 3)  # the count (a withheld number: two), the request
    assert len(asked) == ahead  # the step asked nothing more
    assert flow.Prompt("status_new") in _said(step) and flow.Number(number) in _said(step)
    assert [e.kind for e in step.log] == ["digits", "lookup"]


def test_a_read_ahead_is_read_again_once_the_callers_count_may_have_moved(any_db, make_settings, monkeypatch):
    # The lookups counted against the caller's limit must be the database's as the step
    # sees it. Another call from the same number looked up (and was written) between the
    # read ahead and «#»: the step reads again, and the limit holds. A read ahead older
    # than READ_AHEAD_SECONDS is read again too.
    from ivr import livecalls

    settings = make_settings(HOTLINE_DATABASE_URL=any_db.url, HOTLINE_LOOKUPS_PER_HOUR="1")
    number = open_request(any_db)
    store = LiveCallStore(any_db, settings, BACKEND)
    asked = _spied_asks(store, monkeypatch)
    caller = "79001112233"

    async def start(call_id: str) -> None:
        await store.run(store.handle, call_id, flow.CallStarted(caller), from_number=caller)
        await store.run(store.handle, call_id, flow.DigitsEntered("1"))

    async def main() -> tuple[flow.Step, flow.Step, int]:
        await start("c1")
        await start("c2")
        store.read_ahead("c1", flow.DigitsEntered(number))
        await asyncio.sleep(0.2)  # answered: no lookup by this caller yet
        other = await store.run(store.handle, "c2", flow.DigitsEntered(number + "#"))
        assert await asyncio.to_thread(store.flush, 20)  # written: no longer counted as queued
        before = len(asked)
        limited = await store.run(store.handle, "c1", flow.DigitsEntered(number + "#"))
        return other, limited, len(asked) - before

    try:
        other, limited, again = uvloop.run(main())
    finally:
        store.close()
    assert flow.Prompt("status_new") in _said(other)
    assert again == 2 and flow.Prompt("lookup_limit") in _said(limited)

    monkeypatch.setattr(livecalls, "READ_AHEAD_SECONDS", 0.0)
    store = LiveCallStore(any_db, settings, BACKEND)
    asked = _spied_asks(store, monkeypatch)

    async def old() -> int:
        await store.run(store.handle, "c3", flow.CallStarted("79002223344"), from_number="79002223344")
        await store.run(store.handle, "c3", flow.DigitsEntered("1"))
        store.read_ahead("c3", flow.DigitsEntered(number))
        await asyncio.sleep(0.1)
        step = await store.run(store.handle, "c3", flow.DigitsEntered(number + "#"))
        assert flow.Prompt("status_new") in _said(step)
        return len(asked)

    try:
        assert uvloop.run(old()) == 4  # ahead, then again
    finally:
        store.close()


def test_a_step_after_a_read_ahead_of_another_number_reads_its_own(any_db, make_settings, monkeypatch):
    # The reads answered ahead are the step's only where they are the same reads: a
    # caller who typed one whole number and then another hears the other one's status.
    settings = make_settings(HOTLINE_DATABASE_URL=any_db.url)
    first, second = open_request(any_db), open_request(any_db)
    store = LiveCallStore(any_db, settings, BACKEND)
    asked = _spied_asks(store, monkeypatch)
    caller = "79001112233"

    async def main() -> tuple[int, flow.Step]:
        await store.run(store.handle, "c1", flow.CallStarted(caller), from_number=caller)
        await store.run(store.handle, "c1", flow.DigitsEntered("1"))
        store.read_ahead("c1", flow.DigitsEntered(first))
        await asyncio.sleep(0.2)  # answered
        before = len(asked)
        step = await store.run(store.handle, "c1", flow.DigitsEntered(second + "#"))
        return len(asked) - before, step

    try:
        again, step = uvloop.run(main())
    finally:
        store.close()
    assert again == 1  # its request (the caller's count was read ahead: the same read)
    assert flow.Number(second) in _said(step) and flow.Number(first) not in _said(step)
    assert step.log[-1].kind == "lookup" and step.log[-1].data["found"]


def test_no_read_ahead_while_a_lookup_of_the_caller_is_queued(any_db, make_settings, monkeypatch):
    # Its count would move when the writer commits it, between the read and the step.
    settings = make_settings(HOTLINE_DATABASE_URL=any_db.url)
    number = open_request(any_db)
    store = LiveCallStore(any_db, settings, BACKEND)
    release = threading.Event()
    write = store.writer._write

    def held(taken):  # the database is slow: the first call's lookup stays queued
        release.wait(30)
        write(taken)

    monkeypatch.setattr(store.writer, "_write", held)
    asked = _spied_asks(store, monkeypatch)
    caller = "79001112233"

    async def main() -> int:
        for call_id in ("c1", "c2"):
            await store.run(store.handle, call_id, flow.CallStarted(caller), from_number=caller)
            await store.run(store.handle, call_id, flow.DigitsEntered("1"))
        await store.run(store.handle, "c1", flow.DigitsEntered(number + "#"))
        before = len(asked)
        store.read_ahead("c2", flow.DigitsEntered(number))
        return len(asked) - before

    try:
        assert uvloop.run(main()) == 0
    finally:
        release.set()
        store.close()


def test_the_fastagi_session_reads_a_typed_number_ahead_of_the_hash(any_db, make_settings, monkeypatch):
    # Through a real FastAGI session, keys one by one as Asterisk sends them: the reads
    # of the lookup are asked before the step of «#» runs, and it asks none itself.
    settings = make_settings(HOTLINE_DATABASE_URL=any_db.url)
    number = open_request(any_db)
    store = LiveCallStore(any_db, settings, BACKEND)
    seen: list[str] = []
    reads = store._batched_reads()
    assert reads is not None
    ask, read_ahead, handle = reads.ask, store.read_ahead, store.handle

    def asking(query, params):
        seen.append("ask")
        return ask(query, params)

    def ahead(call_id, event):
        seen.append(f"ahead {event.digits}")
        read_ahead(call_id, event)

    def handling(call_id, event, **kw):
        if isinstance(event, flow.DigitsEntered) and event.digits == number:
            seen.append("step")
        return handle(call_id, event, **kw)

    monkeypatch.setattr(reads, "ask", asking)
    monkeypatch.setattr(store, "read_ahead", ahead)
    monkeypatch.setattr(store, "handle", handling)
    try:
        [trace] = serve(store, settings, {"script": ["1", number + "#"]})
    finally:
        store.close()
    assert "hotline/ru/status_new" in trace.heard
    typed = [f"ahead {number[:i]}" for i in range(1, len(number) + 1)]
    assert [s for s in seen if s.startswith("ahead")] == [
        "ahead 1",
        *typed,
    ]  # the menu's key, then the number's
    # Read ahead; the step (run to find its reads, then with them) asked nothing.
    assert seen.count("ask") == 2 and "ask" not in seen[seen.index("step") :]
