"""`hotline worker`, `hotline asr-eval`: transcription commands."""

from __future__ import annotations

import re
from pathlib import Path

import click
from sqlalchemy import select

from hotline.cli import Context, pass_context
from hotline.errors import HotlineError


@click.command()
@click.option("--workers", "-w", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Jobs decoded at once in this process (threads sharing one model).")  # fmt: skip
@pass_context
def worker(ctx: Context, workers: int) -> None:
    """Run transcription workers until stopped (Ctrl-C / SIGTERM)."""
    import logging

    from hotline.jobs import queue_location, queue_problem, run_worker

    ctx.db.upgrade()
    # One line: status 3 if Redis is down (as a database that is down), 78 if it refuses us.
    if problem := queue_problem(ctx.settings):
        raise problem
    # Logging from here on: the migrations above are not the worker's news.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    click.echo(f"hotline worker: {workers} thread(s), queue {queue_location(ctx.settings)}", err=True)
    run_worker(ctx.settings, workers)


@click.command("asr-eval")
@click.argument("directory", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--corrected/--no-corrected", default=True, show_default=True,
              help="Also score transcripts engineers corrected in the dashboard.")  # fmt: skip
@pass_context
def asr_eval(ctx: Context, directory: Path | None, corrected: bool) -> None:
    """Word and character error rates of the configured model.

    DIRECTORY holds WAV files with reference texts beside them (call1.wav + call1.txt).
    """
    import jiwer

    from hotline.models import Transcript
    from hotline.transcription.audio import pcm16_chunks
    from hotline.transcription.recognizer import recognizer_for

    scored = False
    if directory is not None:
        pairs = [
            (w, w.with_suffix(".txt"))
            for w in sorted(directory.glob("*.wav"))
            if w.with_suffix(".txt").exists()
        ]
        if not pairs:
            raise click.ClickException(f"no WAV files with a .txt reference in {directory}")
        recognizer = recognizer_for(ctx.settings)
        refs, hyps = [], []
        for wav, txt in pairs:
            ref = _normalise(txt.read_text(encoding="utf-8"))
            try:
                hyp = _normalise(recognizer.recognize(pcm16_chunks(wav)).text)
            except HotlineError as exc:
                click.echo(f"{wav.name}\tskipped: {exc}")
                continue
            if not ref:
                click.echo(f"{wav.name}\tskipped: empty reference")
                continue
            refs.append(ref)
            hyps.append(hyp)
            click.echo(f"{wav.name}\tWER {jiwer.wer(ref, hyp):.1%}\tCER {jiwer.cer(ref, hyp):.1%}\t{hyp}")
        if refs:
            _total(f"files ({recognizer.name})", refs, hyps)
            scored = True
    if corrected:
        ctx.db.upgrade()
        with ctx.db.session() as session:
            rows = session.execute(
                select(Transcript.text, Transcript.corrected_text).where(
                    Transcript.corrected_text.is_not(None)
                )
            ).all()
        pairs_db = [(_normalise(c or ""), _normalise(t)) for t, c in rows]
        pairs_db = [(r, h) for r, h in pairs_db if r]
        if pairs_db:
            _total("corrected transcripts", [r for r, _ in pairs_db], [h for _, h in pairs_db])
            scored = True
        else:
            click.echo("corrected transcripts: none yet")
    if not scored:
        raise click.ClickException(
            "nothing to score: give a folder of WAV + TXT pairs, or correct transcripts"
        )


def _total(label: str, refs: list[str], hyps: list[str]) -> None:
    import jiwer

    click.echo(
        f"{label}: {len(refs)} items\tWER {jiwer.wer(refs, hyps):.1%}\tCER {jiwer.cer(refs, hyps):.1%}"
    )


def _normalise(text: str) -> str:
    """Lower case, ё as е, no punctuation, single spaces: how Vosk writes text."""
    text = text.lower().replace("ё", "е")
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def register(group: click.Group) -> None:
    """Add the transcription commands to `hotline`."""
    group.add_command(worker)
    group.add_command(asr_eval)
