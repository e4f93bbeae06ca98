"""The Twilio adapter: a Flask blueprint that runs the call flow on voice webhooks.

URLs (all POST, all signed by Twilio, checked against HOTLINE_PUBLIC_URL + path + query):

- `/twilio/voice`: the number's voice webhook (a call comes in);
- `/twilio/status`: the number's call status callback (final status and duration);
- `/twilio/step/<step>?seq=N`: the project's own action URLs handed out in TwiML
  (`digits`, `timeout`, `recorded`, `record_empty`, `dialed`), and `spoken`, where the
  hotline redirects a call whose caller said the answer (ivr.twilio.spoken); `stop=M`
  in any of them stops the stream that listened at step M; a `timeout` while that
  stream hears a number answers with a short silent Gather again (`wait=K`, the K-th);
- `/twilio/recording`: the recordingStatusCallback. It downloads the recording, only
  from HOTLINE_TWILIO_API_BASE, with the account's credentials, and stores it once
  per RecordingSid; transcription is queued, never run here.

`GET /twilio/prompts/<key>.wav` serves the prompt audio for HOTLINE_PROMPTS=play.
A body over MAX_BODY bytes gets 413 and a missing signature 403 before the body is
read; a forged one 403 after reading at most MAX_BODY bytes; nothing is written for
either. With no auth token the webhooks refuse to work unless
HOTLINE_TWILIO_INSECURE_DEV is set.

Every field is cleaned at the boundary (`hotline.cleaning`: no NUL or control
characters, a length limit) and the caller's number parsed once (`hotline.phones`):
what Twilio sends is stored cleaned, with a call-log note when it had to be changed.
Status and recording callbacks for a CallSid the hotline never saw make no call row.
"""

from __future__ import annotations

import functools
import hmac
import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any

from flask import Blueprint, Response, abort, current_app, request, send_file
from twilio.request_validator import RequestValidator

from hotline.cleaning import clean_line
from hotline.db import DatabaseUnavailable
from hotline.phones import Phone, parse_phone
from hotline.settings import Settings
from hotline.transcription.live_store import set_recording_ref
from ivr import flow
from ivr.flow import CallState
from ivr.store import CallStore
from ivr.twilio import behind, recordings, twiml
from ivr.twilio.media import stream_url
from ivr.twilio.spoken import WAIT_GATHER, WAITS, speech_input, still_hearing
from voice_models.prompts import catalogue, prompt_audio_path

log = logging.getLogger(__name__)

bp = Blueprint("twilio", __name__, url_prefix="/twilio")

XML = "text/xml; charset=utf-8"
#: Twilio's webhook bodies are one or two kilobytes (FIELD-NOTES); more is not Twilio.
MAX_BODY = 8 * 1024
FIELD_LIMIT = 300  # no Twilio parameter the hotline reads is longer
_SID = re.compile(r"[A-Za-z0-9]{2,64}")


def _settings() -> Settings:
    return current_app.extensions["hotline.settings"]


def _store() -> CallStore:
    ext = current_app.extensions
    if "hotline.twilio" not in ext:
        db, settings = ext["hotline.db"], ext["hotline.settings"]
        if behind.usable(settings):  # steps ahead of the database, the call log written behind
            queue = behind.LogQueue(behind.socket_path(settings))
            ext["hotline.twilio"] = behind.QueuedCallStore(db, settings, "twilio", queue)
        else:
            ext["hotline.twilio"] = CallStore(db, settings, "twilio")
    return ext["hotline.twilio"]


@bp.before_request
def check_signature() -> Response | None:
    """Refuse anything Twilio did not sign (prompt audio is public)."""
    if request.method == "GET":
        return None
    # The body's size is known before it is read: a stranger's megabytes are never parsed.
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _plain("request body too large", 413)
    request.max_content_length = MAX_BODY  # a chunked body is cut off while it is read
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
    if not signature:  # refused before the body is read
        log.warning("Twilio webhook without a signature: %s", request.path)
        return _plain("invalid Twilio signature", 403)
    if not _signed(_validator(settings.twilio_auth_token), url, signature):
        # The usual causes are ours: a token of another account, or a public URL other than
        # the one in the Twilio console. Say which URL was checked (never the token).
        log.warning(
            "Twilio webhook with a wrong signature, checked against %s: if Twilio sent it, "
            "TWILIO_AUTH_TOKEN or HOTLINE_PUBLIC_URL does not match the Twilio console",
            url,
        )
        return _plain("invalid Twilio signature", 403)
    return None


@functools.lru_cache(maxsize=4)
def _validator(token: str) -> RequestValidator:
    return RequestValidator(token)


def _signed(validator: RequestValidator, url: str, signature: str) -> bool:
    # The URL exactly as configured first: one HMAC, where validate() always computes
    # two (the URL with and without its port, for Twilio's inconsistent signing).
    fields = _Fields(request.form.lists())
    if hmac.compare_digest(validator.compute_signature(url, fields), signature):
        return True
    return bool(validator.validate(url, fields, signature))


class _Fields(dict[str, list[str]]):
    """The form as the validator reads it fastest: `getall` is what it tries first (on
    Werkzeug's MultiDict that raises AttributeError, ~1 µs a field, on every webhook)."""

    def getall(self, name: str) -> list[str]:
        return self[name]


@bp.post("/voice")
def voice() -> Response:
    """A call comes in."""
    caller = _parsed_phone(request.form.get("From"))
    called = _parsed_phone(request.form.get("To"))
    from_number = caller.stored if caller else None
    store, call_sid = _store(), _call_sid()
    step = store.step(
        call_sid,
        flow.CallStarted(from_number),
        # A new call's state; a cleaned caller id is logged on the row.
        None if caller is not None and caller.truncated else CallState(),
        from_number=from_number,
        to_number=called.stored if called else None,
        seq=0,  # Twilio asking again for a call already going only hears the question again
    )
    if caller is not None and caller.truncated:
        store.log(
            call_sid, "caller_id_cleaned", "номер звонящего длиннее 40 символов", original=caller.original
        )
    return _twiml(step)


@bp.post("/step/<name>")
def step(name: str) -> Response:
    """The action of a Gather, Record, Redirect or Dial."""
    event = twiml.event_for(name, _CleanForm(), request.args)
    if event is None:
        abort(404)
    seq = _int_arg("seq")
    if name == "recorded" and request.form.get("RecordingSid") and _settings().live_speech:
        # The live stream of this recording learns which recording it is (ivr.twilio.media).
        set_recording_ref(_store().db, "twilio", _call_sid(), request.form["RecordingSid"][:100])
    stop = _int_arg("stop")
    if name == "timeout" and seq == stop >= 0 and _waits_for_speech(seq):
        return Response(_wait_document(_public_base(), seq, max(_int_arg("wait"), 0) + 1), mimetype=XML)
    # A document that listens may be moved on by its stream: those steps read the row.
    listens = stop >= 0 or name == "spoken"
    state = None if listens else behind.state_from_token(request.args.get("s"), seq, _caller())
    step = _store().step(_call_sid(), event, state, from_number=state.caller if state else None, seq=seq)
    return _twiml(step, after_record=name in _AFTER_RECORD, stop_listen=stop if stop >= 0 else None)


@bp.post("/recording")
def recording() -> Response:
    """recordingStatusCallback: the file exists now; fetch it and keep it with its request."""
    form = request.form
    settings, store, call_sid = _settings(), _store(), _call_sid()
    sid = clean_line(form.get("RecordingSid"), FIELD_LIMIT)
    url = form.get("RecordingUrl", "")
    status = clean_line(form.get("RecordingStatus", "completed"), 40)
    duration = twiml.parse_duration(form.get("RecordingDuration"))
    known = store.known(call_sid)
    if status != "completed" or not sid:
        if known:
            store.log(call_sid, "recording_status", status, recording=sid)
        return _plain("", 204)
    if not _SID.fullmatch(sid):
        log.warning("recording callback with a malformed RecordingSid for %s", call_sid)
        return _plain("malformed RecordingSid", 400)
    if duration is not None and duration < 1:
        if known:
            store.log(call_sid, "recording_empty", sid, recording=sid)
        return _plain("", 204)
    if len(url) > 2000 or any(c.isspace() or not c.isprintable() for c in url):
        # A tab or a line break in a URL is no URL Twilio sends: refused before any download.
        if known:
            store.log(call_sid, "recording_refused", clean_line(url, 300), recording=sid)
        return _plain("malformed RecordingUrl", 400)
    if not twiml.same_origin(url, settings.twilio_api_base):
        if known:
            store.log(call_sid, "recording_refused", url[:300], recording=sid)
        return _plain("recording URL outside HOTLINE_TWILIO_API_BASE", 400)
    if not known:
        # Never a call of ours: kept on record (the intake page shows it), no call row made.
        recordings.remember(store.db, call_sid, sid, url, duration, unknown_call=True)
        log.warning("recording %s for an unknown call %s", sid, call_sid)
        return _plain("", 204)
    if store.has_recording(sid):
        return _plain("", 204)  # a retried callback
    # Recorded durably first: a crash from here on is finished by the recording sweep.
    fetch = recordings.remember(store.db, call_sid, sid, url, duration)
    if not recordings.fetch(settings, store.db, store, fetch.id):
        store.log(call_sid, "recording_download_failed", sid, recording=sid)
        return _plain("cannot fetch the recording", 502)  # Twilio retries; so does the sweep
    return _plain("", 204)


@bp.post("/status")
def status() -> Response:
    """The call status callback: the call's final status and duration."""
    form = request.form
    call_status = clean_line(form.get("CallStatus", ""), 40)
    store, call_sid = _store(), _call_sid()
    if call_status in twiml.FINAL_CALL_STATUSES:
        # A call we never saw (the database was down when it came) is logged closed.
        duration = twiml.parse_duration(form.get("CallDuration"))
        caller, called = parse_phone(form.get("From")), parse_phone(form.get("To"))
        store.hang_up(
            call_sid,
            backend_status=call_status,
            duration_seconds=int(duration) if duration is not None else None,
            from_number=caller.stored if caller else None,
            to_number=called.stored if called else None,
        )
    elif store.known(call_sid):
        store.log(call_sid, "call_status", call_status)
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
    if not _SID.fullmatch(sid):
        abort(400)
    return sid


class _CleanForm(Mapping[str, str]):
    """The form's fields, each cleaned when it is read (a webhook reads one or two of ~20)."""

    def __getitem__(self, key: str) -> str:
        return clean_line(request.form[key], FIELD_LIMIT)

    def __iter__(self) -> Iterator[str]:
        return iter(request.form)

    def __len__(self) -> int:
        return len(request.form)


def _caller() -> str | None:
    caller = _parsed_phone(request.form.get("From"))
    return caller.stored if caller else None


def _parsed_phone(raw: str | None) -> Phone | None:
    # libphonenumber takes ~90 µs a number, and a call's webhooks repeat it (the cache
    # keeps what a phone number can be: a stranger's kilobytes are parsed, not kept).
    return _cached_phone(raw) if raw is None or len(raw) <= 64 else parse_phone(raw)


_cached_phone = functools.lru_cache(maxsize=4096)(parse_phone)


def _int_arg(name: str) -> int:
    raw = request.args.get(name, "")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else -1


def _twiml(step: flow.Step, after_record: bool = False, stop_listen: int | None = None) -> Response:
    settings = _settings()
    base = _public_base()
    live = stream_url(base) if settings.live_speech else None
    listen = twiml.listening(step.state) if live and speech_input(settings) else None
    body = _render(
        tuple(step.actions),
        step.state.seq,
        behind.state_token(step.state) if isinstance(_store(), behind.QueuedCallStore) else "",
        base,
        settings.prompts_mode,
        settings.twilio_voice,
        live,
        after_record,
        listen,
        stop_listen,
    )
    return Response(body, mimetype=XML)


_AFTER_RECORD = frozenset({"recorded", "record_empty"})


def _waits_for_speech(seq: int) -> bool:
    """The Gather of step `seq` timed out: True to wait again, as its stream hears a number."""
    return (
        _int_arg("wait") < WAITS and speech_input(_settings()) and still_hearing(_store(), _call_sid(), seq)
    )


def _wait_document(base: str, seq: int, wait: int) -> str:
    """The number question's Gather again, short and silent; its timeout says which wait it was."""
    urls = _urls(base, seq, seq)
    return twiml.render(
        [WAIT_GATHER],
        lambda name: urls(name) + (f"&wait={wait}" if name == "timeout" else ""),
        _speech(),
    )


def _render(
    actions: tuple[flow.Action, ...],
    seq: int,
    token: str,
    base: str,
    mode: str,
    voice: str,
    live: str | None = None,
    after_record: bool = False,
    listen: str | None = None,
    stop_listen: int | None = None,
) -> str:
    if listen or stop_listen is not None:  # live speech: `seq` names streams too
        return _build(actions, seq, token, base, mode, voice, live, after_record, listen, stop_listen)
    # Most webhooks answer with one of a few documents (the menu, the number question)
    # that differ only in `seq`: building TwiML is a good part of a webhook's work, so
    # each is built once, with a mark where `seq` goes.
    document = _build(actions, _SEQ_MARK, token, base, mode, voice, live, after_record)
    return document.replace(_SEQ_MARK, str(seq))


#: Where a kept document's `seq` goes. No text the hotline speaks or sends holds a NUL
#: (it is no XML character), so the mark meets nothing else.
_SEQ_MARK = "\x00"


@functools.lru_cache(maxsize=1024)
def _build(
    actions: tuple[flow.Action, ...],
    seq: int | str,
    token: str,
    base: str,
    mode: str,
    voice: str,
    live: str | None,
    after_record: bool,
    listen: str | None = None,
    stop_listen: int | None = None,
) -> str:
    speech = twiml.SpeechRenderer(mode, voice, lambda key: f"{base}/twilio/prompts/{key}.wav")
    return twiml.render(
        actions,
        # The webhooks of a document that listens stop its stream (`stop`).
        _urls(base, seq, seq if listen else None, token),
        speech,
        stream_url=live,
        stop_stream=after_record,
        listen=twiml.Listen(listen, int(seq)) if listen else None,
        stop_listen=stop_listen,
    )


def _url_for(seq: int) -> twiml.UrlFor:
    return _urls(_public_base(), seq)


def _urls(base: str, seq: int | str, stop: int | str | None = None, token: str = "") -> twiml.UrlFor:
    query = f"seq={seq}" if stop is None else f"seq={seq}&stop={stop}"
    if token:  # the state after the step (ivr.twilio.behind): base64url, nothing to quote
        query += f"&s={token}"

    def url_for(name: str) -> str:
        if name == "recording":
            return f"{base}/twilio/recording"
        return f"{base}/twilio/step/{name}?{query}"

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
