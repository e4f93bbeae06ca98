"""The shipped prompt audio: one valid 8 kHz file per key the flow can say, up to date."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import ivr.flow
from hotline.models import RequestKind, RequestStatus
from voice_models.prompt_audio import MANIFEST, PromptBuildError, build_prompts, is_prompt_audio
from voice_models.prompts import PROMPTS_DIR, all_prompt_keys, catalogue


def flow_prompt_keys() -> set[str]:
    """Every key ivr.flow can produce: its literal Prompt("…") keys and the dynamic ones."""
    source = Path(ivr.flow.__file__).read_text()
    literal = set(re.findall(r'Prompt\("(\w+)"\)', source))
    literal |= set(re.findall(r'"(\w+)" if step == StepName', source))  # record prompts
    dynamic = {f"digit_{d}" for d in range(10)} | {f"day_{d}" for d in range(1, 32)}
    dynamic |= {f"month_{m}" for m in range(1, 13)} | {f"year_{y}" for y in range(2020, 2051)}
    dynamic |= {f"kind_{k.value}" for k in RequestKind} | {f"status_{s.value}" for s in RequestStatus}
    assert len(literal) > 20, "the pattern no longer finds the flow's prompts"
    return literal | dynamic


def test_every_prompt_of_the_flow_is_shipped_as_8khz_audio() -> None:
    keys = flow_prompt_keys() | set(all_prompt_keys())
    missing = sorted(k for k in keys if not is_prompt_audio(PROMPTS_DIR / f"{k}.wav"))
    assert missing == [], f"run `hotline prompts build`; missing or invalid: {missing}"


def test_shipped_audio_matches_the_texts(tmp_path: Path) -> None:
    copy = tmp_path / "ru"
    shutil.copytree(PROMPTS_DIR, copy)
    report = build_prompts(catalogue(), copy)  # nothing to make when the texts are unchanged
    assert report.made == [] and report.removed == [], "run `hotline prompts build` and commit"


def test_shipped_audio_stays_small() -> None:
    size = sum(p.stat().st_size for p in PROMPTS_DIR.glob("*.wav"))
    assert size < 6 * 1024 * 1024
    assert {p.stem for p in PROMPTS_DIR.glob("*.wav")} == set(all_prompt_keys())


def test_build_is_idempotent(tmp_path: Path) -> None:
    texts = {"hello": "Здравствуйте.", "digit_1": "один"}
    assert sorted(build_prompts(texts, tmp_path).made) == ["digit_1", "hello"]
    assert all(is_prompt_audio(tmp_path / f"{k}.wav") for k in texts)
    again = build_prompts(texts, tmp_path)
    assert again.made == [] and sorted(again.kept) == ["digit_1", "hello"]
    changed = build_prompts({"hello": "Добрый день."}, tmp_path)
    assert changed.made == ["hello"] and changed.removed == ["digit_1"]
    assert not (tmp_path / "digit_1.wav").exists()
    assert (tmp_path / MANIFEST).exists()


def test_a_broken_file_is_made_again(tmp_path: Path) -> None:
    build_prompts({"hello": "Здравствуйте."}, tmp_path)
    (tmp_path / "hello.wav").write_bytes(b"RIFF broken")
    assert build_prompts({"hello": "Здравствуйте."}, tmp_path).made == ["hello"]


def test_missing_tool_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PromptBuildError, match="espeak-ng is not installed"):
        build_prompts({"hello": "Здравствуйте."}, tmp_path / "out")
