"""Fixtures of the Twilio tests: the call-log writer of `hotline serve` (ivr.twilio.behind).

`log_writer(app)` runs the writer's loop in a thread of the test (the service runs it
in a process: tests/ivr/twilio/test_behind.py starts that one too).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hotline import callrows
from ivr.twilio import behind


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A data dir whose socket paths fit in a sockaddr_un (107 bytes; pytest's tmp_path may not)."""
    path = Path(tempfile.mkdtemp(prefix="hl-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def log_writer() -> Iterator[Callable[[object], None]]:
    """Start the call-log writer of an app (in a thread); stopped at the end of the test."""
    threads: list[tuple[threading.Thread, Path]] = []

    def start(app) -> None:
        settings, db = app.extensions["hotline.settings"], app.extensions["hotline.db"]
        assert behind.usable(settings)
        path = behind.socket_path(settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = behind._Writer(callrows.CallRowStore(db.engine), str(path))
        thread = threading.Thread(target=writer.run, name="test call-log writer", daemon=True)
        thread.start()
        threads.append((thread, path))
        app.extensions["test.log_queue"] = behind.LogQueue(path)

    yield start
    for thread, path in threads:
        behind.stop_writer(path)
        thread.join(30)
        assert not thread.is_alive()
