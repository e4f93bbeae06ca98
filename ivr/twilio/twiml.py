"""Twilio's side of the flow, as pure functions: webhook parameters in, TwiML out.

`render(actions, ...)` turns the flow's actions into a TwiML document built with the
`twilio` package. A `Speak` the caller may type over is nested in the `Gather` that
follows it (digits typed during the prompt count); a `Gather` that hears nothing
falls through to a `Redirect` (the event `NoInput`); a `Record` that records nothing
falls through to a `Redirect` as well, since Twilio sends no action for an empty
recording. Every URL handed to Twilio carries `seq`, the flow's step counter, so a
late or repeated webhook is recognised.

Where the caller may say the answer instead of typing it (the request number, «да» /
«нет» to a number read back), the document starts a Media Stream named after the step
(`speech-<seq>`) just before the `Gather`, and the next document stops it
(ivr.twilio.spoken).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from twilio.twiml.voice_response import VoiceResponse

from hotline.numbers import MAX_LENGTH
from ivr import flow
from ivr.speech import Text, render_audio, render_text, text_of

#: Twilio's DialCallStatus → the flow's dial result.
DIAL_RESULTS = {
    "completed": flow.DialResult.ANSWERED,
    "answered": flow.DialResult.ANSWERED,
    "busy": flow.DialResult.BUSY,
    "no-answer": flow.DialResult.NO_ANSWER,
    "failed": flow.DialResult.FAILED,
    "canceled": flow.DialResult.FAILED,
}
#: CallStatus values that end a call.
FINAL_CALL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})

#: The name of the live stream of a recording (ivr.twilio.media), so the next document stops it.
LIVE_STREAM = "voicemail"

UrlFor = Callable[[str], str]  # step name ("digits", "timeout", ...) → absolute URL

#: What a caller may say instead of typing: a request number, or yes/no to one read back.
LISTEN_KINDS = ("number", "answer")


@dataclass(frozen=True)
class Listen:
    """A stream that listens for a spoken `kind` while the Gather of step `seq` waits."""

    kind: str
    seq: int

    @property
    def name(self) -> str:
        return speech_stream(self.seq)


def speech_stream(seq: int) -> str:
    """The name of the stream that listens at step `seq` (unique in a call, as Twilio wants)."""
    return f"speech-{seq}"


def listening(state: flow.CallState) -> str | None:
    """What the caller may say at this step instead of typing (LISTEN_KINDS), None if nothing."""
    if state.step == flow.StepName.NUMBER:
        return "number"
    menu = flow.MENUS.get(state.step)
    return "answer" if menu is not None and menu.yes_no else None


class SpeechRenderer:
    """Speech as `<Say language="ru-RU">` or as `<Play>` of the prompt audio (HOTLINE_PROMPTS).

    Both say the same words: `<Say>` speaks the texts of the prompt catalogue, `<Play>`
    plays the files made from those texts (the ones Asterisk plays).
    """

    def __init__(self, mode: str, voice: str, prompt_url: Callable[[str], str]):
        self.mode = mode
        self.voice = voice
        self.prompt_url = prompt_url

    def add(self, verb: object, speak: flow.Speak) -> None:
        if self.mode == "play":
            # The shipped files, as Asterisk plays them; free text (an engineer's
            # question) has no file and is spoken in the same place.
            for piece in render_audio(speak.segments):
                if isinstance(piece, Text):
                    verb.say(text_of(piece), language="ru-RU", voice=self.voice)  # type: ignore[attr-defined]
                else:
                    verb.play(self.prompt_url(piece))  # type: ignore[attr-defined]
        else:
            verb.say(render_text(speak.segments), language="ru-RU", voice=self.voice)  # type: ignore[attr-defined]


def render(
    actions: Sequence[flow.Action],
    url_for: UrlFor,
    speech: SpeechRenderer,
    *,
    stream_url: str | None = None,
    stop_stream: bool = False,
    listen: Listen | None = None,
    stop_listen: int | None = None,
) -> str:
    """The TwiML document that carries out the flow's actions.

    With `stream_url` a recording is streamed live while it is made (ivr.twilio.media);
    `stop_stream` stops that stream first (the document after a recording). With
    `listen` the Gather's caller is heard on a stream too (ivr.twilio.spoken);
    `stop_listen` stops the stream that listened at that step.
    """
    response = VoiceResponse()
    if stream_url and stop_stream:
        response.stop().stream(name=LIVE_STREAM)
    if stop_listen is not None:
        response.stop().stream(name=speech_stream(stop_listen))
    i = 0
    while i < len(actions):
        action = actions[i]
        if isinstance(action, flow.Speak) and action.barge_in:
            # Prompts the caller may type over go inside the Gather that follows them.
            j = i
            while j < len(actions) and isinstance(actions[j], flow.Speak) and actions[j].barge_in:  # type: ignore[union-attr]
                j += 1
            group = [a for a in actions[i:j] if isinstance(a, flow.Speak)]
            following = actions[j] if j < len(actions) else None
            if isinstance(following, flow.Gather):
                _listen(response, stream_url, listen)
                _gather(response, following, group, url_for, speech)
                j += 1
            else:
                for speak in group:
                    speech.add(response, speak)
            i = j
            continue
        if isinstance(action, flow.Speak):
            speech.add(response, action)
        elif isinstance(action, flow.Gather):
            _listen(response, stream_url, listen)
            _gather(response, action, [], url_for, speech)
        elif isinstance(action, flow.Record):
            if stream_url:
                response.start().stream(name=LIVE_STREAM, url=stream_url, track="inbound_track")
            response.record(
                action=url_for("recorded"),
                method="POST",
                max_length=action.max_seconds,
                timeout=action.silence_seconds,
                finish_on_key=action.finish_on_key,
                play_beep=action.beep,
                recording_status_callback=url_for("recording"),
                recording_status_callback_method="POST",
                recording_status_callback_event="completed",
            )
            response.redirect(url_for("record_empty"), method="POST")
        elif isinstance(action, flow.Transfer):
            dial = response.dial(action=url_for("dialed"), method="POST", timeout=action.timeout_seconds)
            dial.number(action.target)
        elif isinstance(action, flow.HangUp):
            response.hangup()
        i += 1
    return str(response)


def _listen(response: VoiceResponse, stream_url: str | None, listen: Listen | None) -> None:
    # Before the Gather: Twilio starts the stream and goes straight on, so keys still work.
    if stream_url and listen:
        stream = response.start().stream(name=listen.name, url=stream_url, track="inbound_track")
        stream.parameter(name="listen", value=listen.kind)
        stream.parameter(name="seq", value=str(listen.seq))


def _gather(
    response: VoiceResponse,
    gather: flow.Gather,
    prompts: list[flow.Speak],
    url_for: UrlFor,
    speech: SpeechRenderer,
) -> None:
    verb = response.gather(
        action=url_for("digits"),
        method="POST",
        input="dtmf",
        num_digits=gather.max_digits,
        timeout=gather.timeout_seconds,
        finish_on_key=gather.finish_on_key or "",
    )
    for speak in prompts:
        speech.add(verb, speak)
    response.redirect(url_for("timeout"), method="POST")


def event_for(
    step: str, form: Mapping[str, str], query: Mapping[str, str] | None = None
) -> flow.Event | None:
    """The flow event of an action webhook, None for an unknown step (or a malformed one)."""
    if step == "spoken":
        # The redirect of a call whose caller spoke (ivr.twilio.spoken): what was heard is in the URL.
        return spoken_event(query or {})
    if step == "digits":
        # A Gather posts Digits; without it (or empty) nothing was typed.
        return flow.DigitsEntered(form.get("Digits", "")[:100])
    if step == "timeout":
        return flow.NoInput()
    if step == "recorded":
        sid = form.get("RecordingSid", "")
        if not sid:
            return flow.RecordingFinished(None)
        return flow.RecordingFinished(flow.Recording(sid, parse_duration(form.get("RecordingDuration"))))
    if step == "record_empty":
        return flow.RecordingFinished(None)
    if step == "dialed":
        return flow.DialFinished(DIAL_RESULTS.get(form.get("DialCallStatus", ""), flow.DialResult.FAILED))
    return None


def spoken_event(query: Mapping[str, str]) -> flow.Event | None:
    """`digits=14188` (a request number said) or `answer=yes|no`; None for anything else."""
    digits, answer = query.get("digits", ""), query.get("answer", "")
    if digits and len(digits) <= MAX_LENGTH and digits.isascii() and digits.isdigit():
        return flow.SpokenNumber(digits)
    if answer in ("yes", "no"):
        return flow.SpokenAnswer(answer == "yes")
    return None


MAX_DURATION = 24 * 3600


def parse_duration(raw: str | None) -> float | None:
    """Twilio's RecordingDuration / CallDuration (whole seconds), None if absent or garbage.

    No call lasts more than a day (Twilio ends them at 24 h): a negative or larger
    value is garbage, not a duration to store.
    """
    try:
        seconds = int((raw or "")[:20])
    except ValueError:
        return None
    return float(seconds) if 0 <= seconds <= MAX_DURATION else None


def same_origin(url: str, base: str) -> bool:
    """True if `url` is under `base` (same scheme, host, port and path prefix)."""
    u, b = urlsplit(url), urlsplit(base)
    if (u.scheme, u.netloc.lower()) != (b.scheme, b.netloc.lower()) or u.username or "@" in u.netloc:
        return False
    prefix = b.path.rstrip("/") + "/"
    return u.path.startswith(prefix) and ".." not in u.path
