"""`hotline prompts build`, `hotline models list|fetch`: prompt audio and Vosk models."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def prompts() -> None:
    """Prompt audio (what Asterisk plays, and Twilio in HOTLINE_PROMPTS=play)."""


@prompts.command("build")
@click.option("--force", is_flag=True, help="Make every file again, changed or not.")
@click.option(
    "--out", type=click.Path(file_okay=False), default=None, help="Folder (default: the shipped one)."
)
@click.option("--voice", default=None, help="RHVoice voice (default: HOTLINE_PROMPT_VOICE, anna).")
def build(force: bool, out: str | None, voice: str | None) -> None:
    """Synthesise the Russian prompts (RHVoice if installed, else espeak-ng) into 8 kHz WAV files."""
    from hotline.settings import load_settings
    from voice_models.prompt_audio import LEVEL_DB, build_prompts
    from voice_models.prompts import PROMPTS_DIR, catalogue

    folder = Path(out) if out else PROMPTS_DIR
    voice = voice or load_settings().prompt_voice
    with click.progressbar(length=1, label="prompts") as bar:
        report = build_prompts(catalogue(), folder, force=force, voice=voice)
        bar.update(1)
    size = sum(p.stat().st_size for p in folder.glob("*.wav"))
    click.echo(
        f"{len(report.made)} made, {len(report.kept)} unchanged, {len(report.removed)} removed; "
        f"{report.engine} ({report.voice}), {LEVEL_DB:g} dBFS RMS; {size / 1024 / 1024:.1f} MiB in {folder}"
    )
    if report.mixed:
        click.echo(
            f"warning: {len(report.mixed)} files made with {report.engine}, the others with another "
            "engine or voice; install RHVoice (README, «Голос подсказок») and run again",
            err=True,
        )


@click.group()
def models() -> None:
    """Vosk speech models: the catalogue, downloads."""


@models.command("list")
@click.option("--dir", "dest_dir", type=click.Path(path_type=Path), help="Models folder to look in.")
def models_list(dest_dir: Path | None) -> None:
    """List known models and whether each is installed."""
    from voice_models import DEFAULT_MODEL, MODELS_DIR
    from voice_models.catalogue import CATALOGUE

    root = dest_dir or MODELS_DIR
    for info in CATALOGUE.values():
        installed = "installed" if (root / info.name).is_dir() else "not installed"
        default = " (default)" if info.name == DEFAULT_MODEL else ""
        click.echo(f"{info.name}{default}\t{info.language}\t{info.sample_rate} Hz\t{info.size}\t{installed}")
        click.echo(f"  {info.url}")
        click.echo(f"  sha256: {info.sha256 or 'not published (fetch needs --sha256)'}")
        if info.note:
            click.echo(f"  {info.note}")


@models.command("fetch")
@click.argument("name")
@click.option(
    "--dir", "dest_dir", type=click.Path(path_type=Path), help="Models folder (default voice_models/models)."
)
@click.option("--url", help="Download from here instead (a local mirror); the checksum is still checked.")
@click.option("--sha256", help="Expected sha256 of the archive (needed where the catalogue has none).")
@click.option("--force", is_flag=True, help="Replace an installed model.")
def models_fetch(name: str, dest_dir: Path | None, url: str | None, sha256: str | None, force: bool) -> None:
    """Download model NAME, verify its sha256 and unpack it."""
    from voice_models import MODELS_DIR
    from voice_models.fetch import fetch_model, lookup

    info = lookup(name)
    with click.progressbar(length=0, label=f"downloading {name}", show_pos=True) as bar:

        def progress(n: int, total: int | None) -> None:
            if total and not bar.length:
                bar.length = total
            bar.update(n)

        target = fetch_model(
            info.name, dest_dir or MODELS_DIR, url=url, sha256=sha256, force=force, progress=progress
        )
    click.echo(f"installed {name} in {target}")


def register(group: click.Group) -> None:
    group.add_command(prompts)
    group.add_command(models)
