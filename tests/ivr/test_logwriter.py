"""The FastAGI call-log writer's child: behind the event loops on the CPU, never for long."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from hotline.models import Call, utcnow
from ivr.asterisk.amilog import AGI_STARTED
from ivr.asterisk.session import BACKEND
from ivr.logwriter import BEHIND_SECONDS, LogWrite, LogWriterProcess, pack
from tests.helpers import eventually

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_getscheduler"), reason="Linux scheduling classes")

REPO = Path(__file__).resolve().parents[2]


def _batch(call_id: str) -> list[Any]:
    write = LogWrite(utcnow(), events=((AGI_STARTED, "PJSIP/trunk-1", {}),))
    return [(call_id, "79001112233", "73435674530", True, [pack(write)])]


def _class(pid: int) -> int:
    return os.sched_getscheduler(pid)


def test_the_child_waits_and_writes_in_the_idle_class_and_writes_the_batch(any_db):
    writer = LogWriterProcess(any_db.url, BACKEND)
    writer.start()
    try:
        pid = writer._process.pid
        # This test runs as root: the child may leave the idle class again, so it uses it.
        assert eventually(lambda: _class(pid) == os.SCHED_IDLE, 30)
        assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0) + 5
        assert len(writer.write(_batch("c1"))) == 1
        # Back for the next batch, if it was moved (a busy machine).
        assert eventually(lambda: _class(pid) == os.SCHED_IDLE, 30)
    finally:
        writer.close()
    with any_db.session() as session:
        assert session.scalars(select(Call.backend_call_id)).all() == ["c1"]


def test_a_batch_that_waits_for_a_core_moves_the_child_to_the_normal_class_until_it_is_written(any_db):
    """A child in the idle class that gets no core (here: stopped) is moved to the normal
    class after BEHIND_SECONDS: a lock it may hold (SQLite's writer lock) is not held for
    as long as the machine is busy. Once written, it waits in the idle class again."""
    writer = LogWriterProcess(any_db.url, BACKEND)
    writer.start()
    try:
        pid = writer._process.pid
        assert eventually(lambda: _class(pid) == os.SCHED_IDLE, 30)
        os.kill(pid, signal.SIGSTOP)
        written: list[Any] = []
        thread = threading.Thread(target=lambda: written.append(writer.write(_batch("c2"))))
        started = time.monotonic()
        try:
            thread.start()
            assert eventually(lambda: _class(pid) == os.SCHED_OTHER, 10)
            assert time.monotonic() - started >= BEHIND_SECONDS * 0.9
            assert not written
        finally:
            os.kill(pid, signal.SIGCONT)
        thread.join(30)
        assert len(written) == 1 and len(written[0]) == 1
        assert eventually(lambda: _class(pid) == os.SCHED_IDLE, 30)
    finally:
        writer.close()
    with any_db.session() as session:
        assert session.scalars(select(Call.backend_call_id)).all() == ["c2"]


CHILD_CLASS = """
import os, sys
from hotline.db import Database
from ivr.logwriter import LogWriterProcess
from tests.ivr.test_logwriter import _batch
Database(sys.argv[1]).upgrade()
writer = LogWriterProcess(sys.argv[1], "asterisk")
print(len(writer.write(_batch("c3"))), os.sched_getscheduler(writer._process.pid))
writer.close()
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="takes CAP_SYS_NICE from root")
def test_a_child_that_could_not_leave_the_idle_class_stays_out_of_it(tmp_path):
    """Without CAP_SYS_NICE and with the default RLIMIT_NICE (0), a service's user as
    systemd starts it without `LimitNICE=`, a process may not go back from the idle
    class: the child then stays in the normal class at its nice value and writes.
    (RLIMIT_NICE 20, `LimitNICE=+0`, cannot be set here: raising the hard limit takes
    CAP_SYS_RESOURCE, which this container does not have.)"""
    url = f"sqlite:///{tmp_path / 'hotline.sqlite3'}"
    command = [
        *("prlimit", "--nice=0:0"),
        *("setpriv", "--bounding-set", "-sys_nice", "--inh-caps", "-sys_nice"),
        *(sys.executable, "-c", CHILD_CLASS, url),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", str(os.SCHED_OTHER)]
