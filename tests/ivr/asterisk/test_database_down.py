"""FastAGI while the database is down, and after it comes back (real PostgreSQL via a proxy)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import uvloop
from sqlalchemy import select

from hotline.db import Database
from hotline.models import Call, Request
from hotline.settings import Settings
from ivr.asterisk.fake_agi import CallTrace, FakeAsterisk, Record
from ivr.asterisk.fastagi import FastAgiServer
from ivr.asterisk.orphans import OrphanSweeper, import_orphans
from ivr.asterisk.session import BACKEND, make_handler
from ivr.store import CallStore

pytestmark = pytest.mark.postgres


@pytest.fixture
def db(proxied_db: Database) -> Database:
    return proxied_db  # and so `make_settings` and `settings` use it too


def heard(trace: CallTrace) -> list[str]:
    return [p.removeprefix("hotline/ru/") for p in trace.heard]


def test_apology_then_the_server_goes_on_and_the_recording_becomes_a_request(
    pg_via_proxy, settings: Settings, db: Database, caplog
) -> None:
    store = CallStore(db, settings, BACKEND)
    # Sweep at every call end, whatever the file's age: the test has no 15 minutes.
    sweeper = OrphanSweeper(store, settings.agi_recordings_dir, every=0, min_age=0)

    async def main() -> tuple[list[CallTrace], int]:
        server = FastAgiServer(make_handler(store, settings, sweeper), "127.0.0.1", 0)
        port = await server.start()

        def call(uniqueid: str, **kw: Any) -> FakeAsterisk:
            return FakeAsterisk("127.0.0.1", port, uniqueid=uniqueid, **kw)

        try:
            # 1. The caller records an incident; the database goes down as the file is written.
            cut = call("1700000000.1", script=["2", "1", Record(3.0, "dtmf", then=pg_via_proxy.cut)])
            down = await cut.run(timeout=20)
            # 2. A call while it is down: an apology, no answer from the flow.
            refused = await call("1700000000.2", script=["1"]).run(timeout=20)
            assert sweeper.task is not None
            await asyncio.wait_for(sweeper.task, 10)  # finds the database still down
            # 3. Back up: the same server takes the next call and its sweep stores the recording.
            pg_via_proxy.restore()
            after = await call("1700000000.3", script=["2", "3", Record(2.0, "dtmf")]).run(timeout=20)
            await asyncio.wait_for(sweeper.task, 10)
        finally:
            await server.stop(grace=10)
        return [down, refused, after], server.active

    with caplog.at_level(logging.INFO):
        (down, refused, after), active = uvloop.run(main())
    assert active == 0
    for trace in (down, refused):
        assert heard(trace)[-1] == "database_unavailable"
        assert trace.commands[-1] == "HANGUP" and trace.ended_by == "hotline"
    assert refused.commands[:2] == ["ANSWER", 'STREAM FILE hotline/ru/database_unavailable ""']
    assert "Traceback" not in caplog.text
    assert "kept for import" in caplog.text and "recordings sweep postponed" in caplog.text

    [recording] = down.recordings
    assert not recording.exists()  # stored, then removed from the shared folder
    with db.session() as session:
        requests = {r.kind: r for r in session.scalars(select(Request))}
        assert set(requests) == {"incident", "service_request"}
        [attachment] = requests["incident"].attachments
        assert attachment.external_id == "asterisk:1700000000.1-1" and attachment.size > 3 * 16000 - 100
        assert len(requests["service_request"].attachments) == 1
        call = session.scalars(select(Call).where(Call.backend_call_id == "1700000000.1")).one()
        assert call.request_id == requests["incident"].id and call.outcome == "request_created"


def test_a_recording_of_no_known_call_is_kept(pg_via_proxy, settings: Settings, db: Database, caplog) -> None:
    folder = settings.agi_recordings_dir
    folder.mkdir(parents=True)
    stray = folder / "1700000099.9-1.wav"
    stray.write_bytes(b"RIFF")
    store = CallStore(db, settings, BACKEND)
    with caplog.at_level(logging.WARNING):
        assert import_orphans(store, folder, min_age=0) == []
    assert stray.exists() and "belongs to no known call; kept" in caplog.text
    assert import_orphans(store, folder) == []  # younger than ORPHAN_AGE: not even looked at


@pytest.mark.parametrize("fails", ["cut", "freeze"])
def test_a_status_lookup_while_the_database_is_down_apologises_and_the_next_one_answers(
    pg_via_proxy, settings: Settings, db: Database, monkeypatch, fails: str
) -> None:
    # The calls in memory (`hotline agi`'s store): the loop's own PostgreSQL connection
    # for lookups is cut under it (refused), or the server stops answering (no error at
    # all: the caller waited in silence until hanging up); after the restart the next
    # lookup opens a new connection.
    from hotline import registry
    from ivr import livecalls
    from ivr.livecalls import LiveCallStore

    monkeypatch.setattr(livecalls, "ANSWER_SECONDS", 1.0)

    with db.session() as session:
        number = registry.open_request(session, kind="incident", channel="web", actor="system").number
    store = LiveCallStore(db, settings, BACKEND)

    async def main() -> list[CallTrace]:
        server = FastAgiServer(make_handler(store, settings), "127.0.0.1", 0)
        port = await server.start()
        traces = []
        try:
            for i, step in enumerate((None, getattr(pg_via_proxy, fails), pg_via_proxy.restore)):
                if step is not None:
                    step()
                fake = FakeAsterisk("127.0.0.1", port, uniqueid=f"1700000000.{i}", script=["1", number + "#"])
                traces.append(await fake.run(timeout=20))
        finally:
            await server.stop(grace=10)
        return traces

    try:
        up, down, again = uvloop.run(main())
        assert store.flush(20)  # the call log held while it was down is written now
    finally:
        store.close()
    assert "hotline/ru/status_new" in up.heard and "hotline/ru/status_new" in again.heard
    assert heard(down)[-1] == "database_unavailable" and down.commands[-1] == "HANGUP"
    with db.session() as session:
        calls = session.scalars(select(Call).order_by(Call.backend_call_id)).all()
        assert [c.backend_call_id for c in calls] == ["1700000000.0", "1700000000.1", "1700000000.2"]
        assert all(c.ended_at is not None for c in calls)
