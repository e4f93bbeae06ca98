"""One FastAGI process serves 500 calls at once (all held open together, then walked)."""

from __future__ import annotations

import asyncio

import uvloop
from sqlalchemy import func, select

from hotline import registry
from hotline.db import Database
from hotline.models import Call
from hotline.settings import Settings
from ivr.asterisk.fake_agi import FakeAsterisk
from ivr.asterisk.fastagi import FastAgiServer
from ivr.asterisk.session import BACKEND, make_handler
from ivr.store import CallStore

CALLS = 500


def test_500_simultaneous_calls(settings: Settings, db: Database) -> None:
    with db.session() as session:
        number = registry.open_request(session, kind="incident", channel="web", actor="system").number

    async def main() -> tuple[FastAgiServer, list[str]]:
        server = FastAgiServer(make_handler(CallStore(db, settings, BACKEND), settings), "127.0.0.1", 0)
        port = await server.start()
        arrived, everyone = 0, asyncio.Event()

        async def gate() -> None:
            # Each fake holds its first answer until all 500 sessions are open on the server.
            nonlocal arrived
            arrived += 1
            if arrived == CALLS:
                everyone.set()
            await everyone.wait()

        fakes = [
            FakeAsterisk(
                "127.0.0.1",
                port,
                uniqueid=f"1700000000.{i}",
                callerid=f"7900{i:07d}",
                script=["1", number + "#"],
                gate=gate,
            )
            for i in range(CALLS)
        ]
        traces = await asyncio.gather(*(f.run(timeout=120) for f in fakes))
        await server.stop(grace=60)
        return server, [t.ended_by for t in traces]

    server, ended = uvloop.run(main())
    assert server.peak == CALLS and server.served == CALLS
    assert ended == ["hangup"] * CALLS
    with db.session() as session:
        outcomes = dict(session.execute(select(Call.outcome, func.count()).group_by(Call.outcome)).all())
        open_calls = session.scalar(select(func.count()).select_from(Call).where(Call.ended_at.is_(None)))
    assert outcomes == {"status_heard": CALLS} and open_calls == 0
