"""Whether recordings can be transcribed here, and if not, what fixes it.

A voicemail whose transcript never comes must not look like one that is merely late:
the overview and the request page say why and give the command.
"""

from __future__ import annotations

from dataclasses import dataclass

from hotline.settings import DEFAULT_VOSK_MODEL, Settings


@dataclass(frozen=True)
class AsrProblem:
    message: str  # Russian, for the engineer
    command: str  # what fixes it, to copy into a terminal


def asr_problem(settings: Settings) -> AsrProblem | None:
    """Why recordings are not being transcribed, or None when the model is in place."""
    if settings.asr_engine != "vosk":
        return AsrProblem(
            "Расшифровка в демонстрационном режиме (HOTLINE_ASR=fake): "
            "вместо текста записи показывается одна и та же фраза.",
            f"hotline models fetch {DEFAULT_VOSK_MODEL}, затем HOTLINE_ASR=vosk и перезапуск hotline serve",
        )
    model = settings.vosk_model
    if not (model.is_dir() and any(model.iterdir())):
        name = model.name if model.name.startswith("vosk-model") else DEFAULT_VOSK_MODEL
        return AsrProblem(
            f"Расшифровка выключена: модели распознавания речи нет в {model}. "
            "Записи сохраняются и будут расшифрованы, когда модель появится.",
            f"hotline models fetch {name}",
        )
    return None
