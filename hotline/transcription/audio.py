"""Recordings turned into what Vosk wants: 16 kHz, mono, signed 16-bit PCM, in chunks.

What comes in: WAV PCM at 8 kHz (Asterisk `RECORD FILE … wav`), 16 or 44.1 kHz,
µ-law and A-law WAV (Twilio, Asterisk), mono or stereo. libsndfile (`soundfile`)
decodes every one of these, and more, in C; soxr resamples with a proper anti-alias
filter whose state carries across chunks. Both stream: a block of a file is read,
mixed to mono, resampled and handed on, so an hour-long recording never sits in
memory. (The standard library's `audioop` is deprecated and gone in Python 3.13.)

Errors: AudioError (a HotlineError) for a file that is missing, empty, not audio or
unreadable; its message is in Russian because engineers read it in the dashboard.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr

from hotline.errors import HotlineError

TARGET_RATE = 16000
CHUNK_SECONDS = 0.5


class AudioError(HotlineError):
    """A recording that cannot be decoded: missing, empty, corrupt or not audio."""


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int
    subtype: str  # PCM_16, ULAW, ALAW, ...

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def probe(path: Path) -> AudioInfo:
    """What a recording holds; AudioError if it is not usable audio."""
    with _open(path) as f:
        return _info(f)


def pcm16_chunks(path: Path, chunk_seconds: float = CHUNK_SECONDS) -> Iterator[bytes]:
    """The recording as 16 kHz mono s16le bytes, one bounded chunk at a time."""
    with _open(path) as f:
        info = _info(f)
        blocksize = max(1, int(info.sample_rate * chunk_seconds))
        resampler = (
            soxr.ResampleStream(info.sample_rate, TARGET_RATE, 1, dtype="float32", quality="HQ")
            if info.sample_rate != TARGET_RATE
            else None
        )
        try:
            for block in f.blocks(blocksize=blocksize, dtype="float32", always_2d=True):
                mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
                out = resampler.resample_chunk(mono) if resampler else mono
                if out.size:
                    yield _to_s16(out)
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"запись повреждена, чтение прервано: {exc}") from exc
        if resampler:
            tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            if tail.size:
                yield _to_s16(tail)


def _to_s16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def _open(path: Path) -> soundfile.SoundFile:
    if not path.is_file():
        raise AudioError("файл записи не найден")
    if path.stat().st_size == 0:
        raise AudioError("файл записи пустой (0 байт)")
    try:
        return soundfile.SoundFile(str(path))
    except (soundfile.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"файл не является читаемой аудиозаписью: {exc}") from exc


def _info(f: soundfile.SoundFile) -> AudioInfo:
    info = AudioInfo(sample_rate=f.samplerate, channels=f.channels, frames=f.frames, subtype=f.subtype)
    if info.sample_rate <= 0 or info.channels <= 0:
        raise AudioError("в заголовке записи нет частоты или числа каналов")
    if info.frames == 0:
        raise AudioError("запись не содержит звука (0 отсчётов)")
    return info
