"""One vocabulary: every closed set of values the hotline stores, with its Russian label.

Call outcomes, call events, request history actions, request channels, kinds and
statuses, telephony backends, notifications. Each is a `StrEnum` whose values are the
strings stored in the database (they never change: old rows keep their meaning); each
member carries the Russian label the dashboard and the command line show
(`Outcome.TRANSFERRED.label`). `label_of(Enum, code)` names a stored string, also one
this version does not know (it is shown as it is, rather than failing a page).

A new value is one line here; `tests/hotline/test_vocabulary.py` checks every value
has a label.
"""

from __future__ import annotations

import enum
from typing import Any, Self, TypeVar

__all__ = [
    "Backend",
    "BackendStatus",
    "CallEventKind",
    "Channel",
    "HistoryAction",
    "MONTHS_GENITIVE",
    "NotificationKind",
    "NotificationState",
    "NotifyChannel",
    "Outcome",
    "RequestKind",
    "RequestStatus",
    "file_size",
    "label_of",
    "labels",
    "plural",
]


class Labelled(enum.StrEnum):
    """A StrEnum whose members are declared as `NAME = "value", "русская подпись"`."""

    _label: str

    def __new__(cls, value: str, label: str = "") -> Self:
        member = str.__new__(cls, value)
        member._value_ = value
        member._label = label
        return member

    @property
    def label(self) -> str:
        """The Russian name of the value, as the dashboard shows it."""
        return self._label

    @classmethod
    def choices(cls) -> dict[str, str]:
        """value → label, in declaration order (for filters and select boxes)."""
        return {m.value: m.label for m in cls}


E = TypeVar("E", bound=Labelled)


def label_of(enum_type: type[Labelled], code: Any, default: str | None = None) -> str:
    """The label of a stored value; an unknown value is shown as it is (or `default`)."""
    if code is None or code == "":
        return default or "—"
    try:
        return enum_type(str(code)).label
    except ValueError:
        return default if default is not None else str(code)


def labels(enum_type: type[E]) -> dict[E, str]:
    """member → label (the shape `hotline.registry.STATUS_LABELS` and the like have)."""
    return {m: m.label for m in enum_type}


# --- requests ----------------------------------------------------------------------


class RequestKind(Labelled):
    INCIDENT = "incident", "инцидент"
    PROBLEM = "problem", "проблема"
    SERVICE = "service_request", "запрос на обслуживание"


class RequestStatus(Labelled):
    NEW = "new", "новая"
    IN_PROGRESS = "in_progress", "в работе"
    AWAITING_INFO = "awaiting_info", "ожидает информации от заказчика"
    PROCESSED = "processed", "обработана"


class Channel(Labelled):
    """How a request reached the support."""

    PHONE = "phone", "телефон"
    EMAIL = "email", "e-mail"
    WEB = "web", "вручную"


class HistoryAction(Labelled):
    """`RequestEvent.action`: one line of a request's history."""

    CREATED = "created", "создана"
    STATUS = "status", "смена статуса"
    NOTE = "note", "заметка"
    CLARIFICATION_REQUESTED = "clarification_requested", "запрошено уточнение"
    INFORMATION_ADDED = "information_added", "получена информация"
    INFORMATION_UNVERIFIED = "information_unverified", "информация с чужого номера (проверить)"
    ATTACHMENT = "attachment", "вложение"
    TRANSCRIPT = "transcript", "расшифровка"
    TRANSCRIPT_CORRECTED = "transcript_corrected", "исправлена расшифровка"
    ASSIGNED = "assigned", "назначение"
    KIND = "kind", "вид заявки"
    EMAIL_IN = "email_in", "входящее письмо"
    EMAIL_OUT = "email_out", "исходящее письмо"
    SMS_OUT = "sms_out", "исходящее SMS"
    NOTIFICATION_FAILED = "notification_failed", "уведомление не доставлено"
    CALL = "call", "звонок"
    CALLBACK = "callback", "обратный звонок"
    REPLY = "reply", "ответ заказчику"
    MENTIONED = "mentioned", "упоминание в другой заявке"


# --- notifications to the customer -------------------------------------------------


class NotificationKind(Labelled):
    """`Notification.kind`: what the customer is told."""

    CREATED = "created", "автоответ с номером заявки"
    CLARIFICATION = "clarification", "вопрос инженера"
    PROCESSED = "processed", "заявка обработана"
    REPLY = "reply", "ответ инженера"


class NotifyChannel(Labelled):
    """`Notification.channel`: how the customer is reached."""

    EMAIL = "email", "по e-mail"
    SMS = "sms", "по SMS"
    NONE = "none", "не отправляется"


class NotificationState(Labelled):
    """`Notification.state`: pending → sending → sent; failed; skipped."""

    PENDING = "pending", "ждёт отправки"
    SENDING = "sending", "отправляется"
    SENT = "sent", "отправлено"
    FAILED = "failed", "не доставлено"
    SKIPPED = "skipped", "не отправлено"


# --- calls -------------------------------------------------------------------------


class Backend(Labelled):
    """`Call.backend`: what carried the call."""

    TWILIO = "twilio", "Twilio"
    ASTERISK = "asterisk", "Asterisk"
    CONSOLE = "console", "проверка из терминала"


class Outcome(Labelled):
    """`Call.outcome`: what the call achieved (the flow keeps the weightiest, ivr.flow)."""

    STATUS_HEARD = "status_heard", "узнал статус заявки"
    REQUEST_CREATED = "request_created", "оставил заявку"
    INFO_ADDED = "info_added", "дополнил заявку"
    TRANSFERRED = "transferred", "соединён с инженером"
    ABANDONED = "abandoned", "положил трубку"
    NO_INPUT = "no_input", "ничего не выбрал"
    TOO_MANY_ATTEMPTS = "too_many_attempts", "много неудачных попыток"
    LOOKUP_LIMIT = "lookup_limit", "превышен лимит запросов статуса"
    DUTY_UNAVAILABLE = "duty_unavailable", "дежурный инженер недоступен"
    CALLBACK = "callback", "обратный звонок"
    CALLBACK_FAILED = "callback_failed", "обратный звонок не удался"
    SERVICE_RESTART = "service_restart", "прерван перезапуском линии"
    SESSION_REFUSED = "session_refused", "линия перегружена, звонок передан на автоответчик"
    UNREPORTED_END = "unreported_end", "конец звонка не сообщён"
    FAILED = "failed", "технический сбой"


class CallEventKind(Labelled):
    """`CallEvent.kind`: one step of a call's timeline."""

    # the call flow (ivr.flow)
    CALL_STARTED = "call_started", "звонок принят"
    SAID = "said", "звонивший услышал"
    DIGITS = "digits", "нажаты клавиши"
    MENU = "menu", "выбор в меню"
    KIND = "kind", "выбран вид заявки"
    NO_INPUT = "no_input", "нет ответа"
    NUMBER_INVALID = "number_invalid", "номер с ошибкой"
    LOOKUP = "lookup", "запрос статуса"
    LOOKUP_LIMIT = "lookup_limit", "лимит запросов статуса"
    TOO_MANY_TRIES = "too_many_tries", "много неудачных попыток"
    RECORDING_EMPTY = "recording_empty", "пустая запись"
    RECORDING_UNEXPECTED = "recording_unexpected", "неожиданная запись"
    REQUEST_CREATED = "request_created", "создана заявка"
    INFORMATION_ADDED = "information_added", "дополнена заявка"
    DUTY_UNAVAILABLE = "duty_unavailable", "дежурный не настроен"
    DUTY_CLOSED = "duty_closed", "нерабочее время дежурного"
    TRANSFER = "transfer", "перевод на дежурного"
    DIAL_RESULT = "dial_result", "итог вызова дежурного"
    HANGUP = "hangup", "конец звонка"
    SPOKEN_NUMBER = "spoken_number", "номер назван голосом"
    SPOKEN_ANSWER = "spoken_answer", "ответ голосом"
    NUMBER_CONFIRMED = "number_confirmed", "номер подтверждён"
    NUMBER_REFUSED = "number_refused", "номер не подтверждён"
    # the adapters (ivr.store, ivr.twilio, ivr.asterisk)
    STALE_WEBHOOK = "stale_webhook", "повторный запрос Twilio"
    CALL_STATUS = "call_status", "статус звонка от Twilio"
    SPOKEN_NUMBER_INVALID = "spoken_number_invalid", "названный голосом номер не прошёл проверку"
    SPEECH_NOT_PASSED = "speech_not_passed", "сказанное голосом не передано в звонок"
    RECORDING_STATUS = "recording_status", "статус записи от Twilio"
    RECORDING_REFUSED = "recording_refused", "запись с чужого адреса отклонена"
    RECORDING_DOWNLOAD_FAILED = "recording_download_failed", "запись не скачалась"
    AGI_START = "agi_start", "звонок в голосовом меню Asterisk"
    RECORD_ERROR = "record_error", "Asterisk не записал файл"
    RECORDING_MISSING = "recording_missing", "файл записи не найден"
    RECORDING_UNWRITABLE = "recording_unwritable", "запись некуда сохранить"
    DIAL_STATUS = "dial_status", "итог вызова в Asterisk"
    PROMPT_MISSING = "prompt_missing", "нет звукового файла подсказки"
    SESSION_REFUSED = "session_refused", "голосовое меню отказало в звонке"
    ANSWER_TIMEOUT = "answer_timeout", "канал не ответил вовремя"
    AMI_NEWCHANNEL = "ami_newchannel", "новый канал Asterisk"
    AMI_STATE = "ami_state", "состояние канала"
    AMI_DIAL_BEGIN = "ami_dial_begin", "Asterisk набирает номер"
    AMI_DIAL_END = "ami_dial_end", "Asterisk закончил набор"
    AMI_HANGUP = "ami_hangup", "канал Asterisk закрыт"
    AMI_CDR = "ami_cdr", "запись CDR Asterisk"
    CALLER_ID_CLEANED = "caller_id_cleaned", "номер звонящего очищен"
    CLOSED_UNREPORTED = "closed_unreported", "звонок закрыт автоматически"
    RECORDING_LOST = "recording_lost", "запись не удалось получить"
    RECORDING_SILENT = "recording_silent", "в записи тишина"
    SERVICE_RESTART = "service_restart", "линия перезапускалась"
    CALLBACK_ORIGINATE = "callback_originate", "Asterisk набирает инженера для обратного звонка"
    CALLBACK = "callback", "обратный звонок"


class BackendStatus(Labelled):
    """`Call.backend_status`: the peer's last word on the call (Twilio CallStatus, CDR)."""

    COMPLETED = "completed", "завершён"
    ANSWERED = "answered", "отвечен"
    BUSY = "busy", "занято"
    NO_ANSWER = "no-answer", "нет ответа"
    NO_ANSWER_CDR = "no_answer", "нет ответа"
    FAILED = "failed", "сбой"
    CANCELED = "canceled", "отменён"
    CONGESTION = "congestion", "перегрузка сети"


# --- Russian numbers and dates -----------------------------------------------------

#: «7 декабря»: the months after a day (the spoken date's audio keys, the dashboard).
MONTHS_GENITIVE = (
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


def plural(n: int, one: str, few: str, many: str) -> str:
    """The form that agrees with `n` (CLDR's rule for Russian): 1 заявка, 2 заявки, 5 заявок.

    Takes the three forms of a whole phrase, so that adjective, noun and verb agree
    together («21 голосовая заявка ждёт», «2 голосовые заявки ждут»).
    """
    n = abs(int(n))
    if n % 10 == 1 and n % 100 != 11:
        return one
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return few
    return many


def file_size(n: int) -> str:
    """1840 → «1,8 КБ»: a decimal comma, as Russian writes numbers."""
    if n < 1024:
        return f"{n} {plural(n, 'байт', 'байта', 'байт')}"
    value, unit = n / 1024, "КБ"
    for bigger in ("МБ", "ГБ"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}".replace(".", ",")
