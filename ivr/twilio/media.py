"""Twilio Media Streams: a call's audio over a WebSocket, decoded live while the caller records
or while a request number may be said (ivr.twilio.spoken).

When HOTLINE_LIVE_SPEECH is on, the TwiML of a voicemail starts a stream just before
`<Record>` (`<Start><Stream name="voicemail" url="wss://…/twilio/media">`) and stops it
in the document that follows the recording. Twilio then opens a WebSocket to
`/twilio/media` and sends JSON text messages: `connected`, `start` (stream and call
ids, the media format: µ-law, 8 kHz, mono), `media` (base64 µ-law, 20 ms each),
`dtmf`, `stop`. The audio goes to a `LiveCall` (ivr.livecall) as one voicemail; its
words are saved when the stream stops and the recording stored later takes them.

The upgrade request is signed like the webhooks (X-Twilio-Signature over the wss://
URL, no parameters): anything else gets 403 and no WebSocket. Limits: a message of at
most 64 KiB, a stream no longer than the recording limit plus a minute, at most
MAX_STREAMS streams decoded at once per process (more are refused: the offline job
transcribes those). A stream that breaks only loses the live words.

The WebSocket library is flask-sock (on simple-websocket, both by Miguel Grinberg,
maintained, small, pure Python, threads like the rest of the app): a route in the
Flask app, so the signature, settings and database are the webhooks' own. It needs a
server that hands over the socket: gunicorn (what `hotline serve` runs) or
Werkzeug's; under one that cannot, `/twilio/media` answers 501.

Errors: MediaStreamError (a HotlineError) for a message that is not Twilio's.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import re
import threading
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import soundfile
from flask import Blueprint, Response, current_app, request
from flask_sock import Sock

from hotline.errors import HotlineError

log = logging.getLogger(__name__)

bp = Blueprint("twilio_media", __name__, url_prefix="/twilio")
sock = Sock()

MAX_MESSAGE = 64 * 1024
MAX_STREAMS = 32
IDLE_SECONDS = 10.0  # Twilio sends media every 20 ms while the call is up
STREAM_NAME = "voicemail"
_SID = re.compile(r"^[A-Za-z]{2}[0-9a-fA-F]{32}$")


class MediaStreamError(HotlineError):
    """A WebSocket message that is not one of Twilio's Media Streams messages."""


@dataclass(frozen=True)
class Connected:
    protocol: str


@dataclass(frozen=True)
class Start:
    stream_sid: str
    call_sid: str
    parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Media:
    mulaw: bytes
    track: str = "inbound"


@dataclass(frozen=True)
class Dtmf:
    digit: str


@dataclass(frozen=True)
class Stop:
    pass


Message = Connected | Start | Media | Dtmf | Stop


def parse_message(text: str | bytes) -> Message | None:
    """One Media Streams message; None for a kind this hotline does not use (mark)."""
    if len(text) > MAX_MESSAGE:
        raise MediaStreamError("message longer than 64 KiB")
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MediaStreamError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MediaStreamError("not a JSON object")
    event = data.get("event")
    if event == "connected":
        return Connected(str(data.get("protocol", ""))[:40])
    if event == "start":
        start = _object(data, "start")
        stream_sid, call_sid = str(start.get("streamSid", "")), str(start.get("callSid", ""))
        if not _SID.match(stream_sid) or not _SID.match(call_sid):
            raise MediaStreamError("start without valid streamSid and callSid")
        fmt = start.get("mediaFormat") or {}
        if not isinstance(fmt, dict) or (fmt.get("encoding"), fmt.get("sampleRate"), fmt.get("channels")) != (
            "audio/x-mulaw",
            8000,
            1,
        ):
            raise MediaStreamError(f"unexpected media format: {str(fmt)[:200]}")
        raw = start.get("customParameters") or {}
        params = {str(k)[:40]: str(v)[:200] for k, v in raw.items()} if isinstance(raw, dict) else {}
        return Start(stream_sid, call_sid, params)
    if event == "media":
        media = _object(data, "media")
        try:
            payload = base64.b64decode(str(media.get("payload", "")), validate=True)
        except (binascii.Error, ValueError):
            raise MediaStreamError("media payload is not base64") from None
        return Media(payload, str(media.get("track", "inbound"))[:20])
    if event == "dtmf":
        digit = str(_object(data, "dtmf").get("digit", ""))
        if len(digit) != 1 or digit not in "0123456789*#":
            raise MediaStreamError(f"dtmf that is not one key: {digit[:10]!r}")
        return Dtmf(digit)
    if event == "stop":
        return Stop()
    if event == "mark":
        return None
    raise MediaStreamError(f"unknown event {str(event)[:40]!r}")


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise MediaStreamError(f"{key} message without its {key!r} object")
    return value


@cache
def _mulaw_table() -> np.ndarray:
    # libsndfile's G.711 µ-law decoder, once for the 256 codes (the standard library's
    # audioop is deprecated and gone in Python 3.13).
    raw = io.BytesIO(bytes(range(256)))
    return soundfile.read(raw, format="RAW", subtype="ULAW", samplerate=8000, channels=1, dtype="int16")[0]


def mulaw_to_pcm(data: bytes) -> bytes:
    """G.711 µ-law bytes → 16-bit signed little-endian PCM."""
    return _mulaw_table()[np.frombuffer(data, dtype=np.uint8)].astype("<i2").tobytes()


# --- the endpoint -----------------------------------------------------------------------

_streams = threading.BoundedSemaphore(MAX_STREAMS)


@bp.before_request
def check_upgrade() -> Response | None:
    """Only Twilio's signed WebSocket upgrade reaches the stream."""
    from ivr.twilio.webhooks import _plain, _settings, _signed, _validator

    settings = _settings()
    if not settings.live_speech:
        return _plain("live speech is off (HOTLINE_LIVE_SPEECH)", 404)
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return _plain("WebSocket only", 400)
    if not ("werkzeug.socket" in request.environ or "gunicorn.socket" in request.environ):
        return _plain("this HTTP server cannot hand over WebSockets: run `hotline serve`", 501)
    if not settings.twilio_auth_token:
        if settings.twilio_insecure:
            return None
        return _plain("Twilio media streams are disabled: set TWILIO_AUTH_TOKEN.", 503)
    if not settings.public_url:
        return _plain("Twilio media streams are disabled: set HOTLINE_PUBLIC_URL.", 503)
    url = stream_url(settings.public_url) + (
        "?" + request.query_string.decode("latin-1") if request.query_string else ""
    )
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not _signed(_validator(settings.twilio_auth_token), url, signature):
        log.warning("Twilio media stream with a missing or wrong signature")
        return _plain("invalid Twilio signature", 403)
    return None


def stream_url(public_url: str) -> str:
    """The wss:// URL Twilio streams to (and signs)."""
    return re.sub(r"^http", "ws", public_url.rstrip("/")) + "/twilio/media"


@sock.route("/media", bp=bp)
def media(ws: Any) -> None:
    """One Media Stream from Twilio to its end."""
    if not _streams.acquire(blocking=False):
        log.warning("Twilio media stream refused: %d streams already", MAX_STREAMS)
        ws.close(reason=1013, message="too many streams")
        return
    try:
        from ivr.twilio.webhooks import _store

        run_stream(ws, current_app.extensions["hotline.settings"], _store())
    finally:
        _streams.release()


def run_stream(ws: Any, settings: Any, store: Any) -> str:
    """Read one stream's messages into a LiveCall; how it ended ('stop', or what broke).

    A stream started with a `listen` parameter hears a spoken request number or «да»
    instead of a voicemail (ivr.twilio.spoken); it ends when that is heard or the call
    moved on.
    """
    from simple_websocket import ConnectionClosed

    from hotline.transcription.live import live_model
    from ivr.livecall import LiveCall
    from ivr.twilio.spoken import SpokenInput, listen_of, speech_input

    live: LiveCall | None = None
    spoken: SpokenInput | None = None  # a stream that listens for a spoken number or answer
    how, complete = "closed without stop", False
    audio_limit = (settings.record_max_seconds + 60) * 8000
    samples = 0
    try:
        while True:
            raw = ws.receive(timeout=IDLE_SECONDS)
            if raw is None:
                how = "no message from Twilio"
                break
            message = parse_message(raw)
            if isinstance(message, Start) and live is None:
                model, language = live_model(settings.vosk_model)
                live = LiveCall(
                    store.db,
                    backend="twilio",
                    call_id=message.call_sid,
                    stream_id=message.stream_sid,
                    model=model,
                    language=language,
                    model_name=settings.vosk_model.name,
                )
                listen = listen_of(message.parameters)
                if listen is not None and speech_input(settings):
                    spoken = SpokenInput(settings, store, message.call_sid, listen, live)
                else:
                    live.begin_recording(None)  # the RecordingSid comes with the `recorded` webhook
            elif isinstance(message, Media) and live is not None and message.track.startswith("inbound"):
                samples += len(message.mulaw)
                if samples > audio_limit:
                    how = "stream longer than the recording limit"
                    break
                live.audio(mulaw_to_pcm(message.mulaw))
                if spoken is not None and (over := spoken.after_audio()) is not None:
                    how, complete = over, True  # the WebSocket closes; the next document stops the stream
                    break
            elif isinstance(message, Dtmf) and live is not None:
                live.dtmf(message.digit)
                if spoken is not None:
                    how, complete = "the caller is typing", True  # the Gather has the keys
                    break
            elif isinstance(message, Stop):
                how, complete = "stop", True
                break
    except MediaStreamError as exc:
        how = f"bad message: {exc}"
    except ConnectionClosed:
        how = "connection closed without stop"
    except Exception as exc:  # noqa: BLE001 - the call goes on; the offline job transcribes it
        how = f"internal error: {type(exc).__name__}"
        log.exception("Twilio media stream failed")
    if live is not None:
        live.close(complete, how)
    if spoken is not None:
        spoken.close()
    if not complete:
        log.warning("Twilio media stream ended: %s", how)
    return how
