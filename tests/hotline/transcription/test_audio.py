import tracemalloc

import numpy as np
import pytest

from hotline.transcription.audio import TARGET_RATE, AudioError, pcm16_chunks, probe
from tests.hotline.transcription.conftest import tone, write_wav


def decode(path) -> np.ndarray:
    return np.frombuffer(b"".join(pcm16_chunks(path)), dtype="<i2")


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.argmax(spectrum) * rate / len(samples))


@pytest.mark.parametrize(
    ("rate", "subtype", "channels"),
    [
        (8000, "PCM_16", 1),  # Asterisk RECORD FILE … wav
        (8000, "ULAW", 1),  # Twilio / Asterisk G.711 µ-law
        (8000, "ALAW", 1),  # G.711 A-law
        (16000, "PCM_16", 1),
        (44100, "PCM_16", 2),  # a stereo file from a desk recorder
        (22050, "PCM_U8", 1),
    ],
)
def test_formats_become_16k_mono_s16_with_the_same_sound(tmp_path, rate, subtype, channels):
    path = write_wav(tmp_path / "in.wav", tone(2.0, rate, 440.0, channels), rate, subtype)
    info = probe(path)
    assert (info.sample_rate, info.channels, info.subtype) == (rate, channels, subtype)
    out = decode(path)
    assert abs(len(out) - 2.0 * TARGET_RATE) <= 64  # same duration, at 16 kHz
    assert abs(dominant_hz(out, TARGET_RATE) - 440.0) < 2.0  # same pitch
    assert 0.3 * 32767 < np.abs(out).max() <= 32767  # same loudness, s16 range


def test_chunks_are_bounded_and_memory_stays_flat_on_a_long_recording(tmp_path):
    # Twenty minutes of 8 kHz µ-law: 9.6 MB on disk, 38 MB as 16 kHz s16 if held whole.
    minutes = 20
    path = tmp_path / "long.wav"
    import soundfile

    with soundfile.SoundFile(str(path), "w", 8000, 1, "ULAW", format="WAV") as f:
        block = tone(60.0, 8000, 300.0)
        for _ in range(minutes):
            f.write(block)
    tracemalloc.start()
    total, biggest = 0, 0
    for chunk in pcm16_chunks(path):
        total += len(chunk)
        biggest = max(biggest, len(chunk))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert total == pytest.approx(minutes * 60 * TARGET_RATE * 2, rel=1e-3)
    assert biggest <= TARGET_RATE * 2  # at most a second of audio per chunk
    assert peak < 5 * 1024 * 1024


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "пустой"),
        (b"this is a log file, not audio\n" * 10, "не является"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00", "не является"),  # cut inside the header
        (b"\x00" * 4096, "не является"),
    ],
)
def test_bad_files_raise_audio_error_with_a_reason(tmp_path, content, reason):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=reason):
        b"".join(pcm16_chunks(path))


def test_header_only_wav_is_empty(tmp_path):
    path = write_wav(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 8000)
    with pytest.raises(AudioError, match="0 отсчётов"):
        b"".join(pcm16_chunks(path))


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="не найден"):
        probe(tmp_path / "nope.wav")
