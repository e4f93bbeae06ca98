"""AMI over loopback: login, events, heartbeat, reconnects, the call log, call-backs."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import select

from hotline import calllog, registry
from hotline.db import Database
from hotline.errors import UserError
from hotline.models import Call, CallEvent, RequestEvent
from hotline.settings import Settings
from ivr.asterisk.ami import AmiConnection, AmiError, parse_ami_url
from ivr.asterisk.amilog import AGI_STARTED, AmiCallLog, is_hotline_number
from ivr.asterisk.callback import call_back
from ivr.asterisk.fake_ami import FakeAmiServer, incoming_call_events
from ivr.asterisk.service import make_ami
from tests.helpers import eventually

WAIT = 10.0


class Collector:
    """Events handed to the connection's handler, with a way to wait for a count."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, str]]] = []
        self.changed = threading.Condition()

    def __call__(self, name: str, keys: dict[str, str]) -> None:
        with self.changed:
            self.events.append((name, keys))
            self.changed.notify_all()

    def wait_for(self, predicate: Callable[[], bool]) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, WAIT)

    def named(self, name: str) -> list[dict[str, str]]:
        return [k for n, k in self.events if n == name]


@pytest.fixture
def ami_server() -> Iterator[FakeAmiServer]:
    server = FakeAmiServer().start()
    yield server
    server.stop()


def connect(server: FakeAmiServer, handler: Callable[[str, dict[str, str]], None]) -> AmiConnection:
    connection = AmiConnection(
        parse_ami_url(server.url), handler, heartbeat=0.2, backoff=(0.05, 0.2), action_timeout=2
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


def test_events_arrive_and_a_raising_handler_does_not_kill_the_reader(ami_server: FakeAmiServer) -> None:
    seen = Collector()

    def handler(name: str, keys: dict[str, str]) -> None:
        seen(name, keys)
        if keys.get("Boom"):
            raise RuntimeError("a bug in a handler")

    connection = connect(ami_server, handler)
    try:
        ami_server.emit({"Event": "UserEvent", "Boom": "1"}, {"Event": "UserEvent", "N": "2"})
        assert seen.wait_for(lambda: len(seen.named("UserEvent")) == 2), seen.events
        assert connection.connected.is_set()
    finally:
        connection.stop()


def test_wrong_secret_is_a_clear_error(ami_server: FakeAmiServer) -> None:
    address = parse_ami_url(ami_server.url.replace("s3cret", "wrong"))
    connection = AmiConnection(address, heartbeat=0.2, backoff=(0.05, 0.1))
    connection.start()
    try:
        with pytest.raises(AmiError, match="Authentication failed"):
            connection.wait_connected(0.5)
    finally:
        connection.stop()


def test_restart_reconnects_without_duplicated_events(ami_server: FakeAmiServer) -> None:
    seen = Collector()
    connection = connect(ami_server, seen)
    try:
        ami_server.emit(*({"Event": "UserEvent", "N": str(n)} for n in range(3)))
        assert seen.wait_for(lambda: len(seen.named("UserEvent")) == 3)
        ami_server.restart()  # every connection drops; the port is listened on again
        assert ami_server.wait_logins(2)
        connection.wait_connected(WAIT)
        ami_server.emit(*({"Event": "UserEvent", "N": str(n)} for n in range(3, 6)))
        assert seen.wait_for(lambda: len(seen.named("UserEvent")) >= 6)
        ami_server.emit({"Event": "UserEvent", "N": "end"})
        assert seen.wait_for(lambda: seen.named("UserEvent")[-1]["N"] == "end")
        assert [k["N"] for k in seen.named("UserEvent")] == ["0", "1", "2", "3", "4", "5", "end"]
        assert len(connection._client._listeners) == 1  # noqa: SLF001 - the quirk under test
        assert len(seen.named("FullyBooted")) == 2
    finally:
        connection.stop()


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


@pytest.mark.parametrize("cdr_first", [False, True])
def test_a_call_that_hangs_up_while_ringing_is_logged(db: Database, cdr_first: bool) -> None:
    log = AmiCallLog(db, "+73435674530")
    for event in incoming_call_events("1700000000.1", cdr_first=cdr_first):
        log.handle(event.pop("Event"), event)
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
    for event in events[:3]:
        log.handle(event.pop("Event"), event)
    with db.session() as session:  # what the FastAGI session writes
        call = calllog.find_call(session, "asterisk", "1700000000.2")
        assert call is not None
        calllog.log_event(session, call, AGI_STARTED)
        call.outcome = "status_heard"
    for event in events[3:]:
        log.handle(event.pop("Event"), event)
    [call] = calls(db)
    assert call.outcome == "status_heard"
    assert call.backend_status == "answered" and call.hangup_cause == "16 Normal Clearing"


def test_local_channel_halves_give_one_call_with_two_cdrs(db: Database) -> None:
    log = AmiCallLog(db, "+73435674530")
    root = "1700000000.3"
    base = {"CallerIDNum": "79001234567", "Linkedid": root}
    sequence = [
        ("Newchannel", {**base, "Uniqueid": root, "Channel": "PJSIP/trunk-1", "Exten": "+73435674530"}),
        (
            "Newchannel",
            {**base, "Uniqueid": "1700000000.4", "Channel": "Local/hotline@q-1;1", "Exten": "hotline"},
        ),
        (
            "Newchannel",
            {**base, "Uniqueid": "1700000000.5", "Channel": "Local/hotline@q-1;2", "Exten": "hotline"},
        ),
        (
            "DialBegin",
            {**base, "Uniqueid": root, "DestChannel": "Local/hotline@q-1;1", "DialString": "hotline"},
        ),
        ("Hangup", {**base, "Uniqueid": "1700000000.5", "Cause": "16", "Cause-txt": "Normal Clearing"}),
        (
            "Cdr",
            {"UniqueID": "1700000000.5", "Disposition": "NO ANSWER", "Duration": "4", "Destination": "s"},
        ),
        ("Hangup", {**base, "Uniqueid": "1700000000.4", "Cause": "16", "Cause-txt": "Normal Clearing"}),
        ("DialEnd", {**base, "Uniqueid": root, "DialStatus": "CANCEL"}),
        (
            "Cdr",
            {"UniqueID": root, "Disposition": "NO ANSWER", "Duration": "5", "Destination": "+73435674530"},
        ),
        ("Hangup", {**base, "Uniqueid": root, "Cause": "16", "Cause-txt": "Normal Clearing"}),
        # a call to another number of the same PBX is none of the hotline's business
        ("Newchannel", {"Uniqueid": "9.1", "Linkedid": "9.1", "Exten": "101", "CallerIDNum": "102"}),
        ("Hangup", {"Uniqueid": "9.1", "Linkedid": "9.1", "Cause": "16"}),
    ]
    for name, keys in sequence:
        log.handle(name, keys)
    [call] = calls(db)
    assert call.outcome == "abandoned" and call.duration_seconds == 5
    events = kinds(db, call.id)
    assert events.count("ami_cdr") == 2 and events.count("ami_hangup") == 3
    assert "ami_dial_begin" in events and "ami_dial_end" in events


def test_a_cdr_of_a_call_missed_at_start_still_makes_an_entry(db: Database) -> None:
    log = AmiCallLog(db, "+73435674530")
    log.handle(
        "Cdr",
        {
            "UniqueID": "1.7",
            "Source": "79001112233",
            "Destination": "83435674530",
            "Disposition": "NO ANSWER",
            "Duration": "3",
        },
    )
    [call] = calls(db)
    assert call.from_number == "+79001112233" and call.outcome == "abandoned" and call.ended_at is not None


@pytest.mark.parametrize(
    ("dialled", "ours"),
    [
        ("+73435674530", True),
        ("73435674530", True),
        ("83435674530", True),
        ("3435674530", True),
        ("101", False),
        ("s", False),
        ("", False),
        ("+73435674531", False),
    ],
)
def test_hotline_number(dialled: str, ours: bool) -> None:
    assert is_hotline_number(dialled, "+73435674530") is ours


def test_service_logs_calls_over_a_real_connection(
    ami_server: FakeAmiServer, make_settings, db: Database
) -> None:
    settings = make_settings(HOTLINE_AMI_URL=ami_server.url)
    assert make_ami(make_settings(), db) is None
    service = make_ami(settings, db)
    assert service is not None
    service.start()
    try:
        service.wait_connected(WAIT)
        ami_server.emit(*incoming_call_events("1700000000.9"))
        ami_server.restart()
        assert ami_server.wait_logins(2)
        service.wait_connected(WAIT)
        ami_server.emit(*incoming_call_events("1700000001.1", cdr_first=True))
        ami_server.emit({"Event": "UserEvent", "UserEvent": "end"})
        assert eventually(lambda: len([c for c in calls(db) if c.ended_at and c.duration_seconds]) == 2)
        found = calls(db)
        assert [c.backend_call_id for c in found] == ["1700000000.9", "1700000001.1"]
        assert all(c.outcome == "abandoned" and c.duration_seconds == 7 for c in found)
        assert [kinds(db, c.id).count("ami_cdr") for c in found] == [1, 1]  # no duplicated listeners
    finally:
        service.stop()


# --- call-backs ----------------------------------------------------------------------------


@pytest.fixture
def request_number(db: Database) -> str:
    with db.session() as session:
        return registry.open_request(
            session, kind="incident", channel="phone", actor="system", phone="+7 (900) 123-45-67", subject="x"
        ).number


def originate(server: FakeAmiServer) -> dict[str, str]:
    return next(a for a in server.actions if a.get("Action") == "Originate")


def test_call_back_rings_the_engineer_then_the_customer(
    ami_server: FakeAmiServer, make_settings, db: Database, request_number: str
) -> None:
    settings: Settings = make_settings(HOTLINE_AMI_URL=ami_server.url)
    done = call_back(settings, db, request_number, "PJSIP/101", actor="engineer:ivanov")
    sent = originate(ami_server)
    assert sent["Channel"] == "PJSIP/101" and sent["Exten"] == "+79001234567"
    assert sent["Context"] == "hotline-callback" and sent["Async"] == "true"
    assert sent["ChannelId"] == done.channel_id and sent["Variable"] == f"HOTLINE_REQUEST={request_number}"
    with db.session() as session:
        history = session.scalars(select(RequestEvent).where(RequestEvent.action == "callback")).one()
        assert history.actor == "engineer:ivanov" and "инженер ответил" in history.text
        call = session.scalars(select(Call).where(Call.backend_call_id == done.channel_id)).one()
        assert call.outcome == "callback" and call.request_id is not None


@pytest.mark.parametrize(("reason", "message"), [("3", "не ответил"), ("5", "занята"), ("0", "не удался")])
def test_call_back_failures_are_clear(
    ami_server: FakeAmiServer, make_settings, db: Database, request_number: str, reason: str, message: str
) -> None:
    ami_server.originate_reason = reason
    with pytest.raises(UserError, match=message):
        call_back(make_settings(HOTLINE_AMI_URL=ami_server.url), db, request_number, "PJSIP/101")
    with db.session() as session:
        assert session.scalars(select(Call.outcome)).one() == "callback_failed"


def test_call_back_refusals(
    ami_server: FakeAmiServer, make_settings, db: Database, request_number: str
) -> None:
    settings = make_settings(HOTLINE_AMI_URL=ami_server.url)
    with pytest.raises(UserError, match="HOTLINE_AMI_URL"):
        call_back(make_settings(), db, request_number, "PJSIP/101")
    with pytest.raises(UserError, match="PJSIP/101"):
        call_back(settings, db, request_number, "101; rm -rf")
    with pytest.raises(UserError, match="отказал"):
        call_back(
            settings, db, request_number, "SIP/oldtech"
        )  # the fake refuses non-PJSIP like a bad channel
    with db.session() as session:
        silent = registry.open_request(
            session, kind="incident", channel="email", actor="system", subject="y"
        ).number
    with pytest.raises(UserError, match="нет телефона"):
        call_back(settings, db, silent, "PJSIP/101")
    bad = make_settings(HOTLINE_AMI_URL=ami_server.url.replace("s3cret", "nope"))
    with pytest.raises(UserError, match="Authentication failed"):
        call_back(bad, db, request_number, "PJSIP/101")
