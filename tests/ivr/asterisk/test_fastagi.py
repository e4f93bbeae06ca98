"""Every call path over FastAGI, against a fake Asterisk speaking AGI on loopback."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import struct
from typing import Any

import pytest
import uvloop
from sqlalchemy import select

from hotline import health, registry
from hotline.db import Database
from hotline.models import Attachment, Call, CallEvent, Request, TranscriptionState
from hotline.numbers import make_request_number
from hotline.settings import Settings
from ivr.asterisk.agi import AnswerTimeout, ChannelGone
from ivr.asterisk.fake_agi import (
    DROP,
    HANGUP,
    REPLY_510,
    REPLY_520,
    SILENCE,
    CallTrace,
    Dial,
    FakeAsterisk,
    Record,
)
from ivr.asterisk.fastagi import AgiChannel, FastAgiServer
from ivr.asterisk.session import BACKEND, RECORDINGS_CHECK, dial_string, make_handler
from ivr.store import CallStore

ESC = "0123456789*#"


def serve(settings: Settings, db: Database, *calls: dict[str, Any]) -> list[CallTrace]:
    """Run a FastAGI server and one fake Asterisk per call; wait until every call is closed."""

    async def main() -> list[CallTrace]:
        server = FastAgiServer(make_handler(CallStore(db, settings, BACKEND), settings), "127.0.0.1", 0)
        port = await server.start()
        try:
            fakes = [
                FakeAsterisk("127.0.0.1", port, **{"uniqueid": f"1700000000.{i}", **c})
                for i, c in enumerate(calls)
            ]
            traces = await asyncio.gather(*(f.run(timeout=30) for f in fakes))
        finally:
            await server.stop(grace=30)
        assert server.active == 0
        return list(traces)

    return uvloop.run(main())


def call_row(db: Database, call_id: str = "1700000000.0") -> Call:
    with db.session() as session:
        call = session.scalars(
            select(Call).where(Call.backend == "asterisk", Call.backend_call_id == call_id)
        ).one()
        call.events  # noqa: B018 - load them before the session closes
        session.expunge_all()
        return call


def event_kinds(call: Call) -> list[str]:
    return [e.kind for e in call.events]


def prompts(trace: CallTrace) -> list[str]:
    return [p.removeprefix("hotline/ru/") for p in trace.heard]


@pytest.fixture
def settings(make_settings) -> Settings:  # type: ignore[no-untyped-def]
    return make_settings(HOTLINE_DUTY_NUMBER="PJSIP/duty", HOTLINE_BUSINESS_HOURS="mon-sun 00:00-23:59")


def open_request(db: Database, status: str = "new") -> str:
    """A request whose contact phone is the fake Asterisk's caller id (FakeAsterisk.callerid)."""
    with db.session() as session:
        request = registry.open_request(
            session, kind="problem", channel="email", actor="system", subject="x", phone="79001234567"
        )
        if status != "new":
            registry.change_status(session, request, "in_progress", actor="engineer:petrov")
        if status == "awaiting_info":
            registry.ask_clarification(session, request, actor="engineer:petrov", question="Какая линия?")
        return request.number


def wrong_check_digit(number: str) -> str:
    return number[:-1] + str((int(number[-1]) + 1) % 10)


# --- status ---------------------------------------------------------------------------


def test_status_of_a_known_request(settings: Settings, db: Database) -> None:
    number = open_request(db)
    [trace] = serve(settings, db, {"script": ["1", number + "#"]})
    assert trace.commands[0] == "ANSWER"
    assert trace.commands[1] == f"STREAM FILE hotline/ru/greeting {ESC}"
    heard = prompts(trace)
    readback = heard.index("request_number")
    assert heard[readback + 1 : readback + 1 + len(number)] == [f"digit_{d}" for d in number]
    assert "kind_problem" in heard and "status_new" in heard and "changed_on" in heard
    assert heard[-1] == "menu"  # back in the main menu, where the caller hung up
    call = call_row(db)
    assert call.outcome == "status_heard" and call.ended_at is not None
    assert call.from_number == "+79001234567" and call.answered_at is not None
    kinds = event_kinds(call)
    assert kinds[0] == "agi_start" and "lookup" in kinds and kinds[-1] == "hangup"


def test_a_key_typed_over_a_prompt_is_the_start_of_the_next_input(settings: Settings, db: Database) -> None:
    number = open_request(db)
    # "1" interrupts the greeting; the number is typed over "enter the number".
    [trace] = serve(settings, db, {"script": ["!1", "!" + number[0], number[1:] + "#"]})
    heard = prompts(trace)
    assert heard[:2] == ["greeting", "enter_number"]  # the menu was never played
    assert "status_new" in heard
    waits = [c for c in trace.commands if c == "WAIT FOR DIGIT 10000"]
    assert len(waits) == len(number) - 1 + 1  # the carried first digit is not asked for; then '#'
    assert trace.commands.index(waits[0]) > trace.commands.index(f"STREAM FILE hotline/ru/enter_number {ESC}")


def test_a_key_typed_over_a_prompt_without_escape_digits_is_lost(settings: Settings, db: Database) -> None:
    number = open_request(db)
    # «2» (a new request, in the menu) is pressed while the status is read back: that
    # prompt is played with no escape digits, so Asterisk plays on and drops the key.
    [trace] = serve(settings, db, {"script": ["1", number + "#", "!2"]})
    assert 'STREAM FILE hotline/ru/request_number ""' in trace.commands
    heard = prompts(trace)
    assert "status_new" in heard and "changed_on" in heard  # the readback went on to its end
    assert heard[-1] == "menu" and "choose_kind" not in heard  # the menu waited; «2» was not taken
    assert trace.commands[-1].startswith("WAIT FOR DIGIT") and trace.ended_by == "hangup"
    call = call_row(db)
    assert [e.detail for e in call.events if e.kind == "menu"] == ["status"]


@pytest.mark.parametrize("kind", ["wrong_check_digit", "unknown"])
def test_wrong_numbers_then_goodbye(settings: Settings, db: Database, kind: str) -> None:
    number = open_request(db)
    bad = wrong_check_digit(number) if kind == "wrong_check_digit" else make_request_number(999_999)
    [trace] = serve(settings, db, {"script": ["1", bad + "#", bad + "#", bad + "#"]})
    heard = prompts(trace)
    key = "number_invalid" if kind == "wrong_check_digit" else "number_unknown"
    assert heard.count(key) == 3 and heard.count("try_again") == 2
    assert heard[-2:] == ["too_many_attempts", "goodbye"]
    assert trace.commands[-1] == "HANGUP" and trace.ended_by == "hotline"
    call = call_row(db)
    assert call.outcome == "too_many_attempts" and call.ended_at is not None
    assert call.backend_status == "completed" and call.hangup_cause == "the hotline hung up"


def test_awaiting_info_records_the_information(settings: Settings, db: Database) -> None:
    number = open_request(db, "awaiting_info")
    [trace] = serve(settings, db, {"script": ["1", number + "#", "1", Record(3.0, "dtmf")]})
    heard = prompts(trace)
    assert "status_awaiting_info" in heard and "info_offer" in heard and "record_info" in heard
    assert "info_saved" in heard
    record = next(c for c in trace.commands if c.startswith("RECORD FILE"))
    assert record.endswith(" wav # 180000 0 BEEP s=5")
    with db.session() as session:
        request = registry.get_request(session, number)
        assert request.status == "in_progress"
        [attachment] = request.attachments
        assert attachment.external_id == "asterisk:1700000000.0-1"
        assert attachment.transcription_state == TranscriptionState.PENDING
        assert 2.9 < (attachment.duration_seconds or 0) < 3.1
    assert not trace.recordings[0].exists()  # the shared folder is emptied once stored
    assert call_row(db).outcome == "info_added"


# --- new request ----------------------------------------------------------------------


def requests(db: Database) -> list[Request]:
    with db.session() as session:
        found = list(session.scalars(select(Request).where(Request.channel == "phone")))
        for r in found:
            r.attachments  # noqa: B018
        session.expunge_all()
        return found


@pytest.mark.parametrize(("key", "kind"), [("1", "incident"), ("2", "problem"), ("3", "service_request")])
def test_new_request_of_each_kind(settings: Settings, db: Database, key: str, kind: str) -> None:
    [trace] = serve(settings, db, {"script": ["2", key, Record(2.0, "timeout")]})
    [request] = requests(db)
    assert request.kind == kind and request.status == "new" and request.contact_phone == "+79001234567"
    [attachment] = request.attachments
    assert attachment.content_type.startswith("audio/") and attachment.size > 30000
    heard = prompts(trace)
    digits = [f"digit_{d}" for d in request.number]
    created = heard.index("request_created")
    assert heard[created + 1 : created + 1 + len(digits)] == digits
    assert heard.count("repeat_number") == 1 and heard[-1] == "goodbye"
    assert trace.commands[-1] == "HANGUP"
    call = call_row(db)
    assert call.outcome == "request_created" and call.request_id == request.id


def test_transcription_is_queued_after_the_commit(settings: Settings, db: Database) -> None:
    from hotline.jobs import queue_for

    serve(settings, db, {"script": ["2", "1", Record(2.0, "dtmf")]})
    assert queue_for(settings).huey.pending_count() == 1


def test_an_empty_recording_makes_no_request(settings: Settings, db: Database) -> None:
    # '#' after 0.3 s, then a caller who says nothing until the silence stop (twice)
    [trace] = serve(settings, db, {"script": ["2", "1", Record(0.3, "dtmf"), Record(0.0, "timeout")]})
    assert requests(db) == []
    assert prompts(trace).count("recording_empty") == 3  # the third try is empty too (nothing left to say)
    assert prompts(trace)[-1] == "goodbye"
    assert "recording_empty" in event_kinds(call_row(db))
    assert not any(p.exists() for p in trace.recordings)


def test_hangup_while_recording_keeps_the_file_and_makes_the_request(
    settings: Settings, db: Database
) -> None:
    [trace] = serve(settings, db, {"script": ["2", "3", Record(4.0, "hangup")]})
    [request] = requests(db)
    assert request.kind == "service_request"
    [attachment] = request.attachments
    assert 3.9 < (attachment.duration_seconds or 0) < 4.1
    assert trace.commands[-1].startswith("RECORD FILE")  # nothing was sent to the dead channel
    call = call_row(db)
    assert call.outcome == "request_created" and call.ended_at is not None
    assert call.hangup_cause == "caller hung up while recording"


def test_a_recording_in_a_folder_not_shared_still_makes_the_request(settings: Settings, db: Database) -> None:
    serve(settings, db, {"script": ["2", "1", Record(2.0, "dtmf")], "shared_folder": False})
    [request] = requests(db)
    assert request.attachments == []  # nothing to store, but the caller's request exists
    call = call_row(db)
    assert "recording_missing" in event_kinds(call) and call.outcome == "request_created"
    # Every voicemail would come without its audio: /healthz says so until one is found.
    problem = health.problems(settings.data_dir).get(RECORDINGS_CHECK, "")
    assert str(settings.agi_recordings_dir) in problem and "общей с Asterisk" in problem
    serve(settings, db, {"uniqueid": "1700000001.0", "script": ["2", "1", Record(2.0, "dtmf")]})
    assert not health.failing(settings.data_dir, RECORDINGS_CHECK)


# --- duty engineer -----------------------------------------------------------------------


def test_duty_engineer_answers(settings: Settings, db: Database) -> None:
    [trace] = serve(settings, db, {"script": ["0", Dial("ANSWER")]})
    assert "transfer" in prompts(trace)
    assert "EXEC Dial PJSIP/duty,20" in trace.commands
    assert "GET VARIABLE DIALSTATUS" in trace.commands
    call = call_row(db)
    assert call.outcome == "transferred" and call.ended_at is not None
    assert "dial_status" in event_kinds(call)


@pytest.mark.parametrize("status", ["NOANSWER", "BUSY", "CHANUNAVAIL"])
def test_duty_engineer_does_not_answer_then_a_request(settings: Settings, db: Database, status: str) -> None:
    [trace] = serve(settings, db, {"script": ["0", Dial(status), "2", "2", Record(2.0, "dtmf")]})
    heard = prompts(trace)
    assert heard.index("duty_no_answer") < heard.index("offer_request") < heard.index("choose_kind")
    [request] = requests(db)
    assert request.kind == "problem"
    assert call_row(db).outcome == "request_created"


def test_duty_engineer_out_of_hours(make_settings, db: Database) -> None:
    today = dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=5))).date()
    holidays = ",".join(str(today + dt.timedelta(days=d)) for d in (-1, 0, 1))
    settings = make_settings(HOTLINE_DUTY_NUMBER="PJSIP/duty", HOTLINE_HOLIDAYS=holidays)
    [trace] = serve(settings, db, {"script": ["0", "*"]})
    heard = prompts(trace)
    assert "duty_holiday" in heard and "offer_request" in heard and "transfer" not in heard
    assert not any(c.startswith("EXEC") for c in trace.commands)
    assert heard.count("menu") == 2  # '*' went back to the menu
    assert call_row(db).outcome == "duty_unavailable"


def test_dial_string() -> None:
    assert dial_string("PJSIP/duty", 20) == "PJSIP/duty,20"
    assert dial_string("+79001234567", 15) == "Local/79001234567@hotline-outbound,15"


# --- menu --------------------------------------------------------------------------------


def test_menu_timeouts_then_goodbye(settings: Settings, db: Database) -> None:
    [trace] = serve(settings, db, {"script": [SILENCE, SILENCE, SILENCE]})
    heard = prompts(trace)
    assert heard.count("no_input") == 3 and heard.count("menu") == 3 - 1 + 1
    assert heard[-1] == "goodbye" and trace.commands[-1] == "HANGUP"
    assert [c for c in trace.commands if c.startswith("WAIT FOR DIGIT")] == ["WAIT FOR DIGIT 6000"] * 3
    assert call_row(db).outcome == "no_input"


def test_star_repeats_the_menu(settings: Settings, db: Database) -> None:
    [trace] = serve(settings, db, {"script": ["*", "*"]})
    assert prompts(trace).count("menu") == 3


def test_a_star_at_the_number_question_is_the_menu_at_once(settings: Settings, db: Database) -> None:
    [trace] = serve(settings, db, {"script": ["1", "1", "2", "*", SILENCE, SILENCE, SILENCE]})
    # «12*»: no wait for «#» or the timeout after the «*», and no wrong number counted.
    star = trace.commands.index("WAIT FOR DIGIT 10000", 0) + 2
    assert trace.commands[star + 1] == f"STREAM FILE hotline/ru/menu {ESC}"
    heard = prompts(trace)
    assert "number_invalid" not in heard and heard.count("menu") == 4
    assert heard[-2:] == ["too_many_attempts", "goodbye"]


def test_garbage_keys(settings: Settings, db: Database) -> None:
    open_request(db)
    [trace] = serve(settings, db, {"script": ["9", "#", "1", "1" * 60 + "#"]})
    heard = prompts(trace)
    assert heard.count("menu_invalid") == 1 and heard.count("no_input") == 1  # '9', then a bare '#'
    # 60 keys: each cut at the longest number and rejected, until the caller is told goodbye
    assert heard.count("number_invalid") == 3 and heard[-2:] == ["too_many_attempts", "goodbye"]


# --- the call ends badly -----------------------------------------------------------------


def test_hangup_during_a_prompt(settings: Settings, db: Database) -> None:
    [trace] = serve(settings, db, {"script": ["1", HANGUP]})
    # `200 result=-1 endpos=0` could be a missing file: one CHANNEL STATUS, answered 511, tells.
    assert trace.ended_by == "hangup"
    assert trace.commands[-2:] == [f"STREAM FILE hotline/ru/enter_number {ESC}", "CHANNEL STATUS"]
    call = call_row(db)
    assert call.outcome == "abandoned" and call.ended_at is not None
    assert call.hangup_cause == "hangup during playback or wait"


def test_dropped_socket(settings: Settings, db: Database) -> None:
    [trace] = serve(settings, db, {"script": ["1", DROP]})
    assert trace.ended_by == "drop"
    call = call_row(db)
    assert call.ended_at is not None and call.outcome == "abandoned"
    assert call.hangup_cause == "socket closed by Asterisk"


def test_a_connection_reset_between_commands_is_a_hang_up() -> None:
    # Asterisk restarted, or the network reset the connection, while the call was on the
    # hotline's side (a database step): the next command must end the call as a hang-up
    # does. On the service's loop (uvloop) a write on a reset socket raises RuntimeError.
    ended: list[str] = []

    async def main() -> None:
        started, reset = asyncio.Event(), asyncio.Event()

        async def handler(channel: AgiChannel) -> None:
            started.set()
            await reset.wait()
            await asyncio.sleep(0.2)  # the reset has reached the server's socket
            for command in ("ANSWER", "STREAM FILE"):
                try:
                    await channel.execute(command)
                except ChannelGone as exc:
                    ended.append(f"{command}: {exc}")
            await channel.hand_back()  # nothing to send it on: returns at once

        server = FastAgiServer(handler, "127.0.0.1", 0)
        port = await server.start()
        try:
            with socket.create_connection(("127.0.0.1", port)) as peer:
                peer.sendall(b"agi_network: yes\nagi_uniqueid: 1700000000.9\n\n")
                await asyncio.wait_for(started.wait(), 10)
                peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
            reset.set()
        finally:
            await server.stop(grace=10)

    uvloop.run(main())
    assert ended == ["ANSWER: socket closed by Asterisk", "STREAM FILE: socket closed by Asterisk"]


def test_an_answer_deadline_under_a_millisecond_away_moves_on() -> None:
    # uvloop counts whole milliseconds: a timer due in less than one is a plain Handle
    # (no when()), and its clock may read a deadline as not yet due when it fires. The
    # next command's deadline used to ask that Handle when it fires (AttributeError: the
    # call ended with an apology), and the timer re-armed itself until the clock ticked.
    async def main() -> tuple[BaseException | None, BaseException | None]:
        ours, theirs = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=ours)
        channel = AgiChannel(reader, writer)
        try:
            channel._watch(0.0004)  # a command sent, its deadline 0.4 ms away
            channel._watch(60)  # answered at once: the next command's
            await asyncio.sleep(0.05)  # the first timer fires and finds the deadline moved
            moved = reader.exception()
            channel._watch(0.0004)  # the next command, not answered: its deadline comes
            await asyncio.sleep(0.05)
            return moved, reader.exception()
        finally:
            await channel.close()
            theirs.close()

    moved, due = uvloop.run(main())
    assert moved is None
    assert isinstance(due, AnswerTimeout)


@pytest.mark.parametrize("reply", [REPLY_510, REPLY_520])
def test_refused_commands_end_the_call_cleanly(settings: Settings, db: Database, reply: str) -> None:
    [trace] = serve(settings, db, {"script": ["1", reply]})
    assert trace.commands[-1] == "HANGUP"  # the hotline hangs up rather than leave silence
    call = call_row(db)
    assert call.backend_status == "failed" and call.ended_at is not None
    assert call.hangup_cause is not None and call.hangup_cause.startswith(f"AGI error: {reply}")


def test_not_asterisk_is_refused_and_logs_nothing(settings: Settings, db: Database) -> None:
    async def main() -> bytes:
        server = FastAgiServer(make_handler(CallStore(db, settings, BACKEND), settings), "127.0.0.1", 0)
        port = await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        await server.stop(grace=10)
        return answer

    assert uvloop.run(main()) == b""
    with db.session() as session:
        assert session.scalars(select(Call)).all() == []


def test_linkedid_from_the_dialplan_keys_the_call(settings: Settings, db: Database) -> None:
    serve(settings, db, {"script": ["1", HANGUP], "linkedid": "1699999999.7", "callerid": "unknown"})
    call = call_row(db, "1699999999.7")
    assert call.from_number is None and call.ended_at is not None
    with db.session() as session:
        start = session.scalars(select(CallEvent).where(CallEvent.kind == "agi_start")).one()
        assert start.data["uniqueid"] == "1700000000.0"


def test_every_recording_is_stored_once(settings: Settings, db: Database) -> None:
    serve(
        settings,
        db,
        {"script": ["2", "1", Record(2.0, "dtmf")]},
        {"script": ["2", "2", Record(2.0, "hangup")]},
    )
    with db.session() as session:
        ids = session.scalars(select(Attachment.external_id)).all()
    assert sorted(ids) == ["asterisk:1700000000.0-1", "asterisk:1700000000.1-1"]


def test_answers_of_a_burst_wait_for_its_set_ups_but_never_longer_than_the_hold():
    from ivr.asterisk.fastagi import AnswerGate

    async def main() -> tuple[list[str], list[str]]:
        gate, order = AnswerGate(hold=0.2), []

        async def call(name: str) -> None:
            await gate.turn()
            order.append(name)

        async def set_up(name: str, passes: int) -> None:
            for _ in range(passes):
                await asyncio.sleep(0)  # its environment comes `passes` passes of the loop later
            order.append(f"set up {name}")
            await call(name)

        await asyncio.gather(call("a"), set_up("b", 1), set_up("c", 2))
        burst = order
        # A steady stream of new calls cannot hold the first one past the hold.
        gate, order = AnswerGate(hold=0.05), []
        first = asyncio.ensure_future(call("first"))
        started = asyncio.get_running_loop().time()
        while not first.done():
            asyncio.ensure_future(call("later"))
            await asyncio.sleep(0.001)
        assert asyncio.get_running_loop().time() - started < 1
        return burst, order

    burst, stream = uvloop.run(main())
    assert burst == ["set up b", "set up c", "a", "b", "c"]
    assert stream[0] == "first"


def test_a_stuck_loop_of_the_in_thread_server_is_reported_until_it_runs_again(tmp_path, monkeypatch, caplog):
    # `hotline serve` with one FastAGI process runs it in a thread, which cannot be killed
    # and started again as a stuck worker process is: /healthz says so (503) while no
    # call can be answered, and stops saying so once the loop runs again.
    import threading
    import time

    from hotline import health
    from ivr.asterisk import fastagi

    monkeypatch.setattr(fastagi, "BEAT_SECONDS", 0.05)
    monkeypatch.setattr(fastagi, "HANG_SECONDS", 0.5)
    health.report(tmp_path, fastagi.HANG_CHECK, "left by an earlier run")

    async def handler(channel: AgiChannel) -> None:
        await channel.hangup()

    service = fastagi.AgiService(handler, "127.0.0.1", 0, health_dir=tmp_path)
    release = threading.Event()

    def until(condition, seconds: float = 20.0) -> bool:
        deadline = time.monotonic() + seconds
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.02)
        return condition()

    service.start()
    try:
        time.sleep(0.3)
        assert not health.failing(tmp_path, fastagi.HANG_CHECK)  # cleared at start, beating
        service._loop.call_soon_threadsafe(release.wait, 30)  # a call that blocks the loop
        assert until(lambda: health.failing(tmp_path, fastagi.HANG_CHECK))
        [problem] = health.problems(tmp_path).values()
        assert problem.startswith("FastAGI не отвечает на звонки")
        release.set()
        assert until(lambda: not health.failing(tmp_path, fastagi.HANG_CHECK))
    finally:
        release.set()
        service.stop()
    assert "the event loop has been stuck" in caplog.text and "runs again" in caplog.text
