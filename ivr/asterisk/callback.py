"""Call a customer back: Asterisk rings the engineer's phone, then dials the customer.

`call_back()` is the domain-level entry (the `hotline callback` command, and the
dashboard later): it finds the request and its phone, sends an AMI `Originate`
(Async: Asterisk answers `Success` at once) and waits for the `OriginateResponse`
that says whether the engineer answered (`Reason` 4); the dialplan context
HOTLINE_AMI_CALLBACK_CONTEXT then dials the customer's number as `${EXTEN}`.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from dataclasses import dataclass

from hotline import calllog, registry
from hotline.db import Database
from hotline.errors import HotlineError, UserError
from hotline.models import utcnow
from hotline.settings import Settings
from ivr.asterisk.ami import AmiConnection, AmiError, parse_ami_url
from ivr.asterisk.amilog import CALLBACK_PREFIX

log = logging.getLogger("hotline.callback")
_EXTENSION = re.compile(r"^[A-Za-z][A-Za-z0-9]*/[A-Za-z0-9_.@+\-]+$")

# OriginateResponse Reason codes (Asterisk's AST_CONTROL_*).
REASONS = {
    0: "вызов не удался (нет такого абонента или канала)",
    1: "инженер отклонил вызов",
    3: "инженер не ответил",
    5: "линия инженера занята",
    8: "канал перегружен или недоступен",
}
ANSWERED = 4


@dataclass(frozen=True)
class Callback:
    request_number: str
    customer_number: str
    engineer_extension: str
    channel_id: str


def customer_dial_number(phone: str) -> str:
    """The customer's number as the dialplan dials it: digits, with a leading + kept."""
    cleaned = re.sub(r"[\s()\-]", "", phone)
    if not re.fullmatch(r"\+?\d{3,16}", cleaned):
        raise UserError(f"у заявки неподходящий номер телефона для обратного звонка: {phone!r}")
    return cleaned


def _check(db: Database, request_number: str, engineer_extension: str) -> tuple[str, str]:
    """The request's number and the customer's dial number, or a UserError saying why not."""
    if not _EXTENSION.match(engineer_extension):
        raise UserError(f"добавочный инженера должен выглядеть как PJSIP/101, а не {engineer_extension!r}")
    with db.session() as session:
        request = registry.get_request(session, request_number)
        if not request.contact_phone:
            raise UserError(f"у заявки {request.number} нет телефона для обратного звонка")
        return request.number, customer_dial_number(request.contact_phone)


def start_call_back(
    settings: Settings, db: Database, request_number: str, engineer_extension: str, *, actor: str
) -> threading.Thread:
    """Check what can be checked at once, then place the call-back in the background.

    For the dashboard: `call_back` waits until the engineer answers (up to the dial
    timeout), longer than a page should take. Its outcome lands in the request's history.
    """
    if not settings.ami_url:
        raise UserError("обратный звонок через Asterisk невозможен: не задан HOTLINE_AMI_URL")
    _check(db, request_number, engineer_extension)

    def run() -> None:
        try:
            call_back(settings, db, request_number, engineer_extension, actor=actor)
        except HotlineError as exc:  # already in the request's history
            log.warning("%s", exc)
        except Exception:  # a background thread has nobody else to tell
            log.exception("call-back for request %s failed", request_number)

    thread = threading.Thread(target=run, name=f"callback-{request_number}", daemon=True)
    thread.start()
    return thread


def call_back(
    settings: Settings,
    db: Database,
    request_number: str,
    engineer_extension: str,
    *,
    ami: AmiConnection | None = None,
    actor: str = "system",
) -> Callback:
    """Ring `engineer_extension` (e.g. PJSIP/101), then connect it to the request's customer."""
    number, customer = _check(db, request_number, engineer_extension)
    own = ami is None
    if ami is None:
        if not settings.ami_url:
            raise UserError("обратный звонок через Asterisk невозможен: не задан HOTLINE_AMI_URL")
        ami = AmiConnection(parse_ami_url(settings.ami_url))
        ami.start()
    try:
        ami.wait_connected(timeout=15)
        channel_id = f"{CALLBACK_PREFIX}{uuid.uuid4().hex[:16]}"
        action_id = f"hotline-originate-{uuid.uuid4().hex}"
        outcome = ami.expect_event(action_id)
        ami.action(
            "Originate",
            {
                "ActionID": action_id,
                "Channel": engineer_extension,
                "Context": settings.ami_callback_context,
                "Exten": customer,
                "Priority": "1",
                "CallerID": f"Заявка {number} <{settings.support_number}>",
                "Timeout": str(settings.dial_timeout * 1000),
                "ChannelId": channel_id,
                "Async": "true",
            },
            {"HOTLINE_REQUEST": number},
        )
        event = outcome(settings.dial_timeout + 15)
    except AmiError as exc:
        with db.session() as session:
            request = registry.get_request(session, number)
            text = f"обратный звонок с {engineer_extension} не состоялся: {exc}"
            registry.record(session, request, actor=actor, action="callback", text=text)
        raise UserError(f"обратный звонок по заявке {number} не удался: {exc}") from exc
    finally:
        if own:
            ami.stop()
    if event is None:
        failure = "Asterisk не сообщил результат вызова"
    elif event.get("Response", "").lower() == "success" or event.get("Reason") == str(ANSWERED):
        failure = None
    else:
        reason = int(event["Reason"]) if event.get("Reason", "").isdigit() else 0
        failure = REASONS.get(reason, f"вызов не удался (Reason {reason})")
    with db.session() as session:
        request = registry.get_request(session, number)
        call = calllog.start_call(
            session,
            backend="asterisk",
            backend_call_id=channel_id,
            from_number=engineer_extension,
            to_number=customer,
        )
        call.request_id = request.id
        calllog.log_event(session, call, "callback", failure or "answered", extension=engineer_extension)
        if failure is None:
            # The call goes on; the AMI call log closes it at its Hangup.
            call.outcome, call.answered_at = "callback", utcnow()
        else:
            calllog.end_call(session, call, outcome="callback_failed")
        text = f"обратный звонок с {engineer_extension} на {customer}: " + (failure or "инженер ответил")
        registry.record(session, request, actor=actor, action="callback", text=text)
    if failure is not None:
        raise UserError(f"обратный звонок по заявке {number}: {failure}")
    return Callback(number, customer, engineer_extension, channel_id)
