"""The Twilio adapter, driven by a simulator that behaves like Twilio (docs/twilio.md)."""

import datetime as dt
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import func, select

from hotline import registry
from hotline.models import Attachment, Call, CallEvent, Request
from hotline.settings import BusinessHours
from ivr.twilio.client import RecordingServer, TwilioCall
from tests.ivr.twilio.queued import SettledTransport
from web import create_app

PUBLIC = "https://hotline.example.com"
TOKEN = "test-auth-token"
SID = "AC" + "1" * 32


@pytest.fixture
def api() -> Iterator[RecordingServer]:
    with RecordingServer(SID, TOKEN) as server:
        yield server


def always_open(tz):
    return BusinessHours(frozenset(range(7)), dt.time(0), dt.time(23, 59, 59, 999999), tz)


@pytest.fixture
def make_app(make_settings, db, api):
    def make(*, open_hours: bool = True, **env: str):
        env = {
            "HOTLINE_PUBLIC_URL": PUBLIC,
            "TWILIO_ACCOUNT_SID": SID,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "HOTLINE_TWILIO_API_BASE": api.base_url,
            "HOTLINE_DUTY_NUMBER": "+73430000001",
            **env,
        }
        settings = make_settings(**env)
        if open_hours:
            from dataclasses import replace

            settings = replace(settings, business_hours=always_open(settings.business_hours.timezone))
        return create_app({"TESTING": True}, settings=settings, db=db)

    return make


@pytest.fixture(params=["row", "queued"])
def app(request, make_app):
    """The app as `create_app` makes it (every step on the call's row), and as `hotline
    serve` runs it, with the call-log writer (ivr.twilio.behind): steps ahead, log behind."""
    if request.param == "row":
        return make_app()
    app = make_app(HOTLINE_DATA_DIR=str(request.getfixturevalue("short_dir")))
    request.getfixturevalue("log_writer")(app)
    return app


@pytest.fixture
def client(app) -> Iterator[httpx.Client]:
    queue = app.extensions.get("test.log_queue")
    transport = SettledTransport(app, queue) if queue else httpx.WSGITransport(app=app)
    with httpx.Client(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def call(client) -> TwilioCall:
    return TwilioCall(client, PUBLIC, TOKEN, account_sid=SID)


def text(parts: list[str]) -> str:
    return " ".join(parts)


def calls(db) -> list[Call]:
    with db.session() as s:
        rows = s.scalars(select(Call)).all()
        for c in rows:
            _ = [e.kind for e in c.events]
        return list(rows)


def event_kinds(db) -> list[str]:
    with db.session() as s:
        return list(s.scalars(select(CallEvent.kind).order_by(CallEvent.id)))


def count(db, model) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def open_request(db, status="new", phone="+79001234567") -> str:
    """A request whose contact phone is the simulated caller's (TwilioCall.caller)."""
    with db.session() as s:
        request = registry.open_request(s, kind="incident", channel="web", actor="cli", phone=phone)
        if status != "new":
            registry.change_status(s, request, "in_progress", actor="engineer:ivan")
        if status == "awaiting_info":
            registry.ask_clarification(s, request, actor="engineer:ivan", question="Какая линия?")
        return request.number


# --- the paths of a call ---


def test_greeting_menu_in_russian_say(call: TwilioCall, client):
    heard = text(call.start())
    assert "Здравствуйте" in heard and "нажмите 1" in heard
    raw = call.responses[0].text
    assert 'language="ru-RU"' in raw and 'voice="Polly.Tatyana"' in raw
    assert call.waiting and call.waiting.verb.tag == "Gather"
    assert call.waiting.verb.get("action").startswith(PUBLIC + "/twilio/step/digits?seq=")


def test_new_request_action_before_callback(call: TwilioCall, api, db):
    call.start()
    assert "Если авария, линия стоит, нажмите 1" in text(call.press("2"))
    assert "после сигнала" in text(call.press("3"))
    heard = text(call.record(api, 7))
    with db.session() as s:
        request = s.scalars(select(Request)).one()
        number, kind, status = request.number, request.kind, request.status
        [att] = request.attachments
        assert att.external_id.startswith("twilio:RE") and att.size > 7 * 8000
        assert [e.action for e in request.events] == ["created", "attachment"]
    assert (kind, status) == ("service_request", "new")
    spoken = ", ".join(
        ["ноль", "один", "два", "три", "четыре", "пять", "шесть", "семь", "восемь", "девять"][int(d)]
        for d in number
    )
    assert heard.count(spoken) == 2 and "До свидания" in heard
    assert call.ended
    assert len(api.downloads) == 1
    [c] = calls(db)
    assert c.outcome == "request_created" and c.backend_status == "completed" and c.duration_seconds == 30
    assert c.from_number == "+79001234567" and c.request_id is not None


def test_callback_before_action_and_retried_callbacks_make_one_request(call: TwilioCall, api, db):
    call.start()
    call.press("2")
    call.press("1")
    heard = text(call.record(api, 5, callback_first=True, callbacks=3))
    assert count(db, Request) == 1 and count(db, Attachment) == 1
    assert len(api.downloads) == 1
    with db.session() as s:
        number = s.scalars(select(Request.number)).one()
    assert heard.count("Повторяем номер") == 1 and "принята" in heard
    assert number  # read back: see the previous test for the digits


def test_retried_callback_after_action(call: TwilioCall, api, db):
    call.start()
    call.press("2")
    call.press("1")
    call.record(api, 5, callbacks=2)
    assert count(db, Request) == 1 and count(db, Attachment) == 1 and len(api.downloads) == 1


def test_hangup_while_recording_keeps_the_recording(call: TwilioCall, api, db):
    call.start()
    call.press("2")
    call.press("2")
    call.record(api, 4, hang_up=True)
    assert count(db, Request) == 1 and count(db, Attachment) == 1
    [c] = calls(db)
    assert c.outcome == "request_created" and c.ended_at is not None


def test_hangup_while_recording_callbacks_after_status(call: TwilioCall, api, db):
    """Order: status callback (hangup), then the recording callback; no action at all."""
    call.start()
    call.press("2")
    call.press("1")
    record = call.waiting.verb
    sid = "RE" + "7" * 32
    url = api.add(sid, __import__("ivr.twilio.client", fromlist=["make_wav"]).make_wav(3))
    call.hang_up(5)
    params = {
        "RecordingUrl": url,
        "RecordingSid": sid,
        "RecordingDuration": "3",
        "RecordingStatus": "completed",
    }
    assert call.post(record.get("recordingStatusCallback"), params).status_code == 204
    with db.session() as s:
        request = s.scalars(select(Request)).one()
        assert request.kind == "incident" and len(request.attachments) == 1


def test_empty_recording_makes_no_request(call: TwilioCall, api, db):
    call.start()
    call.press("2")
    call.press("1")
    heard = text(call.silence())  # Twilio: no action for an empty recording
    assert "ничего не услышали" in heard
    record = call.waiting.verb
    # Some accounts still report the empty recording's status: nothing is stored.
    params = {"RecordingUrl": api.add("RE0", b""), "RecordingSid": "RE0", "RecordingDuration": "0"}
    assert (
        call.post(
            record.get("recordingStatusCallback"), {**params, "RecordingStatus": "completed"}
        ).status_code
        == 204
    )
    call.hang_up(12)
    assert count(db, Request) == 0 and count(db, Attachment) == 0
    assert api.downloads == []
    kinds = event_kinds(db)
    assert "recording_empty" in kinds and kinds[-1] == "hangup"
    assert calls(db)[0].outcome == "abandoned"


def test_status_of_a_request_and_awaiting_info(call: TwilioCall, api, db):
    plain = open_request(db, "in_progress")
    waiting = open_request(db, "awaiting_info")
    call.start()
    call.press("1")
    heard = text(call.press(plain + "#"))
    assert "Статус: в работе." in heard and "Что случилось: авария, линия стоит." in heard
    assert "Главное меню" in heard
    call.press("1")
    heard = text(call.press(waiting + "#"))
    assert "ожидает информации" in heard and "нажмите 1" in heard
    call.press("1")
    heard = text(call.record(api, 6))
    assert "ответ добавлен" in heard
    with db.session() as s:
        request = registry.get_request(s, waiting)
        assert request.status == "in_progress" and len(request.attachments) == 1
        assert "information_added" in [e.action for e in request.events]
    call.hang_up()
    assert calls(db)[0].outcome == "info_added"


@pytest.mark.parametrize("digits", ["abc", "1" * 500, "", "12#34", "١٢٣٤٥"])
def test_garbage_digits(call: TwilioCall, db, digits: str):
    call.start()
    call.press("1")
    heard = text(call.send_digits(digits))
    assert "Попробуйте ещё раз" in heard or "не услышали" in heard
    assert call.waiting.verb.tag == "Gather" and not call.ended
    assert "lookup" not in event_kinds(db)


def test_garbage_in_menu(call: TwilioCall, db):
    call.start()
    assert "Такого пункта" in text(call.send_digits("x" * 500))
    assert "не услышали" in text(call.send_digits("#"))
    heard = text(call.send_digits("ab"))
    assert "До свидания" in heard and call.ended
    assert calls(db)[0].outcome == "no_input"


def test_three_wrong_numbers_goodbye(call: TwilioCall, db):
    call.start()
    call.press("1")
    call.press("12345#")
    call.press("99999999#")
    heard = text(call.press("10000#"))
    assert "Слишком много" in heard and call.ended
    assert calls(db)[0].outcome == "too_many_attempts"


def test_lookup_cap_per_caller_number(make_app, db):
    app = make_app(HOTLINE_LOOKUPS_PER_HOUR="2")
    number = open_request(db)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as client:
        outcomes = []
        for _ in range(3):
            call = TwilioCall(client, PUBLIC, TOKEN, account_sid=SID, caller="+79990001122")
            call.start()
            call.press("1")
            outcomes.append(text(call.press(number + "#")))
        assert "Статус" in outcomes[1] and "Статус" not in outcomes[2]
        assert "Узнать статус можно будет позже. Главное меню." in outcomes[2]
        assert call.waiting.verb.tag == "Gather" and not call.ended  # the menu: a request can still be left


def test_a_star_at_the_number_question_is_the_menu_also_after_digits(call: TwilioCall, db):
    call.start()
    call.press("1")
    # Twilio's <Gather> ends on «#» or its timeout only: Digits="*1" after the caller waited.
    assert "Чтобы оставить новую заявку, нажмите 2" in text(call.send_digits("*1"))
    assert "lookup" not in event_kinds(db)


def test_duty_engineer_transfer_and_no_answer(call: TwilioCall):
    assert "Соединяем" in text(call.start() and call.press("0"))
    dial = call.waiting.verb
    assert dial.tag == "Dial" and dial.get("timeout") == "20" and dial.find("Number").text == "+73430000001"
    heard = text(call.dial_result("no-answer"))
    assert "не может ответить" in heard and "Чтобы оставить заявку, нажмите 2" in heard
    assert "авария" in text(call.press("2"))


def test_duty_engineer_answered(call: TwilioCall, db):
    call.start()
    call.press("0")
    call.dial_result("completed", 60)
    assert call.ended and calls(db)[0].outcome == "transferred"


def test_duty_engineer_outside_hours(make_app, db):
    app = make_app(
        open_hours=False,
        HOTLINE_BUSINESS_HOURS="mon 09:00-09:01",
        HOTLINE_HOLIDAYS=",".join(str(dt.date.today() + dt.timedelta(days=d)) for d in range(-1, 8)),
    )
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as client:
        call = TwilioCall(client, PUBLIC, TOKEN, account_sid=SID)
        call.start()
        heard = text(call.press("0"))
        assert "не работает" in heard and call.waiting.verb.tag == "Gather"
        assert "Dial" not in call.responses[-1].text


@pytest.mark.parametrize("step", range(6))
def test_hangup_at_each_step_leaves_a_complete_entry(call: TwilioCall, api, db, step: int):
    actions = [lambda: call.start(), lambda: call.press("2"), lambda: call.press("1")]
    actions += [lambda: call.silence(), lambda: call.record(api, 3)]
    for action in actions[:step]:
        action()
    if not call.ended:
        call.hang_up(9)
    [c] = calls(db) if step else [None]
    if c is None:  # hung up before the first webhook answered: the status callback alone
        [c] = calls(db)
    assert c.ended_at is not None and c.outcome and c.backend_status == "completed"
    assert "hangup" in [e.kind for e in c.events]
    assert count(db, Request) == (1 if step >= 5 else 0)


def test_repeated_voice_webhook_and_stale_action(call: TwilioCall, app, db):
    call.start()
    gather = call.waiting.verb
    call.press("1")
    # Twilio (or an attacker with a valid signature) replays the menu's action.
    again = call.post(gather.get("action"), {"Digits": "2"})
    if "test.log_queue" not in app.extensions:
        assert "номер заявки" in again.text  # on the row: asked the current question again
        assert "stale_webhook" in event_kinds(db)
        return
    # Ahead of the row (ivr.twilio.behind): answered from the state its URL carries, as
    # a retry must be (the first answer may never have reached the caller); both logged.
    assert "Если авария, линия стоит, нажмите 1" in again.text
    assert event_kinds(db).count("menu") == 2 and "stale_webhook" not in event_kinds(db)
    call._follow(again)  # the caller is where this answer took them
    assert "после сигнала" in text(call.press("3"))


# --- security ---


def test_forged_or_missing_signature_is_refused_and_writes_nothing(call: TwilioCall, client, db):
    params = {"From": "+79001234567", "To": "+73435674530", "CallStatus": "ringing"}
    assert call.post(call.url("/twilio/voice"), params, signature="forged").status_code == 403
    assert client.post("/twilio/voice", data={"CallSid": "CA1"}).status_code == 403
    # Signed for another URL (the one a proxy shows us) is not valid either.
    from twilio.request_validator import RequestValidator

    data = {"CallSid": call.call_sid, **params}
    sig = RequestValidator(TOKEN).compute_signature("http://testserver/twilio/voice", data)
    assert client.post("/twilio/voice", data=data, headers={"X-Twilio-Signature": sig}).status_code == 403
    for path in ("/twilio/status", "/twilio/recording", "/twilio/step/digits?seq=1"):
        assert call.post(call.url(path), {"Digits": "1"}, signature="x").status_code == 403
    assert count(db, Call) == 0 and count(db, CallEvent) == 0


def test_tampered_parameters_are_refused(call: TwilioCall, client, db):
    call.start()
    data = {"CallSid": call.call_sid, "Digits": "1", "AccountSid": SID, "ApiVersion": "2010-04-01"}
    from twilio.request_validator import RequestValidator

    url = call.waiting.verb.get("action")
    sig = RequestValidator(TOKEN).compute_signature(url, data)
    path = url.removeprefix(PUBLIC)
    assert (
        client.post(path, data={**data, "Digits": "2"}, headers={"X-Twilio-Signature": sig}).status_code
        == 403
    )


def test_no_auth_token_refuses_clearly(make_app, db):
    app = make_app(TWILIO_AUTH_TOKEN="")
    response = app.test_client().post("/twilio/voice", data={"CallSid": "CA1"})
    assert response.status_code == 503 and b"TWILIO_AUTH_TOKEN" in response.data
    assert count(db, Call) == 0


def test_insecure_dev_mode_accepts_unsigned(make_app, db):
    app = make_app(TWILIO_AUTH_TOKEN="", HOTLINE_TWILIO_INSECURE_DEV="true")
    response = app.test_client().post("/twilio/voice", data={"CallSid": "CA1", "From": "+7900"})
    assert response.status_code == 200 and b"<Gather" in response.data


def test_recording_from_another_host_is_refused(call: TwilioCall, api, db):
    call.start()
    call.press("2")
    call.press("1")
    record = call.waiting.verb
    for url in (
        "https://evil.example.com/2010-04-01/Accounts/AC/Recordings/RE1",
        api.base_url.replace("127.0.0.1", "localhost") + "/x/RE1",
        api.base_url.replace("http://", "http://user@") + "/x/RE1",
    ):
        params = {
            "RecordingUrl": url,
            "RecordingSid": "RE1",
            "RecordingDuration": "5",
            "RecordingStatus": "completed",
        }
        assert call.post(record.get("recordingStatusCallback"), params).status_code == 400
    assert count(db, Attachment) == 0 and count(db, Request) == 0
    assert "recording_refused" in event_kinds(db)


def test_download_failure_is_retried_by_twilio(call: TwilioCall, api, db):
    call.start()
    call.press("2")
    call.press("1")
    record = call.waiting.verb
    params = {
        "RecordingUrl": api.base_url + "/2010-04-01/Accounts/AC/Recordings/REmissing",
        "RecordingSid": "REmissing",
        "RecordingDuration": "5",
        "RecordingStatus": "completed",
    }
    assert call.post(record.get("recordingStatusCallback"), params).status_code == 502
    assert count(db, Attachment) == 0
    assert "recording_download_failed" in event_kinds(db)


def test_play_mode_plays_prompt_audio(make_app, db, tmp_path):
    app = make_app(HOTLINE_PROMPTS="play")
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as client:
        call = TwilioCall(client, PUBLIC, TOKEN, account_sid=SID)
        heard = call.start()
        assert heard == ["[greeting.wav]", "[menu.wav]"]
        assert f"<Play>{PUBLIC}/twilio/prompts/greeting.wav</Play>" in call.responses[0].text
        assert client.get("/twilio/prompts/no_such_key.wav").status_code == 404
