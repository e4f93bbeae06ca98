"""`hotline serve` as an operator starts it: a real process on a free port."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_serve_answers_and_stops_on_sigterm(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update(
        HOTLINE_DATA_DIR=str(tmp_path / "data"),
        HOTLINE_HTTP_PORT=str(port),
        HOTLINE_AGI_PORT=str(_free_port()),
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", "from hotline.cli import main; main()", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        body = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    body = resp.read()
                break
            except OSError:
                time.sleep(0.2)
        assert body == b'{"status":"ok"}\n'
        assert (tmp_path / "data" / "hotline.sqlite3").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "hotline: stopped" in out


@pytest.mark.slow
def test_serve_with_workers_runs_http_on_gunicorn_and_stops_on_sigterm(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update(
        HOTLINE_DATA_DIR=str(tmp_path / "data"),
        HOTLINE_HTTP_PORT=str(port),
        HOTLINE_AGI_PORT=str(_free_port()),
    )
    serve = ["serve", "--workers", "2", "--threads", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-c", "from hotline.cli import main; main()", *serve],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        server = body = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    server, body = resp.headers["Server"], resp.read()
                break
            except OSError:
                time.sleep(0.2)
        assert body == b'{"status":"ok"}\n'
        assert server.startswith("gunicorn")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "2 gunicorn workers" in out
    assert "hotline: stopped" in out
