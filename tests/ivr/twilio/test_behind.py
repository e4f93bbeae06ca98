"""Webhooks answered ahead of the database, the call log written behind (ivr.twilio.behind).

The scenarios of test_webhooks.py run in both modes (its `app` fixture); here: that the
steps really go ahead of the row, the state in the URL as untrusted input, and the
writer's failures (killed, database down, garbage on its socket).
"""

import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from hotline import callrows
from hotline.db import DatabaseUnavailable
from ivr.flow import CallState, StepName
from ivr.logwriter import LogWrite, pack, write_batch
from ivr.twilio import behind
from ivr.twilio.client import TwilioCall
from tests.helpers import eventually, process_running
from tests.ivr.twilio.queued import SettledTransport
from tests.ivr.twilio.test_webhooks import (  # noqa: F401 - api, make_app: fixtures
    PUBLIC,
    SID,
    TOKEN,
    api,
    calls,
    event_kinds,
    make_app,
    open_request,
    text,
)

pytestmark = pytest.mark.usefixtures("api")


@pytest.fixture
def queued_app(make_app, short_dir, log_writer):  # noqa: F811 - make_app: test_webhooks' fixture
    app = make_app(HOTLINE_DATA_DIR=str(short_dir))
    log_writer(app)
    return app


def settled_call(app, **kw) -> tuple[TwilioCall, httpx.Client]:
    client = httpx.Client(
        transport=SettledTransport(app, app.extensions["test.log_queue"]), base_url="http://t"
    )
    return TwilioCall(client, PUBLIC, TOKEN, account_sid=SID, **kw), client


@pytest.fixture
def row_steps(monkeypatch) -> list[str]:
    """The webhooks' steps that ran on the call's row (QueuedCallStore.handle)."""
    ran: list[str] = []
    handle = behind.QueuedCallStore.handle

    def counted(self, call_id, event, **kw):
        ran.append(type(event).__name__)
        return handle(self, call_id, event, **kw)

    monkeypatch.setattr(behind.QueuedCallStore, "handle", counted)
    return ran


def test_menu_steps_run_ahead_and_the_log_is_written_behind(queued_app, db, row_steps):
    call, client = settled_call(queued_app)
    with client:
        assert "нажмите 1" in text(call.start())
        call.press("*")
        call.press("*")
    assert row_steps == []  # not one step read the row
    (row,) = calls(db)
    assert row.from_number == "+79001234567" and row.to_number == "+73435674530"
    assert row.answered_at is not None and row.flow_state["seq"] == 3 and row.flow_state["step"] == "menu"
    kinds = event_kinds(db)
    assert kinds[0] == "call_started" and kinds.count("said") >= 3


def test_a_lookup_reads_the_row_after_the_steps_queued_before_it(queued_app, db, row_steps):
    number = open_request(db, "in_progress")
    call, client = settled_call(queued_app)
    with client:
        call.start()
        call.press("1")
        heard = text(call.press(number + "#"))
        assert "Статус: в работе." in heard
        assert row_steps == ["DigitsEntered"]  # the lookup, on the row the queue had written
        call.hang_up()
    (row,) = calls(db)  # one call: the hang-up found it, not a reused id
    assert row.ended_at is not None and row.backend_status == "completed"
    kinds = event_kinds(db)
    assert kinds.index("call_started") < kinds.index("lookup") < kinds.index("hangup")


def test_a_lookup_while_the_writer_cannot_commit_is_the_apology_within_twilios_15_s(
    make_app,  # noqa: F811 - test_webhooks' fixture
    short_dir,
    log_writer,
    db,
    monkeypatch,
):
    # The database hangs under the writer: the queue before a status lookup is never
    # committed. The caller hears the apology in Russian, not Twilio's own error in
    # English after its 15 s (the flush waited 30 s).
    app = make_app(HOTLINE_DATA_DIR=str(short_dir))
    log_writer(app)
    number = open_request(db, "in_progress")
    hung = threading.Event()
    monkeypatch.setattr(behind, "write_batch", lambda *a: hung.wait(60))
    client = httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t")
    call = TwilioCall(client, PUBLIC, TOKEN, account_sid=SID)
    try:
        with client:
            call.start()
            call.press("1")
            asked = time.monotonic()  # the webhook of «#» alone (Twilio's Gather drops the key)
            answer = call.post(call.waiting.verb.get("action"), {"Digits": number})
            waited = time.monotonic() - asked
    finally:
        hung.set()
    assert answer.status_code == 200 and "временно недоступна" in answer.text and "Статус" not in answer.text
    assert waited < 15


@pytest.mark.parametrize(
    "token",
    [
        "!!!",
        "eyJzdGVwIjoibm9uZSJ9",  # {"step":"none"}
        "eyJ0cmllcyI6LTF9",  # {"tries":-1}
        "eyJudW1iZXIiOjF9",  # {"number":1}
        "eyJwZW5kaW5nIjpbMV19",  # {"pending":[1]}
        "eyJzZXEiOjk5fQ",  # {"seq":99}: the seq is the URL's own
        "A" * 5000,
    ],
)
def test_a_garbage_state_in_a_signed_url_runs_on_the_row(queued_app, db, row_steps, token):
    call, client = settled_call(queued_app)
    with client:
        call.start()
        action = call.waiting.verb.get("action")
        forged = action.split("&s=")[0] + "&s=" + token
        answer = call.post(forged, {"Digits": "1"})
    assert answer.status_code == 200 and "номер заявки" in answer.text
    state = behind.state_from_token(token, 1, None)
    assert state is None
    assert row_steps == ["DigitsEntered"]


def test_the_state_token_round_trip_and_its_limits():
    state = CallState(
        step=StepName.NUMBER, tries=2, number_tries=1, number="10008", question="Какая линия?", seq=7
    )
    token = behind.state_token(state)
    assert 0 < len(token) < 200
    back = behind.state_from_token(token, 7, "+79001234567")
    assert back == CallState(**{**state.to_json(), "caller": "+79001234567"})
    # An engineer's long question does not go into a URL: that step reads the row.
    assert behind.state_token(CallState(step=StepName.MENU, question="ы" * 2000)) == ""
    # A recording in progress or saved: the row's state may move under the URL's.
    assert behind.state_token(CallState(step=StepName.MENU, pending={"new": "incident"})) == ""
    assert behind.state_token(CallState(step=StepName.MENU, recorded={"RE1": {"number": "10001"}})) == ""
    assert behind.state_from_token(token, -1, None) is None


def test_a_repeated_step_does_not_take_the_row_back(db):
    rows = callrows.CallRowStore(db.engine)
    newer = pack(LogWrite(flow_now(), state={"step": "number", "seq": 3}))
    older = pack(LogWrite(flow_now(), state={"step": "kind", "seq": 2}, events=(("menu", "late", {}),)))
    write_batch(rows, "twilio", [("CA1", "+79001234567", None, True, [newer])])
    write_batch(rows, "twilio", [("CA1", None, None, False, [older])])
    (row,) = calls(db)
    assert row.flow_state["step"] == "number"  # the late one is logged, and changes nothing else
    assert "menu" in event_kinds(db)


def flow_now():
    from hotline.models import utcnow

    return utcnow()


# --- the writer's failures ---


@pytest.fixture
def writer_service(make_app, short_dir, db):  # noqa: F811
    app = make_app(HOTLINE_DATA_DIR=str(short_dir))
    settings = app.extensions["hotline.settings"]
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    service = behind.make_service(settings, db)
    assert service is not None
    service.start()
    wait_for_writer(behind.socket_path(settings))
    yield app, service
    service.stop()


def wait_for_writer(path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            try:
                sock.connect(str(path))
                return
            except OSError:
                time.sleep(0.05)
    raise AssertionError("the call-log writer did not start")


def test_a_killed_writer_loses_no_call_and_is_started_again(writer_service, db):
    app, service = writer_service
    queue = behind.LogQueue(behind.socket_path(app.extensions["hotline.settings"]))
    with httpx.Client(transport=SettledTransport(app, queue), base_url="http://t") as client:
        call = TwilioCall(client, PUBLIC, TOKEN, account_sid=SID)
        call.start()
        call.press("*")
        first = service._process.pid
        os.kill(first, signal.SIGKILL)
        service._process.join(10)
        # No writer: the steps run on the row, answered as ever.
        assert "Чтобы узнать, что с вашей заявкой, нажмите 1" in text(call.press("*"))
        wait_for_writer(behind.socket_path(app.extensions["hotline.settings"]))
        assert service._process.pid != first
        call.press("*")  # queued to the new writer
        call.hang_up()
    (row,) = calls(db)
    assert row.ended_at is not None and row.flow_state["seq"] == 5
    assert event_kinds(db)[0] == "call_started" and event_kinds(db)[-1] == "hangup"


SERVE = """
import sys, time
from pathlib import Path
from ivr.twilio import behind
service = behind.LogQueueService(sys.argv[1], Path(sys.argv[2]))
service.start()
print(service._process.pid, flush=True)
time.sleep(600)
"""


def test_the_writer_ends_when_serve_is_killed(db, short_dir):
    # `serve` killed outright (SIGKILL, the OOM killer) cannot stop its writer: the writer
    # sees it gone, writes what it holds and ends, not left beside the next one's.
    path = short_dir / behind.SOCKET_NAME
    serve = subprocess.Popen([sys.executable, "-c", SERVE, db.url, str(path)], stdout=subprocess.PIPE)
    try:
        writer = int(serve.stdout.readline())
        wait_for_writer(path)
        queue = behind.LogQueue(path)
        write = pack(LogWrite(flow_now(), events=(("menu", "", {}),), state={"step": "menu", "seq": 1}))
        assert queue.send(("CA1", "+79001234567", None, True, 1, write))
        os.kill(serve.pid, signal.SIGKILL)
        serve.wait(10)
        deadline = time.monotonic() + 30
        while process_running(writer) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not process_running(writer)
    finally:
        serve.kill()
        serve.stdout.close()
    assert [c.backend_call_id for c in calls(db)] == ["CA1"]  # what it held, written


def test_a_writer_stopped_as_serve_starts_ends_at_once(db, short_dir):
    # SIGTERM while `serve` starts its services: the writer is spawned but not listening
    # yet, so the stop message cannot reach it (and nothing can have been sent to it).
    service = behind.LogQueueService(db.url, short_dir / behind.SOCKET_NAME)
    started = time.monotonic()
    service.start()
    service.stop()
    assert time.monotonic() - started < 10  # not STOP_SECONDS (30) waiting for a stop never heard
    assert not service._process.is_alive()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_writer_itself_is_a_stop(db, short_dir, sig):
    # systemd's default stop signals every process of the unit; Ctrl+C reaches the whole
    # process group: the writer writes what it holds and ends, as on `serve`'s stop.
    path = short_dir / behind.SOCKET_NAME
    code = "import sys; from ivr.twilio.behind import serve_queue; serve_queue(sys.argv[1], sys.argv[2])"
    writer = subprocess.Popen([sys.executable, "-c", code, db.url, str(path)], stderr=subprocess.PIPE)
    try:
        wait_for_writer(path)
        queue = behind.LogQueue(path)
        write = pack(LogWrite(flow_now(), events=(("menu", "", {}),), state={"step": "menu", "seq": 1}))
        assert queue.send(("CA1", "+79001234567", None, True, 1, write))
        writer.send_signal(sig)
        _, err = writer.communicate(timeout=30)
    finally:
        writer.kill()
    assert writer.returncode == 0, err  # not killed by the signal
    assert b"Traceback" not in err
    assert [c.backend_call_id for c in calls(db)] == ["CA1"]
    assert not path.exists()


@pytest.mark.parametrize("told", ["signalled", "orphaned"])
def test_a_stop_that_comes_before_the_writer_has_read_a_send_still_writes_it(db, short_dir, told):
    # A send returns once its bytes are in the connection's buffer, and the connection may
    # not even be accepted yet. Here the signal (or `serve`'s death) is already waiting
    # when the writer's loop first looks: it must still accept, read and write the step.
    # (It ended at once, losing the step; test_a_signal_to_the_writer_itself_is_a_stop
    # caught it about once in a full run.)
    control, tell = os.pipe()
    path = short_dir / behind.SOCKET_NAME
    rows = callrows.CallRowStore(db.engine)
    if told == "signalled":
        writer = behind._Writer(rows, str(path), signalled=control)
        os.write(tell, b"\x0f")  # the wake-up byte of SIGTERM
    else:
        writer = behind._Writer(rows, str(path), parent=control)
        os.close(tell)  # `serve` killed
    try:
        queue = behind.LogQueue(path)
        write = pack(LogWrite(flow_now(), events=(("menu", "", {}),), state={"step": "menu", "seq": 1}))
        assert queue.send(("CA1", "+79001234567", None, True, 1, write))
        writer.run()
    finally:
        os.close(control)
        if told == "signalled":
            os.close(tell)
    assert [c.backend_call_id for c in calls(db)] == ["CA1"]
    assert not path.exists()


def test_a_stopping_writer_leaves_the_socket_of_the_writer_after_it(db, short_dir):
    # `serve` killed and started again: the new writer binds the path while the old one
    # still writes what it held. The old one must not remove the new one's socket.
    path = short_dir / behind.SOCKET_NAME
    control, tell = os.pipe()
    old = behind._Writer(callrows.CallRowStore(db.engine), str(path), parent=control)
    new = behind._Writer(callrows.CallRowStore(db.engine), str(path))
    try:
        os.close(tell)
        old.run()
        assert path.exists()
    finally:
        os.close(control)
        new.listener.close()


def test_a_writer_signalled_by_itself_is_not_started_again(db, short_dir, caplog):
    # It was stopped (all of the unit's processes signalled, Ctrl+C), not killed: `serve`
    # is stopping too, and the webhooks still answered write their call log themselves.
    path = short_dir / behind.SOCKET_NAME
    service = behind.LogQueueService(db.url, path)
    service.start()
    try:
        wait_for_writer(path)
        first = service._process.pid
        with caplog.at_level(logging.WARNING):
            os.kill(first, signal.SIGTERM)
            # It reads the sends already made before it ends: on a busy machine that and
            # the watch's next look can take more than one retry.
            assert eventually(lambda: "the Twilio call-log writer stopped" in caplog.text, 15)
            time.sleep(behind.RETRY_SECONDS + 1)  # a restart would come within a retry
        assert service._process.pid == first and not process_running(first)
        assert "starting it again" not in caplog.text
    finally:
        service.stop()


def test_the_writer_keeps_the_queue_while_the_database_is_down(db, short_dir, monkeypatch):
    path = short_dir / behind.SOCKET_NAME
    down = threading.Event()
    down.set()
    tries: list[int] = []

    def flaky(rows, backend, batch):
        tries.append(len(batch))
        if down.is_set():
            raise DatabaseUnavailable("database unavailable: connection refused")
        return write_batch(rows, backend, batch)

    monkeypatch.setattr(behind, "write_batch", flaky)
    monkeypatch.setattr(behind, "RETRY_SECONDS", 0.05)
    monkeypatch.setattr(behind, "MAX_HELD", 1)  # once it holds one, it reads no more until it is written
    writer = behind._Writer(callrows.CallRowStore(db.engine), str(path))
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    queue = behind.LogQueue(path)

    def send(n: int) -> None:
        write = pack(
            LogWrite(flow_now(), events=(("menu", f"step {n}", {}),), state={"step": "menu", "seq": n})
        )
        assert queue.send((f"CA{n}", "+79001234567", None, True, n, write))

    for n in (1, 2, 3):
        send(n)
    deadline = time.monotonic() + 10
    while not tries and time.monotonic() < deadline:
        time.sleep(0.01)
    held = tries[0]  # what it read before the first try: as much as it may hold, or more
    for n in (4, 5):
        send(n)  # taken by the socket, not read while the writer holds too much
    assert not queue.flush(0.5)  # not written: the step that needs the row gets the apology
    assert calls(db) == [] and len(tries) >= 2 and set(tries) == {held}  # tried again, read no more
    down.clear()
    assert queue.flush(10)
    assert sorted(c.backend_call_id for c in calls(db)) == ["CA1", "CA2", "CA3", "CA4", "CA5"]
    assert event_kinds(db).count("menu") == 5  # each once
    behind.stop_writer(path)
    thread.join(10)
    assert not thread.is_alive()


def test_a_writer_holding_all_it_may_still_ends_when_serve_is_gone(db, short_dir, monkeypatch, caplog):
    # The database down and MAX_HELD writes held: the writer reads no more, yet must see
    # `serve` die (here a pipe stands for its sentinel) and give up after STOP_SECONDS.
    monkeypatch.setattr(behind, "write_batch", lambda *a: (_ for _ in ()).throw(DatabaseUnavailable("down")))
    monkeypatch.setattr(behind, "RETRY_SECONDS", 0.05)
    monkeypatch.setattr(behind, "STOP_SECONDS", 0.3)
    monkeypatch.setattr(behind, "MAX_HELD", 1)
    sentinel, alive = os.pipe()
    path = short_dir / behind.SOCKET_NAME
    writer = behind._Writer(callrows.CallRowStore(db.engine), str(path), sentinel)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    queue = behind.LogQueue(path)
    write = pack(LogWrite(flow_now(), events=(("menu", "", {}),), state={"step": "menu", "seq": 1}))
    assert queue.send(("CA1", "+79001234567", None, True, 1, write))
    deadline = time.monotonic() + 10
    while not writer.writes and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.writes  # held: it reads nothing more
    with caplog.at_level(logging.ERROR):
        os.close(alive)  # `serve` killed
        thread.join(10)
    os.close(sentinel)
    assert not thread.is_alive()
    assert "serve is gone and the database down: 1 writes lost" in caplog.text


def test_a_worker_does_not_wait_while_the_writer_pauses(short_dir):
    # The writer reads between batches. Until then the steps wait in the connection's
    # buffer: 150 steps (~3 s of one busy worker thread's webhooks at the writer's
    # pace) are taken at once. (A socket with Python's timeout polled before every
    # send, and a Unix socket polls writable only under a quarter of its buffer: after
    # ~40 steps each send waited, here 2 s, then went to the row.)
    path = short_dir / behind.SOCKET_NAME
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen()
        queue = behind.LogQueue(path)
        write = pack(LogWrite(flow_now(), events=(("menu", "", {}),), state={"step": "menu", "seq": 1}))
        sent = [queue.send((f"CA{n:032d}", "+79001234567", None, False, n, write)) for n in range(150)]
        assert all(sent)


def test_garbage_on_the_writers_socket_is_dropped(db, short_dir):
    path = short_dir / behind.SOCKET_NAME
    writer = behind._Writer(callrows.CallRowStore(db.engine), str(path))
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(path))
        sock.sendall(b"\xff\xff\xff\xffGET / HTTP/1.1\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(10) == b""  # hung up on
    for payload in (b"not a pickle", pickle.dumps(("CA1", "x")), pickle.dumps(["CA1", 1, 2, 3, 4, 5])):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(path))
            sock.sendall(len(payload).to_bytes(4, "big") + b"W" + payload)
            sock.settimeout(5)
            assert sock.recv(10) == b""  # a write that is not one: hung up on, the writer goes on
    queue = behind.LogQueue(path)
    write = pack(LogWrite(flow_now(), state={"step": "menu", "seq": 1}))
    assert queue.send(("CA9", None, None, True, 1, write)) and queue.flush(10)
    assert [c.backend_call_id for c in calls(db)] == ["CA9"]
    behind.stop_writer(path)
    thread.join(10)


def test_without_a_writer_every_step_runs_on_the_row(make_app, short_dir, db, row_steps):  # noqa: F811
    app = make_app(HOTLINE_DATA_DIR=str(short_dir))
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as client:
        call = TwilioCall(client, PUBLIC, TOKEN, account_sid=SID)
        call.start()
        call.press("*")
    assert row_steps == ["CallStarted", "DigitsEntered"]
    assert len(event_kinds(db)) > 2


def test_no_queue_with_live_speech_or_without_twilio(make_settings, short_dir):
    base = {"HOTLINE_DATA_DIR": str(short_dir), "TWILIO_AUTH_TOKEN": TOKEN}
    assert behind.usable(make_settings(**base))
    assert not behind.usable(make_settings(**base, HOTLINE_LIVE_SPEECH="true"))
    assert not behind.usable(make_settings(HOTLINE_DATA_DIR=str(short_dir)))
    assert not behind.usable(make_settings(**{**base, "HOTLINE_DATA_DIR": str(short_dir / ("x" * 100))}))


def test_a_call_ahead_and_behind_on_both_databases(make_settings, any_db, short_dir, log_writer, row_steps):
    from web import create_app

    env = {"HOTLINE_PUBLIC_URL": PUBLIC, "TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN}
    settings = make_settings(HOTLINE_DATA_DIR=str(short_dir), HOTLINE_DATABASE_URL=any_db.url, **env)
    app = create_app({"TESTING": True}, settings=settings, db=any_db)
    log_writer(app)
    number = open_request(any_db, "in_progress")
    call, client = settled_call(app)
    with client:
        call.start()
        call.press("*")
        call.press("1")
        assert "Статус: в работе." in text(call.press(number + "#"))
        call.hang_up()
    assert row_steps == ["DigitsEntered"]
    (row,) = calls(any_db)
    assert row.ended_at is not None and row.from_number == "+79001234567"
    kinds = event_kinds(any_db)
    assert kinds[0] == "call_started" and "lookup" in kinds and kinds[-1] == "hangup"
    assert kinds.index("digits") < kinds.index("menu") < kinds.index("lookup")
