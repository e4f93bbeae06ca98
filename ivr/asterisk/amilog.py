"""The call log from AMI events: calls that never reached FastAGI are logged too.

A call to the hotline's number is followed from its first channel (`Newchannel`) by
its `Linkedid`, the id every channel of one call shares (Local channel halves, the
duty engineer's leg). The call-log row is keyed by that linkedid, and the FastAGI
session keys its row the same way (the dialplan passes `${CHANNEL(linkedid)}`), so
both write to one row. Events are handled in whatever order Asterisk sends them:
`Cdr` before or after `Hangup`, two CDRs for a call through a Local channel.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import OrderedDict

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline import calllog
from hotline.db import Database
from hotline.models import Call, CallEvent, utcnow

log = logging.getLogger(__name__)

BACKEND = "asterisk"
REMEMBERED = 20_000  # channels whose call we still know (a Cdr may come late)
AGI_STARTED = "agi_start"
CALLBACK_PREFIX = (
    "hotline-cb-"  # ChannelId of call_back()'s Originate  # call event the FastAGI session writes first
)


def digits(text: str | None) -> str:
    return "".join(c for c in text or "" if c.isdigit())


def is_hotline_number(dialled: str | None, support_number: str) -> bool:
    """True if what the caller dialled is the hotline (+7 343…, 8 343…, 343…)."""
    got, ours = digits(dialled), digits(support_number)
    return len(got) >= 10 and got[-10:] == ours[-10:]


def caller_number(value: str | None) -> str | None:
    value = (value or "").strip()
    return None if value.lower() in {"", "<unknown>", "unknown", "anonymous"} else value


class AmiCallLog:
    """Turns AMI call events into call-log rows and events (one handler per connection)."""

    def __init__(self, db: Database, support_number: str):
        self.db = db
        self.support_number = support_number
        self._linked: OrderedDict[str, str] = OrderedDict()  # uniqueid -> linkedid

    def _remember(self, uniqueid: str, linkedid: str) -> None:
        self._linked[uniqueid] = linkedid
        self._linked.move_to_end(uniqueid)
        while len(self._linked) > REMEMBERED:
            self._linked.popitem(last=False)

    def linkedid_of(self, uniqueid: str) -> str | None:
        return self._linked.get(uniqueid)

    def handle(self, name: str, keys: dict[str, str]) -> None:
        """Take one AMI event; events of other calls are ignored."""
        handler = getattr(self, f"_on_{name.lower()}", None)
        if handler is None:
            return
        try:
            handler(keys)
        except Exception:  # noqa: BLE001 - one bad event must not stop the log
            log.exception(
                "AMI call log: cannot handle %s %s", name, keys.get("Uniqueid") or keys.get("UniqueID")
            )

    def _on_newchannel(self, k: dict[str, str]) -> None:
        uniqueid, linkedid = k.get("Uniqueid", ""), k.get("Linkedid") or k.get("Uniqueid", "")
        if not uniqueid:
            return
        if linkedid in self._linked.values() or linkedid in self._linked:
            self._remember(uniqueid, linkedid)  # another leg of a call we follow
            return
        if uniqueid.startswith(CALLBACK_PREFIX):
            self._remember(uniqueid, uniqueid)  # a call-back: call_back() writes its row
            return
        if uniqueid != linkedid or not is_hotline_number(k.get("Exten"), self.support_number):
            return
        self._remember(uniqueid, linkedid)
        with self.db.session() as session:
            call = calllog.start_call(
                session,
                backend=BACKEND,
                backend_call_id=linkedid,
                from_number=caller_number(k.get("CallerIDNum")),
                to_number=self.support_number,
                caller_name=caller_number(k.get("CallerIDName")),
            )
            calllog.log_event(session, call, "ami_newchannel", k.get("Channel", ""), uniqueid=uniqueid)

    def _call(self, session: Session, uniqueid: str) -> Call | None:
        linkedid = self._linked.get(uniqueid)
        return calllog.find_call(session, BACKEND, linkedid) if linkedid else None

    def _event(self, k: dict[str, str], kind: str, detail: str, **data: str) -> None:
        uniqueid = k.get("Uniqueid", "")
        if uniqueid not in self._linked:
            return
        with self.db.session() as session:
            call = self._call(session, uniqueid)
            if call is not None:
                calllog.log_event(session, call, kind, detail, uniqueid=uniqueid, **data)

    def _on_newstate(self, k: dict[str, str]) -> None:
        self._event(k, "ami_state", k.get("ChannelStateDesc", ""), channel=k.get("Channel", ""))

    def _on_dialbegin(self, k: dict[str, str]) -> None:
        self._event(k, "ami_dial_begin", k.get("DestChannel", ""), dialstring=k.get("DialString", ""))

    def _on_dialend(self, k: dict[str, str]) -> None:
        self._event(k, "ami_dial_end", k.get("DialStatus", ""), dest=k.get("DestChannel", ""))

    def _on_hangup(self, k: dict[str, str]) -> None:
        uniqueid = k.get("Uniqueid", "")
        linkedid = self._linked.get(uniqueid)
        if linkedid is None:
            return
        cause = f"{k.get('Cause', '')} {k.get('Cause-txt', '')}".strip()
        with self.db.session() as session:
            call = calllog.find_call(session, BACKEND, linkedid)
            if call is None:
                return
            calllog.log_event(
                session, call, "ami_hangup", cause, uniqueid=uniqueid, channel=k.get("Channel", "")
            )
            if uniqueid == linkedid:  # the caller's own channel: the call is over
                outcome = None if reached_ivr(session, call) else "abandoned"
                calllog.end_call(session, call, hangup_cause=cause or None, outcome=outcome)

    def _on_cdr(self, k: dict[str, str]) -> None:
        uniqueid = k.get("UniqueID") or k.get("Uniqueid", "")
        linkedid = self._linked.get(uniqueid)
        with self.db.session() as session:
            call = calllog.find_call(session, BACKEND, linkedid) if linkedid else None
            if call is None and is_hotline_number(k.get("Destination"), self.support_number):
                # The Newchannel was missed (we started after the call did): the CDR is enough.
                linkedid = uniqueid
                call = calllog.start_call(
                    session,
                    backend=BACKEND,
                    backend_call_id=uniqueid,
                    from_number=caller_number(k.get("Source")),
                    to_number=self.support_number,
                    started_at=utcnow() - dt.timedelta(seconds=_seconds(k.get("Duration"))),
                )
            if call is None:
                return
            disposition = k.get("Disposition", "")
            calllog.log_event(
                session,
                call,
                "ami_cdr",
                disposition,
                uniqueid=uniqueid,
                channel=k.get("Channel", ""),
                destination_channel=k.get("DestinationChannel", ""),
                duration=k.get("Duration", ""),
                billable=k.get("BillableSeconds", ""),
            )
            if uniqueid == linkedid:  # the CDR of the caller's channel, not of a Local half
                duration = _seconds(k.get("Duration")) if k.get("Duration") else None
                outcome = None if reached_ivr(session, call) else "abandoned"
                calllog.end_call(
                    session,
                    call,
                    backend_status=disposition.lower().replace(" ", "_") or None,
                    duration_seconds=duration,
                    outcome=outcome,
                )


def reached_ivr(session: Session, call: Call) -> bool:
    """True if a FastAGI session ran this call (its outcome is the flow's, not ours)."""
    found = session.scalars(
        select(CallEvent.id).where(CallEvent.call_id == call.id, CallEvent.kind == AGI_STARTED).limit(1)
    ).first()
    return found is not None


def _seconds(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0
