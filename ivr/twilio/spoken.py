"""A request number or a «да» said on a Twilio call, heard on a Media Stream (docs/twilio.md).

At the number question, and at «Вы сказали: … Верно?», the TwiML starts a stream named
`speech-<seq>` just before the `<Gather input="dtmf">` (ivr.twilio.twiml), with two
`<Parameter>`s: `listen` (`number` or `answer`) and `seq` (the flow's step counter, the
one the Gather's action URL carries). Twilio goes straight on to the Gather, so keys work
as before; the stream's audio goes to the live recognizer with the number grammar (or the
yes/no one) of the Asterisk path (`ivr.livecall.LiveCall`, `hotline.transcription.live`).

When it hears a number that passes the Damm check, or «да» / «нет»:

1. the call's step is claimed in the database (`CallStore.claim`), only if the call is
   still at step `seq`. Keys typed at the same moment reach the Gather's action with the
   old `seq` and only hear the question again; keys that came first moved the step on and
   the claim fails. The first input wins, once, whichever worker process holds either.
2. Twilio's REST API redirects the live call (`Calls(sid).update(Url=…)`) to
   `/twilio/step/spoken?seq=<seq+1>&stop=<seq>&digits=…` (or `answer=yes|no`): a webhook
   Twilio signs as any other, which runs the flow's `SpokenNumber` / `SpokenAnswer` and
   stops the stream. A call that has ended (Twilio answers 400 with code 21220, «Call is
   not in-progress. Cannot redirect.», or 404 with 20404) is gone: nothing to do. Any other
   failure gives the step back (`CallStore.release`): the keypad goes on.
3. the WebSocket is closed.

A number that fails the Damm check is logged and the stream listens on (the caller may say
it again or type it). A stream whose call moved on (keys, a timeout, a hang-up) closes
itself within a second: the call's step is read from the database once a second of audio.

The Gather has its own timeout on Twilio's side (10 s from the end of the prompt), which a
number dictated digit by digit can outlast. So the stream writes into the call's row
whether it hears a number now (`mark_hearing`: the key `hearing` of the flow state, on
each change only; any step of the flow drops it), and the timeout webhook of a call whose
stream hears a number answers with the same Gather again, WAIT_SECONDS long and silent
(keys still work), at most WAITS times (`still_hearing`, ivr.twilio.webhooks). Both read
and write the database, so the stream and the webhook may be in different processes.

Errors: RedirectFailed (a HotlineError) for a redirect Twilio did not take, CallGone (one of
them) for a call that has ended.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from hotline import callrows
from hotline.db import translate_errors
from hotline.errors import HotlineError
from hotline.numbers import MAX_LENGTH
from hotline.settings import Settings
from hotline.vocabulary import CallEventKind
from ivr import flow
from ivr.store import CallStore
from ivr.twilio.twiml import LISTEN_KINDS, Listen

if TYPE_CHECKING:  # the recognizer's modules load with the first stream, not with the webhooks
    from ivr.livecall import LiveCall

log = logging.getLogger(__name__)

#: Media messages (20 ms each) between two reads of the call's step: one a second.
CHECK_EVERY = 50
#: Seconds the REST request may take (the caller waits for the redirect meanwhile).
REST_TIMEOUT = 5.0
#: Twilio's answers for a call that cannot be redirected because it is over.
GONE_CODES = frozenset({21220, 20404})
#: A Gather that timed out while the caller says a number waits again this long, at most
#: WAITS times (12 s more, as the FastAGI session's wait doubles its 10 s).
WAIT_SECONDS = 3
WAITS = 4
#: The number question's Gather, as the wait repeats it (ivr.flow asks with the same).
WAIT_GATHER = flow.Gather(MAX_LENGTH + 1, WAIT_SECONDS, "#")
#: The flow-state key that says which step's stream hears a number now.
HEARING = "hearing"


class RedirectFailed(HotlineError):
    """Twilio did not redirect the call."""


class CallGone(RedirectFailed):
    """The call has ended: there is nothing to redirect."""


def speech_input(settings: Settings) -> bool:
    """True if Twilio callers may say a number: live speech decoded by Vosk, and what it
    takes to redirect a call through Twilio's REST API (credentials, the public URL)."""
    credentials = settings.twilio_account_sid and settings.twilio_auth_token and settings.public_url
    return bool(settings.live_speech and settings.asr_engine == "vosk" and credentials)


def listen_of(parameters: dict[str, str]) -> Listen | None:
    """The stream's `listen` and `seq` parameters, None when it does not listen (a voicemail)."""
    kind, seq = parameters.get("listen"), parameters.get("seq", "")
    if kind not in LISTEN_KINDS or not (seq.isascii() and seq.isdigit() and len(seq) < 10):
        return None
    return Listen(kind, int(seq))


def redirect_call(settings: Settings, call_sid: str, url: str) -> None:
    """Make Twilio fetch the call's next document from `url` now (Calls REST update)."""
    from twilio.base.exceptions import TwilioException, TwilioRestException
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    client = Client(
        settings.twilio_account_sid,
        settings.twilio_auth_token,
        http_client=TwilioHttpClient(timeout=REST_TIMEOUT),
        environment={},
    )
    client.api.base_url = settings.twilio_api_base  # as hotline.notify.sms does
    try:
        client.calls(call_sid).update(url=url, method="POST")
    except TwilioRestException as exc:
        if exc.code in GONE_CODES or exc.status == 404:
            raise CallGone(f"Twilio {exc.status} ({exc.code}): {exc.msg}") from exc
        raise RedirectFailed(f"Twilio {exc.status} ({exc.code}): {exc.msg}") from exc
    except (TwilioException, OSError) as exc:  # requests' errors are OSErrors
        raise RedirectFailed(f"Twilio: {exc}") from exc


def mark_hearing(store: CallStore, call_sid: str, seq: int, hearing: bool) -> None:
    """Write in the call's row whether the stream of step `seq` hears a number now; nothing
    if the call has moved on from that step."""
    with translate_errors(), store.rows.transaction() as (_, rows):
        values = rows.find(store.backend, call_sid)
        if values is None or values["ended_at"] is not None:
            return
        state = dict(values["flow_state"] or {})
        if state.get("seq") != seq or (state.get(HEARING) == seq) == hearing:
            return
        if hearing:
            state[HEARING] = seq
        else:
            state.pop(HEARING, None)
        rows.update_call(values["id"], {"flow_state": state})


def still_hearing(store: CallStore, call_sid: str, seq: int) -> bool:
    """True if the call is at step `seq` and that step's stream hears a number now."""
    with store.db.transaction() as conn:
        found = conn.execute(callrows.FIND_CALL, {"backend": store.backend, "call_id": call_sid}).first()
    if found is None or found.ended_at is not None:
        return False
    state = found.flow_state or {}
    return state.get("seq") == seq and state.get(HEARING) == seq


class SpokenInput:
    """Listens on one stream for what its `listen` asks, and hands it to the call."""

    def __init__(self, settings: Settings, store: CallStore, call_sid: str, listen: Listen, live: LiveCall):
        self.settings, self.store, self.call_sid = settings, store, call_sid
        self.listen, self.live = listen, live
        self.frames = 0
        self.hearing = False  # what the call's row says (mark_hearing)
        if listen.kind == "number":
            live.listen_for_number()
        else:
            live.listen_for_answer()

    def after_audio(self) -> str | None:
        """Why the listening is over after the audio just fed, None to listen on."""
        live = self.live
        if live.heard is not None:
            heard = live.heard
            if not heard.valid:
                log.info("Twilio call %s: a number with a wrong check digit: %s", self.call_sid, heard.digits)
                words = " ".join(heard.words)
                self.store.log(self.call_sid, CallEventKind.SPOKEN_NUMBER_INVALID, heard.digits, words=words)
                live.listen_for_number()
                return None
            return self.hand_over({"digits": heard.digits})
        if live.answer is not None:
            return self.hand_over({"answer": "yes" if live.answer else "no"})
        if self.listen.kind == "number" and live.hearing_number != self.hearing:
            self.mark(not self.hearing)
        self.frames += 1
        if self.frames % CHECK_EVERY == 0 and self.store.step_of(self.call_sid) != self.listen.seq:
            return "the call moved on"
        return None

    def mark(self, hearing: bool) -> None:
        """Tell the timeout webhook whether a number is being said (mark_hearing)."""
        self.hearing = hearing
        try:
            mark_hearing(self.store, self.call_sid, self.listen.seq, hearing)
        except Exception:  # noqa: BLE001 - only the wait at the Gather's timeout is lost
            log.warning(
                "Twilio call %s: could not note that a number is being said", self.call_sid, exc_info=True
            )

    def close(self) -> None:
        """The stream stops listening: the timeout webhook waits for it no more."""
        if self.hearing:
            self.mark(False)

    def hand_over(self, said: dict[str, Any]) -> str:
        """Take the call's step and redirect the call to the flow's spoken step."""
        seq = self.listen.seq
        if not self.store.claim(self.call_sid, seq):
            return "the call moved on before the caller finished speaking"
        query = urlencode({"seq": seq + 1, "stop": seq, **said})
        url = f"{(self.settings.public_url or '').rstrip('/')}/twilio/step/spoken?{query}"
        try:
            redirect_call(self.settings, self.call_sid, url)
        except CallGone as exc:
            log.info("Twilio call %s ended before its redirect: %s", self.call_sid, exc)
            self.store.log(self.call_sid, CallEventKind.SPEECH_NOT_PASSED, "звонок уже завершён", **said)
            return "the call has ended"
        except RedirectFailed as exc:
            log.warning("Twilio call %s not redirected, the keypad goes on: %s", self.call_sid, exc)
            why = "Twilio не перенаправил звонок, звонивший продолжает с клавиатуры"
            self.store.release(self.call_sid, seq, why, twilio=str(exc)[:300], **said)
            return "redirect failed"
        return "heard"
