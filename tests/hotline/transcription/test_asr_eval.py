"""`hotline asr-eval`: error rates over a folder of recordings and over corrected transcripts."""

import pytest

from hotline.models import Attachment, Transcript
from hotline.transcription.recognizer import FakeRecognizer
from tests.hotline.transcription.conftest import add_recording, tone, write_wav
from tests.voice_models.test_models_cli import run

FAKE = FakeRecognizer().text  # what HOTLINE_ASR=fake hears in every recording


@pytest.fixture
def env(settings, monkeypatch):
    monkeypatch.setenv("HOTLINE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("HOTLINE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HOTLINE_ASR", "fake")
    return settings


def test_folder_of_recordings_with_references(capsys, env, tmp_path):
    folder = tmp_path / "eval"
    folder.mkdir()
    for name in ("a", "b", "c"):
        write_wav(folder / f"{name}.wav", tone(1.0, 8000), 8000, "ULAW")
    (folder / "a.txt").write_text(FAKE.capitalize() + ".", encoding="utf-8")  # case and punctuation ignored
    (folder / "b.txt").write_text(FAKE.replace(" не ", " "), encoding="utf-8")  # one word fewer
    code, out, err = run(capsys, "asr-eval", str(folder), "--no-corrected")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("a.wav\tWER 0.0%\tCER 0.0%")
    assert lines[1].startswith("b.wav\tWER 20.0%")
    assert lines[2] == f"files (fake): 2 items\tWER {1 / 11:.1%}\tCER {3 / (len(FAKE) * 2 - 3):.1%}"
    assert "c.wav" not in out  # no reference, not scored


def test_corrected_transcripts(capsys, env, db, tmp_path):
    _, att = add_recording(env, db, write_wav(tmp_path / "x.wav", tone(1.0, 8000), 8000))
    with db.session() as s:
        s.add(
            Transcript(
                attachment=s.get_one(Attachment, att),
                text="заявка 10008 не работает",
                corrected_text="Заявка 10008: не работает линия",
            )
        )
    code, out, err = run(capsys, "asr-eval")
    assert code == 0, err
    assert out.startswith("corrected transcripts: 1 items\tWER 20.0%")


def test_nothing_to_score_is_an_error(capsys, env, tmp_path):
    code, out, err = run(capsys, "asr-eval", str(tmp_path))
    assert code == 1 and err.startswith("error: no WAV files with a .txt reference")
    code, out, err = run(capsys, "asr-eval")
    assert code == 1 and "nothing to score" in err
