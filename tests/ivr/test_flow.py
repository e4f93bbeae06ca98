"""The call flow on its own: events in, actions and log out, through the fake port."""

import datetime as dt
import itertools
import json
import re
from zoneinfo import ZoneInfo

import pytest

from hotline.settings import BusinessHours
from ivr import flow
from ivr.fake import FakeCallPort
from ivr.flow import (
    CallState,
    DialFinished,
    DialResult,
    DigitsEntered,
    Gather,
    HangUp,
    Hangup,
    NoInput,
    Record,
    Recording,
    RecordingFinished,
    Speak,
    Transfer,
)
from ivr.speech import Text, render_audio, render_keys, render_text
from voice_models.prompts import prompt_text


class Caller:
    """Drives the flow like an adapter would, keeping the state as JSON in between."""

    def __init__(self, port: FakeCallPort, config: flow.FlowConfig | None = None):
        self.port = port
        self.config = config or flow.FlowConfig()
        self.state_json = CallState().to_json()
        self.heard: list[str] = []
        self.actions: list[flow.Action] = []
        self.log: list[flow.LogEntry] = []

    @property
    def state(self) -> CallState:
        return CallState.from_json(self.state_json)

    def send(self, event: flow.Event) -> str:
        step = flow.handle(self.state, event, self.port, self.config)
        self.state_json = json.loads(json.dumps(step.state.to_json()))  # must survive JSON
        self.actions = step.actions
        self.log += step.log
        text = " ".join(render_text(a.segments) for a in step.actions if isinstance(a, Speak))
        self.heard.append(text)
        return text

    def press(self, digits: str) -> str:
        return self.send(DigitsEntered(digits))

    @property
    def waits_for(self) -> type:
        return type(self.actions[-1])

    def kinds(self) -> list[str]:
        return [e.kind for e in self.log]


@pytest.fixture
def port() -> FakeCallPort:
    return FakeCallPort()


@pytest.fixture
def caller(port: FakeCallPort) -> Caller:
    c = Caller(port)
    c.send(flow.CallStarted("+79001234567"))
    return c


def test_greeting_and_menu(caller: Caller):
    assert "Здравствуйте" in caller.heard[0]
    assert "нажмите 1" in caller.heard[0] and "нажмите 0" in caller.heard[0]
    speak, gather = caller.actions
    assert isinstance(speak, Speak) and speak.barge_in
    assert gather == Gather(1, 6)
    assert caller.state.caller == "+79001234567"


def test_star_repeats_menu_and_wrong_input_ends_after_three_tries(caller: Caller):
    assert "нажмите 1" in caller.press("*")
    assert caller.state.tries == 0
    assert "Такого пункта" in caller.press("9")
    assert "не услышали" in caller.send(NoInput())
    last = caller.press("abc")
    assert "До свидания" in last
    assert caller.actions[-1] == HangUp()
    assert caller.state.outcome == "no_input"
    caller.send(Hangup())
    assert caller.state.step == "ended"
    assert caller.kinds().count("hangup") == 1


def test_status_of_a_known_request(caller: Caller, port: FakeCallPort):
    number = port.add_request("incident", "in_progress", dt.date(2025, 11, 20))
    assert "номер заявки" in caller.press("1")
    assert caller.actions[-1] == Gather(13, 10, "#", cancel_key="*")
    text = caller.press(number + "#")
    spoken_digits = ", ".join(
        ["ноль", "один", "два", "три", "четыре", "пять", "шесть", "семь", "восемь", "девять"][int(d)]
        for d in number
    )
    assert f"Заявка номер {spoken_digits}." in text
    assert "Что случилось: авария, линия стоит." in text
    assert "Статус: в работе" in text
    assert "двадцатое ноября." in text and "года" not in text
    assert "Главное меню" in text
    assert caller.state.step == "menu" and caller.state.outcome == "status_heard"
    assert any(e.kind == "lookup" and e.data == {"number": number, "found": True} for e in caller.log)


def test_status_from_last_year_says_the_year(caller: Caller, port: FakeCallPort):
    number = port.add_request("problem", "processed", dt.date(2024, 12, 31))
    caller.press("1")
    text = caller.press(number)
    assert "тридцать первое декабря две тысячи двадцать четвёртого года" in text
    assert "обработана" in text and "что-то работает не так" in text


@pytest.mark.parametrize("garbage", ["abc", "1" * 500, "12345", "", "#", "10008 "[:-1] + "x"])
def test_wrong_numbers_are_refused_before_lookup(caller: Caller, port: FakeCallPort, garbage: str):
    caller.press("1")
    text = caller.press(garbage)
    assert port.lookups == 0
    assert "Попробуйте ещё раз" in text or "не услышали" in text
    assert caller.state.step == "number"


def test_single_digit_typo_is_caught_by_check_digit(caller: Caller, port: FakeCallPort):
    number = port.add_request("incident", "new")
    typo = number[:-2] + str((int(number[-2]) + 1) % 10) + number[-1]
    caller.press("1")
    assert "с ошибкой" in caller.press(typo)
    assert port.lookups == 0


def test_three_wrong_numbers_say_goodbye(caller: Caller, port: FakeCallPort):
    caller.press("1")
    unknown = port._next_number()
    assert "не найдена" in caller.press(unknown)
    caller.press("123")
    text = caller.press(unknown)
    assert "Слишком много неудачных попыток" in text and "До свидания" in text
    assert caller.actions[-1] == HangUp()
    assert caller.state.outcome == "too_many_attempts"


def _over_the_lookup_limit(port: FakeCallPort) -> tuple[Caller, str]:
    """A caller who asks for a status with the hour's two lookups made; what they hear."""
    number = port.add_request("incident", "new")
    port.lookups = 2
    c = Caller(port, flow.FlowConfig(lookups_per_hour=2))
    c.send(flow.CallStarted("+79001234567"))
    c.press("1")
    return c, c.press(number)


def test_lookups_per_hour_cap(port: FakeCallPort):
    c, text = _over_the_lookup_limit(port)
    assert "Узнать статус можно будет позже. Главное меню." in text
    assert "Заявка номер" not in text
    assert port.lookups == 2 and c.state.outcome == "lookup_limit"
    # Back in the menu, not hung up: a new request or the duty engineer are still there.
    assert c.state.step == "menu"
    c.press("2")
    c.press("1")
    c.send(RecordingFinished(Recording("RE9", 20)))
    assert c.state.outcome == "request_created"


def test_the_lookup_limit_stays_the_outcome_after_a_silence(port: FakeCallPort):
    c, _ = _over_the_lookup_limit(port)
    for _ in range(3):
        c.send(NoInput())
    assert c.actions[-1] == HangUp() and c.state.outcome == "lookup_limit"


@pytest.mark.parametrize("keys", ["*", "12*", "*1", "*#*"])
def test_star_in_number_returns_to_menu(caller: Caller, port: FakeCallPort, keys: str):
    caller.press("1")
    assert "нажмите 2" in caller.press(keys)
    assert caller.state.step == "menu" and caller.state.number_tries == 0 and port.lookups == 0


def test_no_number_says_so_and_three_failures_end_with_too_many_attempts(caller: Caller):
    caller.press("1")
    assert caller.press("#").startswith("Мы не услышали номер заявки. Введите номер заявки")
    assert caller.send(NoInput()).startswith("Мы не услышали номер заявки.")
    last = caller.send(NoInput())
    assert (
        last
        == "Мы не услышали номер заявки. Слишком много неудачных попыток. Спасибо за звонок. До свидания!"
    )


def test_without_a_duty_engineer_the_menu_does_not_offer_zero(port: FakeCallPort):
    port.target = None
    c = Caller(port)
    text = c.send(flow.CallStarted("+79001234567"))
    assert "нажмите 1" in text and "нажмите 2" in text and "нажмите 0" not in text
    assert "нажмите 0" not in c.press("*")
    assert "Связь с дежурным инженером сейчас недоступна" in c.press("0")  # pressed anyway


def test_awaiting_info_records_information_for_the_same_request(caller: Caller, port: FakeCallPort):
    number = port.add_request("service_request", "awaiting_info")
    caller.press("1")
    text = caller.press(number)
    assert "ожидает информации" in text and "Инженер ждёт от вас дополнительную информацию" in text
    assert "Чтобы записать ответ сейчас, нажмите 1" in text
    text = caller.press("1")
    assert "после сигнала" in text
    assert caller.actions[-1] == Record(180, 5, "#", True)
    text = caller.send(RecordingFinished(Recording("RE1", 12, "/tmp/info.wav")))
    assert "ответ добавлен" in text
    assert port.information == [(number, Recording("RE1", 12, "/tmp/info.wav"))]
    assert caller.state.outcome == "info_added" and caller.state.step == "menu"


def test_new_request_is_read_back_twice(caller: Caller, port: FakeCallPort):
    assert "Если авария, линия стоит, нажмите 1" in caller.press("2")
    caller.press("7")  # not a kind
    assert caller.state.step == "kind"
    text = caller.press("2")
    assert "Расскажите, что случилось, на какой линии и как с вами связаться" in text
    assert caller.waits_for is Record
    text = caller.send(RecordingFinished(Recording("RE2", 30)))
    [(number, kind, _)] = port.opened
    assert kind == "problem"
    spoken = render_text([flow.Number(number)])
    assert text.count(spoken) == 2
    assert caller.actions[-1] == HangUp()
    assert caller.state.outcome == "request_created"


def test_empty_recording_makes_no_request(caller: Caller, port: FakeCallPort):
    caller.press("2")
    caller.press("1")
    assert "ничего не услышали" in caller.send(RecordingFinished(None))
    assert caller.waits_for is Record
    caller.send(RecordingFinished(Recording("RE3", 0)))
    text = caller.send(NoInput())
    # The last one is not «Попробуйте ещё раз» before a goodbye.
    assert text == (
        "Запись не получилась: мы ничего не услышали. Слишком много неудачных попыток. "
        "Спасибо за звонок. До свидания!"
    )
    assert port.opened == []
    assert caller.kinds().count("recording_empty") == 3


def test_recording_ended_by_hangup_is_kept(caller: Caller, port: FakeCallPort):
    """AGI: the caller hangs up while recording; the file is there and must become a request."""
    caller.press("2")
    caller.press("3")
    caller.send(Hangup())
    caller.send(RecordingFinished(Recording("/var/rec/x.wav", 9, "/var/rec/x.wav")))
    assert [(k, r.ref) for _, k, r in port.opened] == [("service_request", "/var/rec/x.wav")]
    assert caller.actions == []
    assert caller.state.outcome == "request_created"


def test_twilio_order_callback_before_action_makes_one_request(caller: Caller, port: FakeCallPort):
    caller.press("2")
    caller.press("1")
    # The recording status callback (file known) arrives before the Record action.
    out = flow.save_recording(caller.state, Recording("RE9", 20, "/tmp/RE9.wav"), port)
    assert out.actions == [] and out.state.step == "new_record"
    caller.state_json = out.state.to_json()
    text = caller.send(RecordingFinished(Recording("RE9", 20)))
    assert len(port.opened) == 1
    assert text.count(render_text([flow.Number(port.opened[0][0])])) == 2
    # Twilio retries the callback: still one request, the file attached once.
    again = flow.save_recording(caller.state, Recording("RE9", 20, "/tmp/RE9.wav"), port)
    again = flow.save_recording(again.state, Recording("RE9", 20, "/tmp/RE9.wav"), port)
    assert len(port.opened) == 1 and len(port.attached) == 1


def test_twilio_order_action_before_callback(caller: Caller, port: FakeCallPort):
    caller.press("2")
    caller.press("1")
    caller.send(RecordingFinished(Recording("RE10", 20)))  # no file yet
    [(number, _, _)] = port.opened
    out = flow.save_recording(caller.state, Recording("RE10", 20, "/tmp/RE10.wav"), port)
    assert port.attached == [(number, Recording("RE10", 20, "/tmp/RE10.wav"))]
    assert len(port.opened) == 1 and out.actions == []


def test_duty_engineer_inside_hours(caller: Caller, port: FakeCallPort):
    text = caller.press("0")
    assert "Соединяем" in text
    assert caller.actions[-1] == Transfer("+73430000000", 20)
    text = caller.send(DialFinished(DialResult.ANSWERED))
    assert caller.state.outcome == "transferred" and caller.actions[-1] == HangUp()


@pytest.mark.parametrize("result", [DialResult.NO_ANSWER, DialResult.BUSY, DialResult.FAILED])
def test_duty_engineer_no_answer_offers_a_request(caller: Caller, port: FakeCallPort, result: DialResult):
    caller.press("0")
    text = caller.send(DialFinished(result))
    assert "не может ответить" in text and "Чтобы оставить заявку, нажмите 2" in text
    assert "авария" in caller.press("2")
    assert caller.state.step == "kind"


def test_duty_engineer_outside_hours_or_unconfigured(port: FakeCallPort):
    port.open = False
    c = Caller(port)
    c.send(flow.CallStarted(None))
    assert "не работает" in c.press("0")
    assert not any(isinstance(a, Transfer) for a in c.actions)
    assert "нажмите 2" in c.press("*")
    port.open, port.target = True, None
    assert "недоступна" in c.press("0")


def test_hangup_at_any_step_leaves_an_outcome(caller: Caller):
    caller.press("1")
    caller.send(Hangup())
    assert caller.state.outcome == "abandoned" and caller.state.step == "ended"
    assert caller.send(DigitsEntered("1")) == ""  # nothing after the end


def test_reprompt_repeats_the_question_without_changing_anything(caller: Caller):
    caller.press("1")
    actions = flow.reprompt(caller.state)
    assert actions[-1] == Gather(13, 10, "#", cancel_key="*")
    assert "номер заявки" in render_text(actions[0].segments)


def test_a_copy_of_the_state_is_its_json_round_trip_and_its_own():
    state = CallState(
        step=flow.StepName.INFO_RECORD, pending={"info": "10008"}, recorded={"r1": {"number": "1"}}
    )
    copy = state.copy()
    assert copy == CallState.from_json(state.to_json()) and copy is not state
    copy.pending["info"], copy.recorded["r1"]["number"] = "x", "y"  # type: ignore[index]
    copy.recorded["r2"] = {}
    assert state.pending == {"info": "10008"} and state.recorded == {"r1": {"number": "1"}}


def test_state_tolerates_unknown_and_missing_keys():
    state = CallState.from_json({"step": "menu", "future_field": 1})
    assert state.step == "menu" and state.tries == 0
    assert CallState.from_json(None) == CallState()


# --- menus as tables ---------------------------------------------------------------

_SPOKEN_KEY = {"*": "нажмите звёздочку", "#": "нажмите решётку"}


def _offered(prompt: str) -> set[str]:
    text = prompt_text(prompt)
    return set(re.findall(r"нажмите (\d)", text)) | {k for k, said in _SPOKEN_KEY.items() if said in text}


@pytest.mark.parametrize("step", sorted(flow.MENUS))
def test_every_key_a_menu_accepts_is_said_in_its_prompt(step: str):
    menu = flow.MENUS[step]
    text = prompt_text(menu.prompt)
    for key in menu.options:
        said = _SPOKEN_KEY.get(key, f"нажмите {key}")
        assert said in text, f"{step}: key {key!r} is accepted but «{said}» is not said"
    # ...and no key is offered that the menu does not accept.
    assert _offered(menu.prompt) == set(menu.options), step


def test_the_menu_without_a_duty_engineer_offers_all_but_zero():
    menu = flow.MENUS[flow.StepName.MENU]
    variant = menu.prompt_of(CallState(duty=False))
    assert variant != menu.prompt and _offered(variant) == set(menu.options) - {"0"}


def test_new_request_is_one_key_in_every_menu_that_offers_it():
    new = flow._Flow.new_request
    keys = {key for menu in flow.MENUS.values() for key, handler in menu.options.items() if handler == new}
    assert keys == {"2"}
    assert len([m for m in flow.MENUS.values() if new in m.options.values()]) == 2


@pytest.mark.parametrize(("key", "kind"), [("1", "incident"), ("2", "problem"), ("3", "service_request")])
def test_each_kind_key_makes_its_kind(caller: Caller, port: FakeCallPort, key: str, kind: str):
    caller.press("2")
    caller.press(key)
    caller.send(RecordingFinished(Recording(f"RE-{key}", 15)))
    assert [k for _, k, _ in port.opened] == [kind]


def test_star_in_the_kind_menu_returns_to_the_main_menu(caller: Caller):
    caller.press("2")
    assert "нажмите 0" in caller.press("*")
    assert caller.state.step == "menu"


# --- working hours -----------------------------------------------------------------


def test_outside_hours_the_caller_hears_the_hours(port: FakeCallPort):
    port.open = False
    c = Caller(port)
    c.send(flow.CallStarted(None))
    text = c.press("0")
    assert (
        "Сейчас дежурный инженер не работает. Дежурный инженер работает по будням, с девяти до восемнадцати."
        in (text)
    )
    assert "Чтобы оставить заявку, нажмите 2" in text
    assert "авария" in c.press("2")


def test_hours_with_minutes_and_chosen_days(port: FakeCallPort):
    port.open = False
    port.hours = BusinessHours(frozenset({0, 2, 5}), dt.time(8, 30), dt.time(17, 5), ZoneInfo("UTC"))
    c = Caller(port)
    c.send(flow.CallStarted(None))
    text = c.press("0")
    assert (
        "работает по понедельникам, по средам и по субботам, с восьми тридцати до семнадцати ноль пяти."
        in text
    )
    speak = next(a for a in c.actions if isinstance(a, Speak))
    assert render_keys(speak.segments)[:8] == [
        "duty_closed",
        "duty_hours",
        "weekday_0",
        "weekday_2",
        "and",
        "weekday_5",
        "from_8",
        "minute_30",
    ]


def test_a_holiday_says_so_before_hours_round_the_clock(port: FakeCallPort):
    port.open = False
    port.hours = BusinessHours(
        frozenset(range(7)), dt.time(0), dt.time.max, ZoneInfo("UTC"), holidays=frozenset({port.today_is})
    )
    c = Caller(port)
    c.send(flow.CallStarted(None))
    text = c.press("0")
    assert text.startswith(
        "Сегодня праздничный день, дежурный инженер не работает. "
        "Дежурный инженер работает ежедневно, круглосуточно."
    )
    speak = next(a for a in c.actions if isinstance(a, Speak))
    assert render_keys(speak.segments)[:4] == ["duty_holiday", "duty_hours", "days_daily", "round_the_clock"]


def test_hours_to_midnight(port: FakeCallPort):
    port.open = False
    port.hours = BusinessHours(frozenset({5, 6}), dt.time(18), dt.time.max, ZoneInfo("UTC"))
    c = Caller(port)
    c.send(flow.CallStarted(None))
    text = c.press("0")
    assert "Сейчас дежурный инженер не работает." in text
    assert "работает по субботам и по воскресеньям, с восемнадцати до полуночи." in text


def test_no_hours_configured_says_only_that_the_engineer_is_off(port: FakeCallPort):
    port.open, port.hours = False, None
    c = Caller(port)
    c.send(flow.CallStarted(None))
    text = c.press("0")
    assert "не работает" in text and "работает по" not in text


# --- the engineer's question on the status line ------------------------------------


def test_caller_hears_the_engineers_question(caller: Caller, port: FakeCallPort):
    number = port.add_request("incident", "awaiting_info", question="Какая версия прошивки на сканере?")
    caller.press("1")
    text = caller.press(number)
    assert (
        "Инженер просит уточнить: Какая версия прошивки на сканере? Чтобы записать ответ сейчас, нажмите 1"
        in (text)
    )
    assert "ждёт от вас" not in text
    speak = [a for a in caller.actions if isinstance(a, Speak)][-1]
    [question] = [p for p in render_audio(speak.segments) if isinstance(p, Text)]
    assert question.intro == "clarification_asked" and question.fallback == ("info_awaited",)
    # Asked again (a repeated webhook): the question is still there.
    assert "Какая версия прошивки" in render_text(flow.reprompt(caller.state)[0].segments)
    caller.press("1")
    caller.send(RecordingFinished(Recording("RE20", 10)))
    assert port.information[0][0] == number


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        ("  Какой\nномер\tлинии  ", "Какой номер линии."),
        ("Код ошибки\x07 E12", "Код ошибки E12."),
        ("слово " * 200, None),
    ],
)
def test_the_question_is_cleaned_before_it_is_said(
    caller: Caller, port: FakeCallPort, raw: str, said: str | None
):
    number = port.add_request("incident", "awaiting_info", question=raw)
    caller.press("1")
    text = caller.press(number)
    if said:
        assert f"Инженер просит уточнить: {said}" in text
    question = caller.state.question or ""
    assert len(question) <= 400 and question.isprintable() and not question.endswith(" ")


def test_blank_question_is_the_generic_prompt(caller: Caller, port: FakeCallPort):
    number = port.add_request("incident", "awaiting_info", question=" \n ")
    caller.press("1")
    assert "Инженер ждёт от вас дополнительную информацию" in caller.press(number)
    assert caller.state.question is None


# --- a number said aloud -----------------------------------------------------------


def test_spoken_number_is_read_back_and_confirmed_by_key(caller: Caller, port: FakeCallPort):
    number = port.add_request("incident", "new")
    caller.press("1")
    text = caller.send(flow.SpokenNumber(" ".join(number)))
    spoken = ", ".join(prompt_text(f"digit_{d}") for d in number)
    assert f"Вы сказали: {spoken}. Верно? Если да, нажмите 1 или скажите «да»." in text
    assert caller.state.step == "confirm_number" and caller.actions[-1] == Gather(1, 6)
    assert port.lookups == 0
    text = caller.press("1")
    assert "Заявка номер" in text and port.lookups == 1
    assert caller.state.outcome == "status_heard"


def test_spoken_number_confirmed_by_voice(caller: Caller, port: FakeCallPort):
    number = port.add_request("problem", "in_progress")
    caller.press("1")
    caller.send(flow.SpokenNumber(number))
    assert "Заявка номер" in caller.send(flow.SpokenAnswer(yes=True))
    assert caller.kinds()[-3:] == ["spoken_answer", "number_confirmed", "lookup"]


def test_spoken_number_refused_asks_for_the_number_again(caller: Caller, port: FakeCallPort):
    caller.press("1")
    caller.send(flow.SpokenNumber("10008"))
    text = caller.send(flow.SpokenAnswer(yes=False))
    assert "Попробуйте ещё раз" in text and "Введите номер заявки" in text
    assert caller.state.step == "number" and caller.state.spoken is None
    assert port.lookups == 0
    caller.send(flow.SpokenNumber("10008"))
    assert "Введите номер" in caller.press("2")


def test_spoken_wrong_number_goes_through_the_same_checks(caller: Caller, port: FakeCallPort):
    caller.press("1")
    caller.send(flow.SpokenNumber("12345"))
    assert "с ошибкой" in caller.send(flow.SpokenAnswer(yes=True))
    assert caller.state.step == "number" and port.lookups == 0


@pytest.mark.parametrize(
    "event", [flow.SpokenNumber("10008"), flow.SpokenAnswer(yes=True), flow.SpokenNumber("")]
)
def test_speech_where_it_is_not_asked_counts_as_no_input(
    caller: Caller, port: FakeCallPort, event: flow.Event
):
    if isinstance(event, flow.SpokenNumber) and event.digits == "":
        caller.press("1")  # at the number question, but nothing recognised
    text = caller.send(event)
    assert "не услышали" in text
    assert port.lookups == 0 and caller.state.tries == 1


def test_the_caller_hears_that_the_number_went_by_sms():
    from ivr.fake import FakeCallPort
    from ivr.flow import CallStarted, CallState, DigitsEntered, Recording, RecordingFinished, Speak, handle
    from ivr.speech import Prompt

    for sms in (True, False):
        port = FakeCallPort(sms=sms)
        state = CallState()
        for event in (CallStarted("+79001234567"), DigitsEntered("2"), DigitsEntered("1")):
            state = handle(state, event, port).state
        step = handle(state, RecordingFinished(Recording("r1", 5.0)), port)
        said = [s for a in step.actions if isinstance(a, Speak) for s in a.segments]
        assert (Prompt("sms_sent") in said) is sms


# --- what a step looks up, known before it runs ----------------------------------------


class AskedPort(FakeCallPort):
    """Notes what the flow asks for the status lookup."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def recent_lookups(self) -> int:
        self.asked.append("recent_lookups")
        return super().recent_lookups()

    def find_request(self, number: str) -> flow.RequestInfo | None:
        self.asked.append(number)
        return super().find_request(number)


def test_looked_up_names_the_number_of_every_step_that_looks_one_up():
    # ivr.livecalls reads a step's lookups before the step on this answer: a step that
    # looks up what looked_up did not name would run twice there, one named that does not
    # look up would read for nothing.
    known = FakeCallPort().add_request("incident", "new")
    spoken = [None, known, "12345", ""]
    events: list[flow.Event] = [
        *(
            DigitsEntered(d)
            for d in ["1", " 1 ", "1#", "2", "*", "", "#", known, known + "#", f" {known}# ", "12345#"]
        ),
        DigitsEntered(known[:-1] + str((int(known[-1]) + 1) % 10) + "#"),  # a wrong check digit
        flow.SpokenAnswer(True),
        flow.SpokenAnswer(False),
        flow.SpokenNumber(known),
        NoInput(),
        Hangup(),
        flow.CallStarted("+79001234567"),
        RecordingFinished(None),
        DialFinished(DialResult.NO_ANSWER),
    ]
    looked = 0
    for step, said, event, limited in itertools.product(flow.StepName, spoken, events, (False, True)):
        state = CallState(step=step, spoken=said)
        port = AskedPort()
        port.requests[known] = flow.RequestInfo(known, "incident", "new", port.today_is)
        port.lookups = 20 if limited else 0  # at the limit: the request itself is not read
        flow.handle(state, event, port)
        number = flow.looked_up(state, event)
        expected = [] if number is None else ["recent_lookups"] if limited else ["recent_lookups", number]
        assert port.asked == expected, (step, said, event, limited)
        looked += number is not None
    assert looked > 10
