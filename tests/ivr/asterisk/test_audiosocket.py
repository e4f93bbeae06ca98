"""AudioSocket: the codec, the server against a fake Asterisk peer, live transcripts of voicemail."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import uvloop
from sqlalchemy import select

from hotline import registry
from hotline.models import Attachment, LiveTranscript
from hotline.storage import store_attachment
from hotline.transcription.live import live_model, spoken_number
from hotline.transcription.live_store import apply_live
from hotline.transcription.pipeline import run_transcription_job
from hotline.transcription.recognizer import FakeRecognizer
from ivr.asterisk.audiosocket import (
    AudioSocketProtocolError,
    AudioSocketServer,
    Frame,
    FrameReader,
    Kind,
    encode,
    uuid_frame,
)
from ivr.asterisk.fake_audiosocket import stream_call
from ivr.livecall import LiveCall
from tests.hotline.transcription.conftest import NUMBER_TAIL, ko_model_path, phone_audio, tone, write_wav

CALL = uuid.UUID("8d2c1e0a-5b7f-4e3a-9c1d-2f6a7b8c9d0e")


def test_frames_on_the_wire():
    assert encode(Kind.AUDIO, b"\x01\x02") == b"\x10\x00\x02\x01\x02"
    assert encode(Kind.HANGUP) == b"\x00\x00\x00"
    assert uuid_frame(CALL) == b"\x01\x00\x10" + CALL.bytes
    with pytest.raises(ValueError):
        encode(Kind.AUDIO, bytes(70000))


def test_the_reader_waits_for_whole_frames():
    reader = FrameReader()
    wire = uuid_frame(CALL) + encode(Kind.DTMF, b"5") + encode(Kind.AUDIO, bytes(320))
    frames = [f for i in range(len(wire)) for f in reader.feed(wire[i : i + 1])]
    assert [f.kind for f in frames] == [Kind.UUID, Kind.DTMF, Kind.AUDIO]
    assert frames[0].uuid == CALL and frames[1].digit == "5" and frames[2].payload == bytes(320)
    assert reader.pending == 0


@pytest.mark.parametrize(
    "wire",
    [
        b"\x42\x00\x00",  # unknown kind
        b"\x01\x00\x04abcd",  # a UUID of 4 bytes
        b"\x03\x00\x01x",  # DTMF that is not a key
        b"\x03\x00\x02" + b"12",  # two keys in one message
        b"\x10\x00\x03abc",  # half a sample
    ],
)
def test_what_is_not_audiosocket_is_refused(wire):
    with pytest.raises(AudioSocketProtocolError):
        FrameReader().feed(wire)


class Collect:
    """A sink that keeps what the stream brought."""

    def __init__(self):
        self.pcm, self.keys, self.ended = bytearray(), "", None

    def audio(self, pcm):
        self.pcm += pcm

    def dtmf(self, key):
        self.keys += key

    def close(self, complete, why=""):
        self.ended = (complete, why)


def serve(sinks, coroutine_factory):
    async def main():
        server = AudioSocketServer(lambda call: sinks.setdefault(call, Collect()))
        port = await server.start()
        try:
            await coroutine_factory(port)
            await asyncio.sleep(0.05)  # the server reads what the peer sent before it closed
        finally:
            await server.close()

    uvloop.run(main())


@pytest.mark.parametrize(
    ("end", "complete"), [("close", True), ("hangup", True), ("error", False), ("cut", False)]
)
def test_a_call_streams_its_audio_and_keys(end, complete):
    sinks: dict = {}
    pcm = bytes(range(256)) * 25  # 6400 bytes: 20 frames
    serve(sinks, lambda port: stream_call("127.0.0.1", port, CALL, pcm, dtmf={3: "1", 10: "#"}, end=end))
    sink = sinks[CALL]
    assert bytes(sink.pcm) == pcm
    assert sink.keys == "1#"
    assert sink.ended[0] is complete


def test_a_connection_without_its_uuid_is_dropped():
    sinks: dict = {}

    async def no_uuid(port):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(encode(Kind.AUDIO, bytes(320)))
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    serve(sinks, no_uuid)
    assert sinks == {}


def test_frame_values():
    assert Frame(Kind.DTMF, b"#").digit == "#"


# --- live voicemail transcripts -----------------------------------------------------


@pytest.fixture(scope="module")
def ko():
    return live_model(ko_model_path())


def voicemail(settings, db, ref):
    """A phone request with its recording stored as the FastAGI session stores it."""
    with db.session() as s:
        request = registry.open_request(
            s, kind="incident", channel="phone", actor="caller", phone="+79001234567"
        )
        attachment = store_attachment(
            s,
            settings.data_dir,
            source=write_wav(settings.data_dir.parent / f"{ref}.wav", tone(2.0, 8000), 8000).read_bytes(),
            filename="v.wav",
            content_type="audio/wav",
            origin="phone",
            request_id=request.id,
            external_id=f"asterisk:{ref}",
        )
        return request.number, attachment.id


def live_call(db, ko):
    model, language = ko
    return LiveCall(
        db,
        backend="asterisk",
        call_id="1700000000.1",
        stream_id=str(CALL),
        model=model,
        language=language,
        model_name="ko",
    )


@pytest.mark.slow
def test_a_voicemail_has_its_transcript_as_the_recording_is_stored(settings, db, ko):
    live = live_call(db, ko)
    live.begin_recording("1700000000.1-1")
    serve(
        {CALL: live},
        lambda port: stream_call("127.0.0.1", port, CALL, phone_audio("기계가 고장났어요 빨리 와 주세요")),
    )
    # The stream ended with the call: the words are kept before the file is stored.
    with db.session() as s:
        row = s.scalars(select(LiveTranscript)).one()
        assert (row.state, row.backend_call_id, row.recording_ref) == (
            "complete",
            "1700000000.1",
            "1700000000.1-1",
        )
        assert row.text and row.words and row.audio_seconds > 2
    number, attachment_id = voicemail(settings, db, "1700000000.1-1")
    assert apply_live(db, attachment_id) == "live"
    with db.session() as s:
        attachment = s.get_one(Attachment, attachment_id)
        assert attachment.transcription_state == "done"
        assert (attachment.transcript.source, attachment.transcript.text) == ("live", row.text)
        assert "по ходу звонка" in registry.get_request(s, number).events[-1].text
    # The offline job finds the recording done and leaves the live transcript.
    assert (
        run_transcription_job(settings, attachment_id, db=db, recognizer=FakeRecognizer("офлайн"))
        == "skipped"
    )


@pytest.mark.slow
def test_a_broken_stream_leaves_the_offline_job_to_do_it(settings, db, ko):
    live = live_call(db, ko)
    live.begin_recording("1700000000.1-2")
    serve(
        {CALL: live},
        lambda port: stream_call("127.0.0.1", port, CALL, phone_audio("기계가 고장났어요"), end="cut"),
    )
    number, attachment_id = voicemail(settings, db, "1700000000.1-2")
    assert apply_live(db, attachment_id) == "live_partial"
    with db.session() as s:
        attachment = s.get_one(Attachment, attachment_id)
        assert (attachment.transcription_state, attachment.transcript.source) == ("pending", "live_partial")
    assert (
        run_transcription_job(settings, attachment_id, db=db, recognizer=FakeRecognizer("офлайн текст"))
        == "done"
    )
    with db.session() as s:
        transcript = s.get_one(Attachment, attachment_id).transcript
        assert (transcript.source, transcript.text) == ("offline", "офлайн текст")
    assert apply_live(db, attachment_id) is None  # the offline one is kept


def test_no_stream_no_live_transcript(settings, db):
    _, attachment_id = voicemail(settings, db, "1700000000.1-3")
    assert apply_live(db, attachment_id) is None


@pytest.mark.slow
def test_a_fastagi_voicemail_has_its_live_transcript_at_hang_up(make_settings, db, ko):
    from hotline.models import Request
    from ivr.asterisk.fake_agi import Record
    from ivr.livecall import ASTERISK_STREAMS
    from tests.ivr.asterisk.test_fastagi import serve as serve_agi

    settings = make_settings()
    live = live_call(db, ko)
    ASTERISK_STREAMS.add(live)
    speech = phone_audio("기계가 고장났어요 빨리 와 주세요")
    try:
        # The caller speaks while RECORD FILE runs: the stream's audio reaches the live call.
        script = ["2", "1", Record(3.0, "hangup", then=lambda: live.audio(speech))]
        serve_agi(settings, db, {"script": script, "stream": str(CALL), "linkedid": "1700000000.5"})
    finally:
        ASTERISK_STREAMS.remove(str(CALL))
    with db.session() as s:
        (request,) = s.scalars(select(Request)).all()
        (attachment,) = request.attachments
        assert attachment.transcription_state == "done"  # no offline job has run
        assert attachment.transcript.source == "live" and attachment.transcript.text
        assert request.description == attachment.transcript.text
        row = s.scalars(select(LiveTranscript)).one()
        assert (row.backend_call_id, row.recording_ref) == ("1700000000.5", "1700000000.0-1")


def test_without_a_stream_the_call_goes_on_on_the_keypad(make_settings, db):
    from ivr.asterisk.fake_agi import Record
    from tests.ivr.asterisk.test_fastagi import serve as serve_agi

    settings = make_settings()
    # The dialplan passed a stream id, but no AudioSocket connected (or it broke and left).
    serve_agi(settings, db, {"script": ["2", "1", Record(2.0, "dtmf")], "stream": str(uuid.uuid4())})
    with db.session() as s:
        (attachment,) = s.scalars(select(Attachment)).all()
        assert attachment.transcription_state == "pending" and attachment.transcript is None
        assert s.scalars(select(LiveTranscript)).all() == []


class SpeakingCaller(LiveCall):
    """A live call whose caller says `words` when the number is asked for, `answer` when it is read back."""

    words = ""
    answer_words = ""

    def say(self, words):
        # the silence after lets the listener hear that the caller has finished
        for i in range(0, len(speech := phone_audio(words, tail=NUMBER_TAIL)), 320):
            self.audio(speech[i : i + 320])

    def listen_for_number(self):
        super().listen_for_number()
        self.say(self.words)

    def listen_for_answer(self):
        super().listen_for_answer()
        if self.answer_words:
            self.say(self.answer_words)


@pytest.mark.slow
@pytest.mark.parametrize(("answer_words", "script"), [("네", ["1"]), ("", ["1", "1"])])
def test_a_request_number_said_on_the_line_is_confirmed_and_looked_up(
    make_settings, db, ko, answer_words, script
):
    from sqlalchemy import text

    from ivr.livecall import ASTERISK_STREAMS
    from tests.ivr.asterisk.test_fastagi import call_row, prompts
    from tests.ivr.asterisk.test_fastagi import serve as serve_agi

    settings = make_settings()
    with db.session() as s:
        s.execute(text("UPDATE counters SET value = 1417 WHERE name = 'request'"))
        number = registry.open_request(s, kind="incident", channel="web", actor="cli").number
    assert number == "14188"
    model, language = ko
    caller = SpeakingCaller(
        db, backend="asterisk", call_id="x", stream_id=str(CALL), model=model, language=language
    )
    caller.words = "하나 넷 하나 여덟 여덟"  # 1 4 1 8 8, digit by digit
    caller.answer_words = answer_words  # «네» (yes) said, or 1 pressed
    ASTERISK_STREAMS.add(caller)
    try:
        [trace] = serve_agi(settings, db, {"script": script, "stream": str(CALL)})
    finally:
        ASTERISK_STREAMS.remove(str(CALL))
    call = call_row(db)
    assert [e.detail for e in call.events if e.kind == "spoken_number"] == ["14188"]
    assert "confirm_number" in prompts(trace)  # read back: «Вы сказали: …. Верно?»
    assert any(e.kind == "lookup" and e.data.get("found") for e in call.events)
    assert "request_number" in prompts(trace) and call.outcome == "status_heard"


@pytest.mark.parametrize("broken", [False, True])
def test_typing_still_works_while_the_stream_listens(make_settings, db, ko, broken):
    from ivr.livecall import ASTERISK_STREAMS
    from tests.ivr.asterisk.test_fastagi import call_row
    from tests.ivr.asterisk.test_fastagi import serve as serve_agi

    settings = make_settings()
    with db.session() as s:
        number = registry.open_request(s, kind="incident", channel="web", actor="cli").number
    live = live_call(db, ko)
    if broken:
        live.close(False, "socket error")
    ASTERISK_STREAMS.add(live)
    try:
        serve_agi(settings, db, {"script": ["1", "silence", number + "#"], "stream": str(CALL)})
    finally:
        ASTERISK_STREAMS.remove(str(CALL))
    call = call_row(db)
    assert not [e for e in call.events if e.kind == "spoken_number"]
    assert [e.detail for e in call.events if e.kind == "lookup"] == [number]


def test_the_service_of_hotline_serve(make_settings, db, tmp_path):
    from ivr.asterisk.audiosocket import make_service

    assert make_service(make_settings(), db) is None  # HOTLINE_LIVE_SPEECH is off
    missing = make_settings(HOTLINE_LIVE_SPEECH="true", HOTLINE_VOSK_MODEL=str(tmp_path / "none"))
    assert make_service(missing, db) is None  # no model: calls go on without live speech


@pytest.mark.slow
def test_the_service_registers_each_stream_while_it_lasts(make_settings, db, ko):
    from ivr.asterisk.audiosocket import make_service
    from ivr.livecall import ASTERISK_STREAMS

    settings = make_settings(
        HOTLINE_LIVE_SPEECH="true", HOTLINE_VOSK_MODEL=str(ko_model_path()), HOTLINE_AUDIOSOCKET_PORT="0"
    )
    service = make_service(settings, db)
    assert service is not None
    service.start()
    seen = []

    async def call():
        reader, writer = await asyncio.open_connection("127.0.0.1", service.server.port)
        writer.write(uuid_frame(CALL) + encode(Kind.AUDIO, bytes(320)))
        await writer.drain()
        for _ in range(100):
            if ASTERISK_STREAMS.get(str(CALL)):
                seen.append(True)
                break
            await asyncio.sleep(0.02)
        writer.close()
        await writer.wait_closed()

    try:
        uvloop.run(call())
        for _ in range(100):
            if ASTERISK_STREAMS.get(str(CALL)) is None:
                break
            import time

            time.sleep(0.02)
    finally:
        service.stop()
    assert seen == [True] and ASTERISK_STREAMS.get(str(CALL)) is None


class SlowCaller(LiveCall):
    """A caller who is still saying the number when the number question's time is up."""

    asked = 0  # times the session asked, once the question's time was up

    @property
    def hearing_number(self):
        self.asked += 1
        if self.asked == 5:  # the number is finished 2.5 s after the question's time
            self.heard = spoken_number("하나 넷 하나 여덟 여덟", self.language)
        return True  # still saying it, or just said and not yet taken


def test_a_number_still_being_said_is_waited_for(make_settings, db, ko):
    from ivr.livecall import ASTERISK_STREAMS, LISTEN_STEP_MS
    from tests.ivr.asterisk.test_fastagi import call_row
    from tests.ivr.asterisk.test_fastagi import serve as serve_agi

    settings = make_settings()
    model, language = ko
    caller = SlowCaller(
        db, backend="asterisk", call_id="x", stream_id=str(CALL), model=model, language=language
    )
    ASTERISK_STREAMS.add(caller)
    try:
        # Timeouts of WAIT FOR DIGIT for twice the question's 10 s, in the session's steps.
        silences = 2 * 10_000 // LISTEN_STEP_MS
        serve_agi(settings, db, {"script": ["1", *["silence"] * silences], "stream": str(CALL)})
    finally:
        ASTERISK_STREAMS.remove(str(CALL))
    call = call_row(db)
    assert [e.detail for e in call.events if e.kind == "spoken_number"] == ["14188"]
