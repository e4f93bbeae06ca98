"""The call log from AMI events: calls that never reached FastAGI are logged too.

A call to the hotline's number is followed from its first channel (`Newchannel`) by
its `Linkedid`, the id every channel of one call shares (Local channel halves, the
duty engineer's leg). The call-log row is keyed by that linkedid, and the FastAGI
session keys its row the same way (the dialplan passes `${CHANNEL(linkedid)}`), so
both write to one row. Events are handled in whatever order Asterisk sends them:
`Cdr` before or after `Hangup`, two CDRs for a call through a Local channel, and
before or after the FastAGI session closes the row (`hotline.calllog.settle_line`
decides the final status and cause). A call-back's row is made by the call-back job
when it sends the Originate; the events of its channel are logged on that row.
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
from hotline.phones import same_number
from ivr.asterisk.amievents import AmiEvent, Cdr, DialBegin, DialEnd, Hangup, NewChannel, NewState

log = logging.getLogger(__name__)

BACKEND = "asterisk"
REMEMBERED = 20_000  # channels whose call we still know (a Cdr may come late)
AGI_STARTED = "agi_start"  # call event the FastAGI session writes first
CALLBACK_PREFIX = "hotline-cb-"  # ChannelId of a call-back's Originate


def is_callback(uniqueid: str) -> bool:
    return uniqueid.startswith(CALLBACK_PREFIX)


class AmiCallLog:
    """Turns AMI call events into call-log rows and events (one subscriber per connection)."""

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
        """The call a channel belongs to; a call-back's own channel is known by its id."""
        found = self._linked.get(uniqueid)
        return found if found is not None or not is_callback(uniqueid) else uniqueid

    def handle(self, event: AmiEvent) -> None:
        """Take one AMI event; events of other calls are ignored."""
        try:
            match event:
                case NewChannel():
                    self._on_newchannel(event)
                case NewState():
                    self._event(event.uniqueid, "ami_state", event.state, channel=event.channel)
                case DialBegin():
                    self._event(
                        event.uniqueid, "ami_dial_begin", event.dest_channel, dialstring=event.dial_string
                    )
                case DialEnd():
                    self._event(event.uniqueid, "ami_dial_end", event.dial_status, dest=event.dest_channel)
                case Hangup():
                    self._on_hangup(event)
                case Cdr():
                    self._on_cdr(event)
        except Exception:  # noqa: BLE001 - one bad event must not stop the log
            log.exception("AMI call log: cannot handle %s", event)

    def _on_newchannel(self, e: NewChannel) -> None:
        if not e.uniqueid:
            return
        if is_callback(e.uniqueid):
            self._remember(e.uniqueid, e.uniqueid)  # a call-back: its job made the row
            self._event(e.uniqueid, "ami_newchannel", e.channel)
            return
        if e.linkedid in self._linked.values() or e.linkedid in self._linked or is_callback(e.linkedid):
            self._remember(e.uniqueid, e.linkedid)  # another leg of a call we follow
            return
        if e.uniqueid != e.linkedid or not same_number(e.exten, self.support_number):
            return
        self._remember(e.uniqueid, e.linkedid)
        with self.db.session() as session:
            call = calllog.start_call(
                session,
                backend=BACKEND,
                backend_call_id=e.linkedid,
                from_number=e.caller_number,
                to_number=self.support_number,
                caller_name=e.caller_name,
            )
            calllog.log_event(session, call, "ami_newchannel", e.channel, uniqueid=e.uniqueid)

    def _event(self, uniqueid: str, kind: str, detail: str, **data: str) -> None:
        linkedid = self.linkedid_of(uniqueid)
        if linkedid is None:
            return
        with self.db.session() as session:
            call = calllog.find_call(session, BACKEND, linkedid)
            if call is not None:
                calllog.log_event(session, call, kind, detail, uniqueid=uniqueid, **data)

    def _on_hangup(self, e: Hangup) -> None:
        linkedid = self.linkedid_of(e.uniqueid)
        if linkedid is None:
            return
        with self.db.session() as session:
            call = calllog.find_call(session, BACKEND, linkedid)
            if call is None:
                return
            cause = e.cause_line
            calllog.log_event(
                session, call, "ami_hangup", cause or "", uniqueid=e.uniqueid, channel=e.channel
            )
            if e.uniqueid == linkedid:  # the call's first channel: the call is over
                calllog.end_call(session, call, hangup_cause=cause, outcome=_outcome(session, call))

    def _on_cdr(self, e: Cdr) -> None:
        linkedid = self.linkedid_of(e.uniqueid)
        with self.db.session() as session:
            call = calllog.find_call(session, BACKEND, linkedid) if linkedid else None
            if call is None and same_number(e.destination, self.support_number):
                # The Newchannel was missed (we started after the call did): the CDR is enough.
                linkedid = e.uniqueid
                call = calllog.start_call(
                    session,
                    backend=BACKEND,
                    backend_call_id=e.uniqueid,
                    from_number=e.source,
                    to_number=self.support_number,
                    started_at=utcnow() - dt.timedelta(seconds=e.duration or 0),
                )
            if call is None:
                return
            calllog.log_event(
                session,
                call,
                "ami_cdr",
                e.disposition,
                uniqueid=e.uniqueid,
                channel=e.channel,
                destination_channel=e.destination_channel,
                duration="" if e.duration is None else str(e.duration),
                billable="" if e.billable is None else str(e.billable),
            )
            if e.uniqueid == linkedid:  # the CDR of the call's first channel, not of a Local half
                calllog.end_call(
                    session,
                    call,
                    backend_status=e.status,
                    duration_seconds=e.duration,
                    outcome=_outcome(session, call),
                )


def _outcome(session: Session, call: Call) -> str | None:
    """`abandoned` for a call that never reached the hotline's flow; None: someone else says."""
    if is_callback(call.backend_call_id) or reached_ivr(session, call):
        return None  # the call-back job or the flow writes the outcome
    return "abandoned"


def reached_ivr(session: Session, call: Call) -> bool:
    """True if a FastAGI session ran this call (its outcome is the flow's, not ours)."""
    found = session.scalars(
        select(CallEvent.id).where(CallEvent.call_id == call.id, CallEvent.kind == AGI_STARTED).limit(1)
    ).first()
    return found is not None
