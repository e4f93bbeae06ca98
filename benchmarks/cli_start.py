"""`hotline` start time: how long request and user commands take, start to exit.

Runs each command `--runs` times in turns (like hyperfine, one after the other so
the machine's other load falls on all alike) against a temporary database with one
request and one engineer, and prints the median wall and CPU time of each, next to
two floors measured in the same run: the bare interpreter and `import sqlalchemy.orm`
(which a command that reads the database in-process cannot avoid). Each command runs
cold (in-process: no helper in its data dir) and warm (the helper `hotline serve`
starts is running in its data dir; both data dirs share the one database).
`--hotline PATH` (repeatable) compares several installs cold, e.g. an older checkout's venv.

    .venv/bin/python benchmarks/cli_start.py [--runs 15] [--hotline .venv/bin/hotline]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hotline.warmstart import socket_path


def timed(command: list[str], env: dict[str, str], helper: int | None = None) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of `command`, with its warm child's."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    helped = children_cpu(helper)
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu + children_cpu(helper) - helped


def children_cpu(pid: int | None) -> float:
    """CPU seconds of the reaped children of `pid` (the helper's warm commands), from /proc."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")  # cutime, cstime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--hotline", action="append", help="a `hotline` executable (default: this venv's)")
    args = parser.parse_args()
    executables = args.hotline or [os.path.join(os.path.dirname(sys.executable), "hotline")]
    with tempfile.TemporaryDirectory(prefix="hotline-cli-bench-") as tmp:
        env = {
            **os.environ,
            "HOTLINE_DATA_DIR": os.path.join(tmp, "cold"),
            "HOTLINE_DATABASE_URL": f"sqlite:///{tmp}/hotline.sqlite3",
            "HOTLINE_SECRET_KEY": "bench",
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # an operator's install keeps its compiled modules
        warm_env = {**env, "HOTLINE_DATA_DIR": os.path.join(tmp, "warm")}
        os.makedirs(warm_env["HOTLINE_DATA_DIR"])
        first = executables[0]
        subprocess.run([first, "db", "upgrade"], env=env, check=True, stdout=subprocess.DEVNULL)
        opened = subprocess.run(
            [first, "request", "open", "--kind", "incident", "--phone", "+79001234567", "--text", "Линия 3"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        number = opened.stdout.strip()
        subprocess.run(
            [first, "user", "add", "ivanov", "--name", "Иван Иванов", "--role", "admin"],
            env=env,
            input="пароль-для-замера-1\nпароль-для-замера-1\n",
            text=True,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        python = str(Path(first).with_name("python"))
        commands: dict[str, tuple[list[str], dict[str, str]]] = {
            "python -c pass (floor)": ([python, "-c", "pass"], env),
            "import sqlalchemy.orm (floor)": ([python, "-c", "import sqlalchemy.orm"], env),
        }
        for exe in executables:
            tag = f" [{exe}]" if len(executables) > 1 else ""
            for argv in (["request", "show", number], ["request", "list"], ["user", "list"]):
                name = f"hotline {' '.join(argv[:2])}{tag}"
                commands[f"{name} cold"] = ([exe, *argv], env)
                if exe == first:
                    commands[f"{name} warm"] = ([exe, *argv], warm_env)
        helper = start_helper(python, warm_env)
        try:
            for command, command_env in commands.values():  # compile and cache once
                timed(command, command_env)
            walls: dict[str, list[float]] = {name: [] for name in commands}
            cpus: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(args.runs):
                for name, (command, command_env) in commands.items():
                    warm = helper.pid if command_env is warm_env else None
                    wall, cpu = timed(command, command_env, warm)
                    walls[name].append(wall)
                    cpus[name].append(cpu)
        finally:
            helper.terminate()
            helper.wait()
    load = os.getloadavg()[0]
    cpus_n = os.cpu_count()
    print(f"`hotline` start to exit, median of {args.runs} runs (load average {load:.1f}, {cpus_n} CPUs)")
    print("  (warm: the command ran in the helper's child; CPU is the `hotline` process's and the child's)")
    floor = statistics.median(walls["python -c pass (floor)"])
    for name in commands:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        ratio = wall / floor
        print(f"  {name:<48} wall {wall * 1000:7.0f} ms  CPU {cpu * 1000:6.0f} ms  ({ratio:4.1f}x python)")


def start_helper(python: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The warm helper `hotline serve` starts, on `env`'s data dir; returns once it listens."""
    path = socket_path(env, os.getcwd())  # <data dir>/run/<host>/cli.sock, as `serve` puts it
    assert path is not None  # the helper makes its folder
    helper = subprocess.Popen([python, "-m", "hotline.warmhelper", path, str(os.getpid())], env=env)
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        if helper.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the warm helper did not start")
        time.sleep(0.05)
    return helper


if __name__ == "__main__":
    main()
