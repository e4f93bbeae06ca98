"""The benchmarks' view of a server's processes, from /proc: CPU so far, and waiting for idle."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by a process and all its descendants."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            parents[int(entry)] = int(fields[1])
            ticks[int(entry)] = int(fields[11]) + int(fields[12])
    tree, todo = set(), [pid]
    while todo:
        tree.add(todo.pop())
        todo += [child for child, parent in parents.items() if parent in tree and child not in tree]
    return sum(ticks.get(p, 0) for p in tree) / os.sysconf("SC_CLK_TCK")


def wait_idle(proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Until a server and its children (FastAGI workers, the warm CLI helper, writers) are
    done starting: the first measurements would otherwise share the cores with their imports."""
    deadline = time.monotonic() + timeout
    last = tree_cpu(proc.pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = tree_cpu(proc.pid)
        if now - last < 0.05:
            return
        last = now
    raise SystemExit(f"server still busy {timeout} s after it started")
