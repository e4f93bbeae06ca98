"""Small helpers the tests share (not fixtures)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    """A loopback port free right now (for servers that cannot be given port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, …; utime is
    [11], stime [12]); OSError once the process is gone."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_running(pid: int) -> bool:
    """True while `pid` runs: not gone, not a zombie (an ended orphan may stay one, since
    this sandbox's init does not reap)."""
    try:
        return proc_stat(pid)[0] != "Z"
    except OSError:
        return False


def eventually(predicate: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Poll a condition that a background thread makes true, for at most `seconds`."""
    pause = threading.Event()
    for _ in range(int(seconds / 0.02)):
        if predicate():
            return True
        pause.wait(0.02)
    return predicate()


@contextmanager
def hotline_serve(data_dir: Path, *args: str, **env: str) -> Iterator[str]:
    """`hotline serve ARGS` started for real (only `env` of the HOTLINE_/TWILIO_ variables):
    its base URL once it answers; stopped with SIGTERM at the end, which must exit 0."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("HOTLINE_", "TWILIO_"))}
    environ.update(
        HOTLINE_DATA_DIR=str(data_dir), HOTLINE_HTTP_PORT=str(port), HOTLINE_AGI_PORT=str(free_port()), **env
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", "from hotline.cli import main; main()", "serve", *args],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[0]
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
