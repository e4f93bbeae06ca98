"""The Russian prompt catalogue: every phrase a caller can hear, by key.

Each key names one piece of speech. Twilio speaks the text (`<Say language="ru-RU">`)
or plays the audio; Asterisk plays the audio. The audio of a key is one 8 kHz mono
WAV at `voice_models/prompts/ru/<key>.wav` (`prompt_audio_path`), synthesised from
`prompt_text(key)`. Besides the fixed phrases there are keys for the dynamic parts
of speech (`ivr.speech` assembles them): `digit_0`…`digit_9` (a request number is
read digit by digit), `day_1`…`day_31` («двадцать четвёртое»), `month_1`…`month_12`
(«ноября»), `year_2020`…`year_2050` («две тысячи двадцать пятого года»), and
`kind_<kind>` / `status_<status>` for every request kind and status.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from num2words import num2words

from hotline.models import RequestKind, RequestStatus
from hotline.registry import KIND_LABELS, STATUS_LABELS

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts" / "ru"
FIRST_YEAR, LAST_YEAR = 2020, 2050

#: The fixed phrases of the call flow.
PHRASES: dict[str, str] = {
    "greeting": "Здравствуйте! Вы позвонили в техническую поддержку производственной системы "
    "распознавания QR-кодов.",
    "menu": "Чтобы узнать статус заявки, нажмите 1. Чтобы оставить новую заявку, нажмите 2. "
    "Чтобы связаться с дежурным инженером, нажмите 0. Чтобы прослушать меню ещё раз, нажмите звёздочку.",
    "menu_invalid": "Такого пункта в меню нет.",
    "no_input": "Мы не услышали ваш выбор.",
    "goodbye": "Спасибо за звонок. До свидания!",
    "technical_error": "Извините, произошла техническая ошибка. Пожалуйста, позвоните позже.",
    "database_unavailable": "Извините, служба поддержки временно недоступна из-за технических работ. "
    "Пожалуйста, позвоните через несколько минут.",
    "enter_number": "Введите номер заявки и нажмите решётку. Чтобы вернуться в меню, нажмите звёздочку.",
    "number_invalid": "Номер заявки введён с ошибкой.",
    "number_unknown": "Заявка с таким номером не найдена.",
    "try_again": "Попробуйте ещё раз.",
    "too_many_attempts": "Слишком много неудачных попыток.",
    "lookup_limit": "С вашего номера уже было много запросов статуса. Пожалуйста, позвоните позже.",
    "request_number": "Заявка номер",
    "kind_is": "Вид заявки:",
    "status_is": "Статус:",
    "changed_on": "Последнее изменение:",
    "info_offer": "Инженер ждёт от вас дополнительную информацию. Чтобы записать её сейчас, "
    "нажмите 1. Чтобы вернуться в меню, нажмите звёздочку.",
    "record_info": "Расскажите недостающую информацию после сигнала. Чтобы закончить, нажмите решётку.",
    "info_saved": "Спасибо, информация добавлена к заявке.",
    "choose_kind": "Выберите вид заявки. Инцидент: нажмите 1. Проблема: нажмите 2. "
    "Запрос на обслуживание: нажмите 3.",
    "record_request": "Опишите вашу проблему после сигнала. Назовите организацию и как с вами "
    "связаться. Чтобы закончить запись, нажмите решётку.",
    "recording_empty": "Запись не получилась: мы ничего не услышали.",
    "request_created": "Ваша заявка принята. Её номер:",
    "repeat_number": "Повторяем номер заявки:",
    "transfer": "Соединяем с дежурным инженером. Пожалуйста, оставайтесь на линии.",
    "duty_closed": "Сейчас дежурный инженер не работает.",
    "duty_no_answer": "Дежурный инженер сейчас не может ответить.",
    "duty_unavailable": "Связь с дежурным инженером сейчас недоступна.",
    "offer_request": "Чтобы оставить заявку, нажмите 1. Чтобы вернуться в меню, нажмите звёздочку.",
    "main_menu": "Главное меню.",
    # Speech on the line (issue 15)
    "sms_sent": "Мы отправили вам номер заявки в СМС, с подсказкой, как узнать её статус.",
}

_DIGITS = ("ноль", "один", "два", "три", "четыре", "пять", "шесть", "семь", "восемь", "девять")
_MONTHS = (
    "января",
    "февраля",
    "марта",
    "апреля",
    "мая",
    "июня",
    "июля",
    "августа",
    "сентября",
    "октября",
    "ноября",
    "декабря",
)


@cache
def catalogue() -> dict[str, str]:
    """Every prompt key with its Russian text."""
    texts = dict(PHRASES)
    texts.update({f"digit_{d}": word for d, word in enumerate(_DIGITS)})
    texts.update({f"day_{d}": num2words(d, lang="ru", to="ordinal", gender="n") for d in range(1, 32)})
    texts.update({f"month_{m}": name for m, name in enumerate(_MONTHS, start=1)})
    texts.update(
        {
            f"year_{y}": num2words(y, lang="ru", to="ordinal", case="genitive") + " года"
            for y in range(FIRST_YEAR, LAST_YEAR + 1)
        }
    )
    texts.update({f"kind_{k.value}": KIND_LABELS[k] for k in RequestKind})
    texts.update({f"status_{s.value}": STATUS_LABELS[s] for s in RequestStatus})
    return texts


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
