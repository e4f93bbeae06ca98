import datetime as dt

import pytest
from sqlalchemy import select, update

from hotline import registry
from hotline.jobs import queue_for, recover_transcriptions
from hotline.models import Attachment, Request, RequestEvent, Transcript, utcnow
from hotline.registry import suggest_kind
from hotline.storage import resolve
from hotline.transcription.pipeline import MAX_ATTEMPTS, linked_requests, run_transcription_job
from hotline.transcription.recognizer import FakeRecognizer
from tests.hotline.transcription.conftest import add_recording, tone, write_wav


@pytest.fixture
def wav(tmp_path):
    return write_wav(tmp_path / "call.wav", tone(3.0, 8000), 8000, "ULAW")


def state(db, attachment_id):
    with db.session() as s:
        a = s.get_one(Attachment, attachment_id)
        return a.transcription_state, a.transcription_error, a.transcription_attempts


def events(db, number, action="transcript"):
    with db.session() as s:
        req = registry.get_request(s, number)
        return [e.text for e in req.events if e.action == action]


def test_transcript_goes_into_the_request(settings, db, wav):
    with db.session() as s:
        mentioned = registry.open_request(s, kind="incident", channel="web", actor="cli").number
    digit_words = ("ноль", "один", "два", "три", "четыре", "пять", "шесть", "семь", "восемь", "девять")
    spoken = " ".join(digit_words[int(d)] for d in mentioned)
    text = f"здравствуйте у нас не работает сканер на линии три по заявке {spoken}"
    number, att = add_recording(settings, db, wav)

    assert run_transcription_job(settings, att, db=db, recognizer=FakeRecognizer(text)) == "done"

    with db.session() as s:
        a = s.get_one(Attachment, att)
        t = a.transcript
        assert (a.transcription_state, a.transcription_error, a.transcription_attempts) == ("done", None, 1)
        assert a.transcription_started_at is not None
        assert t.text == text
        assert t.normalized_text.endswith(f"линии 3 по заявке {mentioned}")
        assert t.model == "fake" and t.mean_confidence == 1.0
        assert t.audio_seconds == pytest.approx(3.0, abs=0.01) and t.decode_seconds >= 0
        assert [w["word"] for w in t.words] == text.split()
        assert all(w["start"] < w["end"] <= 3.0 for w in t.words)
        assert [r.number for r in linked_requests(s, t)] == [mentioned]
        req = registry.get_request(s, number)
        assert req.description == text
        assert (req.kind_confirmed, req.suggested_kind) == (False, "incident")
    (entry,) = events(db, number)
    assert "Упомянуты заявки: " + mentioned in entry
    assert "инцидент" in entry
    # The request named points back, once, however often the recording is transcribed.
    back = [f"упомянута в голосовом сообщении заявки {number}"]
    assert events(db, mentioned, "mentioned") == back
    with db.session() as s:
        s.execute(update(Attachment).where(Attachment.id == att).values(transcription_state="pending"))
    assert run_transcription_job(settings, att, db=db, recognizer=FakeRecognizer(text)) == "done"
    assert events(db, mentioned, "mentioned") == back


def test_running_twice_does_the_work_once(settings, db, wav):
    number, att = add_recording(settings, db, wav, description="описание оператора")
    fake = FakeRecognizer("прошу настроить доступ")
    assert run_transcription_job(settings, att, db=db, recognizer=fake) == "done"
    assert run_transcription_job(settings, att, db=db, recognizer=fake) == "skipped"
    with db.session() as s:
        assert len(s.scalars(select(Transcript)).all()) == 1
        req = registry.get_request(s, number)
        assert req.description == "описание оператора"  # kept: the engineer's text wins
        assert req.suggested_kind == "service_request"
    assert len(events(db, number)) == 1


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "пустой"),
        (b"%PDF-1.4 not audio at all" * 40, "не является"),
        (b"RIFF\xff\xff\x00\x00WAVEfmt garbage" + b"\x13" * 300, "не является"),
    ],
)
def test_bad_recordings_fail_cleanly_and_keep_the_audio(settings, db, content, reason):
    number, att = add_recording(settings, db, content)
    assert run_transcription_job(settings, att, db=db, recognizer=FakeRecognizer()) == "failed"
    st, error, attempts = state(db, att)
    assert st == "failed" and reason in error and attempts == 1
    with db.session() as s:
        a = s.get_one(Attachment, att)
        assert resolve(settings.data_dir, a.path).read_bytes() == content
        assert a.request.number == number and a.transcript is None
    (entry,) = events(db, number)
    assert "не расшифрована" in entry and "Запись сохранена" in entry


def test_missing_file_fails_with_reason(settings, db, wav):
    _, att = add_recording(settings, db, wav)
    with db.session() as s:
        resolve(settings.data_dir, s.get_one(Attachment, att).path).unlink()
    assert run_transcription_job(settings, att, db=db, recognizer=FakeRecognizer()) == "failed"
    assert "не найден" in state(db, att)[1]


def test_a_live_lease_is_respected_and_an_expired_one_taken(make_settings, db, wav):
    settings = make_settings(HOTLINE_TRANSCRIPTION_LEASE_SECONDS="600")
    _, att = add_recording(settings, db, wav)
    with db.session() as s:
        s.execute(update(Attachment).values(transcription_state="running", transcription_started_at=utcnow()))
    assert run_transcription_job(settings, att, db=db, recognizer=FakeRecognizer()) == "skipped"
    with db.session() as s:
        old = utcnow() - dt.timedelta(seconds=601)
        s.execute(update(Attachment).values(transcription_started_at=old, transcription_attempts=1))
    assert run_transcription_job(settings, att, db=db, recognizer=FakeRecognizer()) == "done"
    assert state(db, att)[2] == 2


def test_a_recording_that_keeps_killing_workers_is_given_up(settings, db, wav):
    _, att = add_recording(settings, db, wav)
    with db.session() as s:
        s.execute(update(Attachment).values(transcription_attempts=MAX_ATTEMPTS))
    assert run_transcription_job(settings, att, db=db, recognizer=FakeRecognizer()) == "failed"
    assert "прервалась" in state(db, att)[1]


def test_unexpected_errors_hand_the_job_back(settings, db, wav):
    _, att = add_recording(settings, db, wav)

    class Broken(FakeRecognizer):
        def recognize(self, chunks):
            raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError):
        run_transcription_job(settings, att, db=db, recognizer=Broken())
    assert state(db, att)[0] == "pending"


def test_recovery_requeues_lost_jobs_only(make_settings, db, wav):
    settings = make_settings(HOTLINE_TRANSCRIPTION_LEASE_SECONDS="600")
    _, queued = add_recording(settings, db, wav)
    _, lost_pending = add_recording(settings, db, wav)
    _, lost_running = add_recording(settings, db, wav)
    _, live_running = add_recording(settings, db, wav)
    with db.session() as s:
        s.execute(
            update(Attachment)
            .where(Attachment.id == lost_running)
            .values(transcription_state="running", transcription_started_at=utcnow() - dt.timedelta(hours=1))
        )
        s.execute(
            update(Attachment)
            .where(Attachment.id == live_running)
            .values(transcription_state="running", transcription_started_at=utcnow())
        )
    queue = queue_for(settings)
    queue.transcribe(queued)
    assert recover_transcriptions(settings, db) == [lost_pending, lost_running]
    assert sorted(t.args[0] for t in queue.huey.pending()) == sorted([queued, lost_pending, lost_running])
    # A second sweep finds them queued and adds nothing.
    assert recover_transcriptions(settings, db) == []


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("у нас не работает сканер линия встала", "incident"),
        ("опять периодически теряются коды проблема повторяется", "problem"),
        ("прошу настроить доступ для нового сотрудника", "service_request"),
        ("добрый день", None),
        ("", None),
    ],
)
def test_suggest_kind(text, kind):
    assert suggest_kind(text) == kind


def test_recording_without_a_request_still_gets_its_transcript(settings, db, wav):
    from hotline.storage import store_attachment

    with db.session() as s:
        att = store_attachment(
            s,
            settings.data_dir,
            source=wav.read_bytes(),
            filename="x.wav",
            content_type="audio/wav",
            origin="phone",
        ).id
    assert run_transcription_job(settings, att, db=db, recognizer=FakeRecognizer("раз два")) == "done"
    with db.session() as s:
        assert s.get_one(Attachment, att).transcript.normalized_text == "раз 2"
        assert s.scalars(select(RequestEvent)).all() == [] and s.scalars(select(Request)).all() == []
