"""The Russian prompt catalogue: every phrase a caller can hear, by key.

Each key names one piece of speech. Twilio speaks the text (`<Say language="ru-RU">`)
or plays the audio; Asterisk plays the audio. The audio of a key is one 8 kHz mono
WAV at `voice_models/prompts/ru/<key>.wav` (`prompt_audio_path`), synthesised from
`prompt_text(key)`. Besides the fixed phrases there are keys for the dynamic parts
of speech (`ivr.speech` assembles them): `digit_0`…`digit_9` (a request number is
read digit by digit), `day_1`…`day_31` («двадцать четвёртое»), `month_1`…`month_12`
(«ноября»), `year_2020`…`year_2050` («две тысячи двадцать пятого года»),
`kind_<kind>` / `status_<status>` for every request kind and status (kinds in the
caller's words), and the working hours: `days_daily`, `days_weekdays`, `and`, `round_the_clock`,
`weekday_0`…`weekday_6` («по понедельникам»), `from_0`…`from_23` («с девяти»),
`to_0`…`to_23` («до восемнадцати»), `minute_0` («ноль»), `minute_1`…`minute_19` and
`minute_20`, `_30`, `_40`, `_50` («тридцати»; «сорока семи» is two of them).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from num2words import num2words

from hotline.models import RequestKind, RequestStatus
from hotline.registry import STATUS_LABELS
from hotline.vocabulary import MONTHS_GENITIVE

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts" / "ru"
FIRST_YEAR, LAST_YEAR = 2020, 2050

#: The fixed phrases of the call flow. «QR» is written as it is said («кью-ар»), so
#: that no synthesiser switches to English in the middle of a sentence.
PHRASES: dict[str, str] = {
    "greeting": "Здравствуйте! Вы позвонили в техническую поддержку производственной системы "
    "распознавания кью-ар-кодов.",
    "menu": "Чтобы узнать, что с вашей заявкой, нажмите 1. Чтобы оставить новую заявку, нажмите 2. "
    "Чтобы поговорить с дежурным инженером, нажмите 0. Чтобы прослушать меню ещё раз, нажмите звёздочку.",
    "menu_no_duty": "Чтобы узнать, что с вашей заявкой, нажмите 1. Чтобы оставить новую заявку, нажмите 2. "
    "Чтобы прослушать меню ещё раз, нажмите звёздочку.",
    "menu_invalid": "Такого пункта в меню нет.",
    "no_input": "Мы не услышали ваш выбор.",
    "number_no_input": "Мы не услышали номер заявки.",
    "goodbye": "Спасибо за звонок. До свидания!",
    "technical_error": "Извините, произошла техническая ошибка. Пожалуйста, позвоните позже.",
    "database_unavailable": "Извините, служба поддержки временно недоступна из-за технических работ. "
    "Пожалуйста, позвоните через несколько минут.",
    "enter_number": "Введите номер заявки и нажмите решётку. Чтобы вернуться в меню, нажмите звёздочку.",
    "number_invalid": "Номер заявки введён с ошибкой.",
    "number_unknown": "Заявка с таким номером не найдена.",
    "try_again": "Попробуйте ещё раз.",
    "too_many_attempts": "Слишком много неудачных попыток.",
    "lookup_limit": "За последний час было слишком много запросов статуса. Узнать статус можно будет позже.",
    "request_number": "Заявка номер",
    "kind_is": "Что случилось:",
    "status_is": "Статус:",
    "changed_on": "Последнее изменение:",
    "info_awaited": "Инженер ждёт от вас дополнительную информацию.",
    "clarification_asked": "Инженер просит уточнить:",
    "info_offer": "Чтобы записать ответ сейчас, нажмите 1. Чтобы вернуться в меню, нажмите звёздочку.",
    "record_info": "Говорите после сигнала. Чтобы закончить, нажмите решётку.",
    "info_saved": "Спасибо, ваш ответ добавлен к заявке.",
    "choose_kind": "Если авария, линия стоит, нажмите 1. Если что-то работает не так, нажмите 2. "
    "Если нужна помощь с настройкой или обновлением, нажмите 3. "
    "Чтобы вернуться в меню, нажмите звёздочку.",
    "record_request": "Расскажите, что случилось, на какой линии и как с вами связаться. "
    "Говорите после сигнала. Чтобы закончить запись, нажмите решётку.",
    "recording_empty": "Запись не получилась: мы ничего не услышали.",
    "request_created": "Ваша заявка принята. Её номер:",
    "repeat_number": "Повторяем номер заявки:",
    "transfer": "Соединяем с дежурным инженером. Пожалуйста, оставайтесь на линии.",
    "duty_closed": "Сейчас дежурный инженер не работает.",
    "duty_holiday": "Сегодня праздничный день, дежурный инженер не работает.",
    "duty_hours": "Дежурный инженер работает",
    "duty_no_answer": "Дежурный инженер сейчас не может ответить.",
    "duty_unavailable": "Связь с дежурным инженером сейчас недоступна.",
    "offer_request": "Чтобы оставить заявку, нажмите 2. Чтобы вернуться в меню, нажмите звёздочку.",
    "main_menu": "Главное меню.",
    # Speech on the line (issue 15)
    "sms_sent": "Мы отправили вам номер заявки в СМС, с подсказкой, как узнать её статус.",
    "you_said": "Вы сказали:",
    "confirm_number": "Верно? Если да, нажмите 1 или скажите «да». Если нет, нажмите 2 или скажите «нет».",
    "days_daily": "ежедневно",
    "days_weekdays": "по будням",
    "and": "и",  # «по субботам и по воскресеньям»
    "round_the_clock": "круглосуточно",
    # Asterisk: the call goes back to the dialplan, whose fallback takes a voice message.
    "service_restart": "Извините, линия поддержки перезапускается.",
    "recording_unavailable": "Извините, сейчас мы не можем записать ваше сообщение.",
    "voicemail_fallback": "Служба поддержки сейчас не может принять ваш звонок. Оставьте, пожалуйста, "
    "сообщение после сигнала: расскажите, что случилось, на какой линии и как с вами связаться. "
    "Инженер прослушает сообщение и перезвонит вам.",
}

#: What a caller hears of each status: the engineers' words, but said to the customer.
CALLER_STATUS_LABELS: dict[RequestStatus, str] = {
    **STATUS_LABELS,
    RequestStatus.AWAITING_INFO: "ожидает информации от вас",
}

#: What a caller hears for each kind: plain words, not the help desk's own terms.
CALLER_KIND_LABELS: dict[RequestKind, str] = {
    RequestKind.INCIDENT: "авария, линия стоит",
    RequestKind.PROBLEM: "что-то работает не так",
    RequestKind.SERVICE: "нужна помощь с настройкой или обновлением",
}

_WEEKDAYS = (
    "по понедельникам",
    "по вторникам",
    "по средам",
    "по четвергам",
    "по пятницам",
    "по субботам",
    "по воскресеньям",
)

_DIGITS = ("ноль", "один", "два", "три", "четыре", "пять", "шесть", "семь", "восемь", "девять")


@cache
def catalogue() -> dict[str, str]:
    """Every prompt key with its Russian text."""
    texts = dict(PHRASES)
    texts.update({f"digit_{d}": word for d, word in enumerate(_DIGITS)})
    texts.update({f"day_{d}": num2words(d, lang="ru", to="ordinal", gender="n") for d in range(1, 32)})
    texts.update({f"month_{m}": name for m, name in enumerate(MONTHS_GENITIVE, start=1)})
    texts.update(
        {
            f"year_{y}": num2words(y, lang="ru", to="ordinal", case="genitive") + " года"
            for y in range(FIRST_YEAR, LAST_YEAR + 1)
        }
    )
    texts.update({f"weekday_{d}": name for d, name in enumerate(_WEEKDAYS)})
    texts.update({f"from_{h}": "с " + (_genitive(h) if h else "полуночи") for h in range(24)})
    texts.update({f"to_{h}": "до " + (_genitive(h) if h else "полуночи") for h in range(24)})
    texts["minute_0"] = "ноль"  # «с девяти ноль пяти»
    texts.update({f"minute_{m}": _genitive(m, "f") for m in [*range(1, 20), 20, 30, 40, 50]})
    texts.update({f"kind_{k.value}": CALLER_KIND_LABELS[k] for k in RequestKind})
    texts.update({f"status_{s.value}": CALLER_STATUS_LABELS[s] for s in RequestStatus})
    return texts


def _genitive(n: int, gender: str = "m") -> str:
    """«девяти», «двадцати одного»: a number after «с» or «до»."""
    return str(num2words(n, lang="ru", case="genitive", gender=gender))


def all_prompt_keys() -> list[str]:
    """Every key of the catalogue, in a stable order."""
    return list(catalogue())


def prompt_text(key: str) -> str:
    """The Russian text of a prompt key; KeyError for an unknown key."""
    return catalogue()[key]


def prompt_audio_path(key: str) -> Path:
    """Where the audio of a prompt key lives (it may not have been generated yet)."""
    prompt_text(key)  # unknown keys are a bug, not a missing file
    return PROMPTS_DIR / f"{key}.wav"
