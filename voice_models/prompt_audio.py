"""Prompt audio: one 8 kHz mono 16-bit WAV per prompt key, spoken by RHVoice or espeak-ng.

`build_prompts()` synthesises each text with the best engine installed — RHVoice
(`RHVoice-test`, a Russian voice chosen by `HOTLINE_PROMPT_VOICE`), else espeak-ng's
Russian voice — and brings it with sox to what telephones carry: 8 kHz, mono, 16-bit
PCM (Asterisk's `wav` format), silence trimmed at both ends with a short fade so no
sound starts or stops abruptly, and one loudness for every file (RMS `LEVEL_DB`
dBFS, peaks limited below full scale). Files are written atomically.

The manifest (`manifest.json`) records, per key, the hash of the text and of the
processing, the engine and the voice. A file is made again only when its text (or
the processing) changed, or the chosen engine and voice differ from the ones that
made it — but never by a lesser engine: on a machine with espeak-ng only, files
RHVoice made are kept. Files of keys no longer in the catalogue are removed.

`speak_cached()` synthesises free text at run time (an engineer's question read on
the Asterisk line) into a cache folder, with the same engines and processing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import wave
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from hotline.errors import HotlineError

log = logging.getLogger(__name__)

RATE = 8000
LEVEL_DB = -20.0  # RMS of every prompt, dBFS (sox `stats`, "RMS lev dB")
PEAK_DB = -1.0  # peaks stay below this, dBFS
PAD_START, PAD_END = 0.05, 0.15  # seconds of silence around the speech
MANIFEST = "manifest.json"
#: What the processing does; part of every file's hash, so a change remakes them all.
PROCESSING = f"v2|{RATE}|trim-0.1%|fade5ms|pad{PAD_START}/{PAD_END}|rms{LEVEL_DB}|peak{PEAK_DB}"
DEFAULT_VOICE = "anna"
SYNTH_TIMEOUT = 60  # seconds for one prompt


class PromptBuildError(HotlineError):
    """No synthesiser, or sox or the synthesiser failed."""


# --- engines -----------------------------------------------------------------------


@dataclass(frozen=True)
class Engine:
    """A synthesiser on this machine: its name, the voice it speaks with, its rank."""

    name: str  # "rhvoice" or "espeak-ng"
    voice: str
    command: str
    rank: int  # higher is better

    def speak(self, text: str, raw: Path) -> None:
        """Write `text` spoken into the WAV file `raw` (any rate)."""
        if self.name == "rhvoice":
            _check_rhvoice_voice(self.command, self.voice)
            argv = [self.command, "-p", self.voice, "-o", str(raw)]
            _run(argv, stdin=text)
        else:
            argv = [self.command, "-v", self.voice, "-s", str(ESPEAK_SPEED), "-w", str(raw), "--", text]
            _run(argv)
        if not raw.exists() or raw.stat().st_size <= 44:
            # Some builds of RHVoice-test write nothing for a voice they do not have.
            raise PromptBuildError(
                f"{self.name} made no audio with the voice «{self.voice}» (is it installed?)"
            )


def _check_rhvoice_voice(command: str, voice: str) -> None:
    """Refuse a voice RHVoice does not have: RHVoice-test (e830be7a) then speaks with
    another one and exits 0, and the prompts would be a mix of two voices."""
    prefix = Path(command).resolve().parent.parent
    for voices in (prefix / "share" / "RHVoice" / "voices", Path("/usr/share/RHVoice/voices")):
        if voices.is_dir():
            have = sorted(v.name for v in voices.iterdir() if v.is_dir())
            if voice.lower() not in (v.lower() for v in have):
                installed = ", ".join(have) or "none"
                raise PromptBuildError(f"RHVoice has no voice «{voice}» (installed: {installed})")
            return


ESPEAK_SPEED = 165  # words per minute: a little slower than espeak's 175, for phone lines
_RANK = {"espeak-ng": 1, "rhvoice": 2}


def find_engine(voice: str | None = None) -> Engine:
    """The best synthesiser installed: RHVoice with `voice`, else espeak-ng."""
    rhvoice = shutil.which("RHVoice-test")
    if rhvoice:
        return Engine("rhvoice", voice or DEFAULT_VOICE, rhvoice, _RANK["rhvoice"])
    espeak = shutil.which("espeak-ng")
    if espeak:
        return Engine("espeak-ng", "ru", espeak, _RANK["espeak-ng"])
    raise PromptBuildError(
        "espeak-ng is not installed, nor RHVoice (Debian: apt-get install espeak-ng sox; "
        "RHVoice: see the README, «Голос подсказок»)"
    )


def _sox() -> str:
    path = shutil.which("sox")
    if path is None:
        raise PromptBuildError("sox is not installed (Debian: apt-get install sox)")
    return path


def _run(argv: list[str], stdin: str | None = None) -> str:
    try:
        done = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, check=False, timeout=SYNTH_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PromptBuildError(f"{Path(argv[0]).name} failed: {exc}") from exc
    if done.returncode != 0:
        raise PromptBuildError(f"{Path(argv[0]).name} failed: {done.stderr.strip()[:200]}")
    return done.stderr


# --- processing --------------------------------------------------------------------


@dataclass(frozen=True)
class Level:
    """What sox `stats` measures of a file: RMS and peak level in dBFS, length in seconds."""

    rms_db: float
    peak_db: float
    seconds: float


def measure(path: Path) -> Level:
    """The RMS level, peak level and length of a WAV file (sox `stats`)."""
    out = _run([_sox(), str(path), "-n", "stats"])

    def value(label: str) -> float:
        match = re.search(rf"^{re.escape(label)}\s+(-?[\d.]+|-inf)", out, re.MULTILINE)
        if match is None:
            raise PromptBuildError(f"sox stats gave no «{label}»")
        return float(match.group(1))

    return Level(value("RMS lev dB"), value("Pk lev dB"), value("Length s"))


def _process(raw: Path, out: Path, work: Path) -> None:
    """Trim, fade, resample to 8 kHz mono 16-bit, bring to LEVEL_DB and pad `raw` into `out`."""
    sox = _sox()
    trimmed = work / "trimmed.wav"
    # Trim the synthesiser's silence at both ends at a low threshold (soft first and
    # last sounds — «с», «ф» — stay), fade 5 ms so nothing starts with a click.
    _run(
        [sox, str(raw), "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed-integer", str(trimmed)]
        + ["silence", "1", "0.01", "0.1%", "reverse", "silence", "1", "0.01", "0.1%", "reverse"]
    )
    level = measure(trimmed)
    if level.seconds <= 0 or level.rms_db == float("-inf"):
        raise PromptBuildError("the synthesiser made only silence")
    # The level is that of the whole file, the padding added below included.
    padded = level.rms_db + 10 * math.log10(level.seconds / (level.seconds + PAD_START + PAD_END))
    gain = LEVEL_DB - padded
    # Peaks above PEAK_DB after the gain are limited, not clipped (sox `gain -l`).
    limit = ["-l"] if level.peak_db + gain > PEAK_DB else []
    _run(
        [sox, str(trimmed), str(out), "gain", *limit, f"{gain:.2f}"]
        + ["fade", "t", "0.005", "-0", "0.005", "pad", str(PAD_START), str(PAD_END)]
    )


def synthesise(text: str, target: Path, engine: Engine | None = None) -> Engine:
    """Speak `text` into `target` as an 8 kHz mono 16-bit WAV; the engine that spoke."""
    engine = engine or find_engine()
    _sox()
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
        engine.speak(text, raw)
        _process(raw, out, Path(tmp))
        # A name of its own: two calls may synthesise the same question at once.
        fd, part = tempfile.mkstemp(prefix=target.name, suffix=".part", dir=target.parent)
        os.close(fd)
        try:
            shutil.copyfile(out, part)
            # mkstemp makes it 0600; Asterisk plays it as another user (docs/asterisk.md).
            os.chmod(part, 0o644)
            os.replace(part, target)
        finally:
            Path(part).unlink(missing_ok=True)
    return engine


# --- the shipped prompts -----------------------------------------------------------


@dataclass
class BuildReport:
    made: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    engine: str = ""
    voice: str = ""
    #: Files made by another engine or voice than the rest (a machine without RHVoice).
    mixed: list[str] = field(default_factory=list)


def text_hash(text: str) -> str:
    """The hash of a prompt's text and of the processing it goes through."""
    return hashlib.sha256(f"{PROCESSING}|{text}".encode()).hexdigest()[:16]


def read_manifest(out_dir: Path) -> dict[str, dict[str, str]]:
    """key → {"hash", "engine", "voice"} of the files in `out_dir` (empty if none)."""
    try:
        data = json.loads((out_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    # An older manifest held a bare hash per key: those files are made again.
    return {k: v for k, v in data.items() if isinstance(v, dict) and {"hash", "engine", "voice"} <= set(v)}


def _keep(entry: dict[str, str] | None, text: str, engine: Engine) -> bool:
    if entry is None or entry["hash"] != text_hash(text):
        return False
    if (entry["engine"], entry["voice"]) == (engine.name, engine.voice):
        return True
    return _RANK.get(entry["engine"], 0) > engine.rank  # never replaced by a lesser engine


def build_prompts(
    texts: Mapping[str, str],
    out_dir: Path,
    *,
    force: bool = False,
    voice: str | None = None,
    workers: int | None = None,
) -> BuildReport:
    """Make the WAV of every key whose text changed; remove the files of dropped keys.

    Files are made `workers` at a time (default: one per CPU); the manifest is
    written as each is done, so an interrupted build resumes where it stopped.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(out_dir)
    report = BuildReport()
    todo: dict[str, str] = {}
    engine: Engine | None = None
    for key, text in texts.items():
        if engine is None:
            engine = find_engine(voice)
            report.engine, report.voice = engine.name, engine.voice
        if not force and _keep(manifest.get(key), text, engine) and is_prompt_audio(out_dir / f"{key}.wav"):
            report.kept.append(key)
        else:
            todo[key] = text
    lock = threading.Lock()

    def make(key: str) -> None:
        assert engine is not None
        synthesise(todo[key], out_dir / f"{key}.wav", engine)
        with lock:
            manifest[key] = {"hash": text_hash(todo[key]), "engine": engine.name, "voice": engine.voice}
            report.made.append(key)
            _write_manifest(out_dir, manifest)

    if todo:
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            for done in [pool.submit(make, key) for key in todo]:
                done.result()  # the first failure stops the build with its error
    report.made.sort(key=list(texts).index)
    for stale in sorted(set(manifest) - set(texts)):
        (out_dir / f"{stale}.wav").unlink(missing_ok=True)
        del manifest[stale]
        report.removed.append(stale)
    voices = {(e["engine"], e["voice"]) for e in manifest.values()}
    if engine is not None and len(voices) > 1:
        mine = (engine.name, engine.voice)
        report.mixed = sorted(k for k, e in manifest.items() if (e["engine"], e["voice"]) == mine)
    _write_manifest(out_dir, manifest)
    return report


def _write_manifest(out_dir: Path, manifest: Mapping[str, dict[str, str]]) -> None:
    text = json.dumps(dict(sorted(manifest.items())), indent=1, ensure_ascii=False) + "\n"
    part = out_dir / (MANIFEST + ".part")
    part.write_text(text)
    os.replace(part, out_dir / MANIFEST)


def is_prompt_audio(path: Path) -> bool:
    """True if `path` is a non-empty 8 kHz mono 16-bit PCM WAV."""
    try:
        with wave.open(str(path), "rb") as w:
            return (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (
                RATE,
                1,
                2,
            ) and w.getnframes() > 0
    except (OSError, EOFError, wave.Error):
        return False


# --- free text at run time ---------------------------------------------------------


CACHE_DAYS = 30  # a question's audio is kept this long after it was made


def _prune(cache_dir: Path, keep: Path) -> None:
    """Remove the cache's files older than CACHE_DAYS (questions long answered)."""
    cutoff = time.time() - CACHE_DAYS * 86400
    for old in cache_dir.glob("*.wav"):
        with contextlib.suppress(OSError):
            if old != keep and old.stat().st_mtime < cutoff:
                old.unlink()


def speak_cached(text: str, cache_dir: Path, voice: str | None = None) -> Path | None:
    """A WAV of `text` in `cache_dir` (made once per text, engine and voice); None on failure.

    For text with no shipped audio (an engineer's question on the Asterisk line). Any
    failure — no synthesiser, a synthesiser error, a full disk — is logged and gives
    None, so the caller plays a shipped prompt instead.
    """
    if not text.strip():
        return None
    try:
        engine = find_engine(voice)
        digest = hashlib.sha256(f"{PROCESSING}|{engine.name}|{engine.voice}|{text}".encode()).hexdigest()
        target = cache_dir / f"{digest[:24]}.wav"
        if is_prompt_audio(target):
            if target.stat().st_mode & 0o044 != 0o044:  # made 0600 before December 2026
                target.chmod(0o644)
            return target
        cache_dir.mkdir(parents=True, exist_ok=True)
        synthesise(text, target, engine)
        _prune(cache_dir, keep=target)
        return target
    except (PromptBuildError, OSError) as exc:
        log.warning("cannot synthesise free text (%d characters): %s", len(text), exc)
        return None
