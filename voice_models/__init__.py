"""Vosk models: the catalogue of known models, and where they are unpacked."""

from pathlib import Path

from hotline.settings import DEFAULT_VOSK_MODEL as DEFAULT_MODEL

HERE = Path(__file__).resolve().parent
MODELS_DIR = HERE / "models"


def default_model_dir() -> Path:
    """The folder the catalogue's default model is unpacked into."""
    return MODELS_DIR / DEFAULT_MODEL
