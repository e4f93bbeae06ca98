"""Outages a background part of the hotline has found, for `/healthz` to report.

A problem is a small file `<data dir>/run/<host>/health/<check>` holding one line that
says what is wrong; it is removed when the part sees the thing work again. A file, not
process memory: `/healthz` may be answered by another process (`serve --workers N` runs
HTTP in gunicorn children, `hotline agi` may run apart from `hotline serve`), and they
all share the data dir. A folder per host: hosts that share the data dir (README,
"Scaling out") each report their own problems, and a start clears only its own.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path

from hotline.settings import host_run_dir

log = logging.getLogger(__name__)

_CHECK = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
MAX_MESSAGE = 300


def _folder(data_dir: Path) -> Path:
    return host_run_dir(data_dir) / "health"


def _path(data_dir: Path, check: str) -> Path:
    if not _CHECK.match(check):
        raise ValueError(f"not a health check name: {check!r}")
    return _folder(data_dir) / check


def report(data_dir: Path, check: str, message: str) -> None:
    """Mark `check` as failing with `message` (replaced atomically; never raises on I/O)."""
    path = _path(data_dir, check)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{check}.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(message[:MAX_MESSAGE].replace("\n", " "))
        os.replace(tmp, path)
    except OSError as exc:  # the data dir itself is in trouble: the log still says it
        log.error("cannot record the health problem %s (%s): %s", check, message, exc)


def clear(data_dir: Path, check: str) -> None:
    """`check` works again."""
    try:
        _path(data_dir, check).unlink(missing_ok=True)
    except OSError as exc:
        log.error("cannot clear the health problem %s: %s", check, exc)


def failing(data_dir: Path, check: str) -> bool:
    """True while `check` is marked as failing."""
    return _path(data_dir, check).exists()


def problems(data_dir: Path) -> dict[str, str]:
    """Every failing check with its message."""
    folder = _folder(data_dir)
    found: dict[str, str] = {}
    try:
        entries = sorted(folder.iterdir()) if folder.is_dir() else []
    except OSError:
        return found
    for path in entries:
        if _CHECK.match(path.name) and path.is_file():
            try:
                found[path.name] = path.read_text(encoding="utf-8", errors="replace")[:MAX_MESSAGE]
            except OSError:
                found[path.name] = ""
    return found
