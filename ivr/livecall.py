"""One call's audio stream decoded live, whichever backend streams it (AudioSocket, Twilio).

`LiveCall` is the sink a stream feeds (`audio`, `dtmf`, `close`); the call's adapter
marks the stretches that are voicemail (`begin_recording` / `end_recording`). While a
recording goes on the audio goes to a `LiveRecognizer`; its partial text is written to
the call's `LiveTranscript` row about once a second (the dashboard reads it there),
and its final words when the recording ends (hotline.transcription.live_store gives
them to the stored recording). Between recordings, a `NumberListener` may listen for a
spoken request number (`listen_for_number`), told how long the issued numbers are
(`issued_number_length`, read once a minute) so that a complete number is taken at
once. Thread-safe: the stream's thread feeds audio while the call's adapter begins and
ends recordings from its own.

`LiveCalls` is this process's registry of calls whose stream is connected, by the
stream's id (the AudioSocket UUID the dialplan hands to both AudioSocket and FastAGI).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from hotline import registry
from hotline.db import Database
from hotline.transcription import live_store
from hotline.transcription.live import (
    AnswerListener,
    LiveRecognizer,
    NumberLanguage,
    NumberListener,
    SpokenNumber,
)
from hotline.transcription.recognizer import Recognition

log = logging.getLogger(__name__)

PARTIAL_EVERY = 1.0  # seconds between two writes of the partial text
#: Seconds the length of the issued request numbers is kept: it changes once in a tenfold
#: growth of the counter (99999 → 100000), and a stale one only costs a read-back refused.
NUMBER_LENGTH_TTL = 60.0
_number_lengths: dict[str, tuple[float, int]] = {}


def issued_number_length(db: Database) -> int | None:
    """How many digits the issued request numbers have, from this process's copy (read from
    the database at most once a NUMBER_LENGTH_TTL); None before the first number, or when
    the database cannot say (the listener then waits for the caller's pause, as before)."""
    now = time.monotonic()
    cached = _number_lengths.get(db.url)
    if cached is not None and now - cached[0] < NUMBER_LENGTH_TTL:
        return cached[1]
    try:
        with db.transaction() as conn:
            length = registry.issued_number_length(conn)
    except Exception:  # noqa: BLE001 - the number is still heard, after the pause
        log.warning("the length of the request numbers could not be read", exc_info=True)
        return None
    if length is not None:  # none issued yet: read again next time
        _number_lengths[db.url] = (now, length)
    return length


class LiveCall:
    """The live decoding of one call's audio."""

    def __init__(
        self,
        db: Database,
        *,
        backend: str,
        call_id: str,
        stream_id: str,
        model: Any,
        language: NumberLanguage,
        model_name: str = "",
    ):
        self.db = db
        self.backend, self.call_id, self.stream_id = backend, call_id, stream_id
        self.model, self.language, self.model_name = model, language, model_name
        self._lock = threading.Lock()
        self._recording: LiveRecognizer | None = None
        self._key: str | None = None
        self._recordings = 0
        self._last_partial = 0.0
        self._listener: NumberListener | None = None
        self.heard: SpokenNumber | None = None
        self._answer_listener: AnswerListener | None = None
        self.answer: bool | None = None  # «да» / «нет» heard after a number was read back
        self.keys = ""  # DTMF seen on the stream
        self.closed = False
        self.broken = False

    # --- the stream's side ---
    def audio(self, pcm: bytes) -> None:
        """More audio from the line (8 kHz s16le)."""
        with self._lock:
            if self.closed:
                return
            if self._recording is not None:
                self._recording.feed(pcm)
                now = time.monotonic()
                if now - self._last_partial >= PARTIAL_EVERY and self._key:
                    self._last_partial = now
                    self._write_partial(self._key, self._recording.partial)
            elif self._listener is not None:
                number = self._listener.feed(pcm)
                if number is not None:
                    self.heard, self._listener = number, None
            elif self._answer_listener is not None:
                answer = self._answer_listener.feed(pcm)
                if answer is not None:
                    self.answer, self._answer_listener = answer, None

    def dtmf(self, key: str) -> None:
        with self._lock:
            self.keys += key

    def close(self, complete: bool, why: str = "") -> None:
        """The stream ended: a recording in progress ends with it (broken if the stream broke)."""
        with self._lock:
            if self.closed:
                return
            self.closed, self.broken = True, not complete
            self._finish(complete)
        if not complete:
            log.warning("live stream of call %s broke: %s", self.call_id, why)

    # --- the call's side ---
    def begin_recording(self, ref: str | None) -> str:
        """A voicemail starts now; its live transcript's key."""
        with self._lock:
            self._finish(complete=not self.broken)
            self._recordings += 1
            key = f"{self.backend}:{self.stream_id}:{self._recordings}"
            live_store.open_live(
                self.db,
                stream_key=key,
                backend=self.backend,
                call_id=self.call_id,
                recording_ref=ref,
                model=self.model_name,
            )
            if self.closed:  # no audio will come: the offline job transcribes the file
                live_store.finish_live(self.db, key, Recognition(""), complete=False)
                return key
            self._key, self._recording = key, LiveRecognizer(self.model, name=self.model_name)
            self._last_partial = time.monotonic()
            return key

    def end_recording(self) -> None:
        """The voicemail ended: its final words go to the database."""
        with self._lock:
            self._finish(complete=not self.broken)

    def listen_for_number(self) -> None:
        """Listen for a spoken request number from now on (the keypad still works)."""
        length = issued_number_length(self.db)
        with self._lock:
            self.heard, self.answer, self._answer_listener = None, None, None
            self._listener = NumberListener(self.model, self.language, length=length)

    @property
    def hearing_number(self) -> bool:
        """True while the caller is saying a request number, or has said one not yet taken."""
        with self._lock:
            return self.heard is not None or (self._listener is not None and self._listener.hearing)

    def listen_for_answer(self) -> None:
        """Listen for «да» / «нет» from now on (the keypad still works)."""
        with self._lock:
            self.heard, self.answer, self._listener = None, None, None
            self._answer_listener = AnswerListener(self.model, self.language)

    def _finish(self, complete: bool) -> None:
        if self._recording is None or self._key is None:
            return
        recognizer, key = self._recording, self._key
        self._recording = self._key = None
        try:
            live_store.finish_live(self.db, key, recognizer.finish(), complete=complete)
        except Exception:  # the offline job still transcribes the file
            log.exception("live transcript %s not saved", key)

    def _write_partial(self, key: str, text: str) -> None:
        try:
            live_store.update_partial(self.db, key, text)
        except Exception:  # noqa: BLE001 - only the dashboard's preview is late
            log.warning("partial transcript %s not saved", key, exc_info=True)


class LiveCalls:
    """The calls of this process whose audio stream is connected, by stream id."""

    def __init__(self) -> None:
        self._calls: dict[str, LiveCall] = {}
        self._lock = threading.Lock()

    def add(self, call: LiveCall) -> None:
        with self._lock:
            self._calls[call.stream_id] = call

    def get(self, stream_id: str) -> LiveCall | None:
        with self._lock:
            return self._calls.get(stream_id)

    def remove(self, stream_id: str) -> None:
        with self._lock:
            self._calls.pop(stream_id, None)

    def __len__(self) -> int:
        return len(self._calls)


#: Calls whose AudioSocket stream is connected to this process (ivr.asterisk.audiosocket).
ASTERISK_STREAMS = LiveCalls()


def live_stream_id(agi_args: list[str]) -> str | None:
    """The AudioSocket UUID the dialplan passed as the second AGI argument, if a valid one."""
    import uuid

    if len(agi_args) < 2:
        return None
    try:
        return str(uuid.UUID(agi_args[1]))
    except ValueError:
        return None


def begin_live_recording(stream_id: str | None, call_id: str, ref: str) -> LiveCall | None:
    """Decode the voicemail `ref` live if the call's AudioSocket stream is connected here."""
    live = ASTERISK_STREAMS.get(stream_id) if stream_id else None
    if live is None:
        return None
    live.call_id = call_id
    try:
        live.begin_recording(ref)
    except Exception:  # the database, say: the call goes on and the offline job transcribes the file
        log.exception("live transcript of %s not started", ref)
        return None
    return live


#: While a number may be said, the FastAGI session waits for keys in steps this long
#: and looks at what the stream heard in between: a number heard waits up to this long
#: for its read-back (on average half), for one AGI command a step.
LISTEN_STEP_MS = 250


def listen_for_number(stream_id: str | None, gather: Any, answer: bool = False) -> LiveCall | None:
    """Start listening on the call's stream, if one is here: for a request number at the
    number question, for «да» / «нет» when `answer` (a number was just read back)."""
    if not stream_id:
        return None
    number = gather.finish_on_key == "#" and gather.max_digits > 1
    if not (number or (answer and gather.max_digits == 1)):
        return None
    live = ASTERISK_STREAMS.get(stream_id)
    if live is None or live.closed:
        return None
    if number:
        live.listen_for_number()
    else:
        live.listen_for_answer()
    return live


def heard_event(live: LiveCall) -> Any:
    """The flow's event for what the stream heard since listening began, None if nothing yet."""
    from ivr import flow

    if live.heard is not None:
        return spoken_number_event(live.heard.digits)
    if live.answer is not None:
        return flow.SpokenAnswer(live.answer)
    return None


def spoken_number_event(digits: str) -> Any:
    """The call flow's event for a number said on the line.

    The flow's own `SpokenNumber` (read back and confirmed with yes/no) once it has one;
    until then the digits as if typed: the Damm check and the lookup are the same.
    """
    from ivr import flow

    make = getattr(flow, "SpokenNumber", None)
    return make(digits) if make is not None else flow.DigitsEntered(digits)
