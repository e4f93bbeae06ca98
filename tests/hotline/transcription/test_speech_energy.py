"""`has_speech`: is anybody speaking in a recording? Decided from energy, not duration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from hotline.transcription.audio import AudioError, has_speech
from tests.hotline.transcription.conftest import tone, write_wav

RATE = 8000
SILENCE_KEPT = 8050  # samples Asterisk leaves after a silence stop (FIELD-NOTES: endpos=8050)


def noise(seconds: float, dbfs: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(0.0, 10 ** (dbfs / 20), int(seconds * RATE))).astype(np.float32)


def click() -> np.ndarray:
    """A 10 ms thump between two halves of a quiet line."""
    return np.concatenate([noise(0.5, -60), np.full(80, 0.5, np.float32), noise(0.5, -60, 2)])


def syllables(seconds: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    envelope = np.abs(np.sin(2 * np.pi * 2 * t)) ** 2
    return (level * envelope * np.sin(2 * np.pi * 300 * t)).astype(np.float32)


@pytest.mark.parametrize(
    ("name", "samples"),
    [
        ("digital silence, 1.006 s", np.zeros(SILENCE_KEPT, dtype=np.float32)),
        ("a quiet line, 1.006 s", noise(SILENCE_KEPT / RATE, -60)),
        ("a noisy line, 1.006 s", noise(SILENCE_KEPT / RATE, -45)),
        ("a hiss at -38 dBFS, 3 s", noise(3.0, -38)),
        ("a quiet line, 60 s", noise(60.0, -60)),
        ("one click on a quiet line", click()),
    ],
)
def test_no_speech(tmp_path: Path, name: str, samples: np.ndarray) -> None:
    assert not has_speech(write_wav(tmp_path / "r.wav", samples, RATE))


@pytest.mark.parametrize(
    ("name", "samples"),
    [
        ("syllables over a quiet line", syllables(2.0) + noise(2.0, -60)),
        ("syllables over a noisy line", syllables(2.0) + noise(2.0, -45)),
        ("one word, then the 1 s of silence kept", np.concatenate([syllables(0.5), noise(1.006, -60)])),
        ("a steady tone (sound all along)", tone(2.0, RATE)),
        ("µ-law, as Asterisk and Twilio may send", syllables(2.0)),
    ],
)
def test_speech(tmp_path: Path, name: str, samples: np.ndarray) -> None:
    subtype = "ULAW" if "law" in name else "PCM_16"
    assert has_speech(write_wav(tmp_path / "r.wav", samples, RATE, subtype))


def test_stereo_and_16_khz(tmp_path: Path) -> None:
    voice = syllables(2.0)
    stereo = np.stack([voice, voice], axis=1)
    path = tmp_path / "s.wav"
    soundfile.write(str(path), np.repeat(stereo, 2, axis=0), 16000)
    assert has_speech(path)


def test_empty_and_broken_files(tmp_path: Path) -> None:
    assert not has_speech(write_wav(tmp_path / "none.wav", np.zeros(0, dtype=np.float32), RATE))
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not audio at all")
    with pytest.raises(AudioError):
        has_speech(broken)
