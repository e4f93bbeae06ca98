"""Whether recordings can be transcribed here, and if not, what fixes it.

A voicemail whose transcript never comes must not look like one that is merely late:
the overview and the request page say why and give the command.
"""

from __future__ import annotations

from dataclasses import dataclass

from hotline.settings import DEFAULT_VOSK_MODEL, Settings


@dataclass(frozen=True)
class AsrProblem:
    message: str  # plain Russian, for every engineer
    command: str  # what fixes it, to copy into a terminal: shown to administrators only


def asr_problem(settings: Settings) -> AsrProblem | None:
    """Why recordings are not being transcribed, or None when the model is in place."""
    if settings.asr_engine != "vosk":
        return AsrProblem(
            "Расшифровка работает в демонстрационном режиме: вместо текста записи "
            "показывается одна и та же фраза. Настоящую расшифровку включает администратор.",
            f"hotline models fetch {DEFAULT_VOSK_MODEL}, затем HOTLINE_ASR=vosk и перезапуск hotline serve",
        )
    model = settings.vosk_model
    if not (model.is_dir() and any(model.iterdir())):
        name = model.name if model.name.startswith("vosk-model") else DEFAULT_VOSK_MODEL
        return AsrProblem(
            "Расшифровка выключена: модель распознавания речи не установлена. "
            "Записи сохраняются и будут расшифрованы, когда администратор её установит.",
            f"hotline models fetch {name}",
        )
    return None
