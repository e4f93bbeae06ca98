"""`hotline callback` when nothing places call-backs: a bounded wait, then one line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from hotline import registry
from hotline.db import Database

# EXPIRES and CONNECT_WAIT made short: the wait is their sum (60 + 15 s in service).
PROGRAM = (
    "import ivr.asterisk.callback as c; c.EXPIRES = 1.0; c.CONNECT_WAIT = 1.0\n"
    "from hotline.cli import main; main()"
)


def test_a_callback_nobody_places_fails_once_it_can_no_longer_start(db: Database, tmp_path: Path) -> None:
    with db.session() as s:
        number = registry.open_request(
            s, kind="incident", channel="web", actor="cli", phone="+79001234567", subject="x"
        ).number
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update(
        HOTLINE_DATA_DIR=str(tmp_path / "data"),
        HOTLINE_DATABASE_URL=db.url,
        HOTLINE_AMI_URL="ami://hotline:secret@127.0.0.1:1",  # no `serve` runs its AMI service
        HOTLINE_SECRET_KEY="k",
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, "callback", number, "--extension", "PJSIP/101"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert "не начат за 2 с" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert took < 15, took  # was EXPIRES + CONNECT_WAIT + the dial timeout + margins (116 s)
