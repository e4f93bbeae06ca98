"""`hotline agi` as an operator starts it: each warning once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers import free_port

HOTLINE = [sys.executable, "-c", "from hotline.cli import main; main()"]


def test_the_recordings_folder_warning_is_printed_once(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update(
        HOTLINE_DATA_DIR=str(tmp_path / "data"),
        HOTLINE_AGI_RECORDINGS_DIR=str(tmp_path / "file" / "asterisk"),  # cannot be made
        HOTLINE_AGI_PORT=str(free_port()),
        HOTLINE_AGI_PROCESSES="1",
        HOTLINE_SECRET_KEY="k",
    )
    agi = subprocess.Popen(
        HOTLINE + ["agi"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert agi.stdout is not None
    try:
        assert "FastAGI on agi://" in agi.stdout.readline()
    finally:
        agi.send_signal(signal.SIGTERM)
        _, err = agi.communicate(timeout=60)
    assert err.count("HOTLINE_AGI_RECORDINGS_DIR") == 1, err
