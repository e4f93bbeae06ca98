"""Twilio Media Streams: a WebSocket client sends Twilio's messages to the hotline's own server."""

from __future__ import annotations

import base64
import io
import json
import secrets
import threading
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import simple_websocket
import soundfile
from sqlalchemy import select
from twilio.request_validator import RequestValidator
from werkzeug.serving import make_server

from hotline.models import Attachment, LiveTranscript
from ivr.twilio.client import TwilioCall
from ivr.twilio.media import MediaStreamError, Start, mulaw_to_pcm, parse_message
from tests.hotline.transcription.conftest import ko_model_path, phone_audio
from tests.ivr.twilio.test_webhooks import PUBLIC, SID, TOKEN, api, make_app  # noqa: F401 - fixtures

WSS = "wss://hotline.example.com/twilio/media"


def mulaw(pcm: bytes) -> bytes:
    out = io.BytesIO()
    samples = np.frombuffer(pcm, "<i2")
    soundfile.write(out, samples, 8000, format="RAW", subtype="ULAW")
    return out.getvalue()


def test_mulaw_decodes_to_linear_pcm():
    tone = (np.sin(np.arange(800) / 5) * 12000).astype("<i2").tobytes()
    back = np.frombuffer(mulaw_to_pcm(mulaw(tone)), "<i2").astype(int)
    assert np.max(np.abs(back - np.frombuffer(tone, "<i2"))) < 12000 * 0.04  # G.711 is within a few %


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        "[]",
        '{"event": "start", "start": {"streamSid": "MZ1", "callSid": "CA1"}}',
        json.dumps({"event": "media", "media": {"payload": "***"}}),
        json.dumps({"event": "dtmf", "dtmf": {"digit": "12"}}),
        json.dumps({"event": "surprise"}),
        "x" * 70000,
    ],
)
def test_what_is_not_twilio_is_refused(message):
    with pytest.raises(MediaStreamError):
        parse_message(message)


def start_message(
    call_sid: str, stream_sid: str, encoding: str = "audio/x-mulaw", parameters: dict[str, str] | None = None
) -> str:
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "start": {
                "accountSid": SID,
                "streamSid": stream_sid,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "customParameters": parameters or {},
                "mediaFormat": {"encoding": encoding, "sampleRate": 8000, "channels": 1},
            },
            "streamSid": stream_sid,
        }
    )


def test_a_start_message_is_read():
    call, stream = "CA" + "a" * 32, "MZ" + "b" * 32
    assert parse_message(start_message(call, stream)) == Start(stream, call, {})
    with pytest.raises(MediaStreamError):
        parse_message(start_message(call, stream, encoding="audio/l16"))


@pytest.fixture
def server(make_app) -> Iterator[tuple[str, object]]:  # noqa: F811
    app = make_app(HOTLINE_LIVE_SPEECH="true", HOTLINE_VOSK_MODEL=str(ko_model_path()))
    http = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{http.server_port}", app
    finally:
        http.shutdown()


def signed(url: str = WSS) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, {})}


class MediaStream:
    """Twilio's side of one stream: its messages, in its order and format."""

    def __init__(
        self,
        address: str,
        call_sid: str,
        headers: dict[str, str] | None = None,
        parameters: dict[str, str] | None = None,
    ):
        self.ws = simple_websocket.Client.connect(f"ws://{address}/twilio/media", headers=headers or signed())
        self.call_sid, self.stream_sid, self.seq = call_sid, "MZ" + secrets.token_hex(16), 0
        self.parameters = parameters
        self.chunk = 0

    def send(self, event: str, **body) -> None:
        self.seq += 1
        self.ws.send(
            json.dumps(
                {"event": event, "sequenceNumber": str(self.seq), "streamSid": self.stream_sid, **body}
            )
        )

    def begin(self) -> None:
        self.ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        self.seq += 1
        self.ws.send(start_message(self.call_sid, self.stream_sid, parameters=self.parameters))

    def speak(self, pcm: bytes, *, dtmf_at: int | None = None) -> bool:
        """The caller's audio as Twilio sends it (20 ms a message); False if the hotline closed the socket."""
        data = mulaw(pcm)
        try:
            for start in range(0, len(data), 160):
                self.chunk += 1
                payload = base64.b64encode(data[start : start + 160]).decode()
                media = {
                    "track": "inbound",
                    "chunk": str(self.chunk),
                    "timestamp": str((self.chunk - 1) * 20),
                    "payload": payload,
                }
                self.send("media", media=media)
                if self.chunk == dtmf_at:
                    self.send("dtmf", dtmf={"track": "inbound_track", "digit": "5"})
        except simple_websocket.ConnectionClosed:
            return False
        return True

    def run(self, pcm: bytes, *, stop: bool = True) -> None:
        self.begin()
        self.speak(pcm, dtmf_at=11)
        if stop:
            self.send("stop", stop={"accountSid": SID, "callSid": self.call_sid})
        self.ws.close()


def rows(app):
    db = app.extensions["hotline.db"]
    with db.session() as s:
        return [
            (r.state, r.backend_call_id, r.recording_ref, r.text) for r in s.scalars(select(LiveTranscript))
        ]


def wait_for(app, state):
    import time

    for _ in range(600):
        found = rows(app)
        if found and found[0][0] == state:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {state} live transcript: {rows(app)}")


@pytest.mark.slow
def test_a_recording_is_decoded_while_the_caller_speaks(server, api):  # noqa: F811
    address, app = server
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://testserver") as client:
        call = TwilioCall(client, PUBLIC, TOKEN)
        call.start()
        call.press("2")
        call.press("1")
        document = call.responses[-1].text
        assert (
            f'<Start><Stream name="voicemail" track="inbound_track" url="{WSS}" /></Start><Record' in document
        )
        MediaStream(address, call.call_sid).run(phone_audio("기계가 고장났어요 빨리 와 주세요"))
        ((state, call_id, ref, text),) = wait_for(app, "complete")
        assert (call_id, ref) == (call.call_sid, None) and text
        call.record(api, seconds=5, hang_up=True)  # the action names the recording; the callback stores it
    db = app.extensions["hotline.db"]
    with db.session() as s:
        attachment = s.scalars(select(Attachment)).one()
        assert attachment.transcription_state == "done"
        assert (attachment.transcript.source, attachment.transcript.text) == ("live", text)


@pytest.mark.slow
def test_a_stream_that_breaks_is_marked_broken(server):
    address, app = server
    MediaStream(address, "CA" + secrets.token_hex(16)).run(phone_audio("기계가"), stop=False)
    assert wait_for(app, "broken")


def test_an_unsigned_stream_is_refused(server):
    address, app = server
    for headers in ({}, {"X-Twilio-Signature": "forged"}, signed("wss://elsewhere.example.com/twilio/media")):
        response = httpx.get(
            f"http://{address}/twilio/media",
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode(),
                **headers,
            },
        )
        assert response.status_code == 403
    assert rows(app) == []


def test_streams_are_off_unless_live_speech_is_on(make_app):  # noqa: F811
    app = make_app()
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://testserver") as client:
        assert (
            client.get(
                "/twilio/media", headers={"Upgrade": "websocket", "Connection": "Upgrade", **signed()}
            ).status_code
            == 404
        )
        call = TwilioCall(client, PUBLIC, TOKEN)
        call.start()
        call.press("2")
        call.press("1")
        assert "<Stream" not in call.responses[-1].text
