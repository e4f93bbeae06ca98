import hashlib
import io
import struct
import wave

import pytest

from hotline import registry
from hotline.errors import StorageError
from hotline.models import Attachment
from hotline.storage import resolve, safe_filename, store_attachment, wav_duration


def _pcm_wav(path, seconds=1.5, rate=8000):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(rate * seconds))


def _ulaw_wav(path, seconds=2.0, rate=8000):
    data = b"\xff" * int(rate * seconds)  # µ-law silence, one byte per sample
    fmt = struct.pack("<HHIIHH", 7, 1, rate, rate, 1, 8)  # format 7 = µ-law
    body = (
        b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    )
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\x\\отчёт 1.log", "отчёт_1.log"),
        ("", "file"),
        (".hidden", "hidden"),
    ],
)
def test_safe_filename(name, expected):
    assert safe_filename(name) == expected


@pytest.mark.parametrize("relative", ["../x", "/etc/passwd", "a/../../x", "", "."])
def test_resolve_refuses_paths_outside_the_data_dir(tmp_path, relative):
    with pytest.raises(StorageError):
        resolve(tmp_path, relative)


def test_durations(tmp_path):
    _pcm_wav(tmp_path / "a.wav", 1.5)
    _ulaw_wav(tmp_path / "b.wav", 2.0)
    (tmp_path / "c.wav").write_bytes(b"not audio")
    assert wav_duration(tmp_path / "a.wav") == pytest.approx(1.5)
    assert wav_duration(tmp_path / "b.wav") == pytest.approx(2.0)
    assert wav_duration(tmp_path / "c.wav") is None


def test_store_attachment(db, tmp_path):
    _pcm_wav(tmp_path / "rec.wav", 3)
    with db.session() as s:
        req = registry.open_request(s, kind="incident", channel="phone", actor="system")
        with open(tmp_path / "rec.wav", "rb") as f:
            audio = store_attachment(
                s,
                tmp_path / "data",
                source=f,
                filename="rec.wav",
                content_type="audio/wav",
                origin="phone",
                request_id=req.id,
                external_id="RE123",
            )
        log = store_attachment(
            s,
            tmp_path / "data",
            source=b"log line\n",
            filename="../server.log",
            content_type="text/plain",
            origin="email",
            request_id=req.id,
        )
        assert audio.transcription_state == "pending" and audio.duration_seconds == pytest.approx(3)
        assert log.transcription_state is None and log.filename == "server.log"
        assert log.sha256 == hashlib.sha256(b"log line\n").hexdigest() and log.size == 9
        assert resolve(tmp_path / "data", log.path).read_bytes() == b"log line\n"
        assert audio.path.startswith("recordings/") and log.path.startswith("attachments/")
    with db.session() as s:
        assert [a.filename for a in s.get(type(req), req.id).attachments] == ["rec.wav", "server.log"]
        assert not list((tmp_path / "data").rglob("*.part"))


def test_a_failed_write_leaves_no_file(db, tmp_path):
    class Broken(io.RawIOBase):
        def read(self, n=-1):
            raise OSError("disk on fire")

    with pytest.raises(StorageError, match="disk on fire"), db.session() as s:
        store_attachment(
            s,
            tmp_path / "data",
            source=Broken(),
            filename="x.bin",
            content_type="application/octet-stream",
            origin="web",
        )
    assert not [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    with db.session() as s:
        assert s.query(Attachment).count() == 0
