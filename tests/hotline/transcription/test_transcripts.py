import pytest

from hotline import registry, storage
from hotline.errors import UserError
from hotline.models import Transcript
from hotline.transcription.transcripts import correct_transcript


def _voicemail(session, tmp_path, description: str) -> Transcript:
    req = registry.open_request(
        session, kind="incident", channel="phone", actor="caller:+79001234567", description=description
    )
    att = storage.store_attachment(
        session,
        tmp_path,
        source=b"RIFF",
        filename="r.wav",
        content_type="audio/wav",
        origin="phone",
        request_id=req.id,
    )
    transcript = Transcript(attachment=att, text="линия три не читает коды", words=[])
    session.add(transcript)
    session.flush()
    return transcript


def test_the_description_follows_the_correction(db, tmp_path):
    with db.session() as s:
        t = _voicemail(s, tmp_path, "линия три не читает коды")
        correct_transcript(s, t, "Линия 3 не читает QR-коды", login="ivanov")
        assert t.text == "линия три не читает коды"  # the original stays
        assert t.attachment.request.description == "Линия 3 не читает QR-коды"
        correct_transcript(s, t, "Линия 3 не читает QR-коды на упаковке", login="petrov")
        assert t.attachment.request.description == "Линия 3 не читает QR-коды на упаковке"
        actions = [e.action for e in t.attachment.request.events]
        assert actions.count("transcript_corrected") == 2


def test_an_engineers_own_description_is_kept(db, tmp_path):
    with db.session() as s:
        t = _voicemail(s, tmp_path, "Сканер на линии 3, см. звонок")
        correct_transcript(s, t, "Линия 3 не читает QR-коды", login="ivanov")
        assert t.attachment.request.description == "Сканер на линии 3, см. звонок"
        with pytest.raises(UserError):
            correct_transcript(s, t, "   ", login="ivanov")


def test_a_corrected_number_points_at_the_request_it_names(db, tmp_path):
    with db.session() as s:
        named = registry.open_request(s, kind="incident", channel="email", actor="email:a@plant.example")
        t = _voicemail(s, tmp_path, "линия три не читает коды")
        correct_transcript(s, t, f"Линия 3 не читает коды, как в заявке {named.number}", login="ivanov")
        voicemail = t.attachment.request.number
        [entry] = [e for e in named.events if e.action == "mentioned"]
        assert entry.text == f"упомянута в голосовом сообщении заявки {voicemail}"
