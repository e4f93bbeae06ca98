"""`hotline serve` as an operator starts it: a real process on a free port."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import free_port

pytestmark = pytest.mark.slow


def _serve(tmp_path: Path, *args: str) -> tuple[str, bytes, str]:
    """Start `hotline serve ARGS`, fetch /healthz, stop it with SIGTERM: (Server header, body, output)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update(
        HOTLINE_DATA_DIR=str(tmp_path / "data"),
        HOTLINE_HTTP_PORT=str(port),
        HOTLINE_AGI_PORT=str(free_port()),
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", "from hotline.cli import main; main()", "serve", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server, body = "", b""
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    server, body = resp.headers["Server"], resp.read()
                break
            except OSError:
                time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "hotline: stopped" in out
    return server, body, out


def test_serve_runs_one_gunicorn_worker_per_core_and_the_services_once(tmp_path):
    server, body, out = _serve(tmp_path)
    assert body == b'{"status":"ok"}\n'
    assert server.startswith("gunicorn")
    assert f"{len(os.sched_getaffinity(0))} gunicorn workers x 4 threads" in out
    assert out.count("hotline: FastAGI") == 1  # the services run in this process, once
    assert (tmp_path / "data" / "hotline.sqlite3").exists()


def test_serve_with_workers_runs_that_many_and_stops_on_sigterm(tmp_path):
    server, body, out = _serve(tmp_path, "--workers", "3", "--threads", "2")
    assert body == b'{"status":"ok"}\n'
    assert server.startswith("gunicorn")
    assert "3 gunicorn workers x 2 threads" in out


@pytest.mark.parametrize("taken", ["HOTLINE_HTTP_PORT", "HOTLINE_AGI_PORT"])
def test_a_port_in_use_is_one_clear_line(tmp_path, taken):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        ports = {"HOTLINE_HTTP_PORT": str(free_port()), "HOTLINE_AGI_PORT": str(free_port())}
        ports[taken] = str(busy.getsockname()[1])
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
        env.update(HOTLINE_DATA_DIR=str(tmp_path / "data"), **ports)
        result = subprocess.run(
            [sys.executable, "-c", "from hotline.cli import main; main()", "serve"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert "address already in use" in result.stderr.lower()
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
