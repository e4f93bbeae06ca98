"""Vosk models: the catalogue of known models, and where they are unpacked."""

from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS_DIR = HERE / "models"
DEFAULT_MODEL = "vosk-model-small-ru-0.22"


def default_model_dir() -> Path:
    """The folder the catalogue's default model is unpacked into."""
    return MODELS_DIR / DEFAULT_MODEL
