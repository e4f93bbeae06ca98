"""`hotline serve` as an operator starts it: a real process on a free port."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import free_port
from web.cli import CONNECTIONS_PER_THREAD

pytestmark = pytest.mark.slow


@contextmanager
def _running(tmp_path: Path, *args: str) -> Iterator[tuple[int, list[str]]]:
    """`hotline serve ARGS` on a free port, answering /healthz: (port, the Server header and body
    of that answer); stopped with SIGTERM after, when it must end with 0 and "hotline: stopped"."""
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
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    seen += [resp.headers["Server"], resp.read().decode()]
                break
            except OSError:
                time.sleep(0.2)
        yield port, seen
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    seen.append(out)
    assert proc.returncode == 0, out
    assert "hotline: stopped" in out


def _serve(tmp_path: Path, *args: str) -> tuple[str, bytes, str]:
    """Start `hotline serve ARGS`, fetch /healthz, stop it: (Server header, body, output)."""
    with _running(tmp_path, *args) as (_port, seen):
        pass
    server, body, out = seen
    return server, body.encode(), out


def test_serve_runs_one_gunicorn_worker_per_core_and_the_services_once(tmp_path):
    server, body, out = _serve(tmp_path)
    assert body == b'{"status":"ok"}\n'
    assert server.startswith("gunicorn")
    assert f"{len(os.sched_getaffinity(0))} gunicorn workers x 4 threads" in out
    assert out.count("hotline: FastAGI") == 1  # the services run in this process, once
    # One message a line, though the services start (and say so) from several threads.
    assert all(line.count("hotline: ") <= 1 for line in out.splitlines()), out
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


def _held_connections(port: int) -> dict[int, int]:
    """How many accepted connections to `port` each process holds (from /proc)."""
    accepted = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # ESTABLISHED
                accepted.add(f"socket:[{fields[9]}]")
    held: dict[int, int] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        if count := sum(link in accepted for link in links):
            held[int(pid)] = count
    return held


def test_a_burst_of_connections_is_spread_over_the_workers(tmp_path):
    """Each worker holds at most CONNECTIONS_PER_THREAD a thread; the rest wait for the others."""
    with _running(tmp_path, "--workers", "2", "--threads", "1") as (port, _seen):
        burst = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
        try:
            deadline = time.monotonic() + 10
            held: dict[int, int] = {}
            while sum(held.values()) < 8 and time.monotonic() < deadline:
                held = _held_connections(port)
                assert max(held.values(), default=0) <= CONNECTIONS_PER_THREAD, held
                time.sleep(0.02)
            assert sorted(held.values()) == [CONNECTIONS_PER_THREAD, CONNECTIONS_PER_THREAD]
            for conn in burst:
                conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            for conn in burst:
                assert conn.recv(4096).startswith(b"HTTP/1.1 200 OK")
        finally:
            for conn in burst:
                conn.close()
