"""How things read on the dashboard: Russian labels, local times, durations."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from flask import Flask, request

from hotline.models import TranscriptionState, utcnow
from hotline.phones import display_phone, tel_uri
from hotline.users import ROLE_LABELS
from hotline.vocabulary import (
    Backend,
    BackendStatus,
    CallEventKind,
    Channel,
    HistoryAction,
    NotificationKind,
    NotificationState,
    NotifyChannel,
    Outcome,
    RequestKind,
    RequestStatus,
    label_of,
    plural,
)
from web.db import settings

# Every label comes from hotline.vocabulary; these are the template-facing dicts.
OUTCOME_LABELS = Outcome.choices()
BACKEND_LABELS = Backend.choices()
ACTION_LABELS = HistoryAction.choices()
TRANSCRIPTION_LABELS = {
    TranscriptionState.PENDING: "ждёт расшифровки",
    TranscriptionState.RUNNING: "расшифровывается",
    TranscriptionState.DONE: "расшифрована",
    TranscriptionState.FAILED: "расшифровка не удалась",
}
ACTOR_KINDS = {"engineer": "инженер", "caller": "звонивший", "email": "e-mail"}
ACTOR_NAMES = {"system": "система", "cli": "командная строка"}
# Words a recogniser was less sure of than this are marked for the engineer.
LOW_CONFIDENCE = 0.6


def local(moment: dt.datetime | None, fmt: str = "%d.%m.%Y %H:%M") -> str:
    """A UTC moment as the plant's local time."""
    if moment is None:
        return "—"
    return moment.astimezone(settings().business_hours.timezone).strftime(fmt)


def duration(seconds: float | dt.timedelta | None) -> str:
    """3:07, 1:02:03, or 2 д 4 ч for long waits."""
    if seconds is None:
        return "—"
    total = int(seconds.total_seconds() if isinstance(seconds, dt.timedelta) else seconds)
    if total >= 86400:
        return f"{total // 86400} д {total % 86400 // 3600} ч"
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def wait(span: dt.timedelta | None) -> str:
    """A waiting time as people say it: 40 с, 12 мин, 3 ч 5 мин, 2 д 4 ч."""
    if span is None:
        return "—"
    total = int(span.total_seconds())
    if total < 60:
        return f"{total} с"
    if total < 3600:
        return f"{total // 60} мин"
    if total < 86400:
        hours, minutes = total // 3600, total % 3600 // 60
        return f"{hours} ч {minutes} мин" if minutes else f"{hours} ч"
    days, hours = total // 86400, total % 86400 // 3600
    return f"{days} д {hours} ч" if hours else f"{days} д"


def actor(text: str) -> str:
    """'engineer:ivanov' → 'инженер ivanov', 'caller:+73435674530' → 'звонивший 8 (343) 567-45-30'."""
    if text in ACTOR_NAMES:
        return ACTOR_NAMES[text]
    kind, _, who = text.partition(":")
    if kind == "caller":
        who = display_phone(who)
    return f"{ACTOR_KINDS.get(kind, kind)} {who}".strip()


def size(n: int) -> str:
    for unit in ("байт", "КБ", "МБ"):
        if n < 1024 or unit == "МБ":
            return f"{n:.0f} {unit}" if unit == "байт" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def plural_filter(n: int, one: str, few: str, many: str) -> str:
    """`{{ n|plural('заявка', 'заявки', 'заявок') }}` → «21 заявка»."""
    return f"{n} {plural(n, one, few, many)}"


def agree(n: int, one: str, few: str, many: str) -> str:
    """`{{ n|agree('ждёт', 'ждут', 'ждут') }}`: the form alone, for the word after the count."""
    return plural(n, one, few, many)


def with_args(**changes: Any) -> str:
    """The current URL's query string with some arguments changed (None removes one)."""
    args = {k: v for k, v in request.args.items() if k not in changes}
    args.update({k: v for k, v in changes.items() if v not in (None, "")})
    return "?" + urlencode(args) if args else "?"


def init_app(app: Flask) -> None:
    app.context_processor(lambda: {"now": utcnow()})
    app.jinja_env.filters.update(
        local=local,
        duration=duration,
        wait=wait,
        actor=actor,
        size=size,
        plural=plural_filter,
        agree=agree,
        phone=display_phone,  # `8 (343) 567-45-30`; _macros.html's `phone` links it for dialling
        tel=tel_uri,
    )
    app.jinja_env.globals.update(
        with_args=with_args,
        STATUS_LABELS=RequestStatus.choices(),
        KIND_LABELS=RequestKind.choices(),
        CHANNEL_LABELS=Channel.choices(),
        OUTCOME_LABELS=OUTCOME_LABELS,
        BACKEND_LABELS=BACKEND_LABELS,
        ACTION_LABELS=ACTION_LABELS,
        TRANSCRIPTION_LABELS={s.value: label for s, label in TRANSCRIPTION_LABELS.items()},
        ROLE_LABELS={r.value: label for r, label in ROLE_LABELS.items()},
        LOW_CONFIDENCE=LOW_CONFIDENCE,
        RequestStatus=RequestStatus,
        RequestKind=RequestKind,
        Channel=Channel,
        Outcome=Outcome,
        Backend=Backend,
        BackendStatus=BackendStatus,
        CallEventKind=CallEventKind,
        NotificationKind=NotificationKind,
        NotificationState=NotificationState,
        NotifyChannel=NotifyChannel,
        HistoryAction=HistoryAction,
        label_of=label_of,
    )
