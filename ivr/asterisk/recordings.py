"""The folder shared with Asterisk: recording names, and paths kept inside it.

Asterisk writes `<folder>/<uniqueid>-<n>.wav`; the hotline reads, stores and deletes
those files. The uniqueid comes from the AGI peer, and the folder is shared with
another host, so nothing is trusted: a name must have the recording's shape, and a
path is used only once resolved to a regular file (not a link) inside the folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ivr.asterisk.agi import UNIQUEID

_NUMBERED = re.compile(r"^(?P<uniqueid>.+)-(?P<n>[0-9]{1,4})$")


def recording_name(uniqueid: str, n: int) -> str:
    """`<uniqueid>-<n>`: the name (without `.wav`) of a call's n-th recording."""
    if not UNIQUEID.match(uniqueid) or not 0 < n < 10000:
        raise ValueError(f"not a recording of an Asterisk call: {uniqueid[:80]!r}-{n}")
    return f"{uniqueid}-{n}"


def uniqueid_of(stem: str) -> str | None:
    """The uniqueid of the call a file name (without `.wav`) belongs to; None if it is no recording."""
    match = _NUMBERED.match(stem)
    if match is None or not UNIQUEID.match(match.group("uniqueid")):
        return None
    return match.group("uniqueid")


def inside(folder: Path, path: Path) -> Path | None:
    """`path` resolved, if it is a regular file inside `folder` reached through no link; else None."""
    try:
        root = folder.resolve(strict=True)
        if path.is_symlink():
            return None
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if resolved.parent != root or not resolved.is_file():
        return None
    return resolved


def unlink_inside(folder: Path, path: Path) -> bool:
    """Delete `path` if it is a recording file inside `folder`; True if it was deleted."""
    found = inside(folder, path)
    if found is None:
        return False
    try:
        os.unlink(found)
    except FileNotFoundError:
        return False
    return True
