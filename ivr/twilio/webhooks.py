"""The Twilio adapter: a Flask blueprint that runs the call flow on voice webhooks.

URLs (all POST, all signed by Twilio, checked against HOTLINE_PUBLIC_URL + path + query):

- `/twilio/voice`: the number's voice webhook (a call comes in);
- `/twilio/status`: the number's call status callback (final status and duration);
- `/twilio/step/<step>?seq=N`: the project's own action URLs handed out in TwiML
  (`digits`, `timeout`, `recorded`, `record_empty`, `dialed`);
- `/twilio/recording`: the recordingStatusCallback. It downloads the recording, only
  from HOTLINE_TWILIO_API_BASE, with the account's credentials, and stores it once
  per RecordingSid; transcription is queued, never run here.

`GET /twilio/prompts/<key>.wav` serves the prompt audio for HOTLINE_PROMPTS=play.
A missing or forged signature gets 403 and nothing is written; with no auth token
the webhooks refuse to work unless HOTLINE_TWILIO_INSECURE_DEV is set.
"""

from __future__ import annotations

import functools
import hmac
import logging
import os
import tempfile
from typing import Any
from urllib.parse import urlencode

import httpx
from flask import Blueprint, Response, abort, current_app, request, send_file
from twilio.request_validator import RequestValidator

from hotline.db import DatabaseUnavailable
from hotline.settings import Settings
from hotline.transcription.live_store import set_recording_ref
from ivr import flow
from ivr.store import CallStore
from ivr.twilio import twiml
from ivr.twilio.media import stream_url
from voice_models.prompts import catalogue, prompt_audio_path

log = logging.getLogger(__name__)

bp = Blueprint("twilio", __name__, url_prefix="/twilio")

DOWNLOAD_TIMEOUT = httpx.Timeout(10.0, connect=3.0)  # Twilio gives the whole exchange 15 s
XML = "text/xml; charset=utf-8"


def _settings() -> Settings:
    return current_app.extensions["hotline.settings"]


def _store() -> CallStore:
    ext = current_app.extensions
    if "hotline.twilio" not in ext:
        ext["hotline.twilio"] = CallStore(ext["hotline.db"], ext["hotline.settings"], "twilio")
    return ext["hotline.twilio"]


@bp.before_request
def check_signature() -> Response | None:
    """Refuse anything Twilio did not sign (prompt audio is public)."""
    if request.method == "GET":
        return None
    settings = _settings()
    if not settings.twilio_auth_token:
        if settings.twilio_insecure:
            return None
        log.error("Twilio webhook refused: TWILIO_AUTH_TOKEN is not set")
        return _plain("Twilio webhooks are disabled: set TWILIO_AUTH_TOKEN (and HOTLINE_PUBLIC_URL).", 503)
    if not settings.public_url:
        log.error("Twilio webhook refused: HOTLINE_PUBLIC_URL is not set")
        return _plain("Twilio webhooks are disabled: set HOTLINE_PUBLIC_URL to the URL Twilio calls.", 503)
    # Behind a proxy the URL we see is not the one Twilio signed: use the public one.
    url = settings.public_url + request.path
    if request.query_string:
        url += "?" + request.query_string.decode("latin-1")
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not _signed(_validator(settings.twilio_auth_token), url, signature):
        log.warning("Twilio webhook with a missing or wrong signature: %s", request.path)
        return _plain("invalid Twilio signature", 403)
    return None


@functools.lru_cache(maxsize=4)
def _validator(token: str) -> RequestValidator:
    return RequestValidator(token)


def _signed(validator: RequestValidator, url: str, signature: str) -> bool:
    # The URL exactly as configured first: one HMAC, where validate() always computes
    # two (the URL with and without its port, for Twilio's inconsistent signing).
    if hmac.compare_digest(validator.compute_signature(url, request.form), signature):
        return True
    return bool(validator.validate(url, request.form, signature))


@bp.post("/voice")
def voice() -> Response:
    """A call comes in."""
    form = request.form
    step = _store().handle(
        _call_sid(),
        flow.CallStarted(form.get("From")),
        from_number=form.get("From"),
        to_number=form.get("To"),
        seq=0,  # Twilio asking again for a call already going only hears the question again
    )
    return _twiml(step)


@bp.post("/step/<name>")
def step(name: str) -> Response:
    """The action of a Gather, Record, Redirect or Dial."""
    event = twiml.event_for(name, request.form)
    if event is None:
        abort(404)
    try:
        seq = int(request.args.get("seq", ""))
    except ValueError:
        seq = -1
    if name == "recorded" and request.form.get("RecordingSid") and _settings().live_speech:
        # The live stream of this recording learns which recording it is (ivr.twilio.media).
        set_recording_ref(_store().db, "twilio", _call_sid(), request.form["RecordingSid"][:100])
    return _twiml(_store().handle(_call_sid(), event, seq=seq), after_record=name in _AFTER_RECORD)


@bp.post("/recording")
def recording() -> Response:
    """recordingStatusCallback: the file exists now; fetch it and keep it with its request."""
    form = request.form
    settings, store, call_sid = _settings(), _store(), _call_sid()
    sid, url = form.get("RecordingSid", ""), form.get("RecordingUrl", "")
    status = form.get("RecordingStatus", "completed")
    duration = twiml.parse_duration(form.get("RecordingDuration"))
    if status != "completed" or not sid:
        store.log(call_sid, "recording_status", status, recording=sid)
        return _plain("", 204)
    if duration is not None and duration < 1:
        store.log(call_sid, "recording_empty", sid, recording=sid)
        return _plain("", 204)
    if not twiml.same_origin(url, settings.twilio_api_base):
        store.log(call_sid, "recording_refused", url[:300], recording=sid)
        return _plain("recording URL outside HOTLINE_TWILIO_API_BASE", 400)
    if store.has_recording(sid):
        return _plain("", 204)  # a retried callback
    path = _download(settings, url)
    if path is None:
        store.log(call_sid, "recording_download_failed", sid, recording=sid)
        return _plain("cannot fetch the recording", 502)  # Twilio retries the callback
    try:
        store.save_recording(call_sid, flow.Recording(sid, duration, path, speech=_has_speech(path)))
    finally:
        os.unlink(path)
    return _plain("", 204)


def _has_speech(path: str) -> bool | None:
    """Whether a downloaded recording holds speech (silence makes no request); None if undecodable."""
    from pathlib import Path

    from hotline.transcription.audio import AudioError, has_speech

    try:
        return has_speech(Path(path))
    except AudioError:
        return None


@bp.post("/status")
def status() -> Response:
    """The call status callback: the call's final status and duration."""
    form = request.form
    call_status = form.get("CallStatus", "")
    store = _store()
    if call_status in twiml.FINAL_CALL_STATUSES:
        duration = twiml.parse_duration(form.get("CallDuration"))
        store.hang_up(
            _call_sid(),
            backend_status=call_status,
            duration_seconds=int(duration) if duration is not None else None,
            from_number=form.get("From"),
            to_number=form.get("To"),
        )
    else:
        store.log(_call_sid(), "call_status", call_status)
    return _plain("", 204)


@bp.get("/prompts/<key>.wav")
def prompt_audio(key: str) -> Response:
    """The audio of one prompt, for <Play>."""
    if key not in catalogue():
        abort(404)
    path = prompt_audio_path(key)
    if not path.is_file():
        abort(404)
    return send_file(path, mimetype="audio/wav", max_age=86400)


@bp.errorhandler(Exception)
def failure(exc: Exception) -> Any:
    """A broken webhook: the caller hears an apology instead of Twilio's error tone."""
    if hasattr(exc, "code") and isinstance(exc.code, int) and exc.code < 500:  # HTTP errors: as they are
        return exc
    down = isinstance(exc, DatabaseUnavailable)
    if down:  # expected while the server restarts: one line, no traceback
        log.error("Twilio webhook %s: %s", request.path, exc)
    else:
        log.exception("Twilio webhook failed: %s", request.path)
    if request.endpoint in ("twilio.voice", "twilio.step"):
        prompt = flow.Prompt("database_unavailable" if down else "technical_error")
        actions: list[flow.Action] = [flow.Speak((prompt,)), flow.HangUp()]
        return Response(twiml.render(actions, _url_for(0), _speech()), status=200, mimetype=XML)
    # A 5xx makes Twilio retry the callback (the recording is fetched again then).
    return _plain("database unavailable", 503) if down else _plain("internal error", 500)


# --- helpers ---


def _call_sid() -> str:
    sid = request.form.get("CallSid", "")
    if not sid or len(sid) > 100:
        abort(400)
    return sid


def _twiml(step: flow.Step, after_record: bool = False) -> Response:
    settings = _settings()
    base = _public_base()
    live = stream_url(base) if settings.live_speech else None
    body = _render(
        tuple(step.actions),
        step.state.seq,
        base,
        settings.prompts_mode,
        settings.twilio_voice,
        live,
        after_record,
    )
    return Response(body, mimetype=XML)


_AFTER_RECORD = frozenset({"recorded", "record_empty"})


@functools.lru_cache(maxsize=1024)
def _render(
    actions: tuple[flow.Action, ...],
    seq: int,
    base: str,
    mode: str,
    voice: str,
    live: str | None = None,
    after_record: bool = False,
) -> str:
    # Most webhooks answer with one of a few documents (the menu, the number
    # question): building TwiML is a good part of a webhook's work, so keep them.
    speech = twiml.SpeechRenderer(mode, voice, lambda key: f"{base}/twilio/prompts/{key}.wav")
    return twiml.render(actions, _urls(base, seq), speech, stream_url=live, stop_stream=after_record)


def _url_for(seq: int) -> twiml.UrlFor:
    return _urls(_public_base(), seq)


def _urls(base: str, seq: int) -> twiml.UrlFor:
    def url_for(name: str) -> str:
        if name == "recording":
            return f"{base}/twilio/recording"
        return f"{base}/twilio/step/{name}?{urlencode({'seq': seq})}"

    return url_for


def _public_base() -> str:
    # Twilio needs absolute URLs; behind a proxy only the public one is right.
    return _settings().public_url or request.host_url.rstrip("/")


def _speech() -> twiml.SpeechRenderer:
    settings = _settings()
    base = _public_base()
    return twiml.SpeechRenderer(
        settings.prompts_mode, settings.twilio_voice, lambda key: f"{base}/twilio/prompts/{key}.wav"
    )


def _plain(text: str, status: int) -> Response:
    return Response(text, status=status, mimetype="text/plain")


def _download(settings: Settings, url: str) -> str | None:
    """Fetch a recording into a temporary file; its path, or None on failure."""
    auth = None
    if settings.twilio_account_sid and settings.twilio_auth_token:
        auth = (settings.twilio_account_sid, settings.twilio_auth_token)
    tmp_dir = settings.data_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(suffix=".wav", dir=tmp_dir)
    size = 0
    try:
        with (
            os.fdopen(fd, "wb") as out,
            httpx.stream("GET", url, auth=auth, timeout=DOWNLOAD_TIMEOUT, follow_redirects=False) as response,
        ):
            if response.status_code != 200:
                raise httpx.HTTPStatusError("bad status", request=response.request, response=response)
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > settings.attachment_max_bytes:
                    raise ValueError("recording larger than HOTLINE_ATTACHMENT_MAX_BYTES")
                out.write(chunk)
    except (httpx.HTTPError, ValueError, OSError) as exc:
        log.warning("cannot download recording %s: %s", url, exc)
        os.unlink(path)
        return None
    if size == 0:
        os.unlink(path)
        return None
    return path
