"""Background services of `hotline serve`: the protocol they follow, and their loader.

Areas register a factory `make(settings, db) -> Service | None` in the
`hotline.services` entry-point group (FastAGI server, AMI listener, transcription
worker, mailbox poller); the factory returns None when its part is not configured.
"""

from __future__ import annotations

import gc
import os
from importlib.metadata import entry_points
from typing import Protocol

from hotline.db import Database
from hotline.settings import Settings


class Service(Protocol):
    """A background part of `hotline serve`."""

    name: str

    def start(self) -> None:
        """Start working in background threads; return at once."""

    def stop(self) -> None:
        """Stop and release sockets and threads (called once, at shutdown)."""


def load_services(settings: Settings, db: Database) -> list[Service]:
    """The configured background services, from the `hotline.services` entry points."""
    services: list[Service] = []
    for ep in sorted(entry_points(group="hotline.services"), key=lambda e: e.name):
        service = ep.load()(settings, db)
        if service is not None:
            services.append(service)
    return services


def usable_cores() -> int:
    """The cores this process may run on: the default count of HTTP and FastAGI workers."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


#: Allocations between two collections of the youngest generation in a long-running
#: process (CPython's default: 700). A call's steps allocate thousands of short-lived
#: objects; at 700 a FastAGI worker ran ~100 young and ~8 middle collections in a burst
#: of 750 calls, 50-80 ms of its CPU with every call on it stopped meanwhile; at 20,000,
#: 1-3 collections and 3-16 ms (docs/performance.md).
YOUNG_COLLECTION = 20_000


def settle_process() -> None:
    """Once a long-running process has started: what start made (modules, the app, the
    models, the store) lives as long as the process, so it is frozen out of the garbage
    collector's way (a full collection walked it: 33-80 ms, every thread stopped), and
    the youngest generation is collected every YOUNG_COLLECTION allocations."""
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION, *gc.get_threshold()[1:])
