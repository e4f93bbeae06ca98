"""Prompt audio: one 8 kHz mono 16-bit WAV per prompt key, made with espeak-ng and sox.

`build_prompts()` synthesises each text with espeak-ng's Russian voice, converts it
with sox to what telephones carry (8 kHz, mono, 16-bit PCM — Asterisk's `wav`
format), and writes it atomically. A manifest of the texts keeps it idempotent: a
file is made again only when its text (or the voice) changed; files of keys no
longer in the catalogue are removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hotline.errors import HotlineError

VOICE = "ru"
SPEED = 165  # words per minute: a little slower than espeak's 175, for phone lines
RATE = 8000
MANIFEST = "manifest.json"


class PromptBuildError(HotlineError):
    """espeak-ng or sox is missing or failed."""


@dataclass
class BuildReport:
    made: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def _fingerprint(text: str) -> str:
    return hashlib.sha256(f"{VOICE}|{SPEED}|{RATE}|trim|{text}".encode()).hexdigest()[:16]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PromptBuildError(f"{name} is not installed (Debian: apt-get install espeak-ng sox)")
    return path


def synthesise(text: str, target: Path) -> None:
    """Speak `text` into `target` as an 8 kHz mono 16-bit WAV."""
    espeak, sox = _tool("espeak-ng"), _tool("sox")
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
        commands = [
            [espeak, "-v", VOICE, "-s", str(SPEED), "-w", str(raw), "--", text],
            # Trim espeak's silence at both ends (prompts are played back to back, and
            # the repo stays small), keep 0.15 s after each piece, and bring every
            # prompt to the same loudness with headroom for G.711.
            [
                sox,
                str(raw),
                "-r",
                str(RATE),
                "-c",
                "1",
                "-b",
                "16",
                "-e",
                "signed-integer",
                str(out),
                "silence",
                "1",
                "0.02",
                "0.5%",
                "reverse",
                "silence",
                "1",
                "0.02",
                "0.5%",
                "reverse",
                "pad",
                "0",
                "0.15",
                "gain",
                "-n",
                "-3",
            ],
        ]
        for command in commands:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise PromptBuildError(f"{Path(command[0]).name} failed: {done.stderr.strip()[:200]}")
        tmp_target = target.with_name(target.name + ".part")
        shutil.copyfile(out, tmp_target)
        os.replace(tmp_target, target)


def build_prompts(texts: Mapping[str, str], out_dir: Path, *, force: bool = False) -> BuildReport:
    """Make the WAV of every key whose text changed; remove the files of dropped keys."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / MANIFEST
    try:
        manifest: dict[str, str] = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        manifest = {}
    report = BuildReport()
    for key, text in texts.items():
        target = out_dir / f"{key}.wav"
        fingerprint = _fingerprint(text)
        if not force and manifest.get(key) == fingerprint and is_prompt_audio(target):
            report.kept.append(key)
            continue
        synthesise(text, target)
        manifest[key] = fingerprint
        report.made.append(key)
    for stale in sorted(set(manifest) - set(texts)):
        (out_dir / f"{stale}.wav").unlink(missing_ok=True)
        del manifest[stale]
        report.removed.append(stale)
    manifest_path.write_text(json.dumps(dict(sorted(manifest.items())), indent=0, ensure_ascii=False) + "\n")
    return report


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
