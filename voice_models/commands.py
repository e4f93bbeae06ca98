"""`hotline prompts build`: the prompt audio from the prompt texts."""

from __future__ import annotations

import click


@click.group()
def prompts() -> None:
    """Prompt audio (what Asterisk plays, and Twilio in HOTLINE_PROMPTS=play)."""


@prompts.command("build")
@click.option("--force", is_flag=True, help="Make every file again, changed or not.")
@click.option(
    "--out", type=click.Path(file_okay=False), default=None, help="Folder (default: the shipped one)."
)
def build(force: bool, out: str | None) -> None:
    """Synthesise the Russian prompts with espeak-ng into 8 kHz WAV files."""
    from pathlib import Path

    from voice_models.prompt_audio import build_prompts
    from voice_models.prompts import PROMPTS_DIR, catalogue

    folder = Path(out) if out else PROMPTS_DIR
    with click.progressbar(length=1, label="prompts") as bar:
        report = build_prompts(catalogue(), folder, force=force)
        bar.update(1)
    size = sum(p.stat().st_size for p in folder.glob("*.wav"))
    click.echo(
        f"{len(report.made)} made, {len(report.kept)} unchanged, {len(report.removed)} removed; "
        f"{size / 1024 / 1024:.1f} MiB in {folder}"
    )


def register(group: click.Group) -> None:
    group.add_command(prompts)
