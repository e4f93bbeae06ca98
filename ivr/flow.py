"""The call flow of the hotline (docs/call-flow.md), with no I/O and no telephony.

One function drives a call: `handle(state, event, port, config) -> Step`.

- `state` is a `CallState`, JSON-serialisable (`to_json()` / `CallState.from_json()`):
  Twilio keeps it in `Call.flow_state` between webhooks, FastAGI in memory.
- `event` is what happened on the line: `CallStarted`, `DigitsEntered` (any string,
  possibly empty or garbage; a trailing '#' is ignored), `NoInput` (a gather timed
  out), `RecordingFinished` (a `Recording`, or None when nothing was recorded),
  `DialFinished` (the duty engineer's leg: answered / no_answer / busy / failed),
  `Hangup` (the caller is gone; may come at any step, also after the flow hung up),
  and from a speech recogniser: `SpokenNumber` (a request number said aloud, to be
  confirmed by the caller) and `SpokenAnswer` («да» / «нет» to that question).
- `port` is a `CallPort`: the data the flow needs (look up a request, count this
  caller's lookups, open a voice request, attach information, business hours, the
  duty target). `ivr.store.DbCallPort` is the real one, `ivr.fake.FakeCallPort` the
  fake for tests and demos.
- The returned `Step` has the next state, the `actions` for the adapter to carry out
  in order, `log` entries for the call log (`CallEvent` kind, detail, data), and
  `state.outcome` (the call's outcome so far, for `Call.outcome`).

The questions with one-key answers are menus, written as data (`MENUS`): the step,
the prompt that asks, and for each key the handler it runs. A new option is one row
in a menu, one phrase in `voice_models.prompts` (and its audio), and a test;
tests/ivr/test_flow.py checks that every key a menu accepts is said in its prompt.

Actions: `Speak(segments, barge_in)` (segments of `ivr.speech`; with barge_in the
caller may type over it and what they type is the start of the next `Gather`'s
input), `Gather(max_digits, timeout_seconds, finish_on_key)` (a timeout is the event
`NoInput`; '#' finishes and is not part of the digits; a `cancel_key` ends it at once and
is), `Record(max_seconds,
silence_seconds, finish_on_key, beep)` (answer with `RecordingFinished`),
`Transfer(target, timeout_seconds)` (answer with `DialFinished`), `HangUp()`.

A backend that learns of a recording's file apart from the call's progress (Twilio's
recording status callback) calls `save_recording(state, recording, port)`: it turns
the recording into its request (or attaches the file to the request already made for
it) without moving the call on. Both paths are idempotent per `Recording.ref`.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from hotline.errors import InvalidRequestNumber
from hotline.models import RequestKind, RequestStatus
from hotline.numbers import MAX_LENGTH, parse_request_number
from hotline.vocabulary import Outcome
from ivr.speech import Date, Hours, Number, Prompt, Segment, Text, clean_text

# --- configuration ---------------------------------------------------------------


@dataclass(frozen=True)
class FlowConfig:
    """The limits of a call."""

    record_max_seconds: int = 180
    record_silence_seconds: int = 5
    lookups_per_hour: int = 20
    dial_timeout: int = 20
    menu_timeout: int = 6
    number_timeout: int = 10
    max_tries: int = 3  # no or wrong input at one question, wrong numbers in a call

    @classmethod
    def from_settings(cls, settings: Any) -> FlowConfig:
        """The limits configured in `hotline.settings.Settings`."""
        return cls(
            record_max_seconds=settings.record_max_seconds,
            record_silence_seconds=settings.record_silence_seconds,
            lookups_per_hour=settings.lookups_per_hour,
            dial_timeout=settings.dial_timeout,
        )


# --- events ------------------------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    """A finished recording as the backend knows it.

    `ref` is the backend's unique id of the recording (Twilio RecordingSid, the
    Asterisk file name): the same ref reported twice is one recording. `path` is a
    local file with the audio when the backend has it now (Twilio gets it later).
    """

    ref: str
    duration_seconds: float | None = None
    path: str | None = None
    #: Whether the audio holds speech (`hotline.transcription.audio.has_speech`), None if unknown.
    speech: bool | None = None

    @property
    def empty(self) -> bool:
        if self.speech is False:  # decided from the audio: silence kept by a silence stop
            return True
        return self.duration_seconds is not None and self.duration_seconds < 1.0


@dataclass(frozen=True)
class CallStarted:
    caller: str | None = None


@dataclass(frozen=True)
class DigitsEntered:
    digits: str


@dataclass(frozen=True)
class NoInput:
    pass


@dataclass(frozen=True)
class RecordingFinished:
    recording: Recording | None  # None: nothing was recorded


class DialResult(enum.StrEnum):
    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"


@dataclass(frozen=True)
class DialFinished:
    result: DialResult


@dataclass(frozen=True)
class Hangup:
    pass


@dataclass(frozen=True)
class SpokenNumber:
    """A request number the caller said aloud, as the recogniser heard it (digits)."""

    digits: str


@dataclass(frozen=True)
class SpokenAnswer:
    """«Да» (yes=True) or «нет» (yes=False), said to a yes/no question."""

    yes: bool


Event = (
    CallStarted
    | DigitsEntered
    | NoInput
    | RecordingFinished
    | DialFinished
    | Hangup
    | SpokenNumber
    | SpokenAnswer
)

# --- actions -----------------------------------------------------------------------


@dataclass(frozen=True)
class Speak:
    segments: tuple[Segment, ...]
    barge_in: bool = False


@dataclass(frozen=True)
class Gather:
    max_digits: int
    timeout_seconds: int
    finish_on_key: str | None = None
    #: A key that ends the input at once and is part of it («*»: back to the menu). Only
    #: Asterisk can: Twilio's <Gather> has one finishing key, so there it waits the timeout.
    cancel_key: str | None = None


@dataclass(frozen=True)
class Record:
    max_seconds: int
    silence_seconds: int
    finish_on_key: str = "#"
    beep: bool = True


@dataclass(frozen=True)
class Transfer:
    target: str
    timeout_seconds: int


@dataclass(frozen=True)
class HangUp:
    pass


Action = Speak | Gather | Record | Transfer | HangUp

# --- the port ----------------------------------------------------------------------


@dataclass(frozen=True)
class RequestInfo:
    """What a caller may hear about a request."""

    number: str
    kind: str
    status: str
    changed_on: dt.date  # in the plant's time zone
    clarification_question: str | None = None  # the engineer's open question, if any


class DutyHours(Protocol):
    """The duty engineer's working hours (hotline.settings.BusinessHours is one)."""

    @property
    def weekdays(self) -> frozenset[int]: ...  # 0 = Monday
    @property
    def start(self) -> dt.time: ...
    @property
    def end(self) -> dt.time: ...  # `dt.time.max`: to midnight
    @property
    def holidays(self) -> frozenset[dt.date]: ...  # days off, whatever the weekday


class CallPort(Protocol):
    """The data a call needs; implementations: ivr.store.DbCallPort, ivr.fake.FakeCallPort."""

    def today(self) -> dt.date:
        """Today in the plant's time zone."""

    def find_request(self, number: str) -> RequestInfo | None:
        """The request with this (valid) number, or None."""

    def recent_lookups(self) -> int:
        """Status lookups this caller made in the last hour (all calls)."""

    def open_voice_request(self, kind: str, recording: Recording) -> str:
        """Open a phone request (status new) with this recording; its number."""

    def add_information(self, number: str, recording: Recording) -> None:
        """Attach a recording of missing information to the request, with a history entry."""

    def attach_recording(self, number: str, recording: Recording) -> None:
        """Store the file of a recording already turned into a request (once per ref)."""

    def duty_open(self) -> bool:
        """True inside the duty engineer's business hours."""

    def duty_target(self) -> str | None:
        """Where to transfer to the duty engineer, None if not configured."""

    def duty_hours(self) -> DutyHours | None:
        """The duty engineer's working hours, read to callers outside them."""

    def number_sms_queued(self, number: str) -> bool:
        """True if the new request's number is on its way to the caller by SMS."""


# --- state -------------------------------------------------------------------------


class StepName(enum.StrEnum):
    NEW = "new"
    MENU = "menu"
    NUMBER = "number"
    CONFIRM_NUMBER = "confirm_number"
    INFO_OFFER = "info_offer"
    INFO_RECORD = "info_record"
    KIND = "kind"
    NEW_RECORD = "new_record"
    DIALING = "dialing"
    DUTY_OFFER = "duty_offer"
    DONE = "done"  # the flow hung up; waiting for the backend's hangup
    ENDED = "ended"


# Outcomes by weight: a call that made a request is remembered for that, not for
# the status it heard before.
_OUTCOME_RANK: dict[str, int] = {
    Outcome.ABANDONED: 0,
    Outcome.NO_INPUT: 0,
    Outcome.TOO_MANY_ATTEMPTS: 0,
    Outcome.LOOKUP_LIMIT: 1,  # not lost to a silence in the menu after it
    Outcome.DUTY_UNAVAILABLE: 1,
    Outcome.STATUS_HEARD: 2,
    Outcome.TRANSFERRED: 3,
    Outcome.INFO_ADDED: 4,
    Outcome.REQUEST_CREATED: 5,
}


@dataclass
class CallState:
    """Where a call is; JSON-serialisable."""

    step: str = StepName.NEW
    caller: str | None = None
    tries: int = 0  # no or wrong input at the current question
    number_tries: int = 0  # wrong or unknown numbers in this call
    number: str | None = None  # the request the caller is dealing with
    question: str | None = None  # the engineer's question about that request
    spoken: str | None = None  # a number said aloud, waiting for the caller's «да»
    kind: str | None = None
    #: What the Record in progress is for: {"new": kind} or {"info": number}.
    pending: dict[str, str] | None = None
    #: Recordings already saved: ref → {"number": ..., "new"/"info": ...}.
    recorded: dict[str, dict[str, str]] = field(default_factory=dict)
    outcome: str | None = None
    seq: int = 0  # events handled; lets adapters spot a stale or repeated webhook
    duty: bool = True  # a duty engineer is configured: the menu offers «0»

    def to_json(self) -> dict[str, Any]:
        # What dataclasses.asdict gives, without its deep copy of every value (hot path).
        data = dict(self.__dict__)
        data["pending"] = dict(self.pending) if self.pending is not None else None
        data["recorded"] = {ref: dict(saved) for ref, saved in self.recorded.items()}
        return data

    def copy(self) -> CallState:
        """A copy to change: what `from_json(to_json())` gives, in a third of the time
        (every step of every call makes one, on FastAGI's event loop)."""
        state = object.__new__(CallState)
        state.__dict__.update(self.__dict__)
        state.pending = dict(self.pending) if self.pending is not None else None
        state.recorded = {ref: dict(saved) for ref, saved in self.recorded.items()}
        return state

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> CallState:
        known = _STATE_FIELDS
        return cls(**{k: v for k, v in (data or {}).items() if k in known})

    @property
    def ended(self) -> bool:
        return self.step in (StepName.DONE, StepName.ENDED)


_STATE_FIELDS = frozenset(f.name for f in fields(CallState))


@dataclass(frozen=True)
class LogEntry:
    kind: str
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Step:
    state: CallState
    actions: list[Action] = field(default_factory=list)
    log: list[LogEntry] = field(default_factory=list)


# --- the flow ----------------------------------------------------------------------


def handle(state: CallState, event: Event, port: CallPort, config: FlowConfig | None = None) -> Step:
    """The next state and what to do after `event`; `state` itself is not changed."""
    flow = _Flow(state.copy(), port, config or FlowConfig())
    flow.dispatch(event)
    return flow.step


def looked_up(state: CallState, event: Event) -> str | None:
    """The request number whose status `handle(state, event, …)` looks up, else None.

    Such a step asks the port for the caller's recent lookups and for the request; the
    rest of the step depends on their answers. Known before the step, those reads can
    be made first (`ivr.livecalls` reads on its event loop, batched): the step then runs
    once. tests/ivr/test_flow.py checks this against what `handle` asks the port.
    """
    if isinstance(event, Hangup) or state.ended:
        return None
    if isinstance(event, DigitsEntered):
        entered = _entered(event.digits)
        if state.step != StepName.NUMBER:
            menu = MENUS.get(state.step)
            if menu is None or menu.options.get(entered) is not _Flow.number_confirmed:
                return None
            entered = state.spoken or ""
    elif isinstance(event, SpokenAnswer):
        menu = MENUS.get(state.step)
        key = "1" if event.yes else "2"
        if menu is None or not menu.yes_no or menu.options.get(key) is not _Flow.number_confirmed:
            return None
        entered = state.spoken or ""
    else:
        return None
    if not entered or entered == "*":
        return None
    try:
        return parse_request_number(entered)
    except InvalidRequestNumber:
        return None


def _entered(digits: str) -> str:
    """The keys of a `DigitsEntered`, without blanks and the '#' that finished them."""
    digits = digits.strip()
    return digits[:-1] if digits.endswith("#") else digits


def reprompt(state: CallState, config: FlowConfig | None = None) -> list[Action]:
    """The actions that ask the current question again (for a repeated webhook)."""
    flow = _Flow(state.copy(), _NoPort(), config or FlowConfig())
    flow.ask()
    return flow.step.actions


def save_recording(state: CallState, recording: Recording, port: CallPort) -> Step:
    """Save a recording whose file arrived apart from the call's progress; no actions."""
    flow = _Flow(state.copy(), port, FlowConfig())
    if recording.empty and recording.ref not in state.recorded:
        flow.log("recording_empty", recording.ref)  # silence makes no request
    else:
        flow.save(recording)  # a request made already keeps its file, whatever it holds
    return flow.step


class _Flow:
    def __init__(self, state: CallState, port: CallPort, config: FlowConfig):
        self.state = state
        self.port = port
        self.config = config
        self.step = Step(state)

    # -- output helpers --
    def say(self, *segments: Segment, barge_in: bool = False) -> None:
        self.step.actions.append(Speak(tuple(segments), barge_in=barge_in))

    def log(self, kind: str, detail: str = "", **data: Any) -> None:
        self.step.log.append(LogEntry(kind, detail, data))

    def outcome(self, outcome: Outcome | str) -> None:
        outcome = Outcome(outcome)  # an outcome not in the vocabulary is a bug here
        current = self.state.outcome
        if current is None or _OUTCOME_RANK[outcome] >= _OUTCOME_RANK[current]:
            self.state.outcome = outcome

    def goto(self, step: StepName) -> None:
        if step != self.state.step:
            self.state.tries = 0
        self.state.step = step

    def goodbye(self, *before: Segment, outcome: str | None = None) -> None:
        if outcome:
            self.outcome(outcome)
        self.say(*before, Prompt("goodbye"))
        self.step.actions.append(HangUp())
        self.goto(StepName.DONE)

    # -- questions: each says its prompt and waits --
    def ask(self, *intro: Segment) -> None:
        """Ask the question of the current step (again)."""
        step = self.state.step
        c = self.config
        menu = MENUS.get(step)
        if menu is not None:
            lead = menu.lead(self.state) if menu.lead else ()
            self.say(*intro, *lead, Prompt(menu.prompt_of(self.state)), barge_in=True)
            self.step.actions.append(Gather(1, c.menu_timeout))
        elif step == StepName.NUMBER:
            self.say(*intro, Prompt("enter_number"), barge_in=True)
            self.step.actions.append(Gather(MAX_LENGTH + 1, c.number_timeout, "#", cancel_key="*"))
        elif step in (StepName.INFO_RECORD, StepName.NEW_RECORD):
            key = "record_info" if step == StepName.INFO_RECORD else "record_request"
            self.say(*intro, Prompt(key))
            self.step.actions.append(Record(c.record_max_seconds, c.record_silence_seconds))
        elif intro:
            self.say(*intro)

    def menu(self, *intro: Segment) -> None:
        self.goto(StepName.MENU)
        self.ask(*intro)

    def retry(self, *why: Segment, again: tuple[Segment, ...] = (), outcome: str = "no_input") -> None:
        """Wrong or no input: say `why`, then ask again (after `again`), or say goodbye
        after too many tries."""
        self.state.tries += 1
        if self.state.tries >= self.config.max_tries:
            self.log("too_many_tries", step=self.state.step)
            self.goodbye(*why, Prompt("too_many_attempts"), outcome=outcome)
        else:
            self.ask(*why, *again)

    # -- events --
    def dispatch(self, event: Event) -> None:
        self.state.seq += 1
        if isinstance(event, Hangup):
            self.hangup()
        elif self.state.ended:
            if isinstance(event, RecordingFinished) and event.recording and not event.recording.empty:
                self.save(event.recording)  # a hangup ended the recording: keep it
        elif isinstance(event, CallStarted):
            self.state.caller = event.caller
            self.state.duty = bool(self.port.duty_target())
            self.log("call_started", caller=event.caller)
            self.menu(Prompt("greeting"))
        elif isinstance(event, DigitsEntered):
            digits = _entered(event.digits)
            self.digits(digits) if digits else self.no_input()
        elif isinstance(event, NoInput):
            self.no_input()
        elif isinstance(event, RecordingFinished):
            self.recording_finished(event.recording)
        elif isinstance(event, DialFinished):
            self.dial_finished(event.result)
        elif isinstance(event, SpokenNumber):
            self.spoken_number(event.digits)
        elif isinstance(event, SpokenAnswer):
            self.spoken_answer(event.yes)

    def hangup(self) -> None:
        if self.state.step != StepName.ENDED:
            self.log("hangup", step=self.state.step)
        if self.state.outcome is None:
            self.state.outcome = Outcome.ABANDONED
        self.state.step = StepName.ENDED

    def no_input(self) -> None:
        step = self.state.step
        if step in (StepName.INFO_RECORD, StepName.NEW_RECORD):
            self.recording_finished(None)
        elif step == StepName.DIALING:
            self.dial_finished(DialResult.FAILED)
        else:
            self.log("no_input", step=step)
            self.retry(Prompt("number_no_input" if step == StepName.NUMBER else "no_input"))

    def digits(self, digits: str) -> None:
        step = self.state.step
        self.log("digits", digits[:40], step=step)
        menu = MENUS.get(step)
        if menu is not None:
            self.choose(menu, digits)
        elif step == StepName.NUMBER:
            self.number_entered(digits)
        else:
            # Keys pressed while recording or ringing the engineer end up here.
            self.no_input()

    def choose(self, menu: Menu, key: str) -> None:
        """Run the handler of the key pressed in a menu, or ask again."""
        handler = menu.options.get(key)
        if handler is None:
            self.retry(Prompt("menu_invalid"))
        else:
            handler(self)

    # -- what the menus' keys do (see MENUS) --
    def status(self) -> None:
        self.log("menu", "status")
        self.goto(StepName.NUMBER)
        self.state.number_tries = 0
        self.ask()

    def new_request(self) -> None:
        if self.state.step == StepName.MENU:
            self.log("menu", "new_request")
        self.goto(StepName.KIND)
        self.ask()

    def duty_engineer(self) -> None:
        self.log("menu", "duty_engineer")
        self.duty()

    def repeat(self) -> None:
        self.ask()

    def main_menu(self) -> None:
        self.menu()

    def record_info(self) -> None:
        self.start_record(StepName.INFO_RECORD, {"info": self.state.number or ""})

    def kind_chosen(self, kind: RequestKind) -> None:
        self.state.kind = kind.value
        self.log("kind", kind.value, request_kind=kind.value)
        self.start_record(StepName.NEW_RECORD, {"new": kind.value})

    def number_confirmed(self) -> None:
        spoken, self.state.spoken = self.state.spoken or "", None
        self.log("number_confirmed", spoken[:40])
        self.goto(StepName.NUMBER)
        self.number_entered(spoken)

    def number_refused(self) -> None:
        self.state.spoken = None
        self.log("number_refused")
        self.goto(StepName.NUMBER)
        self.ask(Prompt("try_again"))

    # -- speech --
    def spoken_number(self, heard: str) -> None:
        """A number said aloud at the number question: read it back for a «да»."""
        digits = "".join(ch for ch in heard if ch.isdigit())[: MAX_LENGTH + 1]
        self.log("spoken_number", digits, step=self.state.step)
        if self.state.step != StepName.NUMBER or not digits:
            self.no_input()
            return
        self.state.spoken = digits
        self.goto(StepName.CONFIRM_NUMBER)
        self.ask()

    def spoken_answer(self, yes: bool) -> None:
        """«Да» or «нет»: the keys 1 and 2 of a yes/no question."""
        self.log("spoken_answer", "yes" if yes else "no", step=self.state.step)
        menu = MENUS.get(self.state.step)
        if menu is None or not menu.yes_no:
            self.no_input()
        else:
            self.choose(menu, "1" if yes else "2")

    def number_entered(self, digits: str) -> None:
        if "*" in digits:  # «Чтобы вернуться в меню, нажмите звёздочку», also after a digit
            self.menu()
            return
        try:
            number = parse_request_number(digits)
        except InvalidRequestNumber:
            self.log("number_invalid", digits[:40])
            self.wrong_number("number_invalid")
            return
        if self.port.recent_lookups() >= self.config.lookups_per_hour:
            self.log("lookup_limit", number)
            self.outcome("lookup_limit")
            self.menu(Prompt("lookup_limit"), Prompt("main_menu"))  # a new request or the engineer still
            return
        info = self.port.find_request(number)
        self.log("lookup", number, number=number, found=info is not None)
        if info is None:
            self.wrong_number("number_unknown")
            return
        self.outcome("status_heard")
        self.state.number = info.number
        self.state.question = clean_text(info.clarification_question or "") or None
        readback: list[Segment] = [
            Prompt("request_number"),
            Number(info.number),
            Prompt("kind_is"),
            Prompt(f"kind_{info.kind}"),
            Prompt("status_is"),
            Prompt(f"status_{info.status}"),
            Prompt("changed_on"),
            Date(info.changed_on, with_year=info.changed_on.year != self.port.today().year),
        ]
        if info.status == RequestStatus.AWAITING_INFO:
            self.goto(StepName.INFO_OFFER)
            self.say(*readback)
            self.ask()
        else:
            self.say(*readback)
            self.menu(Prompt("main_menu"))

    def wrong_number(self, key: str) -> None:
        self.state.number_tries += 1
        if self.state.number_tries >= self.config.max_tries:
            self.log("too_many_tries", step=self.state.step)
            self.goodbye(Prompt(key), Prompt("too_many_attempts"), outcome="too_many_attempts")
        else:
            self.ask(Prompt(key), Prompt("try_again"))

    def start_record(self, step: StepName, pending: dict[str, str]) -> None:
        self.state.pending = pending
        self.goto(step)
        self.ask()

    def recording_finished(self, recording: Recording | None) -> None:
        if recording is None or recording.empty:
            self.log("recording_empty", step=self.state.step)
            self.retry(Prompt("recording_empty"), again=(Prompt("try_again"),))
            return
        saved = self.save(recording)
        if saved is None:  # not expected at this step: ask again
            self.ask()
        elif "new" in saved:
            number = saved["number"]
            sms = (Prompt("sms_sent"),) if self.port.number_sms_queued(number) else ()
            self.goodbye(
                Prompt("request_created"),
                Number(number),
                Prompt("repeat_number"),
                Number(number),
                *sms,
                outcome="request_created",
            )
        else:
            self.menu(Prompt("info_saved"), Prompt("main_menu"))

    def save(self, recording: Recording) -> dict[str, str] | None:
        """Turn a recording into its request (once per ref); what it was saved as."""
        saved = self.state.recorded.get(recording.ref)
        if saved is not None:
            if recording.path:
                self.port.attach_recording(saved["number"], recording)
            return saved
        pending = self.state.pending
        if not pending:
            self.log("recording_unexpected", recording.ref)
            return None
        if "new" in pending:
            number = self.port.open_voice_request(pending["new"], recording)
            saved = {"new": pending["new"], "number": number}
            self.log("request_created", number, number=number, recording=recording.ref)
            self.outcome("request_created")
        else:
            number = pending["info"]
            self.port.add_information(number, recording)
            saved = {"info": number, "number": number}
            self.log("information_added", number, number=number, recording=recording.ref)
            self.outcome("info_added")
        self.state.recorded[recording.ref] = saved
        self.state.pending = None
        return saved

    def duty(self) -> None:
        target = self.port.duty_target()
        if not target:
            self.log("duty_unavailable", "not configured")
            self.outcome("duty_unavailable")
            self.goto(StepName.DUTY_OFFER)
            self.ask(Prompt("duty_unavailable"))
        elif not self.port.duty_open():
            self.log("duty_closed")
            self.outcome("duty_unavailable")
            self.goto(StepName.DUTY_OFFER)
            hours = self.port.duty_hours()
            holiday = hours is not None and self.port.today() in hours.holidays
            said: list[Segment] = [Prompt("duty_holiday" if holiday else "duty_closed")]
            if hours is not None and hours.weekdays:
                said += [Prompt("duty_hours"), Hours(tuple(sorted(hours.weekdays)), hours.start, hours.end)]
            self.ask(*said)
        else:
            self.log("transfer", target, target=target)
            self.goto(StepName.DIALING)
            self.say(Prompt("transfer"))
            self.step.actions.append(Transfer(target, self.config.dial_timeout))

    def dial_finished(self, result: DialResult) -> None:
        self.log("dial_result", str(result), result=str(result))
        if self.state.step != StepName.DIALING:
            self.ask()
        elif result == DialResult.ANSWERED:
            self.goodbye(outcome="transferred")
        else:
            self.outcome("duty_unavailable")
            self.goto(StepName.DUTY_OFFER)
            self.ask(Prompt("duty_no_answer"))


# --- the menus ----------------------------------------------------------------------


@dataclass(frozen=True)
class Menu:
    """A question answered with one key: its prompt, and what each key does.

    `lead` gives what is said before the prompt from the call's state (the number to
    confirm, the engineer's question); with `yes_no` the answers «да» / «нет» count as
    the keys 1 and 2.
    """

    prompt: str
    options: Mapping[str, Callable[[_Flow], None]]
    lead: Callable[[CallState], tuple[Segment, ...]] | None = None
    yes_no: bool = False
    #: The prompt for a call where `prompt` would offer what it cannot have (key: its prompt).
    variant: Callable[[CallState], str | None] | None = None

    def prompt_of(self, state: CallState) -> str:
        return (self.variant(state) if self.variant else None) or self.prompt


def _request_question(state: CallState) -> tuple[Segment, ...]:
    if state.question:
        return (Text(state.question, intro="clarification_asked", fallback=("info_awaited",)),)
    return (Prompt("info_awaited"),)


def _number_heard(state: CallState) -> tuple[Segment, ...]:
    return (Prompt("you_said"), Number(state.spoken or ""))


MENUS: dict[str, Menu] = {
    StepName.MENU: Menu(
        "menu",
        {"1": _Flow.status, "2": _Flow.new_request, "0": _Flow.duty_engineer, "*": _Flow.repeat},
        # No duty engineer configured: «0» is not offered (pressed anyway, it says so).
        variant=lambda state: None if state.duty else "menu_no_duty",
    ),
    StepName.KIND: Menu(
        "choose_kind",
        {
            "1": lambda f: f.kind_chosen(RequestKind.INCIDENT),
            "2": lambda f: f.kind_chosen(RequestKind.PROBLEM),
            "3": lambda f: f.kind_chosen(RequestKind.SERVICE),
            "*": _Flow.main_menu,
        },
    ),
    StepName.INFO_OFFER: Menu(
        "info_offer", {"1": _Flow.record_info, "*": _Flow.main_menu}, lead=_request_question
    ),
    StepName.DUTY_OFFER: Menu("offer_request", {"2": _Flow.new_request, "*": _Flow.main_menu}),
    StepName.CONFIRM_NUMBER: Menu(
        "confirm_number",
        {"1": _Flow.number_confirmed, "2": _Flow.number_refused},
        lead=_number_heard,
        yes_no=True,
    ),
}


class _NoPort:
    """A port for `reprompt`, which asks a question and looks nothing up."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"reprompt must not use the port ({name})")
