"""Small helpers the tests share (not fixtures)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


def free_port() -> int:
    """A loopback port free right now (for servers that cannot be given port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def eventually(predicate: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Poll a condition that a background thread makes true, for at most `seconds`."""
    pause = threading.Event()
    for _ in range(int(seconds / 0.02)):
        if predicate():
            return True
        pause.wait(0.02)
    return predicate()
