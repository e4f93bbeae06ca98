"""A call's timeline told in Russian: what the caller heard, did, and what the line did.

The call log stores events as codes (`CallEvent.kind`, the flow's step names, the
peer's words); the call's page shows sentences. Events of the line itself (AMI
channel states, CDRs, Twilio's status reports) are kept apart as «технические»: an
engineer opens them when a call went wrong, not to read the call.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from hotline.models import CallEvent
from hotline.vocabulary import BackendStatus, CallEventKind, RequestKind, label_of

E = CallEventKind

#: Where the caller was (the flow's step names, ivr.flow.StepName).
STEP_PLACES = {
    "menu": "в главном меню",
    "number": "при вводе номера заявки",
    "info_offer": "при предложении дополнить заявку",
    "info_record": "во время записи дополнения",
    "kind": "при выборе вида заявки",
    "new_record": "во время записи заявки",
    "dialing": "во время вызова дежурного инженера",
    "duty_offer": "при предложении оставить заявку",
    "new": "в самом начале",
    "done": "после прощания",
}
MENU_CHOICES = {
    "status": "узнать статус заявки",
    "new_request": "оставить новую заявку",
    "duty_engineer": "связаться с дежурным инженером",
}
DIAL_RESULTS = {
    "answered": "Дежурный инженер ответил, звонивший соединён с ним.",
    "no_answer": "Дежурный инженер не ответил.",
    "busy": "У дежурного инженера занято.",
    "failed": "Вызвать дежурного инженера не удалось.",
}
#: Events of the line rather than of the conversation.
TECHNICAL = frozenset(
    {
        E.STALE_WEBHOOK,
        E.CALL_STATUS,
        E.RECORDING_STATUS,
        E.AGI_START,
        E.DIAL_STATUS,
        E.AMI_NEWCHANNEL,
        E.AMI_STATE,
        E.AMI_DIAL_BEGIN,
        E.AMI_DIAL_END,
        E.AMI_HANGUP,
        E.AMI_CDR,
    }
)
#: Asterisk channel states (ChannelStateDesc) and hangup causes (Q.850) as people say them.
CHANNEL_STATES = {
    "Down": "канал свободен",
    "Rsrvd": "канал занят под вызов",
    "OffHook": "трубка снята",
    "Dialing": "набор номера",
    "Ring": "идёт вызов",
    "Ringing": "звонит",
    "Up": "разговор",
    "Busy": "занято",
}
HANGUP_CAUSES = {
    "16": "обычное завершение",
    "17": "абонент занят",
    "18": "абонент не отвечает",
    "19": "нет ответа",
    "21": "вызов отклонён",
    "27": "направление недоступно",
    "31": "обычное завершение",
    "34": "нет свободных каналов",
    "38": "сеть не работает",
}
_CYRILLIC = re.compile(r"[А-Яа-яЁё]")


@dataclass(frozen=True)
class Line:
    """One sentence of the story."""

    at: dt.datetime
    text: str
    role: str  # heard (the caller heard it), caller (they did it), line (the hotline did), problem
    number: str | None = None  # a request the sentence names (linked on the page)
    technical: bool = False

    @property
    def linked(self) -> tuple[str, str, str] | None:
        """(text before, request number, text after) when the sentence names a request."""
        if not self.number or self.number not in self.text:
            return None
        before, after = self.text.rsplit(self.number, 1)
        return before, self.number, after


def human(detail: str) -> str:
    """A peer's free text if it is meant for people (Russian), else nothing."""
    return detail if _CYRILLIC.search(detail or "") else ""


def hangup_cause(text: str | None) -> str:
    """'16 Normal Clearing' → 'обычное завершение'; Russian text as it is; else ''."""
    if not text:
        return ""
    code = text.split(" ", 1)[0]
    if code in HANGUP_CAUSES:
        return HANGUP_CAUSES[code]
    return human(text)


def backend_status(code: str | None) -> str:
    return label_of(BackendStatus, code, default="") if code else ""


def _keys(digits: str) -> str:
    if digits == "*":
        return "Нажал звёздочку."
    if digits == "#":
        return "Нажал решётку."
    if len(digits) == 1:
        return f"Нажал {digits}."
    return f"Набрал {digits}."


def _sentence(kind: str, detail: str, data: dict[str, Any]) -> tuple[str, str, str | None]:
    """(text, role, request number) of one event."""
    place = STEP_PLACES.get(str(data.get("step", "")), "")
    number = data.get("number") or None
    match kind:
        case E.CALL_STARTED:
            return "Звонок принят голосовым меню.", "line", None
        case E.SAID:
            return detail, "heard", None
        case E.DIGITS:
            return _keys(detail) if detail else "Нажал клавишу.", "caller", None
        case E.MENU:
            choice = MENU_CHOICES.get(detail) or human(detail) or "пункт меню"
            return f"Выбрал: {choice}.", "caller", None
        case E.KIND:
            return f"Выбрал вид заявки: {label_of(RequestKind, detail)}.", "caller", None
        case E.NO_INPUT:
            return f"Ничего не нажал {place}.".replace("  ", " ").replace(" .", "."), "caller", None
        case E.NUMBER_INVALID:
            return f"Номер {detail} введён с ошибкой (не сошлась контрольная цифра).", "caller", None
        case E.LOOKUP:
            if data.get("found") is False:
                return f"Заявки {detail} нет.", "line", None
            return f"Узнал статус заявки {detail}.", "line", number or detail or None
        case E.LOOKUP_LIMIT:
            return "С этого номера уже было слишком много запросов статуса за час.", "problem", None
        case E.TOO_MANY_TRIES:
            where = f" {place}" if place else ""
            return f"Слишком много неудачных попыток{where}: звонок завершён.", "problem", None
        case E.RECORDING_EMPTY:
            return "Запись пустая: звонивший ничего не сказал.", "problem", None
        case E.RECORDING_UNEXPECTED:
            return "Пришла запись, которую меню не ждало; она не сохранена как заявка.", "problem", None
        case E.REQUEST_CREATED:
            return f"Создана заявка {detail}.", "line", number or detail or None
        case E.INFORMATION_ADDED:
            return f"Запись добавлена к заявке {detail}.", "line", number or detail or None
        case E.DUTY_UNAVAILABLE:
            return "Связь с дежурным инженером не настроена.", "problem", None
        case E.DUTY_CLOSED:
            return "Дежурный инженер в это время не работает.", "line", None
        case E.TRANSFER:
            return f"Переводим на дежурного инженера ({detail}).", "line", None
        case E.DIAL_RESULT:
            result = str(data.get("result") or detail)
            return DIAL_RESULTS.get(result, "Вызов дежурного инженера закончился."), "line", None
        case E.HANGUP:
            where = f" {place}" if place and data.get("step") != "done" else ""
            return f"Звонивший положил трубку{where}.", "caller", None
        case E.CALLBACK:
            text = (
                "инженер ответил, набираем заказчика"
                if detail == "answered"
                else human(detail) or "не удался"
            )
            return f"Обратный звонок: {text}.", "line", None
        case E.CALL_STATUS:
            return f"Twilio: звонок {backend_status(detail) or 'изменил состояние'}.", "line", None
        case E.RECORDING_STATUS:
            return "Twilio сообщил о записи.", "line", None
        case E.RECORDING_REFUSED:
            return "Запись предложена с чужого адреса и не скачана.", "problem", None
        case E.RECORDING_DOWNLOAD_FAILED:
            return "Запись не удалось скачать у Twilio.", "problem", None
        case E.AGI_START:
            return "Asterisk передал звонок в голосовое меню.", "line", None
        case E.DIAL_STATUS:
            return f"Asterisk: итог вызова — {backend_status(detail.lower()) or 'неизвестен'}.", "line", None
        case E.AMI_NEWCHANNEL:
            return "Asterisk открыл канал звонка.", "line", None
        case E.AMI_STATE:
            return f"Канал: {CHANNEL_STATES.get(detail, 'новое состояние')}.", "line", None
        case E.AMI_DIAL_BEGIN:
            return "Asterisk набирает номер.", "line", None
        case E.AMI_DIAL_END:
            status = backend_status(detail.lower().replace("noanswer", "no_answer"))
            return f"Asterisk закончил набор: {status or 'без итога'}.", "line", None
        case E.AMI_HANGUP:
            cause = hangup_cause(detail)
            return f"Канал закрыт{': ' + cause if cause else ''}.", "line", None
        case E.AMI_CDR:
            status = backend_status(detail.lower().replace(" ", "_"))
            return f"Asterisk записал итог звонка: {status or 'без итога'}.", "line", None
    # Problems of the line and anything newer than this page: the vocabulary's label.
    label = label_of(CallEventKind, kind, default="событие линии")
    extra = human(detail)
    return f"{label[:1].upper()}{label[1:]}{': ' + extra if extra else ''}.", "problem", None


def story(events: list[CallEvent]) -> list[Line]:
    """The sentences of a call, in order."""
    lines = []
    for ev in events:
        text, role, number = _sentence(ev.kind, ev.detail or "", ev.data or {})
        lines.append(Line(ev.at, text, role, number, technical=ev.kind in TECHNICAL))
    return lines
