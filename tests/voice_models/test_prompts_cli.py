"""`hotline prompts build`: what it makes and says, and its voice setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import voice_models.prompts
from hotline.cli import cli
from voice_models.prompt_audio import find_engine, is_prompt_audio, read_manifest


@pytest.fixture
def small_catalogue(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    texts = {"greeting": "Здравствуйте!", "digit_1": "один"}
    monkeypatch.setattr(voice_models.prompts, "catalogue", lambda: texts)
    return texts


def build(tmp_path: Path, *args: str, **env: str):  # type: ignore[no-untyped-def]
    env = {"HOTLINE_DATA_DIR": str(tmp_path / "data"), **env}
    return CliRunner().invoke(cli, ["prompts", "build", "--out", str(tmp_path / "ru"), *args], env=env)


def test_build_reports_engine_level_and_makes_only_changes(
    tmp_path: Path, small_catalogue: dict[str, str]
) -> None:
    engine = find_engine()
    first = build(tmp_path)
    assert first.exit_code == 0, first.output
    assert f"2 made, 0 unchanged, 0 removed; {engine.name} ({engine.voice}), -20 dBFS RMS" in first.output
    assert all(is_prompt_audio(tmp_path / "ru" / f"{k}.wav") for k in small_catalogue)
    small_catalogue["digit_1"] = "одна"
    second = build(tmp_path)
    assert "1 made, 1 unchanged, 0 removed" in second.output
    assert set(read_manifest(tmp_path / "ru")) == {"greeting", "digit_1"}


def test_the_voice_setting_is_checked(tmp_path: Path, small_catalogue: dict[str, str]) -> None:
    result = build(tmp_path, HOTLINE_PROMPT_VOICE="anna; rm -rf /")
    assert result.exit_code != 0
    assert "HOTLINE_PROMPT_VOICE" in result.output + str(result.exception)
    assert not (tmp_path / "ru").exists()
