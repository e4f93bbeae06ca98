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
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from hotline.db import DatabaseUnavailable
from hotline.settings import Settings
from hotline.storage import wav_duration
from ivr import flow
from ivr.asterisk.agi import ESCAPE_DIGITS, AgiCommandError, AgiError, AgiProtocolError, ChannelGone
from ivr.asterisk.amilog import AGI_STARTED
from ivr.asterisk.fastagi import AgiChannel
from ivr.livecall import (
    LISTEN_STEP_MS,
    begin_live_recording,
    listen_for_number,
    live_stream_id,
    spoken_number_event,
)
from ivr.speech import render_keys

if TYPE_CHECKING:
    from ivr.asterisk.orphans import OrphanSweeper
    from ivr.store import CallStore

log = logging.getLogger(__name__)
T = TypeVar("T")

BACKEND = "asterisk"
_CALL_ID = re.compile(r"^[\w.\-]{1,100}$")
DIAL_RESULTS = {
    "ANSWER": flow.DialResult.ANSWERED,
    "NOANSWER": flow.DialResult.NO_ANSWER,
    "BUSY": flow.DialResult.BUSY,
}


def dial_string(target: str, timeout_seconds: int) -> str:
    """Dial()'s argument: a dial string as configured, or an E.164 number via the outbound context."""
    channel = target if "/" in target else f"Local/{target.lstrip('+')}@hotline-outbound"
    return f"{channel},{timeout_seconds}"


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
        self.call_id = linked if _CALL_ID.match(linked) else env.uniqueid
        # The AudioSocket UUID of the call's live audio stream, when the dialplan starts one.
        self.stream_id = live_stream_id(env.args)
        self.carried = ""  # keys typed over a prompt: the start of the next input
        self.recordings = 0
        self.gone: str | None = None  # why the channel is gone, once it is
        self.answered = False
        self.database_down = False
        self.unsaved: str | None = None  # a recording on disk whose step is not committed yet

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def run(self) -> None:
        """The whole call, from the greeting to the closed call-log entry."""
        status, cause = "completed", None
        try:
            await self._db(
                self.store.log, self.call_id, AGI_STARTED, self.env.channel, uniqueid=self.env.uniqueid
            )
            await self.channel.answer()
            self.answered = True
            step = await self._db(
                self.store.handle,
                self.call_id,
                flow.CallStarted(self.env.callerid),
                from_number=self.env.callerid,
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
        except (AgiCommandError, AgiProtocolError) as exc:
            status, cause = "failed", f"AGI error: {exc}"
            log.warning("FastAGI call %s: %s", self.call_id, exc)
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

    async def _discard_recording(self, event: flow.Event) -> None:
        # Committed: the request holds its own copy in the data dir (or the recording
        # was empty), so the file in the folder shared with Asterisk can go.
        if isinstance(event, flow.RecordingFinished) and event.recording and event.recording.path:
            await self._db(Path(event.recording.path).unlink, missing_ok=True)

    async def _close(self, status: str, cause: str | None) -> None:
        try:
            await self._db(self.store.hang_up, self.call_id, backend_status=status, hangup_cause=cause)
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
        for key in render_keys(action.segments):
            key_pressed = await self.channel.stream_file(self.sound(key), escape)
            if key_pressed:
                self.carried += key_pressed
                return

    async def gather(self, action: flow.Gather) -> flow.Event:
        typed, self.carried = self.carried, ""
        finish = action.finish_on_key
        # A request number may also be said: listen on the call's stream between keys.
        live = await self._db(listen_for_number, self.stream_id, action) if not typed else None
        waited = 0
        while not (finish and typed.endswith(finish)) and len(typed) < action.max_digits:
            if live is not None and not typed:
                if live.heard is not None:
                    heard = live.heard
                    await self._db(
                        self.store.log, self.call_id, "number_spoken", heard.digits, valid=heard.valid
                    )
                    return spoken_number_event(heard.digits)
                if live.closed:  # the stream broke: the keypad alone, as without a stream
                    live = None
            step = LISTEN_STEP_MS if live is not None and not typed else action.timeout_seconds * 1000
            key = await self.channel.wait_for_digit(step)
            if key is None:
                waited += step
                if live is not None and not typed and waited < action.timeout_seconds * 1000:
                    continue
                break
            typed += key
        if finish and typed.endswith(finish):
            typed = typed[: -len(finish)]
        return flow.DigitsEntered(typed) if typed else flow.NoInput()

    async def record(self, action: flow.Record) -> flow.Event:
        self.carried = ""
        self.recordings += 1
        name = f"{self.env.uniqueid}-{self.recordings}"
        folder = self.settings.agi_recordings_dir
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
        if outcome.how == "hangup":
            self.gone = "caller hung up while recording"
        elif outcome.how == "error":
            await self._db(self.store.log, self.call_id, "record_error", "Asterisk could not write the file")
            return flow.RecordingFinished(None)
        file = folder / f"{name}.wav"
        if not await self._db(file.exists):
            # Asterisk writes on its own machine: the folder must be shared (README).
            await self._db(self.store.log, self.call_id, "recording_missing", str(file))
            heard = (outcome.endpos or 0) / 8000
            return flow.RecordingFinished(flow.Recording(ref=name, duration_seconds=heard))
        seconds = await self._db(wav_duration, file)
        return flow.RecordingFinished(flow.Recording(ref=name, duration_seconds=seconds, path=str(file)))

    async def transfer(self, action: flow.Transfer) -> flow.Event:
        self.carried = ""
        reply = await self.channel.exec("Dial", dial_string(action.target, action.timeout_seconds))
        status = await self.channel.get_variable("DIALSTATUS")
        if reply.result == "-1" or self.channel.hung_up:
            self.gone = "the call ended after the transfer"
        result = DIAL_RESULTS.get((status or "").upper(), flow.DialResult.FAILED)
        await self._db(self.store.log, self.call_id, "dial_status", status or "", dial_status=status)
        return flow.DialFinished(result)


def make_handler(
    store: CallStore, settings: Settings, sweeper: OrphanSweeper | None = None
) -> Callable[[AgiChannel], Any]:
    """The FastAGI server's handler: one AgiCall per session, then a sweep of left recordings."""
    from ivr.asterisk.orphans import OrphanSweeper

    sweeper = sweeper or OrphanSweeper(store, settings.agi_recordings_dir)

    async def handle(channel: AgiChannel) -> None:
        call = AgiCall(store, settings, channel)
        try:
            await call.run()
        finally:
            if call.database_down:
                sweeper.soon()
            sweeper.after_call()

    return handle
