"""The warm `hotline` command: the helper `serve` starts runs it exactly as in-process."""

from __future__ import annotations

import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hotline.settings import host_name, host_run_dir
from hotline.warmhelper import Refused, _decode, peer_allowed
from hotline.warmstart import SOCKET_NAME, code_version, encode_request, socket_path
from tests.helpers import free_port, process_running

# Warm only: exits 97 when the helper did not run it (the real entry point would then run it here).
WARM = """
import sys
from hotline.warmstart import exit_with, run_warm
code = run_warm(sys.argv[1:])
sys.exit(97) if code is None else exit_with(code)
"""
COLD = "import sys; from hotline.cli import main; main(sys.argv[1:])"
ENTRY = "from hotline.warmstart import main; main()"  # what the `hotline` executable runs
NOT_WARM = 97
PASSWORD = "пароль-для-теста-1"


def environment(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env["HOTLINE_DATA_DIR"] = str(data_dir)
    env["HOTLINE_SECRET_KEY"] = "test"
    return env


def run(program: str, env: dict[str, str], *args: str, stdin: str = "") -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-c", program, *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout, done.stderr


def start_helper(env: dict[str, str], parent: int | None = None) -> subprocess.Popen[bytes]:
    path = host_run_dir(Path(env["HOTLINE_DATA_DIR"])) / SOCKET_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    helper = subprocess.Popen(
        [sys.executable, "-m", "hotline.warmhelper", str(path), str(parent or os.getpid())], env=env
    )
    wait_for(lambda: path.exists() and connects(path), helper)
    return helper


def connects(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
        probe.sendall(b"")  # then closes without a request: the helper answers nothing and goes on
        return True


def wait_for(condition, process: subprocess.Popen[bytes] | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process is None or process.poll() is None, "the helper ended"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], str]]:
    """A data dir with a request and an engineer, its helper running; the request's number."""
    env = environment(tmp_path_factory.mktemp("warm") / "data")
    assert run(COLD, env, "db", "upgrade")[0] == 0
    code, out, _ = run(
        COLD, env, "request", "open", "--kind", "incident", "--phone", "+79001234567", "--text", "Линия 3"
    )
    assert code == 0
    assert run(COLD, env, "user", "add", "ivanov", "--password-stdin", stdin=f"{PASSWORD}\n")[0] == 0
    helper = start_helper(env)
    yield env, out.strip()
    helper.terminate()
    helper.wait(timeout=30)
    assert not (host_run_dir(Path(env["HOTLINE_DATA_DIR"])) / SOCKET_NAME).exists()  # removed when it stops


@pytest.mark.parametrize(
    "args",
    [
        ("request", "show", "{number}"),
        ("request", "list"),
        ("request", "list", "--status", "new", "--limit", "5"),
        ("user", "list"),
        ("request", "show", "99999"),  # wrong check digit: one line, status 1
        ("request", "show", "10016"),  # unknown number
        ("request", "list", "--limit", "0"),  # click's usage error, status 2
        ("request", "nonexistent"),
        ("user",),
    ],
)
def test_warm_and_cold_give_the_same_output_and_status(served, args):
    env, number = served
    args = tuple(a.format(number=number) for a in args)
    warm = run(WARM, env, *args)
    assert warm[0] != NOT_WARM
    assert warm == run(COLD, env, *args)


def test_the_warm_child_reads_stdin_and_writes_what_it_changed(served):
    env, number = served
    code, out, err = run(WARM, env, "user", "add", "petrov", "--password-stdin", stdin=f"{PASSWORD}\n")
    assert code == 0, err
    assert "petrov" in run(COLD, env, "user", "list")[1]
    code, out, _ = run(WARM, env, "request", "status", number, "in_progress", "--note", "взял")
    assert (code, out) == (0, f"{number}: new → in_progress\n")
    assert "в работе" in run(COLD, env, "request", "show", number)[1]


def test_a_command_not_served_warm_runs_in_process(served):
    env, _ = served
    assert run(WARM, env, "db", "upgrade")[0] == NOT_WARM
    code, out, _ = run(ENTRY, env, "db", "upgrade")
    assert code == 0 and out.startswith("database is up to date")


def test_the_socket_is_private_to_the_user_and_other_users_are_refused(served):
    env, _ = served
    path = host_run_dir(Path(env["HOTLINE_DATA_DIR"])) / SOCKET_NAME
    assert path.stat().st_mode & 0o777 == 0o600
    assert peer_allowed((1234, os.getuid(), os.getgid()))
    assert not peer_allowed((1234, os.getuid() + 1, os.getgid()))


def test_another_code_version_runs_in_process(served):
    env, _ = served
    other = "import hotline.warmstart as w; w.code_version = lambda: 1\n" + WARM
    assert run(other, env, "request", "list")[0] == NOT_WARM


def test_a_stale_socket_runs_in_process(tmp_path):
    env = environment(tmp_path / "data")
    assert run(COLD, env, "db", "upgrade")[0] == 0
    stale = socket.socket(socket.AF_UNIX)
    (host_run_dir(tmp_path / "data")).mkdir(parents=True)
    stale.bind(str(host_run_dir(tmp_path / "data") / SOCKET_NAME))  # its helper was killed: nobody listens
    stale.close()
    assert run(WARM, env, "request", "list")[0] == NOT_WARM
    assert run(ENTRY, env, "request", "list") == run(COLD, env, "request", "list")


def test_the_helper_ends_with_serve_and_removes_its_socket(tmp_path):
    env = environment(tmp_path / "data")
    (tmp_path / "data").mkdir()
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, subprocess, sys, time\n"
            "helper = [sys.executable, '-m', 'hotline.warmhelper', sys.argv[1], str(os.getpid())]\n"
            "print(subprocess.Popen(helper).pid, flush=True); time.sleep(600)",
            str(host_run_dir(tmp_path / "data") / SOCKET_NAME),
        ],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert launcher.stdout is not None
    helper = int(launcher.stdout.readline())
    wait_for(lambda: (host_run_dir(tmp_path / "data") / SOCKET_NAME).exists(), launcher)
    launcher.kill()  # `serve` killed with SIGKILL: the kernel's parent-death signal still comes
    launcher.wait()
    launcher.stdout.close()
    wait_for(lambda: not (host_run_dir(tmp_path / "data") / SOCKET_NAME).exists(), timeout=30)
    wait_for(lambda: not process_running(helper), timeout=30)


def on_terminal(program: str, env: dict[str, str], *args: str) -> tuple[int, int]:
    """Start `program` as a session on a new pseudo-terminal, as from a shell: (pid, master fd)."""
    pid, master = pty.fork()
    if pid == 0:
        os.execve(sys.executable, [sys.executable, "-c", program, *args], env)
    return pid, master


def read_until(master: int, marker: bytes, timeout: float = 60) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        assert time.monotonic() < deadline, f"no {marker!r} in {seen!r}"
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal's last process ended
                break
            seen += chunk
    return seen


def finish(pid: int, master: int) -> tuple[int, bytes]:
    rest = read_until(master, b"\0never\0")
    os.close(master)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), rest


@pytest.mark.parametrize("program", [WARM, COLD], ids=["warm", "cold"])
def test_a_password_prompt_on_the_terminal(served, program):
    env, _ = served
    login = f"sidorov{'w' if program is WARM else 'c'}"
    pid, master = on_terminal(program, env, "user", "add", login)
    shown = read_until(master, "Пароль".encode())
    os.write(master, f"{PASSWORD}\r".encode())
    shown += read_until(master, "Ещё раз".encode())
    os.write(master, f"{PASSWORD}\r".encode())
    code, rest = finish(pid, master)
    shown += rest
    assert code == 0, shown.decode(errors="replace")
    assert PASSWORD.encode() not in shown  # typed with echo off
    assert login in run(COLD, env, "user", "list")[1]


@pytest.mark.parametrize("program", [WARM, COLD], ids=["warm", "cold"])
def test_ctrl_c_on_the_terminal_stops_the_command(served, program):
    env, _ = served
    pid, master = on_terminal(program, env, "user", "add", "kuznetsov")
    read_until(master, "Пароль".encode())
    os.write(master, b"\x03")  # the terminal's SIGINT goes to the `hotline` process
    code, rest = finish(pid, master)
    assert code == 130
    assert b"aborted" in rest
    assert "kuznetsov" not in run(COLD, env, "user", "list")[1]


def test_a_signal_that_kills_the_child_ends_the_client_the_same_way(served):
    env, _ = served
    pid, master = on_terminal(WARM, env, "user", "add", "smirnov")
    read_until(master, "Пароль".encode())
    os.kill(pid, signal.SIGTERM)  # forwarded: the child dies of it, so does the client
    code, _ = finish(pid, master)
    assert code == -signal.SIGTERM


def test_socket_path_follows_the_data_dir_as_settings_do(tmp_path):
    # In this host's run folder, found as the settings find it (hosts may share the data dir).
    host = f"run/{host_name()}"
    assert host_run_dir(Path("/srv/hotline")) == Path(f"/srv/hotline/{host}")
    assert (
        socket_path({"HOTLINE_DATA_DIR": "/srv/hotline"}, str(tmp_path))
        == f"/srv/hotline/{host}/{SOCKET_NAME}"
    )
    assert socket_path({}, str(tmp_path)) == f"{tmp_path}/var/{host}/{SOCKET_NAME}"
    (tmp_path / ".env").write_text("HOTLINE_SECRET_KEY=x\nexport HOTLINE_DATA_DIR=data\n")
    assert socket_path({}, str(tmp_path)) == f"{tmp_path}/data/{host}/{SOCKET_NAME}"
    (tmp_path / ".env").write_text('HOTLINE_DATA_DIR="${HOME}/data"\n')
    assert socket_path({}, str(tmp_path)) is None  # python-dotenv's to read: in-process
    # HOTLINE_ENV_FILE instead of ./.env, as load_settings reads it; quoted as the example is.
    (tmp_path / "hotline.env").write_text('HOTLINE_DATA_DIR="/var/lib/hotline"\n')
    named = {"HOTLINE_ENV_FILE": str(tmp_path / "hotline.env")}
    assert socket_path(named, str(tmp_path)) == f"/var/lib/hotline/{host}/{SOCKET_NAME}"
    assert socket_path({"HOTLINE_ENV_FILE": str(tmp_path / "missing.env")}, str(tmp_path)) is None


@pytest.mark.slow
def test_serve_runs_the_helper_and_removes_its_socket_when_it_stops(tmp_path):
    env = environment(tmp_path / "data")
    env.update(HOTLINE_HTTP_PORT=str(free_port()), HOTLINE_AGI_PORT=str(free_port()))
    path = host_run_dir(tmp_path / "data") / SOCKET_NAME
    serve = subprocess.Popen(
        [sys.executable, "-c", ENTRY, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: path.exists() and connects(path), serve)
        warm = run(WARM, env, "request", "list")
        assert warm[0] != NOT_WARM
        assert warm == run(COLD, env, "request", "list")
    finally:
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0
    assert not path.exists()


def test_a_client_that_sees_other_files_or_another_version_is_refused(tmp_path, monkeypatch):
    """A helper in a service with a private /tmp, or in a container, sees other files."""
    monkeypatch.chdir(tmp_path)
    path = str(tmp_path / SOCKET_NAME)
    Path(path).touch()
    request = encode_request(["request", "list"], path)
    version = code_version()
    command = _decode(request, version, path)
    assert command.args == ["request", "list"]
    assert (command.cwd, command.env) == (os.fsencode(tmp_path), dict(os.environb))
    assert command.umask == os.umask(command.umask)
    fields = request.split(b"\0")
    for i, other in ((1, b"1"), (3, b"1:2"), (4, b"1:2")):  # version, the socket, the working dir
        changed = b"\0".join([*fields[:i], other, *fields[i + 1 :]])
        with pytest.raises(Refused):
            _decode(changed, version, path)
    with pytest.raises(Refused):  # a command that is not served warm
        _decode(encode_request(["serve"], path), version, path)


def test_the_warm_child_makes_files_with_the_clients_umask(served, tmp_path):
    env, _ = served
    env = {**env, "HOTLINE_DATABASE_URL": f"sqlite:///{tmp_path}/new.sqlite3"}
    code, out, err = run("import os; os.umask(0o077)\n" + WARM, env, "request", "list")
    assert (code, out, err) == (0, "", "заявок нет\n")  # a new database, made by the child
    assert (tmp_path / "new.sqlite3").stat().st_mode & 0o777 == 0o600
