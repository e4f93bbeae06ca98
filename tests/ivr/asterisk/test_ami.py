"""AMI: the packet codec, the connection over loopback, the call log, call-backs."""

from __future__ import annotations

import itertools
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from hotline import calllog, registry
from hotline.calllog import LineStatus, settle_line
from hotline.db import Database
from hotline.errors import UserError
from hotline.models import Call, CallEvent, RequestEvent
from hotline.settings import Settings
from ivr.asterisk import callback as callbacks
from ivr.asterisk.ami import AmiConnection, AmiError, parse_ami_url
from ivr.asterisk.amievents import (
    MAX_FIELDS,
    MAX_VALUE,
    AmiEvent,
    Cdr,
    Hangup,
    NewChannel,
    OriginateReason,
    OriginateResponse,
    OtherEvent,
    format_packet,
    parse_action,
    parse_event,
    parse_fields,
    parse_response,
    split_packets,
)
from ivr.asterisk.amilog import AGI_STARTED, AmiCallLog
from ivr.asterisk.fake_ami import FakeAmiServer, incoming_call_events
from ivr.asterisk.service import AmiService, make_ami
from ivr.store import CallStore
from tests.helpers import eventually

WAIT = 10.0


# --- the codec: pure functions ------------------------------------------------------------


def test_packets_split_parse_and_format_as_asterisk_writes_them() -> None:
    raw = (
        b"Event: Newchannel\r\nChannel: PJSIP/trunk-1\r\nVariable: A=1\r\nVariable: B=2\r\n\r\n"
        b"Response: Success\r\nActionID: 7\r\n\r\nEvent: Hang"
    )
    packets, rest = split_packets(raw)
    assert rest == b"Event: Hang" and len(packets) == 2
    pairs = parse_fields(packets[0])
    assert pairs == [
        ("Event", "Newchannel"),
        ("Channel", "PJSIP/trunk-1"),
        ("Variable", "A=1"),
        ("Variable", "B=2"),
    ]
    assert format_packet(pairs) == raw[: raw.index(b"\r\n\r\n") + 4]
    assert parse_response(dict(parse_fields(packets[1]))).ok


def test_values_from_the_pbx_are_cleaned_and_bounded() -> None:
    pairs = parse_fields(
        "Event: UserEvent\r\nEvil: a\x00b\x1b[31m\r\nLong: " + "x" * 10_000 + "\r\nno colon here"
    )
    assert pairs[1] == ("Evil", "ab[31m")
    assert len(pairs[2][1]) == MAX_VALUE and len(pairs) == 3
    many = "".join(f"K{n}: v\r\n" for n in range(MAX_FIELDS * 3))
    assert len(parse_fields(many)) == MAX_FIELDS


def test_an_action_keeps_every_variable() -> None:
    action = parse_action(
        parse_fields(
            "Action: Originate\r\nActionID: a1\r\nChannel: PJSIP/101\r\nVariable: X=1\r\nVariable: Y=a=b"
        )
    )
    assert (action.name, action.action_id, action.get("Channel")) == ("Originate", "a1", "PJSIP/101")
    assert action.variables == {"X": "1", "Y": "a=b"}


def test_events_become_typed_values() -> None:
    newchannel, ring, hangup, cdr = (parse_event(e) for e in incoming_call_events("1700000000.1"))
    assert isinstance(newchannel, NewChannel)
    assert newchannel.caller_number == "79001234567" and newchannel.caller_name is None  # <unknown>
    assert newchannel.linkedid == newchannel.uniqueid == "1700000000.1"
    assert isinstance(hangup, Hangup) and hangup.cause == 16 and hangup.cause_line == "16 Normal Clearing"
    assert isinstance(cdr, Cdr) and cdr.duration == 7 and cdr.status == "no_answer"
    assert parse_event({"Event": "Hangup", "Uniqueid": "1.1", "Cause": "1x"}).cause is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("disposition", "status"),
    [
        ("ANSWERED", "answered"),
        ("NO ANSWER", "no_answer"),
        ("BUSY", "busy"),
        ("FAILED", "channel_failed"),  # not the hotline's own `failed`
        ("CONGESTION", "congestion"),
        ("Something New!", "something_new_"),
        ("", None),
    ],
)
def test_cdr_dispositions_as_call_log_statuses(disposition: str, status: str | None) -> None:
    cdr = parse_event({"Event": "Cdr", "UniqueID": "1.1", "Disposition": disposition, "Duration": "x"})
    assert isinstance(cdr, Cdr) and cdr.status == status and cdr.duration is None


def test_originate_responses_and_unknown_events() -> None:
    answered = parse_event(
        {"Event": "OriginateResponse", "ActionID": "a", "Response": "Success", "Reason": "4"}
    )
    assert isinstance(answered, OriginateResponse) and answered.success
    assert answered.reason is OriginateReason.ANSWERED and answered.uniqueid is None
    odd = parse_event({"Event": "OriginateResponse", "ActionID": "a", "Response": "Failure", "Reason": "42"})
    assert isinstance(odd, OriginateResponse) and odd.reason is None and odd.reason_code == 42
    assert all(reason.label for reason in OriginateReason)
    other = parse_event({"Event": "FullyBooted", "Status": "Fully Booted"})
    assert other == OtherEvent("FullyBooted", {"Status": "Fully Booted"})


# --- the connection over loopback -----------------------------------------------------------


class Collector:
    """Events handed to a subscriber, with a way to wait for a count."""

    def __init__(self) -> None:
        self.events: list[AmiEvent] = []
        self.changed = threading.Condition()

    def __call__(self, event: AmiEvent) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def wait_for(self, predicate: Callable[[], bool]) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, WAIT)

    def named(self, name: str) -> list[dict[str, str]]:
        return [e.fields for e in self.events if isinstance(e, OtherEvent) and e.name == name]


@pytest.fixture
def ami_server() -> Iterator[FakeAmiServer]:
    server = FakeAmiServer().start()
    yield server
    server.stop()


@pytest.fixture
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> list[BaseException | None]:
    """Exceptions that ended a thread (each is a traceback on stderr in production)."""
    seen: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    return seen


def connect(server: FakeAmiServer, handler: Callable[[AmiEvent], None]) -> AmiConnection:
    connection = AmiConnection(
        parse_ami_url(server.url), handler, heartbeat=0.2, backoff=(0.05, 0.2), action_timeout=1
    )
    connection.start()
    connection.wait_connected(WAIT)
    return connection


def test_parse_url() -> None:
    address = parse_ami_url("ami://hot%40line:p%3Ass@pbx.local:6038")
    assert (address.host, address.port, address.username, address.secret) == (
        "pbx.local",
        6038,
        "hot@line",
        "p:ss",
    )
    assert parse_ami_url("ami://u:s@pbx").port == 5038
    for bad in ("ami://pbx", "http://u:s@pbx", "ami://u@pbx"):
        with pytest.raises(AmiError):
            parse_ami_url(bad)


def test_events_arrive_and_a_raising_subscriber_does_not_stop_them(ami_server: FakeAmiServer) -> None:
    seen = Collector()

    def handler(event: AmiEvent) -> None:
        seen(event)
        if isinstance(event, OtherEvent) and event.fields.get("Boom"):
            raise RuntimeError("a bug in a handler")

    connection = connect(ami_server, handler)
    try:
        ami_server.emit({"Event": "UserEvent", "Boom": "1"}, *incoming_call_events("1.5"))
        ami_server.emit({"Event": "UserEvent", "N": "2"})
        assert seen.wait_for(lambda: len(seen.named("UserEvent")) == 2), seen.events
        assert [type(e).__name__ for e in seen.events if not isinstance(e, OtherEvent)] == [
            "NewChannel",
            "NewState",
            "Hangup",
            "Cdr",
        ]
        assert connection.connected.is_set()
    finally:
        connection.stop()


def test_wrong_secret_is_a_clear_error(
    ami_server: FakeAmiServer, thread_errors: list[BaseException | None], caplog: pytest.LogCaptureFixture
) -> None:
    # As manager.c: `Authentication failed` after a second (the fake's real delay), then the
    # session is closed. The read timeout (4 heartbeats) outlasts that second, as in service.
    address = parse_ami_url(ami_server.url.replace("s3cret", "wrong"))
    connection = AmiConnection(address, heartbeat=1.0, backoff=(0.05, 0.1))
    with caplog.at_level(logging.WARNING, logger="ivr.asterisk.ami"):
        connection.start()
        try:
            assert eventually(lambda: connection.last_error is not None, WAIT)
            with pytest.raises(AmiError, match="Authentication failed") as refused:
                connection.wait_connected(0)
        finally:
            connection.stop()
    assert str(refused.value) == "нет связи с Asterisk AMI: AMI login refused: Authentication failed"
    [line, *_] = [r for r in caplog.records if "Authentication failed" in r.getMessage()]
    assert "\n" not in line.getMessage() and line.exc_info is None
    assert thread_errors == []


def ami_session(server: FakeAmiServer, *actions: dict[str, str]) -> tuple[list[dict[str, str]], float]:
    """Send the actions on one raw connection; what came back until the server closed it
    (a socket timeout if it never does), and how long that took."""
    with socket.create_connection((server.host, server.port), timeout=WAIT) as sock:
        stream = sock.makefile("rb")
        assert stream.readline() == server.banner.encode()
        started = time.monotonic()
        sock.sendall(b"".join(format_packet(a) for a in actions))
        data = stream.read()  # until the server closes the connection
        took = time.monotonic() - started
    packets, rest = split_packets(data)
    assert rest == b""
    return [dict(parse_fields(p)) for p in packets], took


def test_the_fake_ends_sessions_and_refuses_actions_as_manager_c_does(ami_server: FakeAmiServer) -> None:
    ami_server.login_failure_delay = 0.3
    ping = {"Action": "Ping", "ActionID": "p"}
    wrong = {"Action": "Login", "ActionID": "l", "Username": "hotline", "Secret": "wrong"}
    answers, took = ami_session(ami_server, ping, wrong)  # a failed login ends the session
    assert [(a["ActionID"], a["Response"], a["Message"]) for a in answers] == [
        ("p", "Error", "Permission denied"),  # nothing but Login/Logoff/Challenge before a login
        ("l", "Error", "Authentication failed"),
    ]
    assert took >= 0.3
    login = {"Action": "Login", "ActionID": "l", "Username": "hotline", "Secret": "s3cret"}
    nonsense = {"Action": "Originate", "ActionID": "o1", "Channel": "nonsense", "Exten": "1"}
    sip = {"Action": "Originate", "ActionID": "o2", "Channel": "SIP/101", "Async": "true", "Exten": "1"}
    sip["CallerID"] = "Заявка 1 <+7 (343) 567-45-30>"
    odd = {"Action": "Frobnicate", "ActionID": "f"}
    answers, _ = ami_session(ami_server, login, nonsense, sip, odd, {"Action": "Logoff", "ActionID": "g"})
    assert [a.get("Event") or a["Response"] for a in answers] == [
        "Success",
        "FullyBooted",
        "Error",  # a channel with no `/` is the only refusal at once
        "Success",  # SIP/: queued; chan_sip is gone, the failure comes as an event
        "OriginateResponse",
        "Error",
        "Goodbye",  # then the session ends
    ]
    assert answers[2]["Message"] == "Invalid channel"
    assert answers[3]["Message"] == "Originate successfully queued"
    assert {k: answers[4][k] for k in ("ActionID", "Response", "Reason", "Channel", "Uniqueid")} == {
        "ActionID": "o2",
        "Response": "Failure",
        "Reason": "0",
        "Channel": "SIP/101",
        "Uniqueid": "<unknown>",  # no channel was made, and no ChannelId asked for
    }
    assert (answers[4]["CallerIDName"], answers[4]["CallerIDNum"]) == ("Заявка 1", "+73435674530")
    assert answers[5]["Message"].startswith("Invalid/unknown command: Frobnicate.")


def test_restart_reconnects_without_duplicated_events(
    ami_server: FakeAmiServer, thread_errors: list[BaseException | None]
) -> None:
    seen = Collector()
    connection = connect(ami_server, seen)
    try:
        ami_server.emit(*({"Event": "UserEvent", "N": str(n)} for n in range(3)))
        assert seen.wait_for(lambda: len(seen.named("UserEvent")) == 3)
        ami_server.restart()  # every connection is reset; the port is listened on again
        assert ami_server.wait_logins(2)
        connection.wait_connected(WAIT)
        ami_server.emit(*({"Event": "UserEvent", "N": str(n)} for n in range(3, 6)))
        assert seen.wait_for(lambda: len(seen.named("UserEvent")) >= 6)
        ami_server.emit({"Event": "UserEvent", "N": "end"})
        assert seen.wait_for(lambda: seen.named("UserEvent")[-1]["N"] == "end")
        assert [k["N"] for k in seen.named("UserEvent")] == ["0", "1", "2", "3", "4", "5", "end"]
        assert len(seen.named("FullyBooted")) == 2
    finally:
        connection.stop()
    assert thread_errors == []


def test_asterisk_starting_resets_and_ignores_logins_then_answers(
    ami_server: FakeAmiServer, thread_errors: list[BaseException | None]
) -> None:
    """`core stop now`, then a start: connections reset before the banner, a login unanswered."""
    # A heartbeat far longer than the test: the resets and the backoff alone bring it back.
    connection = AmiConnection(
        parse_ami_url(ami_server.url), heartbeat=600, backoff=(0.05, 0.2), action_timeout=1
    )
    connection.start()
    try:
        connection.wait_connected(WAIT)
        ami_server.starting(resets=3, silent_logins=1)
        ami_server.restart()
        assert ami_server.wait_logins(2)
        connection.wait_connected(WAIT)
        assert ami_server.connections >= 1 + 3 + 1  # the resets and the silent login were retried
        assert [a.name for a in ami_server.actions].count("Login") == 3  # first, silent, accepted
    finally:
        connection.stop()
    assert thread_errors == []  # no traceback from asterisk-ami's reader thread


def test_a_server_that_stops_answering_is_left_for_a_new_connection(ami_server: FakeAmiServer) -> None:
    connection = connect(ami_server, Collector())
    try:
        ami_server.answer_pings = False  # hung, socket still open: only the heartbeat notices
        assert ami_server.wait_logins(2)
        assert eventually(lambda: connection.logins >= 2)
    finally:
        connection.stop()


def test_asterisk_down_at_start_then_up(ami_server: FakeAmiServer) -> None:
    port = ami_server.port
    ami_server.stop()
    connection = AmiConnection(parse_ami_url(ami_server.url), heartbeat=0.2, backoff=(0.05, 0.1))
    connection.start()
    try:
        with pytest.raises(AmiError, match="нет связи"):
            connection.wait_connected(0.2)
        ami_server.port = port
        ami_server.start()
        connection.wait_connected(WAIT)
    finally:
        connection.stop()


def test_an_action_while_disconnected_is_refused_at_once(ami_server: FakeAmiServer) -> None:
    connection = AmiConnection(parse_ami_url(ami_server.url))
    with pytest.raises(AmiError, match="нет связи"):
        connection.action("Ping", {})


# --- the call log from AMI events ----------------------------------------------------


def calls(db: Database) -> list[Call]:
    with db.session() as session:
        found = list(session.scalars(select(Call).order_by(Call.id)))
        for call in found:
            session.expunge(call)
        return found


def kinds(db: Database, call_id: int) -> list[str]:
    with db.session() as session:
        return list(
            session.scalars(select(CallEvent.kind).where(CallEvent.call_id == call_id).order_by(CallEvent.id))
        )


def feed(log: AmiCallLog, *events: dict[str, str]) -> None:
    for event in events:
        log.handle(parse_event(event))


@pytest.mark.parametrize("cdr_first", [False, True])
def test_a_call_that_hangs_up_while_ringing_is_logged(db: Database, cdr_first: bool) -> None:
    log = AmiCallLog(db, "+73435674530")
    feed(log, *incoming_call_events("1700000000.1", cdr_first=cdr_first))
    [call] = calls(db)
    assert call.backend == "asterisk" and call.backend_call_id == "1700000000.1"
    assert (
        call.from_number == "+79001234567"
    )  # parsed once (hotline.phones) and call.to_number == "+73435674530"
    assert call.outcome == "abandoned"
    assert call.hangup_cause == "16 Normal Clearing"
    assert call.backend_status == "no_answer" and call.duration_seconds == 7
    assert call.ended_at is not None
    assert kinds(db, call.id).count("ami_cdr") == 1


def test_a_call_that_reached_fastagi_keeps_the_flows_outcome(db: Database) -> None:
    log = AmiCallLog(db, "+73435674530")
    events = incoming_call_events("1700000000.2", answered=True)
    feed(log, *events[:3])
    with db.session() as session:  # what the FastAGI session writes
        call = calllog.find_call(session, "asterisk", "1700000000.2")
        assert call is not None
        calllog.log_event(session, call, AGI_STARTED)
        call.outcome = "status_heard"
    feed(log, *events[3:])
    [call] = calls(db)
    assert call.outcome == "status_heard"
    assert call.backend_status == "answered" and call.hangup_cause == "16 Normal Clearing"


def test_local_channel_halves_give_one_call_with_two_cdrs(db: Database) -> None:
    log = AmiCallLog(db, "+73435674530")
    root = "1700000000.3"
    base = {"CallerIDNum": "79001234567", "Linkedid": root}
    sequence = [
        {
            "Event": "Newchannel",
            **base,
            "Uniqueid": root,
            "Channel": "PJSIP/trunk-1",
            "Exten": "+73435674530",
        },
        {
            "Event": "Newchannel",
            **base,
            "Uniqueid": "1700000000.4",
            "Channel": "Local/hotline@q-1;1",
            "Exten": "hotline",
        },
        {
            "Event": "Newchannel",
            **base,
            "Uniqueid": "1700000000.5",
            "Channel": "Local/hotline@q-1;2",
            "Exten": "hotline",
        },
        {
            "Event": "DialBegin",
            **base,
            "Uniqueid": root,
            "DestChannel": "Local/hotline@q-1;1",
            "DialString": "hotline",
        },
        {
            "Event": "Hangup",
            **base,
            "Uniqueid": "1700000000.5",
            "Cause": "16",
            "Cause-txt": "Normal Clearing",
        },
        {
            "Event": "Cdr",
            "UniqueID": "1700000000.5",
            "Disposition": "NO ANSWER",
            "Duration": "4",
            "Destination": "s",
        },
        {
            "Event": "Hangup",
            **base,
            "Uniqueid": "1700000000.4",
            "Cause": "16",
            "Cause-txt": "Normal Clearing",
        },
        {"Event": "DialEnd", **base, "Uniqueid": root, "DialStatus": "CANCEL"},
        {
            "Event": "Cdr",
            "UniqueID": root,
            "Disposition": "NO ANSWER",
            "Duration": "5",
            "Destination": "+73435674530",
        },
        {"Event": "Hangup", **base, "Uniqueid": root, "Cause": "16", "Cause-txt": "Normal Clearing"},
        # a call to another number of the same PBX is none of the hotline's business
        {"Event": "Newchannel", "Uniqueid": "9.1", "Linkedid": "9.1", "Exten": "101", "CallerIDNum": "102"},
        {"Event": "Hangup", "Uniqueid": "9.1", "Linkedid": "9.1", "Cause": "16"},
    ]
    feed(log, *sequence)
    [call] = calls(db)
    assert call.outcome == "abandoned" and call.duration_seconds == 5
    events = kinds(db, call.id)
    assert events.count("ami_cdr") == 2 and events.count("ami_hangup") == 3
    assert "ami_dial_begin" in events and "ami_dial_end" in events


def test_a_cdr_of_a_call_missed_at_start_still_makes_an_entry(db: Database) -> None:
    log = AmiCallLog(db, "+73435674530")
    feed(
        log,
        {
            "Event": "Cdr",
            "UniqueID": "1.7",
            "Source": "79001112233",
            "Destination": "83435674530",
            "Disposition": "NO ANSWER",
            "Duration": "3",
        },
    )
    [call] = calls(db)
    assert call.from_number == "+79001112233" and call.outcome == "abandoned" and call.ended_at is not None


def test_a_call_backs_customer_leg_is_logged_on_its_row(db: Database, request_number: str) -> None:
    callback_id = "hotline-cb-00112233445566aa"
    with db.session() as session:  # what the call-back job writes before its Originate
        calllog.start_call(session, backend="asterisk", backend_call_id=callback_id, from_number="PJSIP/101")
    log = AmiCallLog(db, "+73435674530")
    leg = {
        "Uniqueid": "1700000003.2",
        "Linkedid": callback_id,
        "Channel": "PJSIP/trunk-9",
        "Exten": "+79001234567",
    }
    # The call-back channel's own Newchannel came before this connection: its leg is still known.
    feed(
        log,
        {"Event": "Newchannel", **leg},
        {"Event": "Hangup", **leg, "Cause": "17", "Cause-txt": "User busy"},
        {
            "Event": "Hangup",
            "Uniqueid": callback_id,
            "Linkedid": callback_id,
            "Cause": "16",
            "Cause-txt": "Normal Clearing",
        },
    )
    [call] = calls(db)
    assert kinds(db, call.id) == ["ami_hangup", "ami_hangup"]
    assert call.hangup_cause == "16 Normal Clearing" and call.outcome is None  # the job decides it


def test_service_logs_calls_over_a_real_connection(
    ami_server: FakeAmiServer, make_settings, db: Database, thread_errors: list[BaseException | None]
) -> None:
    settings = make_settings(HOTLINE_AMI_URL=ami_server.url)
    assert make_ami(make_settings(), db) is None
    service = make_ami(settings, db)
    assert service is not None
    service.start()
    try:
        service.connection.wait_connected(WAIT)
        ami_server.emit(*incoming_call_events("1700000000.9"))
        # Logged before the restart: a server that closes with our bytes unread resets the
        # connection, and the client may lose what it had not read yet (once on a busy CI).
        assert eventually(lambda: len([c for c in calls(db) if c.ended_at and c.duration_seconds]) == 1)
        ami_server.restart()
        assert ami_server.wait_logins(2)
        service.connection.wait_connected(WAIT)
        ami_server.emit(*incoming_call_events("1700000001.1", cdr_first=True))
        assert eventually(lambda: len([c for c in calls(db) if c.ended_at and c.duration_seconds]) == 2)
        found = calls(db)
        assert [c.backend_call_id for c in found] == ["1700000000.9", "1700000001.1"]
        assert all(c.outcome == "abandoned" and c.duration_seconds == 7 for c in found)
        assert [kinds(db, c.id).count("ami_cdr") for c in found] == [1, 1]  # no duplicated listeners
    finally:
        service.stop()
    assert thread_errors == []


# --- one final status and cause, whoever writes last ---------------------------------------

HANGUP = LineStatus(None, "16 Normal Clearing")  # AMI Hangup
CDR = LineStatus("answered", None)  # AMI Cdr of the caller's channel
SESSION_DONE = LineStatus("completed", "socket closed by Asterisk")  # FastAGI, a normal end
SESSION_FAILED = LineStatus("failed", "AGI error: 520 Invalid command syntax")  # FastAGI, our failure


@pytest.mark.parametrize(
    ("reports", "final"),
    [
        ((HANGUP, CDR, SESSION_DONE), LineStatus("answered", "16 Normal Clearing")),
        ((HANGUP, CDR, SESSION_FAILED), SESSION_FAILED),
        (
            (HANGUP, LineStatus("channel_failed", None), SESSION_DONE),
            LineStatus("channel_failed", "16 Normal Clearing"),
        ),
        ((SESSION_DONE,), SESSION_DONE),  # no AMI configured: the session's word stands
        (
            (HANGUP, LineStatus("completed", "511 Command Not Permitted on a dead channel")),
            LineStatus("completed", "16 Normal Clearing"),
        ),
        ((HANGUP, LineStatus("no_answer", None)), LineStatus("no_answer", "16 Normal Clearing")),
    ],
)
def test_the_line_status_is_the_same_in_every_order(
    reports: tuple[LineStatus, ...], final: LineStatus
) -> None:
    for order in itertools.permutations(reports):
        line = LineStatus()
        for report in order:
            line = settle_line(line, report)
        assert line == final, order


def test_a_long_cause_is_cut_to_the_column() -> None:
    line = settle_line(LineStatus(), LineStatus("failed", "AGI error: " + "x" * 500))
    assert line.cause is not None and len(line.cause) == 80


@pytest.mark.parametrize("ami_first", [True, False])
@pytest.mark.parametrize("failed", [False, True])
def test_ami_and_fastagi_close_one_row_the_same_way(
    db: Database, settings: Settings, ami_first: bool, failed: bool
) -> None:
    """The real writers: AmiCallLog's Hangup and Cdr, FastAGI's CallStore.hang_up."""
    uniqueid = "1700000002.1"
    log = AmiCallLog(db, settings.support_number)
    store = CallStore(db, settings, "asterisk")
    start, end = (
        incoming_call_events(uniqueid, answered=True)[:3],
        incoming_call_events(uniqueid, answered=True)[3:],
    )
    feed(log, *start)
    store.log(uniqueid, AGI_STARTED)
    status, cause = (
        ("failed", "database unavailable") if failed else ("completed", "hangup during playback or wait")
    )
    if ami_first:
        feed(log, *end)
    store.hang_up(uniqueid, backend_status=status, hangup_cause=cause)
    if not ami_first:
        feed(log, *end)
    [call] = calls(db)
    expected = ("failed", "database unavailable") if failed else ("answered", "16 Normal Clearing")
    assert (call.backend_status, call.hangup_cause) == expected
    assert call.outcome == "abandoned" and call.duration_seconds == 7  # the flow's word, the Cdr's length


# --- call-backs ----------------------------------------------------------------------------


@pytest.fixture
def request_number(db: Database) -> str:
    with db.session() as session:
        return registry.open_request(
            session, kind="incident", channel="phone", actor="system", phone="+7 (900) 123-45-67", subject="x"
        ).number


@pytest.fixture
def ami_settings(make_settings, ami_server: FakeAmiServer) -> Settings:
    return make_settings(HOTLINE_AMI_URL=ami_server.url)


@pytest.fixture
def service(ami_settings: Settings, db: Database) -> Iterator[AmiService]:
    """`hotline serve`'s AMI part: one connection, the call log, the call-back consumer."""
    service = AmiService(ami_settings, db)
    service.start()
    service.connection.wait_connected(WAIT)
    yield service
    service.stop()


def ask(settings: Settings, db: Database, number: str, extension: str = "PJSIP/101") -> callbacks.CallBackJob:
    """What the dashboard and the CLI do: queue a call-back."""
    with db.session() as session:
        return callbacks.queue_call_back(settings, session, number, extension, actor="engineer:ivanov")


def result(db: Database, job: callbacks.CallBackJob) -> callbacks.CallBackResult:
    def ended() -> callbacks.CallBackResult | None:
        with db.session() as session:
            return callbacks.call_back_result(session, job)

    assert eventually(lambda: ended() is not None, WAIT + 5)
    done = ended()
    assert done is not None
    return done


def history(db: Database) -> list[RequestEvent]:
    with db.session() as session:
        return list(session.scalars(select(RequestEvent).where(RequestEvent.action == "callback")))


def test_a_queued_call_back_rings_the_engineer_then_the_customer(
    service: AmiService, ami_server: FakeAmiServer, ami_settings: Settings, db: Database, request_number: str
) -> None:
    job = ask(ami_settings, db, request_number)
    done = result(db, job)
    assert done.answered and "инженер ответил" in done.text
    [sent] = ami_server.named("Originate")
    assert sent.get("Channel") == "PJSIP/101" and sent.get("Exten") == "+79001234567"
    assert sent.get("Context") == "hotline-callback" and sent.get("Async") == "true"
    assert sent.get("ChannelId") == job.callback_id and sent.variables == {"HOTLINE_REQUEST": request_number}
    [entry] = history(db)
    assert entry.actor == "engineer:ivanov"
    with db.session() as session:
        call = session.scalars(select(Call).where(Call.backend_call_id == job.callback_id)).one()
        assert call.outcome == "callback" and call.request_id is not None and call.answered_at is not None
        assert [e.kind for e in call.events] == ["callback_originate", "callback"]


@pytest.mark.parametrize(
    ("reason", "message"), [("3", "не ответил"), ("5", "занята"), ("0", "не удался"), ("1", "отклонил")]
)
def test_a_failed_call_back_shows_how_long_the_phone_rang(
    service: AmiService,
    ami_server: FakeAmiServer,
    ami_settings: Settings,
    db: Database,
    request_number: str,
    reason: str,
    message: str,
) -> None:
    ami_server.originate_reason, ami_server.originate_delay = reason, 1.2
    job = ask(ami_settings, db, request_number)
    done = result(db, job)
    assert not done.answered and message in done.text
    [call] = calls(db)
    assert call.outcome == "callback_failed" and call.ended_at is not None
    # The row started when the Originate went out, not when the answer came back.
    [sent] = ami_server.named("Originate")
    assert call.started_at.timestamp() <= ami_server.received_at[sent.action_id]
    assert call.duration_seconds is not None and call.duration_seconds >= 1


@pytest.mark.parametrize("hangup_first", [True, False])
def test_the_call_back_channels_hangup_adds_its_cause_in_either_order(
    service: AmiService,
    ami_server: FakeAmiServer,
    ami_settings: Settings,
    db: Database,
    request_number: str,
    hangup_first: bool,
) -> None:
    ami_server.originate_reason, ami_server.originate_delay = "3", 0.5
    job = ask(ami_settings, db, request_number)
    channel = {"Channel": "PJSIP/101-00000001", "Uniqueid": job.callback_id, "Linkedid": job.callback_id}
    assert eventually(lambda: bool(ami_server.named("Originate")))
    ami_server.emit({"Event": "Newchannel", **channel, "ChannelStateDesc": "Down"})
    hangup = {"Event": "Hangup", **channel, "Cause": "19", "Cause-txt": "No answer"}
    if hangup_first:
        ami_server.emit(hangup)
    result(db, job)
    if not hangup_first:
        ami_server.emit(hangup)
    assert eventually(lambda: calls(db)[0].hangup_cause is not None)
    [call] = calls(db)
    assert call.outcome == "callback_failed" and call.hangup_cause == "19 No answer"
    assert "ami_hangup" in kinds(db, call.id)


def test_call_backs_share_the_one_connection(
    service: AmiService, ami_server: FakeAmiServer, ami_settings: Settings, db: Database, request_number: str
) -> None:
    jobs = [ask(ami_settings, db, request_number) for _ in range(3)]
    assert eventually(lambda: len(history(db)) == 3, WAIT + 5)
    assert len(ami_server.named("Originate")) == 3 and len(ami_server.named("Login")) == 1
    assert {a.get("ChannelId") for a in ami_server.named("Originate")} == {j.callback_id for j in jobs}


def test_a_job_run_twice_rings_once(
    service: AmiService, ami_server: FakeAmiServer, ami_settings: Settings, db: Database, request_number: str
) -> None:
    job = ask(ami_settings, db, request_number)
    result(db, job)
    service.callbacks.place(job)
    assert len(ami_server.named("Originate")) == 1 and len(history(db)) == 1


def test_a_call_back_left_in_the_queue_too_long_is_not_placed(
    service: AmiService, ami_server: FakeAmiServer, ami_settings: Settings, db: Database, request_number: str
) -> None:
    old = callbacks.CallBackJob(
        "hotline-cb-0123456789abcdef", request_number, "PJSIP/101", "cli", time.time() - 3600
    )
    service.callbacks.place(old)
    assert ami_server.named("Originate") == [] and calls(db) == []
    [entry] = history(db)
    assert "не состоялся" in entry.text and "ждал в очереди" in entry.text


def test_call_back_refusals_at_once(
    make_settings, ami_settings: Settings, db: Database, request_number: str
) -> None:
    with pytest.raises(UserError, match="HOTLINE_AMI_URL"):
        ask(make_settings(), db, request_number)
    with pytest.raises(UserError, match="PJSIP/101"):
        ask(ami_settings, db, request_number, "101; rm -rf")
    with db.session() as session:
        silent = registry.open_request(
            session, kind="incident", channel="email", actor="system", subject="y"
        ).number
    with pytest.raises(UserError, match="нет телефона"):
        ask(ami_settings, db, silent)
    assert callbacks.callback_queue(ami_settings).huey.pending_count() == 0


def test_a_refused_originate_is_in_the_history(
    service: AmiService, ami_server: FakeAmiServer, ami_settings: Settings, db: Database, request_number: str
) -> None:
    # chan_sip is gone since Asterisk 21: the Originate is queued (`Success`), then its
    # OriginateResponse says Failure, Reason 0. The engineer reads why in plain Russian.
    job = ask(ami_settings, db, request_number, "SIP/oldtech")
    done = result(db, job)
    why = "вызов не удался (нет такого абонента или канала)"
    assert not done.answered and done.text == f"обратный звонок с SIP/oldtech на +79001234567: {why}"
    [call] = calls(db)
    assert call.outcome == "callback_failed" and call.ended_at is not None
    with db.session() as session:
        detail = session.scalars(
            select(CallEvent.detail).where(CallEvent.call_id == call.id, CallEvent.kind == "callback")
        ).one()
    assert detail == why


def test_an_originate_refused_at_once_is_told_in_russian(
    service: AmiService,
    ami_server: FakeAmiServer,
    ami_settings: Settings,
    db: Database,
    request_number: str,
    caplog,
) -> None:
    # HOTLINE_AMI_CALLBACK_CONTEXT names a context the dialplan does not have: manager.c
    # answers `Extension does not exist.` at once. The engineer reads it in Russian, the
    # operator's log names the setting.
    ami_server.contexts = {"from-internal"}
    with caplog.at_level(logging.ERROR, logger="hotline.callback"):
        done = result(db, ask(ami_settings, db, request_number))
    why = "на АТС нет маршрута для обратных звонков на номер заказчика; сообщите администратору"
    assert not done.answered and done.text.endswith(f"на +79001234567: {why}")
    assert "Extension does not exist." in caplog.text and "HOTLINE_AMI_CALLBACK_CONTEXT" in caplog.text


def test_without_asterisk_the_call_back_says_so(
    service: AmiService,
    ami_server: FakeAmiServer,
    ami_settings: Settings,
    db: Database,
    request_number: str,
    monkeypatch,
) -> None:
    monkeypatch.setattr(callbacks, "CONNECT_WAIT", 0.2)
    ami_server.stop()
    assert eventually(lambda: not service.connection.connected.is_set())
    done = result(db, ask(ami_settings, db, request_number))
    assert not done.answered and "нет связи с Asterisk AMI" in done.text
    assert calls(db) == []  # no Originate was sent: no call


HOTLINE = [sys.executable, "-c", "from hotline.cli import main; main()"]


@pytest.mark.parametrize(
    ("reason", "code", "says"), [("4", 0, "инженер ответил"), ("5", 1, "линия инженера занята")]
)
def test_the_callback_command_queues_and_reports(
    service: AmiService,
    ami_server: FakeAmiServer,
    ami_settings: Settings,
    db: Database,
    request_number: str,
    tmp_path: Path,
    reason: str,
    code: int,
    says: str,
) -> None:
    ami_server.originate_reason = reason
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update(
        HOTLINE_DATA_DIR=str(ami_settings.data_dir),
        HOTLINE_DATABASE_URL=db.url,
        HOTLINE_AMI_URL=ami_server.url,
        HOTLINE_SECRET_KEY="test-secret-key",
    )
    done = subprocess.run(
        [*HOTLINE, "callback", request_number, "--extension", "PJSIP/101"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == code, done.stderr
    assert "поставлен в очередь" in done.stdout and says in done.stdout + done.stderr
    assert len(ami_server.named("Login")) == 1  # the command did not log in itself


def test_only_the_adapter_imports_asterisk_ami() -> None:
    root = Path(__file__).resolve().parents[3]
    importers = sorted(
        str(path.relative_to(root))
        for package in ("hotline", "ivr", "web", "voice_models")
        for path in (root / package).rglob("*.py")
        if re.search(r"^\s*(from|import) asterisk\b", path.read_text(encoding="utf-8"), re.MULTILINE)
    )
    assert importers == ["ivr/asterisk/ami.py"]
