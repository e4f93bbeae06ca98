"""Call a customer back: Asterisk rings the engineer's phone, then dials the customer.

A call-back is a queued job (docs/ami.md). The dashboard's «Перезвонить заказчику» and
`hotline callback` check what can be checked at once and queue it (`queue_call_back`);
the AMI service of `hotline serve`, which holds the process's one AMI connection, runs
the queue (`CallBackRunner`), so no call-back logs in to Asterisk on its own.

The job sends an AMI `Originate` (Async: Asterisk answers `Success` at once) and waits
for the `OriginateResponse` that says whether the engineer answered (`Reason` 4); the
dialplan context HOTLINE_AMI_CALLBACK_CONTEXT then dials the customer's number as
`${EXTEN}`. The call-log row starts when the Originate is sent, so a failed call-back
shows how long the engineer's phone rang; the AMI call log adds the channel's events
to it. Every call-back ends with one line in the request's history (answered, failed,
or not placed at all), written by whoever ran it.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

from huey import Huey
from huey.consumer import Consumer
from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline import calllog, registry
from hotline.db import Database
from hotline.errors import HotlineError, UserError
from hotline.jobs import huey_for, start_consumer
from hotline.models import Call, CallEvent, RequestEvent, utcnow
from hotline.phones import dial_number
from hotline.settings import Settings
from hotline.vocabulary import CallEventKind, HistoryAction
from ivr.asterisk.ami import AmiConnection, AmiError, AmiRefused
from ivr.asterisk.amievents import OriginateReason, OriginateResponse
from ivr.asterisk.amilog import BACKEND, CALLBACK_PREFIX

log = logging.getLogger("hotline.callback")
_EXTENSION = re.compile(r"^[A-Za-z][A-Za-z0-9]*/[A-Za-z0-9_.@+\-]+$")

#: A call-back not started this long after it was asked for is not placed at all: an
#: engineer's phone ringing minutes after the button was pressed would surprise them.
EXPIRES = 60.0
#: Beyond the dial timeout, how long to wait for Asterisk's OriginateResponse.
ANSWER_MARGIN = 15.0
#: How long a job waits for the AMI connection (Asterisk restarting) before giving up.
CONNECT_WAIT = 15.0
WORKERS = 4  # call-backs ringing at the same time

# Call events and history action of a call-back (the call's `outcome` is `callback`
# when the engineer answered, `callback_failed` otherwise).
EVENT_ORIGINATE = CallEventKind.CALLBACK_ORIGINATE  # the Originate was sent (detail: the extension)
EVENT_RESULT = CallEventKind.CALLBACK  # Asterisk's answer (detail: `answered` or why not)
HISTORY_ACTION = HistoryAction.CALLBACK
OUTCOME_ANSWERED, OUTCOME_FAILED = "callback", "callback_failed"


def customer_dial_number(phone: str) -> str:
    """The customer's number as [hotline-callback] dials it (`_X.` or `_+X.`), or UserError."""
    dial = dial_number(phone)
    if dial is None:
        raise UserError(f"у заявки неподходящий номер телефона для обратного звонка: {phone!r}")
    return dial


def check_call_back(session: Session, request_number: str, extension: str) -> tuple[str, str]:
    """The request's number and the customer's dial number, or a UserError saying why not."""
    if not _EXTENSION.match(extension):
        raise UserError(f"добавочный инженера должен выглядеть как PJSIP/101, а не {extension[:40]!r}")
    request = registry.get_request(session, request_number)
    if not request.contact_phone:
        raise UserError(f"у заявки {request.number} нет телефона для обратного звонка")
    return request.number, customer_dial_number(request.contact_phone)


@dataclass(frozen=True)
class CallBackJob:
    """One queued call-back: plain values, as the queue carries them."""

    callback_id: str  # the Originate's ChannelId and the call-log row's backend id
    request_number: str
    extension: str
    actor: str
    queued_at: float  # time.time() when it was asked for


def queue_call_back(
    settings: Settings, session: Session, request_number: str, extension: str, *, actor: str
) -> CallBackJob:
    """Check what can be checked now, then queue the call-back; UserError says why not."""
    if not settings.ami_url:
        raise UserError("обратный звонок через Asterisk невозможен: не задан HOTLINE_AMI_URL")
    number, _ = check_call_back(session, request_number, extension)
    job = CallBackJob(f"{CALLBACK_PREFIX}{uuid.uuid4().hex[:16]}", number, extension, actor, time.time())
    callback_queue(settings).task(
        job.callback_id, job.request_number, job.extension, job.actor, job.queued_at
    )
    return job


@dataclass
class CallBackQueue:
    """The call-back queue of one configuration, and who runs it in this process."""

    huey: Huey
    task: Any  # huey TaskWrapper: task(callback_id, request_number, extension, actor, queued_at)
    # Set by the AMI service that consumes the queue here: the job needs its connection.
    runner: CallBackRunner | None = None


@cache
def callback_queue(settings: Settings) -> CallBackQueue:
    """The call-back queue of these settings, made once per process."""
    huey = huey_for(settings, f"{settings.queue_name}-callbacks")
    made: list[CallBackQueue] = []

    # No retries: a call-back tried again rings the engineer again.
    @huey.task(name="place_call_back", retries=0)
    def place_call_back(
        callback_id: str, request_number: str, extension: str, actor: str, queued_at: float
    ) -> None:
        runner = made[0].runner
        if runner is None:  # only the AMI service consumes this queue
            log.error("call-back %s taken by a process with no AMI connection", callback_id)
            return
        runner.place(CallBackJob(callback_id, request_number, extension, actor, queued_at))

    made.append(CallBackQueue(huey, place_call_back))
    return made[0]


#: manager.c's action_originate refusals, as the engineer reads them (the history is
#: Russian and names no setting: the log line names it for the operator).
REFUSALS = {
    "Invalid channel": "добавочный инженера записан не как линия Asterisk (например, PJSIP/101)",
    "Extension does not exist.": "на АТС нет маршрута для обратных звонков на номер заказчика",
    "Originate Access Forbidden: app or data blacklisted": "АТС запретила такой вызов",
    "Originate failed": "АТС не смогла начать вызов",
}


def _refused(exc: AmiError) -> str:
    """Why Asterisk would not place the call, in words for the request's history."""
    if not isinstance(exc, AmiRefused):
        return str(exc)  # no connection, no answer: already said in Russian
    log.error("call-back refused by Asterisk: %s (check HOTLINE_AMI_CALLBACK_CONTEXT)", exc.refusal)
    return REFUSALS.get(exc.refusal, "АТС отказалась начать вызов") + "; сообщите администратору"


def _failure(event: OriginateResponse | None) -> str | None:
    """Why the engineer's leg did not answer, None if it did."""
    if event is None:
        return "Asterisk не сообщил результат вызова"
    if event.success or event.reason is OriginateReason.ANSWERED:
        return None
    if event.reason is not None:
        return event.reason.label
    return f"вызов не удался (код причины {event.reason_code})"


class CallBackRunner:
    """Runs queued call-backs over the one AMI connection of this process."""

    name = "call-backs"

    def __init__(self, settings: Settings, db: Database, ami: AmiConnection, workers: int = WORKERS):
        self.settings, self.db, self.ami, self.workers = settings, db, ami, workers
        self._consumer: Consumer | None = None

    def start(self) -> None:
        queue = callback_queue(self.settings)
        queue.runner = self
        self._consumer = start_consumer(queue.huey, self.workers)

    def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.shutdown_timeout = 5  # a ringing call-back may finish; the rest
            self._consumer.stop(graceful=True)  # learn that the connection is gone
        queue = callback_queue(self.settings)
        if queue.runner is self:
            queue.runner = None

    def place(self, job: CallBackJob) -> None:
        """The job: ring the engineer, then the customer; safe to run twice."""
        with self.db.session() as session:
            if calllog.find_call(session, BACKEND, job.callback_id) is not None:
                log.info("call-back %s was placed already", job.callback_id)
                return
        try:
            if time.time() - job.queued_at > EXPIRES:
                raise UserError(f"он ждал в очереди дольше {EXPIRES:.0f} с: сервис AMI не работал")
            with self.db.session() as session:
                number, customer = check_call_back(session, job.request_number, job.extension)
            self.ami.wait_connected(CONNECT_WAIT)
        except HotlineError as exc:
            self._not_placed(job, str(exc))
            return
        action_id = f"hotline-originate-{uuid.uuid4().hex}"
        answer = self.ami.expect_originate(action_id)
        self._start_row(job, number, customer)
        try:
            self.ami.action(
                "Originate",
                {
                    "ActionID": action_id,
                    "Channel": job.extension,
                    "Context": self.settings.ami_callback_context,
                    "Exten": customer,
                    "Priority": "1",
                    "CallerID": f"Заявка {number} <{self.settings.support_number}>",
                    "Timeout": str(self.settings.dial_timeout * 1000),
                    "ChannelId": job.callback_id,
                    "Async": "true",
                },
                {"HOTLINE_REQUEST": number},
            )
            failure = _failure(answer(self.settings.dial_timeout + ANSWER_MARGIN))
        except AmiError as exc:
            answer(0)  # forget the awaited event
            failure = _refused(exc)
        self._finish_row(job, number, customer, failure)

    def _start_row(self, job: CallBackJob, number: str, customer: str) -> None:
        """The call's row, committed before the Originate goes out (it starts ringing now)."""
        with self.db.session() as session:
            request = registry.get_request(session, number)
            call = calllog.start_call(
                session,
                backend=BACKEND,
                backend_call_id=job.callback_id,
                from_number=job.extension,
                to_number=customer,
            )
            call.request_id = request.id
            calllog.log_event(session, call, EVENT_ORIGINATE, job.extension, actor=job.actor)

    def _finish_row(self, job: CallBackJob, number: str, customer: str, failure: str | None) -> None:
        with self.db.session() as session:
            call = calllog.find_call(session, BACKEND, job.callback_id)
            assert call is not None, "made by _start_row"
            calllog.log_event(session, call, EVENT_RESULT, failure or "answered", extension=job.extension)
            if failure is None:
                # The call goes on; the AMI call log closes it at its Hangup.
                call.outcome, call.answered_at = OUTCOME_ANSWERED, call.answered_at or utcnow()
            else:
                calllog.end_call(session, call, outcome=OUTCOME_FAILED)
            text = f"обратный звонок с {job.extension} на {customer}: {failure or 'инженер ответил'}"
            registry.record(
                session,
                registry.get_request(session, number),
                actor=job.actor,
                action=HISTORY_ACTION,
                text=text,
            )
        if failure is not None:
            log.warning("call-back %s for request %s: %s", job.callback_id, number, failure)

    def _not_placed(self, job: CallBackJob, why: str) -> None:
        log.warning("call-back %s for request %s not placed: %s", job.callback_id, job.request_number, why)
        try:
            with self.db.session() as session:
                request = registry.get_request(session, job.request_number)
                text = f"обратный звонок с {job.extension} не состоялся: {why}"
                registry.record(session, request, actor=job.actor, action=HISTORY_ACTION, text=text)
        except UserError:  # the request is gone: the log line is all there is
            pass


@dataclass(frozen=True)
class CallBackResult:
    """How a queued call-back ended, as its request's history and call row tell."""

    answered: bool
    text: str  # the history line


def call_back_result(session: Session, job: CallBackJob) -> CallBackResult | None:
    """The end of a queued call-back, None while it has not ended."""
    request = registry.get_request(session, job.request_number)
    since = dt.datetime.fromtimestamp(job.queued_at, dt.UTC)  # entries written after it was queued
    entry = session.scalars(
        select(RequestEvent)
        .where(
            RequestEvent.request_id == request.id,
            RequestEvent.action == HISTORY_ACTION,
            RequestEvent.at >= since,
        )
        .order_by(RequestEvent.id.desc())
        .limit(1)
    ).first()
    if entry is None:
        return None
    answered = session.scalar(
        select(CallEvent.id)
        .join(Call)
        .where(
            Call.backend == BACKEND,
            Call.backend_call_id == job.callback_id,
            CallEvent.kind == EVENT_RESULT,
            CallEvent.detail == "answered",
        )
    )
    return CallBackResult(answered is not None, entry.text)
