"""A background sweep of `hotline serve`: one function run every few seconds in a thread.

Sweeps are how the hotline recovers what a crash or an outage left half done (a
recording not fetched, a call whose end never came): the database says what is left,
and the sweep finishes it. A sweep that fails (the database is down) logs one line
and runs again at its next turn.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from hotline.db import DatabaseUnavailable

log = logging.getLogger(__name__)


class Sweeper:
    """Runs `sweep()` at start and then every `interval` seconds, until stopped."""

    def __init__(self, name: str, interval: float, sweep: Callable[[], object]):
        self.name = name
        self.interval = interval
        self.sweep = sweep
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def run_once(self) -> None:
        """One sweep; errors are logged, never raised (the next turn tries again)."""
        try:
            self.sweep()
        except DatabaseUnavailable as exc:
            log.warning("%s postponed: %s", self.name, exc)
        except Exception:
            log.exception("%s failed", self.name)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.interval)
