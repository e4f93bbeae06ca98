"""The Asterisk files in deploy/asterisk/ agree with each other, the prompts and the README."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from voice_models.prompts import PROMPTS_DIR, catalogue

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy" / "asterisk"
SCRIPT = DEPLOY / "install-prompts.sh"


def conf_sections(path: Path) -> dict[str, list[str]]:
    """An Asterisk .conf file: section name → its lines without comments."""
    sections: dict[str, list[str]] = {}
    current = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        if match := re.match(r"^\[([^\]]+)\]", line):
            current = match.group(1)
            sections.setdefault(current, [])
        else:
            sections.setdefault(current, []).append(line)
    return sections


def test_the_fallback_mailbox_is_shipped() -> None:
    dialplan = (DEPLOY / "extensions.conf").read_text(encoding="utf-8")
    mailboxes = re.findall(r"VoiceMail\(([^@,)]+)@([^,)]+)", dialplan)
    assert mailboxes, "the fallback takes a voicemail"
    voicemail = conf_sections(DEPLOY / "voicemail.conf")
    for mailbox, context in mailboxes:
        assert any(line.split("=>")[0].strip() == mailbox for line in voicemail.get(context, [])), (
            f"{mailbox}@{context} is not in voicemail.conf"
        )


def test_every_prompt_the_dialplan_plays_is_shipped() -> None:
    dialplan = (DEPLOY / "extensions.conf").read_text(encoding="utf-8")
    played = re.findall(r"Playback\(hotline/ru/([a-z0-9_]+)\)", dialplan)
    assert played
    for key in played:
        assert key in catalogue() and (PROMPTS_DIR / f"{key}.wav").is_file()


def test_the_readme_path_is_where_the_script_installs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    default = re.search(r"sounds=\$\{2:-([^}]+)\}", SCRIPT.read_text(encoding="utf-8"))
    assert default is not None
    assert f"{default.group(1)}/hotline/ru/" in readme
    assert "`hotline/ru`" in readme  # HOTLINE_AGI_SOUNDS_PREFIX's default, the folder under sounds


def _fake_bin(tmp_path: Path, *, chown_works: bool) -> dict[str, str]:
    """`id` that knows an asterisk user and a `chown` that works or not, ahead on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, code in (("id", 0), ("chown", 0 if chown_works else 1)):
        tool = bin_dir / name
        tool.write_text(f'#!/bin/sh\n[ "$1" = -un ] && echo tester\nexit {code}\n')
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


@pytest.mark.parametrize("chown_works", [True, False])
def test_install_prompts_says_when_asterisk_cannot_own_the_files(tmp_path: Path, chown_works: bool) -> None:
    sounds = tmp_path / "sounds"
    result = subprocess.run(
        ["sh", str(SCRIPT), str(PROMPTS_DIR), str(sounds)],
        env=_fake_bin(tmp_path, chown_works=chown_works),
        capture_output=True,
        text=True,
        timeout=60,
    )
    installed = sorted(p.name for p in (sounds / "hotline" / "ru").glob("*.wav"))
    assert installed == sorted(p.name for p in PROMPTS_DIR.glob("*.wav"))
    assert f"into {sounds}/hotline/ru" in result.stdout
    if chown_works:
        assert result.returncode == 0 and result.stderr == ""
    else:
        assert result.returncode == 2
        assert "cannot give" in result.stderr and "asterisk user" in result.stderr


def test_install_prompts_refuses_a_folder_without_prompts(tmp_path: Path) -> None:
    result = subprocess.run(
        ["sh", str(SCRIPT), str(tmp_path), str(tmp_path / "sounds")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "no .wav files" in result.stderr


def test_several_fastagi_hosts_are_reached_as_asterisk_can() -> None:
    # AGI() takes one URL; hagi:// (DNS SRV _agi._tcp.<name>, res_agi.c) spreads calls.
    dialplan = (DEPLOY / "extensions.conf").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for text in (dialplan, readme):
        assert "hagi://hotline.example.ru/hotline" in text and "_agi._tcp.hotline.example.ru." in text
        assert "several `AGI()`" not in text and "agi://hotline-a`" not in text
    assert "is not supported by\n; AGI()" not in dialplan
