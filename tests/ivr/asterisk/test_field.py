"""What a real Asterisk 22 did in the field (FIELD-NOTES "Asterisk 22 as observed"),
replayed by the fake Asterisk against a FastAGI server on loopback."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop
from sqlalchemy import select

from hotline import health, registry
from hotline.db import Database
from hotline.models import Attachment, Call, CallEvent, Request
from hotline.settings import Settings
from ivr.asterisk.fake_agi import HANGUP, SILENCE, CallTrace, Dial, FakeAsterisk, Hold, Record
from ivr.asterisk.fastagi import FastAgiServer
from ivr.asterisk.processes import SharedCounts
from ivr.asterisk.service import agi_processes, recordings_dir_problem, warn_if_recordings_unwritable
from ivr.asterisk.session import BACKEND, RECORDINGS_CHECK, make_handler
from ivr.store import CallStore
from web import create_app

ESC = "0123456789*#"
UNIQUEID = "1700000000.0"


def run_calls(
    settings: Settings,
    db: Database,
    *calls: dict[str, Any],
    server_options: dict[str, Any] | None = None,
    during: Callable[[FastAgiServer], Awaitable[None]] | None = None,
    grace: float = 30,
) -> tuple[list[CallTrace], FastAgiServer]:
    """A FastAGI server and one fake Asterisk per call; `during` runs while the calls go on."""

    async def main() -> tuple[list[CallTrace], FastAgiServer]:
        handler = make_handler(CallStore(db, settings, BACKEND), settings)
        server = FastAgiServer(handler, "127.0.0.1", 0, **(server_options or {}))
        port = await server.start()
        fakes = [
            FakeAsterisk("127.0.0.1", port, **{"uniqueid": f"1700000000.{i}", **c})
            for i, c in enumerate(calls)
        ]
        runs = asyncio.gather(*(f.run(timeout=30) for f in fakes))
        try:
            if during is not None:
                await during(server)
            traces = await runs
        finally:
            await server.stop(grace=grace)
        return list(traces), server

    return uvloop.run(main())


def call_row(db: Database, call_id: str = UNIQUEID) -> Call:
    with db.session() as session:
        call = session.scalars(
            select(Call).where(Call.backend == "asterisk", Call.backend_call_id == call_id)
        ).one()
        call.events  # noqa: B018 - load them before the session closes
        session.expunge_all()
        return call


def events(call: Call, kind: str) -> list[CallEvent]:
    return [e for e in call.events if e.kind == kind]


def heard(trace: CallTrace) -> list[str]:
    return [p.removeprefix("hotline/ru/") for p in trace.heard]


def phone_requests(db: Database) -> list[Request]:
    with db.session() as session:
        found = list(session.scalars(select(Request).where(Request.channel == "phone")))
        for r in found:
            r.attachments  # noqa: B018
        session.expunge_all()
        return found


# --- 1. a prompt Asterisk cannot play is not a hang-up ----------------------------------


def test_a_missing_prompt_is_skipped_and_the_call_goes_on(settings: Settings, db: Database, caplog) -> None:
    with db.session() as session:
        number = registry.open_request(session, kind="incident", channel="web", actor="system").number
    with caplog.at_level(logging.INFO):
        [trace], _ = run_calls(
            settings,
            db,
            {
                "script": ["1", number + "#", SILENCE, SILENCE, SILENCE],
                "missing": {"hotline/ru/menu_no_duty"},
            },
        )
    # `200 result=-1 endpos=0`, then CHANNEL STATUS answered `200 result=6`: the caller is there.
    first = trace.commands.index(f"STREAM FILE hotline/ru/menu_no_duty {ESC}")
    assert trace.commands[first + 1] == "CHANNEL STATUS"
    assert "status_new" in heard(trace) and heard(trace)[-1] == "goodbye"
    assert trace.commands[-1] == "HANGUP" and not trace.fallback  # never dropped to voicemail
    call = call_row(db)
    assert call.outcome == "status_heard" and call.backend_status == "completed"
    [missing] = events(call, "prompt_missing")  # once per call, however often it was asked for
    assert missing.detail == "hotline/ru/menu_no_duty"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "hotline/ru/menu_no_duty" in errors[0].getMessage()


def test_a_hangup_during_a_prompt_is_still_a_hangup(settings: Settings, db: Database) -> None:
    [trace], _ = run_calls(settings, db, {"script": ["1", "hangup"]})
    assert trace.commands[-1] == "CHANNEL STATUS"  # answered 511: nothing more is sent
    call = call_row(db)
    assert call.outcome == "abandoned" and events(call, "prompt_missing") == []


def test_a_hangup_while_the_missing_prompt_is_checked_still_logs_it(settings: Settings, db: Database) -> None:
    # The prompt is missing, and the caller hangs up as CHANNEL STATUS is asked: Asterisk
    # answers the state (6) and only then `HANGUP` (handle_channelstatus does not look).
    [trace], _ = run_calls(settings, db, {"script": ["!1", HANGUP], "missing": {"hotline/ru/enter_number"}})
    asked = trace.commands.index(f"STREAM FILE hotline/ru/enter_number {ESC}")
    assert trace.commands[asked + 1] == "CHANNEL STATUS" and trace.ended_by == "hangup"
    call = call_row(db)
    assert [e.detail for e in events(call, "prompt_missing")] == ["hotline/ru/enter_number"]
    assert call.outcome == "abandoned" and call.ended_at is not None


def test_the_dial_status_is_read_when_the_caller_hangs_up_as_it_is_asked(make_settings, db: Database) -> None:
    # GET VARIABLE answers the value on a channel hanging up (`HANGUP` comes after it).
    settings = make_settings(HOTLINE_DUTY_NUMBER="PJSIP/duty", HOTLINE_BUSINESS_HOURS="mon-sun 00:00-23:59")
    [trace], _ = run_calls(settings, db, {"script": ["0", Dial("NOANSWER"), HANGUP]})
    assert trace.commands[trace.commands.index("EXEC Dial PJSIP/duty,20") + 1] == "GET VARIABLE DIALSTATUS"
    assert trace.ended_by == "hangup"
    call = call_row(db)
    assert [e.detail for e in events(call, "dial_status")] == ["NOANSWER"]
    assert call.outcome != "transferred" and call.ended_at is not None


def test_what_asterisk_answers_around_a_hang_up() -> None:
    """res_agi.c: a command the hang-up reaches answers as its handler does, then `HANGUP`;
    every command after that `HANGUP` is 511 (GET VARIABLE and EXEC may run on a dead channel)."""
    dead = "511 Command Not Permitted on a dead channel or intercept routine\n"

    def fake(*script: Any) -> FakeAsterisk:
        made = FakeAsterisk("127.0.0.1", 1, uniqueid=UNIQUEID, script=script)
        made.variables["DIALSTATUS"] = "NOANSWER"
        return made

    gets_data = fake()  # the caller hangs up during GET DATA
    assert gets_data.answer("GET DATA hotline/ru/enter_number 5000 10") == "200 result=-1\nHANGUP\n"
    assert gets_data.answer(f"STREAM FILE hotline/ru/menu {ESC}") == dead
    for line, answer in [
        ("CHANNEL STATUS", "200 result=6\nHANGUP\n"),
        ("GET VARIABLE DIALSTATUS", "200 result=1 (NOANSWER)\nHANGUP\n"),
        ("HANGUP", "200 result=1\nHANGUP\n"),
    ]:
        hung_up = fake(HANGUP)
        assert hung_up.answer(line) == answer
        assert hung_up.answer("WAIT FOR DIGIT 10000") == dead
        assert hung_up.answer("GET VARIABLE DIALSTATUS") == "200 result=1 (NOANSWER)\n"
    ours = fake()  # the script's own HANGUP: the loop reads the hang-up and says so
    assert ours.answer("HANGUP") == "200 result=1\nHANGUP\n"
    assert ours.answer("CHANNEL STATUS") == dead


# --- 2. a silent recording is not a request ------------------------------------------------


def test_a_caller_who_says_nothing_is_asked_again(settings: Settings, db: Database) -> None:
    [trace], _ = run_calls(settings, db, {"script": ["2", "1", Record(0.0, "timeout"), Record(3.0, "dtmf")]})
    silent, spoken = trace.recordings
    assert not silent.exists() and not spoken.exists()  # both handled and removed
    assert heard(trace).count("recording_empty") == 1
    [request] = phone_requests(db)
    [attachment] = request.attachments
    assert attachment.external_id == "asterisk:1700000000.0-2"
    call = call_row(db)
    assert call.outcome == "request_created"
    assert [e.detail for e in events(call, "recording_silent")] == ["1700000000.0-1"]
    assert len(events(call, "recording_empty")) == 1


def test_the_silent_file_is_what_asterisk_leaves(tmp_path: Path) -> None:
    """The fake's silence stop: `(timeout)`, result = ms left, endpos 8050, a ~1.006 s file."""
    fake = FakeAsterisk("127.0.0.1", 1, uniqueid=UNIQUEID, script=[Record(0.0, "timeout")])
    answer = fake.answer(f"RECORD FILE {tmp_path}/r wav # 180000 0 BEEP s=5")
    assert answer == "200 result=175000 (timeout) endpos=8050\n"
    assert (tmp_path / "r.wav").stat().st_size == 44 + 2 * 8050


def test_a_hangup_after_silence_makes_no_request(settings: Settings, db: Database) -> None:
    [trace], _ = run_calls(settings, db, {"script": ["2", "1", Record(0.0, "hangup")]})
    assert phone_requests(db) == []
    assert call_row(db).outcome == "abandoned"


# --- 3. an unwritable recordings folder is an outage ------------------------------------


def test_an_unwritable_folder_apologises_hands_back_and_fails_healthz(
    make_settings, db: Database, tmp_path: Path, caplog
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    folder = blocker / "asterisk"  # nobody can make files in it, root included
    settings = make_settings(HOTLINE_AGI_RECORDINGS_DIR=str(folder))
    assert recordings_dir_problem(folder) is not None
    with caplog.at_level(logging.INFO):
        [trace], _ = run_calls(settings, db, {"script": ["2", "1", Record(3.0, "dtmf")]})
    assert heard(trace)[-1] == "recording_unavailable" and "recording_empty" not in heard(trace)
    assert trace.commands[-1] == "FAILURE"  # AGISTATUS=FAILURE: the dialplan takes a voicemail
    assert trace.agistatus == "FAILURE" and trace.fallback
    call = call_row(db)
    assert call.outcome == "failed" and call.backend_status == "failed"
    assert [e.detail for e in events(call, "recording_unwritable")] == [str(folder)]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and str(folder) in errors[0]

    # /healthz of another app (as a gunicorn worker would be) fails until a recording works.
    client = create_app({"TESTING": True}, settings=make_settings()).test_client()
    answer = client.get("/healthz")
    assert answer.status_code == 503 and str(folder) in answer.json["status"]
    blocker.unlink()
    run_calls(settings, db, {"uniqueid": "1700000001.0", "script": ["2", "1", Record(3.0, "dtmf")]})
    assert not health.failing(settings.data_dir, RECORDINGS_CHECK)
    assert client.get("/healthz").json == {"status": "ok"}


def test_start_warns_about_an_unwritable_folder(make_settings, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    warn_if_recordings_unwritable(make_settings(HOTLINE_AGI_RECORDINGS_DIR=str(blocker / "rec")))
    err = capsys.readouterr().err
    assert "HOTLINE_AGI_RECORDINGS_DIR" in err and str(blocker / "rec") in err
    warn_if_recordings_unwritable(make_settings(HOTLINE_AGI_RECORDINGS_DIR=str(tmp_path / "ok")))
    assert capsys.readouterr().err == ""


# --- 4. restarts do not cut callers off ----------------------------------------------------


def test_a_restart_lets_calls_finish(settings: Settings, db: Database) -> None:
    async def stop_soon(server: FastAgiServer) -> None:
        await asyncio.sleep(0.3)
        await server.stop(grace=10)  # the call ends well within the drain time

    [trace], _ = run_calls(settings, db, {"script": ["1", Hold(1.0), "*", SILENCE]}, during=stop_soon)
    assert "service_restart" not in heard(trace)
    assert call_row(db).outcome != "service_restart"


def test_a_restart_tells_the_caller_and_hands_the_call_back(settings: Settings, db: Database, caplog) -> None:
    async def stop_now(server: FastAgiServer) -> None:
        await asyncio.sleep(0.3)  # the fake holds its answer to the menu for 1 s
        await server.stop(grace=0.2)

    with caplog.at_level(logging.INFO):
        [trace], server = run_calls(
            settings, db, {"script": [Hold(1.0), "1", SILENCE, SILENCE, SILENCE]}, during=stop_now
        )
    assert trace.commands[-2:] == ['STREAM FILE hotline/ru/service_restart ""', "FAILURE"]
    assert trace.agistatus == "FAILURE" and trace.fallback
    call = call_row(db)
    assert call.outcome == "service_restart" and call.hangup_cause == "service restart"
    assert len(events(call, "service_restart")) == 1
    assert server.active == 0
    assert "Traceback" not in caplog.text


def test_a_restart_during_a_recording_keeps_the_recording(settings: Settings, db: Database, caplog) -> None:
    async def stop_now(server: FastAgiServer) -> None:
        await asyncio.sleep(0.5)
        await server.stop(grace=0.1)

    with caplog.at_level(logging.INFO):
        [trace], _ = run_calls(
            settings,
            db,
            {"script": ["2", "1", Record(4.0, "dtmf", takes=1.5)]},
            server_options={"notice_seconds": 0.2},
            during=stop_now,
        )
    # The notice was queued behind the recording; Asterisk played it after, then FAILURE.
    assert trace.commands[-2:] == ['STREAM FILE hotline/ru/service_restart ""', "FAILURE"]
    assert trace.fallback
    [recording] = trace.recordings
    assert recording.exists()  # kept in the folder: the orphan sweep makes its request
    assert call_row(db).outcome == "service_restart"
    assert "Traceback" not in caplog.text


# --- 5. the beep ------------------------------------------------------------------------------


def test_hangup_during_the_beep_is_a_caller_hangup(settings: Settings, db: Database) -> None:
    [trace], _ = run_calls(settings, db, {"script": ["2", "1", Record(end="beep_hangup")]})
    assert trace.commands[-1].startswith("RECORD FILE")  # nothing sent to the dead channel
    call = call_row(db)
    assert call.outcome == "abandoned" and call.hangup_cause == "caller hung up during the beep"
    kinds = {e.kind for e in call.events}
    assert not kinds & {"recording_missing", "recording_empty", "record_error"}


def test_a_key_during_the_beep_is_an_empty_recording(settings: Settings, db: Database) -> None:
    [trace], _ = run_calls(settings, db, {"script": ["2", "1", Record(end="beep_key"), Record(2.0, "dtmf")]})
    assert heard(trace).count("recording_empty") == 1
    call = call_row(db)
    assert events(call, "recording_missing") == [] and len(events(call, "recording_empty")) == 1
    assert call.outcome == "request_created"


def test_a_missing_beep_records_without_it(settings: Settings, db: Database) -> None:
    [trace], _ = run_calls(settings, db, {"script": ["2", "1", Record(2.0, "dtmf")], "missing": {"beep"}})
    records = [c for c in trace.commands if c.startswith("RECORD FILE")]
    assert records[0].endswith(" BEEP s=5") and records[1].endswith(" 0 s=5")
    # handle_recordfile returns RESULT_SUCCESS after `(randomerror)`: AGISTATUS stays SUCCESS.
    assert trace.agistatus == "SUCCESS" and not trace.fallback
    call = call_row(db)
    assert call.outcome == "request_created" and [e.detail for e in events(call, "prompt_missing")] == [
        "beep"
    ]


# --- 7. untrusted AGI input -----------------------------------------------------------------


def test_a_uniqueid_that_is_a_path_is_refused(
    settings: Settings, db: Database, tmp_path: Path, caplog
) -> None:
    secret = tmp_path / "x" / "secret-1.wav"
    secret.parent.mkdir()
    secret.write_bytes(b"RIFF-secret")
    # Relative to the recordings folder <tmp>/data/asterisk, ../../x/secret-1.wav is that file.
    assert (settings.agi_recordings_dir / "../../x/secret-1.wav").resolve() == secret
    with caplog.at_level(logging.WARNING):
        [trace], _ = run_calls(
            settings, db, {"uniqueid": "../../x/secret", "script": ["2", "1", Record(2.0, "dtmf")]}
        )
    assert trace.commands == ["FAILURE"]  # not one command: the dialplan's fallback has it
    assert trace.fallback
    assert secret.read_bytes() == b"RIFF-secret"
    with db.session() as session:
        assert session.scalars(select(Call)).all() == []
        assert session.scalars(select(Attachment)).all() == []
    assert "agi_uniqueid" in caplog.text


def test_a_linkedid_that_is_a_path_is_not_used(settings: Settings, db: Database) -> None:
    run_calls(settings, db, {"linkedid": "../../y", "script": ["1", "hangup"]})
    assert call_row(db, UNIQUEID).ended_at is not None


def test_a_link_in_the_shared_folder_is_never_read(settings: Settings, db: Database, tmp_path: Path) -> None:
    outside = tmp_path / "outside.wav"
    outside.write_bytes(b"RIFF-outside")
    folder = settings.agi_recordings_dir
    folder.mkdir(parents=True)
    (folder / "1700000000.0-1.wav").symlink_to(outside)
    # Asterisk writes elsewhere; the hotline finds the link where the recording should be.
    run_calls(settings, db, {"script": ["2", "1", Record(2.0, "dtmf")], "shared_folder": False})
    call = call_row(db)
    assert len(events(call, "recording_refused")) == 1
    assert outside.read_bytes() == b"RIFF-outside" and (folder / "1700000000.0-1.wav").is_symlink()
    [request] = phone_requests(db)
    assert request.attachments == []


def test_an_answer_that_never_comes_closes_the_session(settings: Settings, db: Database) -> None:
    [trace], _ = run_calls(settings, db, {"script": [Hold(3.0), "1"]}, server_options={"answer_timeout": 0.5})
    call = call_row(db)
    assert call.backend_status == "failed" and call.outcome == "failed"
    assert [e.kind for e in call.events].count("answer_timeout") == 1
    assert call.hangup_cause is not None and "within" in call.hangup_cause


async def _raw_session(
    port: int, env: bytes, after: Callable[[asyncio.StreamWriter], Awaitable[None]]
) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(env)
    await writer.drain()
    try:
        first = await asyncio.wait_for(reader.readline(), 20)  # the first command, if any
    except ConnectionError:
        return b"<reset>"
    await after(writer)
    try:
        rest = await asyncio.wait_for(reader.read(), 20)
    except ConnectionError:
        rest = b"<reset>"
    writer.close()
    return first + rest


ENV = b"agi_network: yes\nagi_uniqueid: 1700000000.5\nagi_callerid: 79001234567\n\n"


def _bounded_server(settings: Settings, db: Database, session: Callable[[int], Awaitable[bytes]]) -> bytes:
    async def main() -> bytes:
        server = FastAgiServer(make_handler(CallStore(db, settings, BACKEND), settings), "127.0.0.1", 0)
        port = await server.start()
        try:
            return await session(port)
        finally:
            await server.stop(grace=5)

    return uvloop.run(main())


def test_a_usage_block_that_never_ends_is_cut(settings: Settings, db: Database) -> None:
    async def flood(writer: asyncio.StreamWriter) -> None:
        writer.write(b"200 result=0\n")  # ANSWER
        writer.write(b"520-Invalid command syntax.  Proper usage follows:\n")
        line = b" Usage: " + b"x" * 1000 + b"\n"
        for _ in range(2000):  # 2 MB at most; the server stops reading long before
            try:
                writer.write(line)
                await writer.drain()
            except ConnectionError:
                return

    got = _bounded_server(settings, db, lambda port: _raw_session(port, ENV, flood))
    assert got.startswith(b"ANSWER\n")
    call = call_row(db, "1700000000.5")
    assert call.backend_status == "failed" and call.ended_at is not None
    assert len(call.hangup_cause or "") <= 80


def test_a_line_too_long_is_cut(settings: Settings, db: Database) -> None:
    async def long_line(writer: asyncio.StreamWriter) -> None:
        writer.write(b"200 result=" + b"9" * 100_000 + b"\n")
        with pytest.raises(ConnectionError):  # noqa: PT012 - the server may reset either write
            for _ in range(100):
                if writer.is_closing():  # reset by the server (uvloop refuses a write on it)
                    raise ConnectionResetError("reset by the server")
                writer.write(b"200 result=" + b"9" * 100_000 + b"\n")
                await writer.drain()
                await asyncio.sleep(0.01)
            raise ConnectionError("still open")  # the loop is bounded: fail clearly

    _bounded_server(settings, db, lambda port: _raw_session(port, ENV, long_line))
    call = call_row(db, "1700000000.5")
    assert call.backend_status == "failed" and len(call.hangup_cause or "") <= 80


@pytest.mark.parametrize(
    "env",
    [
        b"".join(b"agi_arg_%d: x\n" % n for n in range(1, 500)) + b"agi_uniqueid: 1.2\n\n",
        b"agi_uniqueid: 1.2\nagi_callerid: " + b"7" * 100_000 + b"\n\n",
    ],
    ids=["too many headers", "a header too big"],
)
def test_an_environment_too_big_is_refused(settings: Settings, db: Database, env: bytes) -> None:
    async def nothing(writer: asyncio.StreamWriter) -> None:
        return None

    got = _bounded_server(settings, db, lambda port: _raw_session(port, env, nothing))
    assert got in (b"", b"<reset>")  # not one command
    with db.session() as session:
        assert session.scalars(select(Call)).all() == []


# --- 8. connection floods ---------------------------------------------------------------------


def test_a_call_over_the_cap_goes_to_the_fallback(settings: Settings, db: Database, caplog) -> None:
    arrived, everyone = 0, asyncio.Event()

    async def gate() -> None:
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            everyone.set()
        await everyone.wait()

    async def third_call(server: FastAgiServer) -> None:
        await asyncio.wait_for(everyone.wait(), 10)

    with caplog.at_level(logging.WARNING):
        traces, server = run_calls(
            settings,
            db,
            {"script": ["1", "hangup"], "gate": gate},
            {"script": ["1", "hangup"], "gate": gate},
            server_options={"max_sessions": 2},
            during=third_call,
        )
    assert server.peak == 2 and server.refused == 0

    async def over(port: int) -> CallTrace:
        held = [
            FakeAsterisk("127.0.0.1", port, uniqueid=f"1700000009.{i}", script=[Hold(2.0), "hangup"])
            for i in range(2)
        ]
        runs = [asyncio.ensure_future(f.run(timeout=20)) for f in held]
        await asyncio.sleep(0.5)
        refused = await FakeAsterisk("127.0.0.1", port, uniqueid="1700000009.9", script=["1"]).run(timeout=20)
        await asyncio.gather(*runs)
        return refused

    async def main() -> tuple[CallTrace, int]:
        handler = make_handler(CallStore(db, settings, BACKEND), settings)
        server = FastAgiServer(handler, "127.0.0.1", 0, max_sessions=2)
        port = await server.start()
        try:
            return await over(port), server.refused
        finally:
            await server.stop(grace=10)

    with caplog.at_level(logging.WARNING):
        trace, refused = uvloop.run(main())
    assert refused == 1
    assert trace.commands == ["FAILURE"] and trace.fallback
    call = call_row(db, "1700000009.9")
    assert call.outcome == "session_refused" and len(events(call, "session_refused")) == 1
    assert "HOTLINE_AGI_MAX_SESSIONS=2" in caplog.text


def test_idle_connections_do_not_keep_calls_out(settings: Settings, db: Database) -> None:
    async def main() -> tuple[CallTrace, FastAgiServer]:
        handler = make_handler(CallStore(db, settings, BACKEND), settings)
        server = FastAgiServer(handler, "127.0.0.1", 0, max_pending=20, environment_timeout=30)
        port = await server.start()
        idle = []
        try:
            for _ in range(100):  # five times what the server keeps
                idle.append(await asyncio.open_connection("127.0.0.1", port))
            trace = await FakeAsterisk("127.0.0.1", port, uniqueid=UNIQUEID, script=["1", "hangup"]).run(20)
            return trace, server
        finally:
            for _, writer in idle:
                writer.close()
            await server.stop(grace=5)

    trace, server = uvloop.run(main())
    assert f"STREAM FILE hotline/ru/enter_number {ESC}" in trace.commands
    assert server.dropped >= 80  # the oldest idle sockets made room
    assert call_row(db).ended_at is not None


def test_an_idle_connection_is_closed_after_the_environment_timeout(settings: Settings, db: Database) -> None:
    async def main() -> bytes:
        server = FastAgiServer(
            make_handler(CallStore(db, settings, BACKEND), settings), "127.0.0.1", 0, environment_timeout=0.5
        )
        port = await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"agi_network: yes\n")  # and then nothing
            got = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            return got
        finally:
            await server.stop(grace=1)

    assert uvloop.run(main()) == b""


def test_the_orphan_sweep_reads_and_deletes_only_recordings_inside_the_folder(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    from ivr.asterisk.orphans import import_orphans

    # A real call whose recording was left behind (the database was down, say).
    run_calls(settings, db, {"script": ["2", "1", Record(2.0, "dtmf")], "shared_folder": False})
    folder = settings.agi_recordings_dir
    folder.mkdir(parents=True, exist_ok=True)
    outside = tmp_path / "outside.wav"
    outside.write_bytes(b"RIFF-outside")
    (folder / "1700000000.0-2.wav").symlink_to(outside)  # a link named like this call's recording
    stray = folder / "notes.wav"
    stray.write_bytes(b"RIFF-notes")
    store = CallStore(db, settings, BACKEND)
    assert import_orphans(store, folder, min_age=0) == []
    assert outside.read_bytes() == b"RIFF-outside" and (folder / "1700000000.0-2.wav").is_symlink()
    assert stray.read_bytes() == b"RIFF-notes"
    with db.session() as session:
        assert session.scalars(select(Attachment)).all() == []


def test_a_flood_of_dropped_connections_is_one_log_line(settings: Settings, db: Database, caplog) -> None:
    async def main() -> int:
        server = FastAgiServer(
            make_handler(CallStore(db, settings, BACKEND), settings), "127.0.0.1", 0, max_pending=10
        )
        port = await server.start()
        try:
            for _ in range(50):  # not AGI at all, each one
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET / HTTP/1.1\r\n\r\n")
                await asyncio.wait_for(reader.read(), 10)
                writer.close()
            idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(30)]  # 20 pushed out
            await asyncio.sleep(0.2)
            for _, writer in idle:
                writer.close()
            return server.dropped
        finally:
            await server.stop(grace=1)

    with caplog.at_level(logging.WARNING):
        dropped = uvloop.run(main())
    assert dropped >= 70
    assert len([r for r in caplog.records if "closing the connection" in r.getMessage()]) == 1


def test_the_cap_counts_the_calls_of_every_process_on_the_port(settings: Settings, db: Database) -> None:
    # Two servers as two worker processes would run them (ivr.asterisk.processes): each writes
    # its own calls in progress, and the cap is for them all.
    shared, beats = [0, 0], [0.0, 0.0]

    async def main() -> tuple[CallTrace, FakeAsterisk, int]:
        handler = make_handler(CallStore(db, settings, BACKEND), settings)
        one, two = (
            FastAgiServer(handler, "127.0.0.1", 0, max_sessions=2, counts=SharedCounts(shared, beats, index))
            for index in (0, 1)
        )
        port_one, port_two = await one.start(), await two.start()
        try:
            held = [
                FakeAsterisk("127.0.0.1", port_one, uniqueid=f"1700000008.{i}", script=[Hold(2.0), "hangup"])
                for i in range(2)
            ]
            runs = [asyncio.ensure_future(f.run(timeout=20)) for f in held]
            await asyncio.sleep(0.5)
            assert shared == [2, 0]
            refused = await FakeAsterisk("127.0.0.1", port_two, uniqueid="1700000008.9", script=["1"]).run(20)
            await asyncio.gather(*runs)
            assert shared == [0, 0]
            taken = FakeAsterisk("127.0.0.1", port_two, uniqueid="1700000008.8", script=["hangup"])
            await taken.run(20)
            return refused, taken, two.refused
        finally:
            await one.stop(grace=10)
            await two.stop(grace=10)

    refused, taken, count = uvloop.run(main())
    assert count == 1 and refused.commands == ["FAILURE"] and refused.fallback
    assert call_row(db, "1700000008.9").outcome == "session_refused"
    # Taken once the held calls ended.
    assert taken.trace.commands[:1] == ["ANSWER"] and not taken.trace.fallback


def test_one_process_when_live_speech_decodes_the_streams(make_settings) -> None:  # type: ignore[no-untyped-def]
    assert agi_processes(make_settings(HOTLINE_AGI_PROCESSES="3")) == 3
    assert agi_processes(make_settings()) == min(len(os.sched_getaffinity(0)), 4)  # one per core, up to 4
    # The AudioSocket listener hands a stream to the call waiting in its own process.
    live = make_settings(HOTLINE_AGI_PROCESSES="3", HOTLINE_LIVE_SPEECH="true", HOTLINE_ASR="vosk")
    assert agi_processes(live) == 1


def test_one_sweep_of_the_recordings_folder_at_a_time(settings: Settings, db: Database) -> None:
    import fcntl
    import wave

    from ivr.asterisk.orphans import SWEEP_LOCK, import_orphans

    run_calls(settings, db, {"script": ["1", "hangup"]})  # the call 1700000000.0
    folder = settings.agi_recordings_dir
    folder.mkdir(parents=True, exist_ok=True)
    left = folder / "1700000000.0-1.wav"
    with wave.open(str(left), "wb") as w:  # a second of silence, left behind by that call
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 8000)
    store = CallStore(db, settings, BACKEND)
    with open(folder / SWEEP_LOCK, "w") as other:  # another worker process is sweeping
        fcntl.flock(other, fcntl.LOCK_EX)
        assert import_orphans(store, folder, min_age=0) == []
        assert left.exists()
    assert import_orphans(store, folder, min_age=0) == ["1700000000.0-1"]
    assert not left.exists() and (folder / SWEEP_LOCK).exists()
    assert "recording_empty" in [e.kind for e in call_row(db).events]
