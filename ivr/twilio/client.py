"""Twilio's side of a call, played by us: for the test simulator and `hotline call --url`.

`TwilioCall` signs its form posts like Twilio (X-Twilio-Signature over the public
URL and the sorted parameters), uses Twilio's parameter names, and follows the
TwiML it gets back: `<Say>`/`<Play>` are what the caller hears; `<Gather>` waits for
keys and posts `Digits` to its action (or falls through on silence); `<Record>`
waits for a recording, serves its WAV from a `RecordingServer` standing in for
api.twilio.com and posts `RecordingUrl`, `RecordingSid`, `RecordingDuration` to the
action and then to the recordingStatusCallback; `<Redirect>` is followed; `<Dial>`
posts `DialCallStatus`; the end of the document or `<Hangup>` ends the call and the
status callback follows. `redirect(url)` is what Twilio does when the REST API updates
a live call with a new `Url`: what the call waited at is dropped, the URL is fetched.

The same `RecordingServer` takes that REST update (`POST …/Calls/<CallSid>.json` with
`Url`, `Method`) and answers as Twilio does: the call resource, or for a call that has
ended HTTP 400 with code 21220 («Call is not in-progress. Cannot redirect.»).
"""

from __future__ import annotations

import base64
import http.server
import io
import json
import re
import secrets
import threading
import wave
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import httpx
from twilio.request_validator import RequestValidator


def make_wav(seconds: float, rate: int = 8000) -> bytes:
    """A mono 16-bit WAV of a quiet tone (a stand-in for a caller's voice)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = bytearray()
        for i in range(int(seconds * rate)):
            frames += (2000 if (i // 10) % 2 else -2000).to_bytes(2, "little", signed=True)
        w.writeframes(bytes(frames))
    return buf.getvalue()


_CALL_UPDATE = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-f]{32})/Calls/(CA[0-9a-f]{32})\.json$")


class RecordingServer:
    """A local HTTP server like api.twilio.com (basic auth): recordings, and live call redirects."""

    def __init__(self, account_sid: str, auth_token: str, port: int = 0):
        self.account_sid = account_sid
        self.credentials = "Basic " + base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self.files: dict[str, bytes] = {}
        self.downloads: list[str] = []
        # Calls REST updates taken: (CallSid, form); calls that have ended; a failing API.
        self.redirects: list[tuple[str, dict[str, str]]] = []
        self.ended: set[str] = set()
        self.failing = False
        self.redirected = threading.Condition()
        # Recordings whose download stops halfway until `resume` is set (a crash test's window).
        self.stalled: set[str] = set()
        self.resume = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.headers.get("Authorization") != server.credentials:
                    self.send_error(401)
                    return
                sid = self.path.rsplit("/", 1)[-1].removesuffix(".wav")
                body = server.files.get(sid)
                if body is None:
                    self.send_error(404)
                    return
                server.downloads.append(sid)
                self.send_response(200)
                self.send_header("Content-Type", "audio/x-wav")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if sid in server.stalled:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    server.resume.wait(120)
                    return
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if self.headers.get("Authorization") != server.credentials:
                    self.answer(401, {"code": 20003, "message": "Authenticate"})
                    return
                found = _CALL_UPDATE.match(self.path)
                if found is None or found[1] != server.account_sid:
                    self.answer(
                        404, {"code": 20404, "message": f"The requested resource {self.path} was not found"}
                    )
                elif server.failing:
                    self.answer(500, {"code": 20500, "message": "Internal Server Error"})
                elif found[2] in server.ended:
                    self.answer(400, {"code": 21220, "message": "Call is not in-progress. Cannot redirect."})
                else:
                    with server.redirected:
                        server.redirects.append((found[2], form))
                        server.redirected.notify_all()
                    call = {"sid": found[2], "account_sid": server.account_sid, "status": "in-progress"}
                    self.answer(200, {**call, "api_version": "2010-04-01", "direction": "inbound"})

            def answer(self, status: int, body: dict[str, object]) -> None:
                if status >= 400:
                    more = f"https://www.twilio.com/docs/errors/{body['code']}"
                    body = {**body, "more_info": more, "status": status}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def add(self, sid: str, audio: bytes) -> str:
        """Serve a recording; its RecordingUrl."""
        self.files[sid] = audio
        return f"{self.base_url}/2010-04-01/Accounts/{self.account_sid}/Recordings/{sid}"

    def wait_for_redirect(self, count: int = 1, seconds: float = 60) -> tuple[str, dict[str, str]]:
        """The `count`-th Calls update taken (waits for it)."""
        with self.redirected:
            if not self.redirected.wait_for(lambda: len(self.redirects) >= count, seconds):
                raise AssertionError(f"no call redirect in {seconds} s (got {len(self.redirects)})")
            return self.redirects[count - 1]

    def __enter__(self) -> RecordingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@dataclass
class Waiting:
    """The verb the call waits at, and the rest of the document after it."""

    verb: ET.Element
    rest: list[ET.Element]


@dataclass
class TwilioCall:
    """One call, with Twilio's behaviour, against the hotline's webhooks."""

    client: httpx.Client  # base_url: where the hotline answers (a server, or WSGITransport)
    public_url: str  # what signatures are computed over (HOTLINE_PUBLIC_URL)
    auth_token: str
    account_sid: str = "AC" + "0" * 32
    caller: str = "+79001234567"
    called: str = "+73435674530"
    call_sid: str = field(default_factory=lambda: "CA" + secrets.token_hex(16))
    heard: list[str] = field(default_factory=list)
    waiting: Waiting | None = None
    ended: bool = False
    responses: list[httpx.Response] = field(default_factory=list)

    # -- HTTP, signed like Twilio --
    def post(self, url: str, params: dict[str, str], *, signature: str | None = None) -> httpx.Response:
        """POST form parameters to an absolute public URL, signed (or with the given signature)."""
        base = {"CallSid": self.call_sid, "AccountSid": self.account_sid, "ApiVersion": "2010-04-01"}
        data = {**base, **params}
        if signature is None:
            signature = RequestValidator(self.auth_token).compute_signature(url, data)
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        response = self.client.post(path, data=data, headers={"X-Twilio-Signature": signature})
        self.responses.append(response)
        return response

    def url(self, path: str) -> str:
        return self.public_url.rstrip("/") + path

    # -- the call --
    def start(self) -> list[str]:
        """The call comes in; what the caller hears until the first question."""
        params = {"From": self.caller, "To": self.called, "CallStatus": "ringing", "Direction": "inbound"}
        return self._follow(self.post(self.url("/twilio/voice"), params))

    def press(self, keys: str) -> list[str]:
        """The caller types `keys` at a Gather (Twilio's numDigits/finishOnKey apply)."""
        gather = self._waiting_at("Gather")
        finish = gather.get("finishOnKey", "#")
        limit = int(gather.get("numDigits", "0") or 0)
        digits = ""
        for key in keys:
            if finish and key == finish:
                break
            digits += key
            if limit and len(digits) >= limit:
                break
        if not digits:
            return self.silence()
        return self.send_digits(digits)

    def send_digits(self, digits: str) -> list[str]:
        """Post `Digits` exactly as given to the Gather's action (garbage included)."""
        gather = self._waiting_at("Gather")
        self.waiting = None
        return self._follow(self.post(gather.get("action", ""), {"Digits": digits}))

    def silence(self) -> list[str]:
        """Nothing typed or recorded: Twilio goes on with the next verb."""
        assert self.waiting is not None, "the call waits for nothing"
        rest = self.waiting.rest
        self.waiting = None
        return self._run(rest)

    def record(
        self,
        api: RecordingServer,
        seconds: int = 5,
        *,
        callback_first: bool = False,
        callbacks: int = 1,
        hang_up: bool = False,
    ) -> list[str]:
        """The caller speaks for `seconds`; Twilio posts the action and the status callback."""
        record = self._waiting_at("Record")
        self.waiting = None
        sid = "RE" + secrets.token_hex(16)
        recording_url = api.add(sid, make_wav(seconds))
        params = {"RecordingUrl": recording_url, "RecordingSid": sid, "RecordingDuration": str(seconds)}
        if hang_up:
            params["Digits"] = "hangup"
        callback = {
            **params,
            "RecordingStatus": "completed",
            "RecordingChannels": "1",
            "RecordingSource": "RecordVerb",
            "RecordingStartTime": "Mon, 24 Nov 2025 10:00:00 +0000",
        }
        callback.pop("Digits", None)
        status_url = record.get("recordingStatusCallback", "")
        heard: list[str] = []
        if callback_first:
            for _ in range(callbacks):
                self.post(status_url, callback)
        response = self.post(record.get("action", ""), params)
        if hang_up:
            self.hang_up(seconds)
        else:
            heard = self._follow(response)
        if not callback_first:
            for _ in range(callbacks):
                self.post(status_url, callback)
        return heard

    def redirect(self, url: str) -> list[str]:
        """The REST API gave the live call a new `Url`: Twilio drops what it waited at, fetches it."""
        self.waiting = None
        return self._follow(self.post(url, {"CallStatus": "in-progress"}))

    def dial_result(self, status: str, duration: int = 0) -> list[str]:
        """The duty engineer's leg ended with DialCallStatus `status`."""
        dial = self._waiting_at("Dial")
        self.waiting = None
        params = {"DialCallStatus": status, "DialCallDuration": str(duration)}
        return self._follow(self.post(dial.get("action", ""), params))

    def hang_up(self, duration: int = 30) -> httpx.Response:
        """The call ends; Twilio sends the status callback."""
        self.ended = True
        self.waiting = None
        params = {
            "From": self.caller,
            "To": self.called,
            "CallStatus": "completed",
            "CallDuration": str(duration),
            "Direction": "inbound",
        }
        return self.post(self.url("/twilio/status"), params)

    # -- TwiML --
    def _waiting_at(self, verb: str) -> ET.Element:
        assert self.waiting is not None and self.waiting.verb.tag == verb, (
            f"the call waits at {self.waiting.verb.tag if self.waiting else 'nothing'}, not {verb}"
        )
        return self.waiting.verb

    def _follow(self, response: httpx.Response) -> list[str]:
        if response.status_code != 200:
            raise AssertionError(f"webhook answered {response.status_code}: {response.text[:200]}")
        return self._run(list(ET.fromstring(response.content)))

    def _run(self, verbs: list[ET.Element]) -> list[str]:
        heard: list[str] = []
        for i, verb in enumerate(verbs):
            if verb.tag in ("Say", "Play"):
                heard.append(self._speech(verb))
            elif verb.tag == "Gather":
                heard += [self._speech(v) for v in verb if v.tag in ("Say", "Play")]
                self.waiting = Waiting(verb, verbs[i + 1 :])
                break
            elif verb.tag in ("Record", "Dial"):
                self.waiting = Waiting(verb, verbs[i + 1 :])
                break
            elif verb.tag == "Redirect":
                self.heard += heard
                return heard + self._follow(self.post(verb.text or "", {}))
            elif verb.tag == "Hangup":
                self.hang_up()
                break
        else:
            self.hang_up()  # Twilio hangs up at the end of the document
        self.heard += heard
        return heard

    @staticmethod
    def _speech(verb: ET.Element) -> str:
        if verb.tag == "Play":
            return "[" + (verb.text or "").rsplit("/", 1)[-1] + "]"
        return verb.text or ""
