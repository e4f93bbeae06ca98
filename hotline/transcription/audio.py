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


# --- is anybody speaking? -------------------------------------------------------------

FRAME_SECONDS = 0.02
SPEECH_FLOOR_DB = -40.0  # a frame quieter than this (dBFS RMS) is never speech
SPEECH_MARGIN_DB = 15.0  # ... nor one less than this above the recording's noise floor
NOISE_CEILING_DB = -45.0  # the loudest level taken for line noise (Asterisk's silence is below)
MIN_SPEECH_SECONDS = 0.2  # speech frames needed in all (clicks and thumps are shorter)


def has_speech(path: Path) -> bool:
    """True if the recording holds sound someone should listen to, decided from its energy.

    The file's duration says nothing: Asterisk keeps 1 s of the silence that ended a
    recording, so a caller who said nothing leaves a ~1 s file. The noise floor is the
    10th percentile of the 20 ms frames' RMS level; a frame is speech when it is louder
    than SPEECH_FLOOR_DB and SPEECH_MARGIN_DB above that floor (a floor above
    NOISE_CEILING_DB is not noise but sound all along, and counts as NOISE_CEILING_DB).
    The recording has speech when MIN_SPEECH_SECONDS of frames are. AudioError if the
    file cannot be decoded; a file with no samples has no speech.
    """
    with _open(path) as f:
        if f.frames == 0 or f.samplerate <= 0:
            return False
        frame = max(1, int(f.samplerate * FRAME_SECONDS))
        levels: list[np.ndarray] = []
        try:
            for block in f.blocks(blocksize=frame * 50, dtype="float32", always_2d=True):
                mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
                whole = mono[: mono.size - mono.size % frame].reshape(-1, frame)
                if whole.size:
                    rms = np.sqrt(np.mean(np.square(whole, dtype=np.float64), axis=1))
                    levels.append(20.0 * np.log10(np.maximum(rms, 1e-10)))
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"запись повреждена, чтение прервано: {exc}") from exc
    if not levels:
        return False
    db = np.concatenate(levels)
    floor = float(np.percentile(db, 10))
    threshold = max(SPEECH_FLOOR_DB, min(floor, NOISE_CEILING_DB) + SPEECH_MARGIN_DB)
    speech_frames = int(np.count_nonzero(db > threshold))
    return speech_frames * frame / f.samplerate >= MIN_SPEECH_SECONDS
