"""AMI packets as typed values: pure functions, shared by the adapter, the fake and tests.

An AMI packet is `Key: value` lines ended by an empty line (docs/ami.md). Nothing here
touches a socket: `ivr.asterisk.ami` hands in the fields `asterisk-ami` read, and
`ivr.asterisk.fake_ami` splits, parses and formats its packets with these functions.

Everything Asterisk sends is cleaned on the way in: control characters out, each value
and the number of fields capped, numbers parsed, `<unknown>` caller ids made None. An
event the hotline does not follow becomes `OtherEvent`, never an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import TypedDict

MAX_VALUE = 256  # characters kept of one value (a Cdr's LastData can be long)
MAX_FIELDS = 100  # fields kept of one packet
MAX_PACKET = 64 * 1024  # bytes of one packet the fake server accepts
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNKNOWN = {"", "<unknown>", "unknown", "anonymous", "<null>"}

Fields = list[tuple[str, str]]


# --- packets -------------------------------------------------------------------------------


def clean(value: str, limit: int = MAX_VALUE) -> str:
    """A value as the hotline keeps it: no control characters, at most `limit` characters."""
    if not value.isprintable():  # the common case needs no regex
        value = _CONTROL.sub("", value)
    return value.strip()[:limit]


def parse_fields(text: str) -> Fields:
    """`Key: value` lines into (key, value) pairs in order; repeated keys are all kept."""
    pairs: Fields = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            continue
        pairs.append((clean(key, 64), clean(value)))
        if len(pairs) == MAX_FIELDS:
            break
    return pairs


def first_values(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The pairs as a dict; a repeated key keeps its first value."""
    found: dict[str, str] = {}
    for key, value in pairs:
        found.setdefault(key, value)
    return found


def split_packets(buffer: bytes) -> tuple[list[str], bytes]:
    """Whole packets at the start of `buffer` (decoded) and the rest, still incomplete."""
    *whole, rest = buffer.split(b"\r\n\r\n")
    return [p.decode("utf-8", "replace") for p in whole], rest


def format_packet(fields: Mapping[str, str] | Iterable[tuple[str, str]]) -> bytes:
    """One packet as Asterisk writes it: `Key: value` CRLF lines and an empty line."""
    pairs = fields.items() if isinstance(fields, Mapping) else fields
    return ("".join(f"{k}: {v}\r\n" for k, v in pairs) + "\r\n").encode()


# --- actions and responses -------------------------------------------------------------------


@dataclass(frozen=True)
class AmiAction:
    """An action as a client sent it (what the fake server reads)."""

    name: str
    action_id: str
    fields: dict[str, str]
    variables: dict[str, str] = field(default_factory=dict)

    def get(self, key: str, default: str = "") -> str:
        return self.fields.get(key, default)


def parse_action(pairs: Fields) -> AmiAction:
    """An action packet's pairs; `Variable: K=V` lines (one per variable) become `variables`."""
    variables = dict(v.split("=", 1) for k, v in pairs if k.lower() == "variable" and "=" in v)
    fields = first_values((k, v) for k, v in pairs if k.lower() != "variable")
    return AmiAction(fields.get("Action", ""), fields.get("ActionID", ""), fields, variables)


@dataclass(frozen=True)
class ActionResponse:
    """Asterisk's `Response:` to one action."""

    status: str  # Success, Error, Goodbye, Follows
    action_id: str
    message: str
    fields: dict[str, str]

    @property
    def ok(self) -> bool:
        return self.status.lower() != "error"


def parse_response(fields: Mapping[str, str]) -> ActionResponse:
    """A response packet's fields (with its `Response` key)."""
    values = {clean(k, 64): clean(v) for k, v in list(fields.items())[:MAX_FIELDS] if isinstance(v, str)}
    return ActionResponse(
        values.get("Response", ""), values.get("ActionID", ""), values.get("Message", ""), values
    )


# --- events ------------------------------------------------------------------------------------


class EventName(StrEnum):
    """The events the hotline follows (all others are `OtherEvent`)."""

    NEWCHANNEL = "Newchannel"
    NEWSTATE = "Newstate"
    DIAL_BEGIN = "DialBegin"
    DIAL_END = "DialEnd"
    HANGUP = "Hangup"
    CDR = "Cdr"
    ORIGINATE_RESPONSE = "OriginateResponse"


class OriginateReason(IntEnum):
    """`Reason` of an OriginateResponse: what happened to the first leg (AST_CONTROL_*)."""

    FAILED = 0  # no such channel, or it could not be created
    HANGUP = 1  # the phone rejected the call
    RINGING = 3  # it rang until the Originate's Timeout: nobody answered
    ANSWERED = 4
    BUSY = 5
    CONGESTION = 8

    @property
    def label(self) -> str:
        return ORIGINATE_REASON_LABELS[self]


ORIGINATE_REASON_LABELS = {
    OriginateReason.FAILED: "вызов не удался (нет такого абонента или канала)",
    OriginateReason.HANGUP: "инженер отклонил вызов",
    OriginateReason.RINGING: "инженер не ответил",
    OriginateReason.ANSWERED: "инженер ответил",
    OriginateReason.BUSY: "линия инженера занята",
    OriginateReason.CONGESTION: "канал перегружен или недоступен",
}

#: A Cdr's `Disposition` as the call log's `backend_status`. FAILED is `channel_failed`,
#: apart from the `failed` that means the hotline's own failure (hotline.calllog).
DISPOSITION_STATUS = {
    "ANSWERED": "answered",
    "NO ANSWER": "no_answer",
    "BUSY": "busy",
    "FAILED": "channel_failed",
    "CONGESTION": "congestion",
}


@dataclass(frozen=True)
class ChannelEvent:
    """The fields every channel event carries (Asterisk's channel snapshot)."""

    channel: str
    uniqueid: str
    linkedid: str  # shared by every channel of one call
    caller_number: str | None  # None when withheld or unknown
    caller_name: str | None
    context: str
    exten: str
    state: str  # ChannelStateDesc: Down, Ring, Ringing, Up, ...


@dataclass(frozen=True)
class NewChannel(ChannelEvent):
    pass


@dataclass(frozen=True)
class NewState(ChannelEvent):
    pass


@dataclass(frozen=True)
class DialBegin(ChannelEvent):
    dest_channel: str
    dial_string: str


@dataclass(frozen=True)
class DialEnd(ChannelEvent):
    dest_channel: str
    dial_status: str  # ANSWER, NOANSWER, BUSY, CANCEL, CHANUNAVAIL, ...


@dataclass(frozen=True)
class Hangup(ChannelEvent):
    cause: int | None  # Q.850 cause code; 16 is a normal hang-up
    cause_text: str

    @property
    def cause_line(self) -> str | None:
        """`16 Normal Clearing`: how the call log keeps a hang-up cause."""
        return f"{self.cause} {self.cause_text}".strip() if self.cause is not None else None


@dataclass(frozen=True)
class Cdr:
    """A call detail record (cdr_manager): one per channel when it ends."""

    uniqueid: str
    source: str | None
    destination: str
    channel: str
    destination_channel: str
    disposition: str  # as sent: ANSWERED, NO ANSWER, BUSY, FAILED, CONGESTION
    duration: int | None  # seconds from the channel's start
    billable: int | None  # seconds from the answer

    @property
    def status(self) -> str | None:
        """The disposition as a call-log `backend_status`."""
        if not self.disposition:
            return None
        known = DISPOSITION_STATUS.get(self.disposition.upper())
        return known or re.sub(r"[^a-z0-9]+", "_", self.disposition.lower())[:40]


@dataclass(frozen=True)
class OriginateResponse:
    """The outcome of an asynchronous Originate, matched to it by ActionID."""

    action_id: str
    success: bool
    reason: OriginateReason | None  # None: a code this list does not know
    reason_code: int | None
    channel: str
    uniqueid: str | None


@dataclass(frozen=True)
class OtherEvent:
    """An event the hotline does not follow, kept as its cleaned fields."""

    name: str
    fields: dict[str, str]


AmiEvent = NewChannel | NewState | DialBegin | DialEnd | Hangup | Cdr | OriginateResponse | OtherEvent


def _int(value: str | None) -> int | None:
    value = (value or "").strip()
    return int(value) if value.isdigit() and len(value) < 10 else None


def _known(value: str | None) -> str | None:
    value = clean(value or "", 80)
    return None if value.lower() in _UNKNOWN else value


class _Snapshot(TypedDict):
    channel: str
    uniqueid: str
    linkedid: str
    caller_number: str | None
    caller_name: str | None
    context: str
    exten: str
    state: str


def _channel(f: Mapping[str, str]) -> _Snapshot:
    uniqueid = f.get("Uniqueid", "")
    return {
        "channel": f.get("Channel", ""),
        "uniqueid": uniqueid,
        "linkedid": f.get("Linkedid") or uniqueid,
        "caller_number": _known(f.get("CallerIDNum")),
        "caller_name": _known(f.get("CallerIDName")),
        "context": f.get("Context", ""),
        "exten": f.get("Exten", ""),
        "state": f.get("ChannelStateDesc", ""),
    }


def parse_event(fields: Mapping[str, str]) -> AmiEvent:
    """An event packet's fields (with its `Event` key) as a typed event."""
    f = {clean(k, 64): clean(v) for k, v in list(fields.items())[:MAX_FIELDS] if isinstance(v, str)}
    name = f.get("Event", "")
    if name == EventName.NEWCHANNEL:
        return NewChannel(**_channel(f))
    if name == EventName.NEWSTATE:
        return NewState(**_channel(f))
    if name == EventName.DIAL_BEGIN:
        return DialBegin(
            **_channel(f), dest_channel=f.get("DestChannel", ""), dial_string=f.get("DialString", "")
        )
    if name == EventName.DIAL_END:
        return DialEnd(
            **_channel(f), dest_channel=f.get("DestChannel", ""), dial_status=f.get("DialStatus", "")
        )
    if name == EventName.HANGUP:
        return Hangup(**_channel(f), cause=_int(f.get("Cause")), cause_text=f.get("Cause-txt", ""))
    if name == EventName.CDR:
        return Cdr(
            uniqueid=f.get("UniqueID") or f.get("Uniqueid", ""),
            source=_known(f.get("Source")),
            destination=f.get("Destination", ""),
            channel=f.get("Channel", ""),
            destination_channel=f.get("DestinationChannel", ""),
            disposition=f.get("Disposition", ""),
            duration=_int(f.get("Duration")),
            billable=_int(f.get("BillableSeconds")),
        )
    if name == EventName.ORIGINATE_RESPONSE:
        code = _int(f.get("Reason"))
        reason = next((r for r in OriginateReason if r.value == code), None)
        return OriginateResponse(
            action_id=f.get("ActionID", ""),
            success=f.get("Response", "").lower() == "success",
            reason=reason,
            reason_code=code,
            channel=f.get("Channel", ""),
            uniqueid=_known(f.get("Uniqueid")),
        )
    return OtherEvent(name, {k: v for k, v in f.items() if k != "Event"})
