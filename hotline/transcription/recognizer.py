"""Speech recognizers: the interface, the Vosk implementation, and a fake beside it.

A recognizer takes 16 kHz mono s16le chunks (hotline.transcription.audio) and returns the text with
per-word timings and confidences. `VoskRecognizer` loads its model once per process
(hundreds of MB) and makes a cheap `KaldiRecognizer` per recording; one model serves
several threads. `FakeRecognizer` needs no model: fast tests and the demo mode
(HOTLINE_ASR=fake) use it.

Errors: ModelMissing (a HotlineError) when the model folder is absent or unloadable;
its one line names the command that fetches it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from hotline.errors import EX_CONFIG, HotlineError
from hotline.settings import Settings
from hotline.transcription.audio import TARGET_RATE

BYTES_PER_SECOND = TARGET_RATE * 2


class ModelMissing(HotlineError):
    """The Vosk model folder is not there or is not a model: `hotline models fetch`,
    not a restart, cures it."""

    exit_status = EX_CONFIG


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    conf: float


@dataclass
class Recognition:
    text: str
    words: list[Word] = field(default_factory=list)
    audio_seconds: float = 0.0

    @property
    def mean_confidence(self) -> float | None:
        return sum(w.conf for w in self.words) / len(self.words) if self.words else None


class Recognizer(Protocol):
    """Turns 16 kHz mono s16le audio into words."""

    name: str

    def recognize(self, chunks: Iterable[bytes]) -> Recognition:
        """Recognize one recording given as a stream of PCM chunks."""


def model_hint(path: Path) -> str:
    """The one line that tells an operator how to get the missing model."""
    from hotline.settings import DEFAULT_VOSK_MODEL

    name = path.name if path.name.startswith("vosk-model") else DEFAULT_VOSK_MODEL
    return (
        f"Vosk model not found at {path}: run `hotline models fetch {name}` "
        "(or set HOTLINE_VOSK_MODEL to a model folder)"
    )


@cache
def load_vosk_model(path: Path) -> Any:
    """The Vosk model in `path`, loaded once per process."""
    if not (path / "am").is_dir() and not (path / "conf").is_dir():
        raise ModelMissing(model_hint(path))
    import vosk

    vosk.SetLogLevel(-1)
    try:
        return vosk.Model(str(path))
    except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
        raise ModelMissing(f"{model_hint(path)}; loading failed: {exc}") from exc


class VoskRecognizer:
    """Vosk (Kaldi) decoding with word timings."""

    def __init__(self, model_path: Path):
        self.model = load_vosk_model(model_path)
        self.name = model_path.name if model_path.name != "model" else model_path.parent.name

    def recognize(self, chunks: Iterable[bytes]) -> Recognition:
        from vosk import KaldiRecognizer

        recognizer = KaldiRecognizer(self.model, TARGET_RATE)
        recognizer.SetWords(True)
        results: list[dict[str, Any]] = []
        size = 0
        for chunk in chunks:
            size += len(chunk)
            if recognizer.AcceptWaveform(chunk):
                results.append(json.loads(recognizer.Result()))
        results.append(json.loads(recognizer.FinalResult()))
        words = [
            Word(str(w["word"]), float(w["start"]), float(w["end"]), float(w.get("conf", 1.0)))
            for r in results
            for w in r.get("result", [])
        ]
        text = " ".join(r["text"] for r in results if r.get("text"))
        return Recognition(text=text, words=words, audio_seconds=size / BYTES_PER_SECOND)


class FakeRecognizer:
    """A recognizer with a fixed answer: tests and the demo mode.

    It reads every chunk (so audio errors surface as they would with Vosk) and
    spreads its words evenly over the audio. With `started`/`release` paths it
    writes `started` once it has the audio and then waits for `release` to appear:
    tests use that to hold a worker in the middle of a decode.
    """

    name = "fake"

    def __init__(
        self,
        text: str = "демонстрационная расшифровка модель распознавания не подключена",
        *,
        started: Path | None = None,
        release: Path | None = None,
        release_timeout: float = 60.0,
    ):
        self.text = text
        self.started, self.release, self.release_timeout = started, release, release_timeout
        self._lock = threading.Lock()

    def recognize(self, chunks: Iterable[bytes]) -> Recognition:
        size = sum(len(c) for c in chunks)
        seconds = size / BYTES_PER_SECOND
        if self.started is not None:
            with self._lock:
                self.started.write_text(str(time.time()))
        if self.release is not None:
            deadline = time.monotonic() + self.release_timeout
            while not self.release.exists():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.release} did not appear")
                time.sleep(0.05)
        tokens = self.text.split() if size else []
        step = seconds / len(tokens) if tokens else 0.0
        words = [Word(t, round(i * step, 3), round((i + 1) * step, 3), 1.0) for i, t in enumerate(tokens)]
        return Recognition(text=" ".join(tokens), words=words, audio_seconds=seconds)


_override: Recognizer | None = None


def use_recognizer(recognizer: Recognizer | None) -> None:
    """Make every job of this process use `recognizer` (None: back to the settings)."""
    global _override
    _override = recognizer


@cache
def _for_settings(engine: str, model_path: Path) -> Recognizer:
    if engine == "fake":
        return FakeRecognizer()
    return VoskRecognizer(model_path)


def recognizer_for(settings: Settings) -> Recognizer:
    """The recognizer jobs of this process use: Vosk, or the fake with HOTLINE_ASR=fake."""
    if _override is not None:
        return _override
    return _for_settings(settings.asr_engine, settings.vosk_model)
