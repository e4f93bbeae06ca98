"""gunicorn's settings for the HTTP workers of `hotline serve` (web.cli.gunicorn_command)."""

from __future__ import annotations

from typing import Any

from hotline.services import settle_process


def post_worker_init(worker: Any) -> None:
    """Once the app is loaded, keep what start made out of the garbage collector's way.

    Modules, the app and the models are about 170,000 objects that live as long as the
    worker; a full collection walks them all (80 ms, the interpreter lock held, every
    thread of the worker stopped, and on SQLite every worker too if the writer lock is
    held). Frozen, they are skipped (docs/performance.md).
    """
    settle_process()
