"""`hotline serve` and `hotline agi` as real processes on loopback: floods, traversal, restarts."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hotline.db import Database
from ivr.asterisk import processes
from ivr.asterisk.fake_agi import SILENCE, FakeAsterisk, Hold
from tests.helpers import eventually, free_port, proc_stat, process_running

pytestmark = pytest.mark.slow

IDLE = 2000


@dataclass
class Running:
    proc: subprocess.Popen[str]
    http_port: int
    agi_port: int
    data_dir: Path
    head: str = ""  # what it printed while the test waited for it to start

    def healthz(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz", timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=90)
        return self.head + out


def _low_fd_limit() -> None:
    # As systemd starts services: a soft limit of 1024 open files.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))


def _start(tmp_path: Path, command: str, **extra: str) -> Running:
    http_port, agi_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update(
        HOTLINE_DATA_DIR=str(tmp_path / "data"),
        HOTLINE_HTTP_PORT=str(http_port),
        HOTLINE_AGI_PORT=str(agi_port),
        HOTLINE_ASR="fake",
        HOTLINE_TRANSCRIPTION_WORKERS="0",
        **extra,
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", "from hotline.cli import main; main()", command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_low_fd_limit,
    )
    running = Running(proc, http_port, agi_port, tmp_path / "data")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", agi_port), timeout=1):
                break
        except OSError:
            time.sleep(0.2)
    else:
        out = running.stop() if proc.poll() is None else proc.communicate()[0]
        pytest.fail(f"hotline {command} did not start: {out}")
    if command == "agi":
        # The port answers once the first worker serves; `hotline agi` says so once all do.
        assert proc.stdout is not None
        fd = proc.stdout.fileno()  # read raw: nothing is left in the text buffer for `stop`
        while "hotline: FastAGI on" not in running.head and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.5)[0]:
                if not (chunk := os.read(fd, 4096)):
                    break
                running.head += chunk.decode(errors="replace")
        assert "hotline: FastAGI on" in running.head, running.head
    return running


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Running]:
    running = _start(tmp_path, "serve")
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            running.stop()


def _raise_own_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < IDLE + 500:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, IDLE + 1000), hard))


# No HOTLINE_DUTY_NUMBER here: the menu does not offer «0».
MENU_HEARD = ["hotline/ru/greeting", "hotline/ru/menu_no_duty", "hotline/ru/menu_no_duty"]


def test_serve_survives_idle_connections_and_keeps_answering(serve: Running) -> None:
    _raise_own_fd_limit()
    idle: list[socket.socket] = []
    try:
        for _ in range(IDLE):  # bounded: 2,000 sockets that never say a word
            idle.append(socket.create_connection(("127.0.0.1", serve.agi_port), timeout=10))
        assert serve.proc.poll() is None
        assert serve.healthz() == 200  # HTTP still answers
        trace = asyncio.run(
            FakeAsterisk("127.0.0.1", serve.agi_port, uniqueid="1700000000.1", script=["*", SILENCE]).run(60)
        )
        # a new call is served: the menu, again after '*'
        assert trace.heard[:3] == MENU_HEARD
    finally:
        for s in idle:
            s.close()
    assert serve.healthz() == 200
    out = serve.stop()
    assert serve.proc.returncode == 0 and "Traceback" not in out, out


def test_serve_refuses_a_uniqueid_that_is_a_path(serve: Running, tmp_path: Path) -> None:
    secret = tmp_path / "x" / "secret-1.wav"
    secret.parent.mkdir()
    secret.write_bytes(b"RIFF-secret")
    # The recordings folder is <tmp>/data/asterisk: ../../x/secret-1.wav would be that file.
    trace = asyncio.run(
        FakeAsterisk("127.0.0.1", serve.agi_port, uniqueid="../../x/secret", script=["2", "1"]).run(60)
    )
    assert trace.commands == ["FAILURE"] and trace.fallback
    assert secret.read_bytes() == b"RIFF-secret"
    out = serve.stop()
    assert "agi_uniqueid is not an Asterisk uniqueid" in out and "Traceback" not in out
    db = Database(f"sqlite:///{serve.data_dir / 'hotline.sqlite3'}")
    try:
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM calls").scalar() == 0
    finally:
        db.dispose()


@pytest.mark.parametrize("processes", ["1", "2"])  # in `hotline agi`'s own process, or two workers
def test_agi_drains_on_sigterm_and_hands_the_rest_back(tmp_path: Path, processes: str) -> None:
    running = _start(tmp_path, "agi", HOTLINE_AGI_DRAIN_SECONDS="1", HOTLINE_AGI_PROCESSES=processes)

    async def call_then_sigterm() -> tuple[FakeAsterisk, FakeAsterisk]:
        quick = FakeAsterisk("127.0.0.1", running.agi_port, uniqueid="1700000000.1", script=[Hold(0.5), "1"])
        slow = FakeAsterisk("127.0.0.1", running.agi_port, uniqueid="1700000000.2", script=[Hold(3.0), "1"])
        runs = asyncio.gather(quick.run(60), slow.run(60))
        await asyncio.sleep(0.3)
        running.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        # While the slow call drains, a new call is refused at once (the dialplan's
        # fallback takes it), not left waiting in a queue no one accepts from.
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", running.agi_port)
        await runs
        return quick, slow

    quick, slow = asyncio.run(call_then_sigterm())
    out, _ = running.proc.communicate(timeout=60)
    assert running.proc.returncode == 0 and "hotline: stopped" in out
    assert "Traceback" not in out, out
    # The quick call ended within the drain time as it would have anyway.
    assert quick.trace.ended_by == "hangup" and "service_restart" not in " ".join(quick.trace.commands)
    # The slow one was still going: told, and handed to the dialplan's fallback.
    assert slow.trace.commands[-2:] == ['STREAM FILE hotline/ru/service_restart ""', "FAILURE"]
    assert slow.trace.fallback and slow.trace.agistatus == "FAILURE"
    db = Database(f"sqlite:///{running.data_dir / 'hotline.sqlite3'}")
    try:
        with db.engine.connect() as conn:
            outcomes = dict(conn.exec_driver_sql("SELECT backend_call_id, outcome FROM calls").all())
    finally:
        db.dispose()
    assert outcomes == {"1700000000.1": "abandoned", "1700000000.2": "service_restart"}


def test_agi_with_its_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
        env.update(HOTLINE_DATA_DIR=str(tmp_path / "data"), HOTLINE_AGI_PORT=str(port))
        result = subprocess.run(
            [sys.executable, "-c", "from hotline.cli import main; main()", "agi"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "cannot listen for FastAGI" in line and str(port) in line


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[Running]:
    """`hotline agi` with two worker processes; killed at the end if a test left it running."""
    running = _start(tmp_path, "agi", HOTLINE_AGI_PROCESSES="2")
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            running.proc.kill()  # its workers see it gone, drain and end
            running.proc.communicate(timeout=60)


def _children(pid: int) -> list[int]:
    """The FastAGI workers of `hotline agi` (its children but multiprocessing's resource tracker)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = proc_stat(int(stat.parent.name))
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"resource_tracker" not in cmdline:
            found.append(int(stat.parent.name))
    return sorted(found)


def _cpu_seconds(pid: int, gone: float = 0.0) -> float:
    """CPU time used so far by a process (user and system); `gone` if it has ended."""
    try:
        fields = proc_stat(pid)
    except OSError:
        return gone
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _closed_calls(data_dir: Path) -> dict[str, str | None]:
    db = Database(f"sqlite:///{data_dir / 'hotline.sqlite3'}")
    try:
        with db.engine.connect() as conn:
            ended = "SELECT backend_call_id, outcome FROM calls WHERE ended_at IS NOT NULL"
            return dict(conn.exec_driver_sql(ended).all())
    finally:
        db.dispose()


def test_agi_workers_share_the_port_and_a_killed_one_is_replaced(two_workers: Running) -> None:
    running = two_workers
    deadline = time.monotonic() + 60
    while len(workers := _children(running.proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(workers) == 2

    async def calls_across_a_kill() -> tuple[FakeAsterisk, FakeAsterisk]:
        held = FakeAsterisk("127.0.0.1", running.agi_port, uniqueid="1700000000.1", script=[Hold(4.0), "1"])
        holding = asyncio.ensure_future(held.run(60))
        await asyncio.sleep(1.0)
        for pid in workers:  # every worker at once: the held call's with them
            os.kill(pid, signal.SIGKILL)
        # No worker is left to accept: the call waits in the port's queue, which the parent keeps.
        after = FakeAsterisk("127.0.0.1", running.agi_port, uniqueid="1700000000.2", script=["*", SILENCE])
        await asyncio.gather(holding, after.run(60))
        return held, after

    held, after = asyncio.run(calls_across_a_kill())
    # The held call's worker died under it: its socket closed, and Asterisk's dialplan goes on.
    assert held.trace.ended_by == "hotline" and held.trace.commands[-1] == "ANSWER"
    assert after.trace.heard[:3] == MENU_HEARD
    replaced = _children(running.proc.pid)
    assert len(replaced) == 2 and not set(replaced) & set(workers)
    out = running.stop()
    assert running.proc.returncode == 0 and "Traceback" not in out, out
    assert "(2 processes, data in" in out
    assert "FastAGI worker 1 ended (exit code -9)" in out and "FastAGI worker 2 ended (exit code -9)" in out
    assert "1700000000.2" in _closed_calls(running.data_dir)


def test_agi_workers_finish_their_calls_and_end_when_their_parent_is_killed(two_workers: Running) -> None:
    running = two_workers
    deadline = time.monotonic() + 60
    while len(workers := _children(running.proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)

    async def call_across_the_kill() -> tuple[FakeAsterisk, float]:
        call = FakeAsterisk("127.0.0.1", running.agi_port, uniqueid="1700000000.3", script=[Hold(3), "1"])
        run = asyncio.ensure_future(call.run(60))
        await asyncio.sleep(0.5)
        running.proc.kill()
        await asyncio.sleep(0.5)
        before = {pid: _cpu_seconds(pid) for pid in workers}
        await asyncio.sleep(1.5)  # the drain: the call still holds (the other worker may have ended)
        used = sum(_cpu_seconds(pid, cpu) - cpu for pid, cpu in before.items())
        await run
        return call, used

    call, drain_cpu = asyncio.run(call_across_the_kill())
    # The dead parent's pipe stays readable: a loop still watching it spins a core.
    assert drain_cpu < 0.5
    # The workers share the parent's output: it ends when they all have.
    out, _ = running.proc.communicate(timeout=60)
    assert "Traceback" not in out, out
    # The call in progress went on to its end (the drain), then the workers ended.
    assert call.trace.ended_by == "hangup" and "service_restart" not in " ".join(call.trace.commands)
    # Closing their output is among the last things they do, not the last.
    assert eventually(lambda: not [pid for pid in workers if process_running(pid)])
    assert _closed_calls(running.data_dir) == {"1700000000.3": "abandoned"}


def test_a_worker_stopped_from_outside_drains_and_is_not_started_again(two_workers: Running) -> None:
    # systemd's default stop sends SIGTERM to every process of the unit at once: a worker
    # that drained and ended by itself is not replaced while the parent stops too.
    running = two_workers
    deadline = time.monotonic() + 60
    while len(workers := _children(running.proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    os.kill(workers[0], signal.SIGTERM)
    deadline = time.monotonic() + 30
    while process_running(workers[0]) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)  # a respawn would have come by now (RESPAWN_PAUSE)
    assert _children(running.proc.pid) == workers[1:]
    trace = asyncio.run(
        FakeAsterisk("127.0.0.1", running.agi_port, uniqueid="1700000000.4", script=["*", SILENCE]).run(60)
    )
    assert trace.heard[:1] == ["hotline/ru/greeting"]  # the other worker takes the calls
    out = running.stop()
    assert running.proc.returncode == 0 and "Traceback" not in out, out
    assert "FastAGI worker 1 stopped after its drain; not started again" in out
    assert "starting it again" not in out


def test_a_worker_whose_loop_is_stuck_is_killed_and_started_again(
    make_settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A stopped process stands in for a stuck event loop: it writes no heartbeat.
    monkeypatch.setattr(processes, "HANG_SECONDS", 3.0)
    agi = processes.AgiProcesses(make_settings(HOTLINE_AGI_PORT="0", HOTLINE_ASR="fake"), 2)
    agi.start()
    try:
        stuck = agi._workers[0]
        os.kill(stuck.pid, signal.SIGSTOP)
        with caplog.at_level(logging.ERROR):
            deadline = time.monotonic() + 30
            while agi._workers[0] is stuck and time.monotonic() < deadline:
                time.sleep(0.2)
        assert stuck.exitcode == -signal.SIGKILL
        assert len(re.findall(r"FastAGI worker 1: its event loop stuck for \d+ s; killed", caplog.text)) == 1
        assert "FastAGI worker 1 ended (exit code -9)" in caplog.text
        # The new worker and the other one take calls; the live one was never touched.
        traces = [
            asyncio.run(
                FakeAsterisk("127.0.0.1", agi.port, uniqueid=f"1700000001.{i}", script=["*", SILENCE]).run(60)
            )
            for i in range(4)
        ]
        assert all(trace.heard[:1] == ["hotline/ru/greeting"] for trace in traces)
        assert agi._workers[1].is_alive()
    finally:
        agi.stop()


class _Worker:
    def __init__(self) -> None:
        self.killed = False

    def is_alive(self) -> bool:
        return not self.killed

    def kill(self) -> None:
        self.killed = True

    def join(self, timeout: float | None = None) -> None:
        pass


def test_workers_are_not_taken_for_stuck_when_the_parent_was_stopped_with_them(make_settings) -> None:
    # Ctrl+Z on `hotline agi` stops the parent and its workers alike: after `fg` the beats
    # are old, but only because nobody ran. They are judged at the next look, not this one.
    agi = processes.AgiProcesses(make_settings(), 2)
    workers = [_Worker(), _Worker()]
    agi._workers = workers  # type: ignore[assignment]
    now = time.monotonic()
    agi._beats[:] = [now - 100, now]
    agi._checked = now - 100
    agi._kill_stuck()
    assert not workers[0].killed
    agi._kill_stuck()  # half a second later: still no beat from worker 1, which is stuck indeed
    assert workers[0].killed and not workers[1].killed
