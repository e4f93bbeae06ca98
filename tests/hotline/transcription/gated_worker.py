"""A real transcription worker process whose decoding waits for a file (see test_workers).

    python -m tests.hotline.transcription.gated_worker STARTED RELEASE

Settings come from the environment, as for `hotline worker`; the recognizer is the
fake that writes STARTED once it holds a recording and then waits for RELEASE.
"""

import sys
from pathlib import Path

from hotline.jobs import run_worker
from hotline.settings import load_settings
from hotline.transcription.recognizer import FakeRecognizer, use_recognizer

if __name__ == "__main__":
    started, release = map(Path, sys.argv[1:3])
    use_recognizer(
        FakeRecognizer("голосовое сообщение", started=started, release=release, release_timeout=120)
    )
    run_worker(load_settings())
