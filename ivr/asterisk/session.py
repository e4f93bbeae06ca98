"""One call over FastAGI: the shared call flow, carried out with AGI commands.

The flow (`ivr.flow`) decides; `ivr.store.CallStore` runs each of its steps against
the database in a worker thread (so the event loop never waits on the database);
this module only turns the flow's actions into AGI commands and AGI answers into the
flow's events. However the call ends — the flow hangs up, the caller hangs up, the
socket drops, Asterisk refuses a command — the call-log entry is closed with what
really happened, and a recording already on disk is kept and becomes its request.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from hotline import health
from hotline.db import DatabaseUnavailable
from hotline.phones import stored_phone
from hotline.settings import Settings
from hotline.storage import wav_duration
from hotline.transcription.audio import AudioError, has_speech
from hotline.vocabulary import CallEventKind
from ivr import flow
from ivr.asterisk import agi
from ivr.asterisk.agi import (
    ESCAPE_DIGITS,
    AgiCommandError,
    AgiError,
    AgiProtocolError,
    AnswerTimeout,
    ChannelGone,
    clip,
)
from ivr.asterisk.amilog import AGI_STARTED
from ivr.asterisk.fastagi import AgiChannel, Stopping
from ivr.asterisk.recordings import inside, recording_name, unlink_inside
from ivr.livecall import (
    LISTEN_STEP_MS,
    begin_live_recording,
    heard_event,
    listen_for_number,
    live_stream_id,
)
from ivr.speech import Text, render_audio
from voice_models.prompt_audio import speak_cached

if TYPE_CHECKING:
    from ivr.asterisk.orphans import OrphanSweeper
    from ivr.store import CallStore

log = logging.getLogger(__name__)
T = TypeVar("T")

BACKEND = "asterisk"
DIAL_RESULTS = {
    "ANSWER": flow.DialResult.ANSWERED,
    "NOANSWER": flow.DialResult.NO_ANSWER,
    "BUSY": flow.DialResult.BUSY,
}
TALK_LIMIT = 4 * 3600  # how long a call with the duty engineer may last before we stop waiting
HANGUP_CAUSE_MAX = 80  # Call.hangup_cause's column
#: The health check an unwritable recordings folder fails (hotline.health; /healthz).
RECORDINGS_CHECK = "agi_recordings"

# Call-log events and outcomes of this adapter (besides the flow's own).
PROMPT_MISSING = CallEventKind.PROMPT_MISSING
RECORDING_UNWRITABLE = CallEventKind.RECORDING_UNWRITABLE
RECORDING_SILENT = CallEventKind.RECORDING_SILENT
SERVICE_RESTART = CallEventKind.SERVICE_RESTART
SESSION_REFUSED = CallEventKind.SESSION_REFUSED
ANSWER_TIMEOUT = CallEventKind.ANSWER_TIMEOUT


def dial_string(target: str, timeout_seconds: int) -> str:
    """Dial()'s argument: a dial string as configured, or an E.164 number via the outbound context."""
    channel = target if "/" in target else f"Local/{target.lstrip('+')}@hotline-outbound"
    return f"{channel},{timeout_seconds}"


class HandBack(Exception):
    """End the session and let the dialplan's fallback (voicemail) take the caller."""

    def __init__(self, prompt: str, *, outcome: str, cause: str, status: str = "completed"):
        super().__init__(cause)
        self.prompt, self.outcome, self.cause, self.status = prompt, outcome, cause, status


class AgiCall:
    """Runs the call flow for one FastAGI session."""

    def __init__(self, store: CallStore, settings: Settings, channel: AgiChannel):
        self.store = store
        self.settings = settings
        self.channel = channel
        env = channel.environment
        assert env is not None, "read the AGI environment first"
        self.env = env
        # The dialplan passes ${CHANNEL(linkedid)} so the AMI call log and we share one row.
        linked = env.args[0] if env.args else ""
        self.call_id = linked if agi.UNIQUEID.match(linked) else env.uniqueid
        # The AudioSocket UUID of the call's live audio stream, when the dialplan starts one.
        self.stream_id = live_stream_id(env.args)
        self.number_said = False  # the last gather ended with a spoken number
        self.carried = ""  # keys typed over a prompt: the start of the next input
        self.recordings = 0
        self.gone: str | None = None  # why the channel is gone, once it is
        self.answered = False
        self.database_down = False
        self.unsaved: str | None = None  # a recording on disk whose step is not committed yet
        self.outcome: str | None = None  # why the hotline ended a call that achieved nothing
        self.missing: set[str] = set()  # prompts Asterisk could not play in this call

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # The store runs it: in a thread, or on the loop when it needs no I/O (ivr.livecalls).
        return await self.store.run(fn, *args, **kwargs)

    async def run(self) -> None:
        """The whole call, from the greeting to the closed call-log entry."""
        status, cause = "completed", None
        try:
            await self._db(
                self.store.log, self.call_id, AGI_STARTED, clip(self.env.channel), uniqueid=self.env.uniqueid
            )
            # Before the answer (the caller still hears it ring): parsing a new number costs
            # ~90 µs, which under a burst of calls added up to silence after the answer.
            caller = stored_phone(self.env.callerid)  # hotline.phones: E.164 or ≤ 40
            await self.channel.answer()
            self.answered = True
            step = await self._db(
                self.store.handle,
                self.call_id,
                flow.CallStarted(caller),
                from_number=caller,
                to_number=self.settings.support_number,
            )
            while True:
                event = await self.perform(step.actions)
                if event is None:
                    cause = "the hotline hung up"
                    break
                if isinstance(event, flow.RecordingFinished) and event.recording:
                    self.unsaved = event.recording.path
                step = await self._db(self.store.handle, self.call_id, event)
                await self._discard_recording(event)
                self.unsaved = None
                if self.gone:
                    break
        except ChannelGone as exc:
            self.gone = self.gone or exc.reason
        except Stopping:
            status, cause = await self._hand_back(self._restart())
        except asyncio.CancelledError:
            # The drain is over and this call is inside a command (a recording, say).
            status, cause = await self._hand_back(self._restart(), now=True)
        except HandBack as back:
            status, cause = await self._hand_back(back)
        except AnswerTimeout as exc:
            status, cause, self.outcome = "failed", clip(str(exc)), "failed"
            log.warning("FastAGI call %s: %s; the session is closed", self.call_id, exc)
            await self._event(ANSWER_TIMEOUT, str(exc))
        except (AgiCommandError, AgiProtocolError) as exc:
            status, cause = "failed", f"AGI error: {clip(str(exc))}"
            log.warning("FastAGI call %s: %s", self.call_id, clip(str(exc)))
            await self.channel.hangup()
        except DatabaseUnavailable as exc:
            status, cause = "failed", "database unavailable"
            self.database_down = True
            # The file stays in the recordings folder; import_orphans stores it later.
            kept = f"; recording {self.unsaved} kept for import" if self.unsaved else ""
            log.error("FastAGI call %s: %s%s", self.call_id, exc, kept)
            await self._apologise("database_unavailable")
        except Exception as exc:
            status, cause = "failed", f"internal error: {type(exc).__name__}"
            log.exception("FastAGI call %s failed", self.call_id)
            await self._apologise()
        finally:
            await self._close(status, cause or self.gone)

    def _restart(self) -> HandBack:
        log.warning(
            "FastAGI call %s: the service is restarting; the caller is handed to the dialplan's fallback",
            self.call_id,
        )
        return HandBack(SERVICE_RESTART, outcome=SERVICE_RESTART, cause="service restart")

    async def _hand_back(self, back: HandBack, *, now: bool = False) -> tuple[str, str]:
        """Tell the caller (`back.prompt`) and return the call to the dialplan with AGISTATUS=FAILURE.

        `now`: a command is still running on Asterisk's side, so the prompt and FAILURE
        are queued behind it instead of waiting for its answer.
        """
        self.outcome = back.outcome
        if back.outcome == SERVICE_RESTART:
            await self._event(SERVICE_RESTART, back.cause)
        prompt = self.sound(back.prompt)
        if now and self.channel.waiting:
            await self.channel.hand_back(agi.command("STREAM FILE", prompt, ""))
        else:
            with contextlib.suppress(AgiError, OSError):
                if not self.answered:
                    await self.channel.execute("ANSWER", force=True)
                await self.channel.execute("STREAM FILE", prompt, "", force=True)
            await self.channel.hand_back()
        return back.status, back.cause

    async def _event(self, kind: str, detail: str = "", **data: Any) -> None:
        """A call-log event; a database that is down only costs the event."""
        try:
            await self._db(self.store.log, self.call_id, kind, clip(detail), **data)
        except DatabaseUnavailable as exc:
            log.warning("FastAGI call %s: event %s not logged: %s", self.call_id, kind, exc)

    async def _discard_recording(self, event: flow.Event) -> None:
        # Committed: the request holds its own copy in the data dir (or the recording
        # was empty), so the file in the folder shared with Asterisk can go.
        if isinstance(event, flow.RecordingFinished) and event.recording and event.recording.path:
            await self._db(unlink_inside, self.settings.agi_recordings_dir, Path(event.recording.path))

    async def _close(self, status: str, cause: str | None) -> None:
        try:
            await self._db(
                self.store.hang_up,
                self.call_id,
                backend_status=status,
                hangup_cause=clip(cause, HANGUP_CAUSE_MAX) if cause else None,
                outcome=self.outcome,
            )
        except DatabaseUnavailable as exc:
            log.warning("FastAGI call %s: call-log entry left open: %s", self.call_id, exc)
        except Exception:  # noqa: BLE001 - the AMI log or a later report still closes it
            log.exception("FastAGI call %s: cannot close the call-log entry", self.call_id)

    async def _apologise(self, prompt: str = "technical_error") -> None:
        with contextlib.suppress(AgiError, OSError):
            if not self.answered:  # the database failed before the call was answered
                await self.channel.answer()
            await self.channel.stream_file(self.sound(prompt), "")
        await self.channel.hangup()

    def sound(self, key: str) -> str:
        return f"{self.settings.agi_sounds_prefix}/{key}"

    # --- actions -------------------------------------------------------------------

    async def perform(self, actions: list[flow.Action]) -> flow.Event | None:
        """Carry out the actions; the event that answers the last one (None: we hung up)."""
        for action in actions:
            if isinstance(action, flow.Speak):
                await self.speak(action)
            elif isinstance(action, flow.Gather):
                return await self.gather(action)
            elif isinstance(action, flow.Record):
                return await self.record(action)
            elif isinstance(action, flow.Transfer):
                return await self.transfer(action)
            elif isinstance(action, flow.HangUp):
                await self.channel.hangup()
                return None
        raise AgiProtocolError("the flow asked for nothing to wait on")  # a flow bug; end the call

    async def speak(self, action: flow.Speak) -> None:
        if action.barge_in and self.carried:
            return  # the caller is already typing the answer
        escape = ESCAPE_DIGITS if action.barge_in else ""
        for piece in render_audio(action.segments):
            sounds = await self.sounds(piece)
            if not await self.play_all(sounds, escape):
                return
            # Asterisk could not read the synthesised file (its mode, a folder on another
            # host): the shipped fallback, not silence.
            fallback = [self.sound(key) for key in piece.fallback] if isinstance(piece, Text) else []
            unplayed = bool(fallback) and sounds[-1] in self.missing and sounds[-1] not in fallback
            if unplayed and not await self.play_all(fallback, escape):
                return

    async def play_all(self, sounds: list[str], escape: str) -> bool:
        """Play the sounds in turn; False when the caller pressed a key (kept in `carried`)."""
        for sound in sounds:
            key_pressed = await self.play(sound, escape)
            if key_pressed:
                self.carried += key_pressed
                return False
        return True

    async def sounds(self, piece: str | Text) -> list[str]:
        """What STREAM FILE plays for a piece of speech: a shipped prompt, or free text.

        Free text (an engineer's question) has no shipped file: it is synthesised now
        into the speech cache under the data dir, which Asterisk reads by its absolute
        path; where that fails, the piece's fallback prompts are played instead.
        """
        if isinstance(piece, str):
            return [self.sound(piece)]
        cache = self.settings.data_dir / "speech"
        wav = await asyncio.to_thread(speak_cached, piece.text, cache, self.settings.prompt_voice)
        if wav is None:
            return [self.sound(key) for key in piece.fallback]
        intro = [self.sound(piece.intro)] if piece.intro else []
        return [*intro, str(wav.with_suffix(""))]  # STREAM FILE takes no extension

    async def play(self, sound: str, escape: str) -> str | None:
        """Play one sound file; the key that interrupted it. A file Asterisk cannot play is
        logged and skipped: only a dead channel ends the call."""
        playback = await self.channel.stream_file(sound, escape)
        if not playback.failed:
            return playback.key
        # `200 result=-1 endpos=0` is a hang-up or a file Asterisk does not have.
        if not await self.channel.alive():
            raise ChannelGone("hangup during playback or wait")
        await self._prompt_missing(sound)
        return None

    async def _prompt_missing(self, path: str) -> None:
        if path in self.missing:
            return
        self.missing.add(path)
        log.error(
            "FastAGI call %s: Asterisk cannot play the prompt %s (is it installed? "
            "deploy/asterisk/install-prompts.sh, HOTLINE_AGI_SOUNDS_PREFIX); the call goes on without it",
            self.call_id,
            path,
        )
        await self._event(PROMPT_MISSING, path, prompt=path)

    async def gather(self, action: flow.Gather) -> flow.Event:
        typed, self.carried = self.carried, ""
        finish = action.finish_on_key
        # A request number may also be said: listen on the call's stream between keys.
        answer, self.number_said = self.number_said, False  # a number read back: «да» / «нет» may follow
        live = None
        if self.stream_id and not typed:  # no stream, nothing to listen on: no trip to a thread
            live = await self._db(listen_for_number, self.stream_id, action, answer)
        waited = 0
        cancel = action.cancel_key  # ends the input at once («*»: back to the menu)
        while (
            not (finish and typed.endswith(finish))
            and not (cancel and cancel in typed)
            and len(typed) < action.max_digits
        ):
            if live is not None and not typed:
                heard = heard_event(live)
                if heard is not None:
                    self.number_said = isinstance(heard, flow.SpokenNumber)
                    return heard
                if live.closed:  # the stream broke: the keypad alone, as without a stream
                    live = None
            step = LISTEN_STEP_MS if live is not None and not typed else action.timeout_seconds * 1000
            key = await self.channel.wait_for_digit(step)
            if key is None:
                waited += step
                limit = action.timeout_seconds * 1000
                # A caller still saying the number gets up to twice the time (digits with pauses).
                if (
                    live is not None
                    and not typed
                    and (waited < limit or live.hearing_number and waited < 2 * limit)
                ):
                    continue
                break
            typed += key
            if not (finish and typed.endswith(finish)):  # the number's reads start before «#»
                self.store.read_ahead(self.call_id, flow.DigitsEntered(typed))
        if finish and typed.endswith(finish):
            typed = typed[: -len(finish)]
        return flow.DigitsEntered(typed) if typed else flow.NoInput()

    async def record(self, action: flow.Record) -> flow.Event:
        self.carried = ""
        self.recordings += 1
        name = recording_name(self.env.uniqueid, self.recordings)
        folder = self.settings.agi_recordings_dir
        with contextlib.suppress(OSError):  # Asterisk's side may see it even if we cannot make it
            await self._db(folder.mkdir, parents=True, exist_ok=True)
        live = await self._db(begin_live_recording, self.stream_id, self.call_id, name)
        outcome = await self.channel.record_file(
            str(folder / name),
            max_ms=action.max_seconds * 1000,
            silence_s=action.silence_seconds,
            escape_digits=action.finish_on_key,
            beep=action.beep,
        )
        if live is not None:  # before the step that stores the file, which then takes these words
            await self._db(live.end_recording)
        how = outcome.how
        if how == "unwritable":
            await self._recordings_unwritable(folder)
        if how == "beep_key":
            return flow.RecordingFinished(None)  # '#' during the beep: nothing was recorded
        if how == "beep_failed":
            if await self.channel.hangup_follows():
                raise ChannelGone("caller hung up during the beep")
            # The channel is up: Asterisk has no beep. Record without it.
            await self._prompt_missing("beep")
            if action.beep:
                self.recordings -= 1
                return await self.record(dataclasses.replace(action, beep=False))
            return flow.RecordingFinished(None)
        if how == "error":
            if not await self.channel.alive():
                raise ChannelGone("hangup while recording")
            await self._event("record_error", "Asterisk could not record")
            return flow.RecordingFinished(None)
        if how == "hangup":
            self.gone = "caller hung up while recording"
        return await self._recorded(folder, name, outcome.endpos)

    async def _recorded(self, folder: Path, name: str, endpos: int | None) -> flow.Event:
        """The event of a finished recording: the file as Asterisk left it, checked."""
        file = folder / f"{name}.wav"
        found = await self._db(inside, folder, file)
        if found is None:
            exists = await self._db(file.is_symlink) or await self._db(file.exists)
            if exists:  # a link or something odd in the shared folder: never read it
                log.error(
                    "FastAGI call %s: %s is not a plain file in %s; not read", self.call_id, file, folder
                )
                await self._event("recording_refused", str(file))
            else:
                # Asterisk writes on its own machine: the folder must be shared (README).
                # Every voicemail would come without its audio: an outage, as an unwritable
                # folder is, until a recording is found there again.
                await self._event("recording_missing", str(file))
                log.error(
                    "FastAGI call %s: Asterisk recorded %s, but it is not in %s on this host: "
                    "share the folder (HOTLINE_AGI_RECORDINGS_DIR, README)", self.call_id, file.name, folder
                )  # fmt: skip
                health.report(
                    self.settings.data_dir,
                    RECORDINGS_CHECK,
                    f"записи Asterisk не появляются в папке {folder}: она должна быть общей с Asterisk",
                )
            heard = (endpos or 0) / 8000
            return flow.RecordingFinished(flow.Recording(ref=name, duration_seconds=heard))
        if health.failing(self.settings.data_dir, RECORDINGS_CHECK):
            health.clear(self.settings.data_dir, RECORDINGS_CHECK)
            log.warning("FastAGI: recordings are written into %s again", folder)
        seconds = await self._db(wav_duration, found)
        speech = await self._db(_speech, found)
        if speech is False:
            await self._event(RECORDING_SILENT, name, seconds=seconds)
        return flow.RecordingFinished(
            flow.Recording(ref=name, duration_seconds=seconds, path=str(found), speech=speech)
        )

    async def _recordings_unwritable(self, folder: Path) -> None:
        log.error(
            "FastAGI call %s: Asterisk cannot write recordings into %s (RECORD FILE answered "
            "(writefile)); the caller is sent to the dialplan's voicemail",
            self.call_id,
            folder,
        )
        health.report(
            self.settings.data_dir,
            RECORDINGS_CHECK,
            f"Asterisk не может записывать сообщения в папку {folder}",
        )
        await self._event(RECORDING_UNWRITABLE, str(folder), folder=str(folder))
        raise HandBack(
            "recording_unavailable", outcome="failed", cause="recordings folder not writable", status="failed"
        )

    async def transfer(self, action: flow.Transfer) -> flow.Event:
        self.carried = ""
        reply = await self.channel.exec(
            "Dial",
            dial_string(action.target, action.timeout_seconds),
            wait=action.timeout_seconds + TALK_LIMIT,
        )
        status = await self.channel.get_variable("DIALSTATUS")
        if reply.result == "-1" or self.channel.hung_up:
            self.gone = "the call ended after the transfer"
        result = DIAL_RESULTS.get((status or "").upper(), flow.DialResult.FAILED)
        await self._db(
            self.store.log, self.call_id, "dial_status", clip(status or ""), dial_status=clip(status or "")
        )
        return flow.DialFinished(result)


def _speech(path: Path) -> bool | None:
    """Whether a recording holds speech; None when it cannot be decoded (kept as it is)."""
    try:
        return has_speech(path)
    except AudioError:
        return None


class CallHandler:
    """The FastAGI server's handler: one AgiCall per session, then a sweep of left recordings."""

    def __init__(self, store: CallStore, settings: Settings, sweeper: OrphanSweeper):
        self.store, self.settings, self.sweeper = store, settings, sweeper

    async def __call__(self, channel: AgiChannel) -> None:
        call = AgiCall(self.store, self.settings, channel)
        try:
            await call.run()
        finally:
            if call.database_down:
                self.sweeper.soon()
            self.sweeper.after_call()

    async def refused(self, channel: AgiChannel, why: str) -> None:
        """A call handed back to the dialplan without running: the call log says so."""
        env = channel.environment
        assert env is not None
        linked = env.args[0] if env.args else ""
        call_id = linked if agi.UNIQUEID.match(linked) else env.uniqueid
        outcome = SERVICE_RESTART if why == "stopping" else SESSION_REFUSED
        cause = "service restart" if why == "stopping" else "too many calls at once"
        try:
            await asyncio.to_thread(self.store.log, call_id, SESSION_REFUSED, cause, uniqueid=env.uniqueid)
            await asyncio.to_thread(
                self.store.hang_up,
                call_id,
                backend_status="refused",
                hangup_cause=cause,
                outcome=outcome,
                from_number=env.callerid,
                to_number=self.settings.support_number,
            )
        except Exception as exc:  # noqa: BLE001 - the refusal is in the service log already
            log.warning("FastAGI call %s: refusal not logged: %s", call_id, clip(str(exc)))


def make_handler(store: CallStore, settings: Settings, sweeper: OrphanSweeper | None = None) -> CallHandler:
    """The FastAGI server's handler for these settings."""
    from ivr.asterisk.orphans import OrphanSweeper

    return CallHandler(store, settings, sweeper or OrphanSweeper(store, settings.agi_recordings_dir))
