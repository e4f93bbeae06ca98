"""The shipped prompt audio: one 8 kHz file per key the flow can say, at one level, up to date."""

from __future__ import annotations

import json
import os
import re
import shutil
import wave
from array import array
from pathlib import Path

import pytest

import ivr.flow
from hotline.models import RequestKind, RequestStatus
from ivr.speech import _minute_keys
from voice_models.prompt_audio import (
    LEVEL_DB,
    MANIFEST,
    PEAK_DB,
    RATE,
    PromptBuildError,
    build_prompts,
    find_engine,
    is_prompt_audio,
    measure,
    read_manifest,
    speak_cached,
    text_hash,
)
from voice_models.prompts import PROMPTS_DIR, all_prompt_keys, catalogue

#: The voice the shipped set is made with (README, «Голос подсказок»).
SHIPPED = {"engine": "rhvoice", "voice": "anna"}


def flow_prompt_keys() -> set[str]:
    """Every key ivr.flow can produce: its literal keys, its menus' prompts, the dynamic ones."""
    source = Path(ivr.flow.__file__).read_text()
    literal = set(re.findall(r'Prompt\("(\w+)"\)', source))
    literal |= set(re.findall(r'"(\w+)" if step == StepName', source))  # record prompts
    literal |= set(re.findall(r'(?:intro|fallback)=\(?"(\w+)"', source))  # free text's phrases
    literal |= {menu.prompt for menu in ivr.flow.MENUS.values()}
    dynamic = {f"digit_{d}" for d in range(10)} | {f"day_{d}" for d in range(1, 32)}
    dynamic |= {f"month_{m}" for m in range(1, 13)} | {f"year_{y}" for y in range(2020, 2051)}
    dynamic |= {f"kind_{k.value}" for k in RequestKind} | {f"status_{s.value}" for s in RequestStatus}
    dynamic |= {"days_daily", "days_weekdays"} | {f"weekday_{d}" for d in range(7)}
    dynamic |= {f"from_{h}" for h in range(24)} | {f"to_{h}" for h in range(24)}
    dynamic |= {key for m in range(60) for key in _minute_keys(m)}
    assert len(literal) > 20, "the pattern no longer finds the flow's prompts"
    return literal | dynamic


def test_every_prompt_of_the_flow_is_shipped_as_8khz_audio() -> None:
    keys = flow_prompt_keys() | set(all_prompt_keys())
    missing = sorted(k for k in keys if not is_prompt_audio(PROMPTS_DIR / f"{k}.wav"))
    assert missing == [], f"run `hotline prompts build`; missing or invalid: {missing}"


def test_every_shipped_prompt_is_at_one_level_with_quiet_edges() -> None:
    """8 kHz, RMS LEVEL_DB ± 1 dB, no peak at full scale, silence before and after the speech."""
    wrong = []
    for key in all_prompt_keys():
        path = PROMPTS_DIR / f"{key}.wav"
        level = measure(path)
        with wave.open(str(path), "rb") as w:
            rate = w.getframerate()
            samples = array("h", w.readframes(w.getnframes()))
        edge = rate // 50  # 20 ms
        loudest_edge = max(abs(s) for s in [*samples[:edge], *samples[-edge:]])
        if (
            rate != RATE
            or abs(level.rms_db - LEVEL_DB) > 1.0
            or level.peak_db > PEAK_DB + 0.1
            or loudest_edge > 100  # -50 dBFS: the speech is not cut off at either end
        ):
            wrong.append((key, rate, level, loudest_edge))
    assert wrong == []


def test_manifest_records_the_engine_and_voice_of_each_file() -> None:
    manifest = read_manifest(PROMPTS_DIR)
    assert set(manifest) == set(all_prompt_keys())
    texts = catalogue()
    for key, entry in manifest.items():
        assert entry == {"hash": text_hash(texts[key]), **SHIPPED}, key


def test_shipped_audio_matches_the_texts(tmp_path: Path) -> None:
    copy = tmp_path / "ru"
    shutil.copytree(PROMPTS_DIR, copy)
    report = build_prompts(catalogue(), copy)  # nothing to make when the texts are unchanged
    assert report.made == [] and report.removed == [], "run `hotline prompts build` and commit"


def test_shipped_audio_stays_small() -> None:
    size = sum(p.stat().st_size for p in PROMPTS_DIR.glob("*.wav"))
    assert size < 6 * 1024 * 1024
    assert {p.stem for p in PROMPTS_DIR.glob("*.wav")} == set(all_prompt_keys())


def test_numbers_and_qr_are_written_as_russian_words() -> None:
    """No Latin letters in any prompt: a synthesiser would switch to English on them."""
    latin = {key: text for key, text in catalogue().items() if re.search("[A-Za-z]", text)}
    assert latin == {}
    assert "кью-ар" in catalogue()["greeting"]


def test_build_is_idempotent(tmp_path: Path) -> None:
    texts = {"hello": "Здравствуйте.", "digit_1": "один"}
    assert sorted(build_prompts(texts, tmp_path).made) == ["digit_1", "hello"]
    assert all(is_prompt_audio(tmp_path / f"{k}.wav") for k in texts)
    again = build_prompts(texts, tmp_path)
    assert again.made == [] and sorted(again.kept) == ["digit_1", "hello"]
    changed = build_prompts({"hello": "Добрый день."}, tmp_path)
    assert changed.made == ["hello"] and changed.removed == ["digit_1"]
    assert not (tmp_path / "digit_1.wav").exists()
    engine = find_engine()
    assert read_manifest(tmp_path) == {
        "hello": {"hash": text_hash("Добрый день."), "engine": engine.name, "voice": engine.voice}
    }


def test_a_text_change_remakes_only_that_file(tmp_path: Path) -> None:
    texts = {"a": "Первая фраза.", "b": "Вторая фраза.", "c": "Третья фраза."}
    build_prompts(texts, tmp_path)
    before = {k: (tmp_path / f"{k}.wav").stat().st_mtime_ns for k in texts}
    report = build_prompts({**texts, "b": "Другая вторая фраза."}, tmp_path)
    assert report.made == ["b"] and sorted(report.kept) == ["a", "c"]
    after = {k: (tmp_path / f"{k}.wav").stat().st_mtime_ns for k in texts}
    assert after["a"] == before["a"] and after["c"] == before["c"] and after["b"] != before["b"]


def test_a_file_of_a_better_engine_is_not_replaced_by_a_lesser_one(tmp_path: Path) -> None:
    engine = find_engine()
    build_prompts({"hello": "Здравствуйте."}, tmp_path)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    better = "rhvoice" if engine.name == "espeak-ng" else "future-engine"
    manifest["hello"]["engine"] = better
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    report = build_prompts({"hello": "Здравствуйте.", "bye": "До свидания."}, tmp_path)
    if engine.name == "espeak-ng":
        assert report.kept == ["hello"] and report.made == ["bye"] and report.mixed == ["bye"]
    else:  # an unknown engine ranks below RHVoice: remade
        assert report.made == ["hello", "bye"] and report.mixed == []
    assert build_prompts({"hello": "Здравствуйте."}, tmp_path, force=True).made == ["hello"]


def test_an_old_manifest_makes_every_file_again(tmp_path: Path) -> None:
    build_prompts({"hello": "Здравствуйте."}, tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps({"hello": "eeaa9821cb54b40c"}))
    assert build_prompts({"hello": "Здравствуйте."}, tmp_path).made == ["hello"]


def test_a_broken_file_is_made_again(tmp_path: Path) -> None:
    build_prompts({"hello": "Здравствуйте."}, tmp_path)
    (tmp_path / "hello.wav").write_bytes(b"RIFF broken")
    assert build_prompts({"hello": "Здравствуйте."}, tmp_path).made == ["hello"]


def test_missing_tool_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PromptBuildError, match="espeak-ng is not installed"):
        build_prompts({"hello": "Здравствуйте."}, tmp_path / "out")


def test_espeak_is_the_fallback_when_rhvoice_is_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("espeak-ng", "sox"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or tool)
    monkeypatch.setenv("PATH", str(bin_dir))
    report = build_prompts({"hello": "Здравствуйте."}, tmp_path / "out", voice="elena")
    assert (report.engine, report.voice) == ("espeak-ng", "ru")
    assert is_prompt_audio(tmp_path / "out" / "hello.wav")


# --- free text at run time ---------------------------------------------------------


def test_free_text_is_synthesised_once_into_the_cache(tmp_path: Path) -> None:
    path = speak_cached("Какая версия прошивки на сканере?", tmp_path / "speech")
    assert path is not None and path.parent == tmp_path / "speech" and is_prompt_audio(path)
    assert abs(measure(path).rms_db - LEVEL_DB) <= 1.0
    assert path.stat().st_mode & 0o777 == 0o644  # Asterisk, another user, plays it
    path.chmod(0o600)  # as files were made before: readable again at their next use
    assert speak_cached("Какая версия прошивки на сканере?", tmp_path / "speech") == path
    assert path.stat().st_mode & 0o777 == 0o644
    made = path.stat().st_mtime_ns
    assert speak_cached("Какая версия прошивки на сканере?", tmp_path / "speech") == path
    assert path.stat().st_mtime_ns == made
    other = speak_cached("Какая линия?", tmp_path / "speech")
    assert other is not None and other != path


def test_free_text_failure_is_none_not_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert speak_cached("   ", tmp_path) is None
    monkeypatch.setenv("PATH", str(tmp_path))
    assert speak_cached("Какая линия?", tmp_path / "speech") is None
    assert not (tmp_path / "speech").exists()


def test_old_questions_leave_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "speech"
    old = speak_cached("Какая линия?", cache)
    assert old is not None
    month_ago = old.stat().st_mtime - 31 * 86400
    os.utime(old, (month_ago, month_ago))
    new = speak_cached("Какой сканер?", cache)
    assert new is not None and new.exists() and not old.exists()
    assert [p.name for p in cache.iterdir()] == [new.name]  # no temporary files left


def test_an_unknown_rhvoice_voice_is_a_clear_error(tmp_path: Path) -> None:
    engine = find_engine("no-such-voice")
    if engine.name != "rhvoice":
        pytest.skip("RHVoice is not installed here")
    with pytest.raises(PromptBuildError, match="«no-such-voice»"):
        build_prompts({"hello": "Здравствуйте."}, tmp_path, voice="no-such-voice")
