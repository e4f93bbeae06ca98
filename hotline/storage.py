"""Files of requests in the data directory: stored once, addressed relative to it.

A file is written to a temporary name and renamed into place, so a crash never leaves
half a file under a real name; its sha256 and size are computed while it is written.
`resolve()` is the only way from a stored path back to a file, and it refuses any path
that would leave the data directory.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
import uuid
import wave
from pathlib import Path
from typing import IO

from sqlalchemy.orm import Session

from hotline.errors import StorageError
from hotline.models import Attachment, TranscriptionState, utcnow

CHUNK = 1 << 16
_UNSAFE = re.compile(r"[^\w.\-]+", re.UNICODE)


def safe_filename(name: str) -> str:
    """A file name with no directory parts or odd characters, never empty."""
    base = os.path.basename(name.replace("\\", "/")).strip().lstrip(".")
    base = _UNSAFE.sub("_", base)[:120]
    return base or "file"


def resolve(data_dir: Path, relative: str) -> Path:
    """The absolute path of a stored file; StorageError if it would leave data_dir."""
    root = data_dir.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or path == root:
        raise StorageError(f"path outside the data directory: {relative!r}")
    return path


def write_file(data_dir: Path, area: str, filename: str, source: IO[bytes] | bytes) -> tuple[str, int, str]:
    """Store bytes under data_dir/area/YYYY/MM; returns (relative path, size, sha256)."""
    now = utcnow()
    relative = f"{area}/{now:%Y/%m}/{uuid.uuid4().hex}-{safe_filename(filename)}"
    target = resolve(data_dir, relative)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    digest, size = hashlib.sha256(), 0
    try:
        # Owner and group only, whatever the umask: customers' recordings and letters.
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640), "wb") as out:
            if isinstance(source, bytes):
                out.write(source)
                digest.update(source)
                size = len(source)
            else:
                while chunk := source.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"cannot store {filename!r}: {exc}") from exc
    return relative, size, digest.hexdigest()


def wav_duration(path: Path) -> float | None:
    """Seconds of audio in a WAV file, None if it is not a WAV the stdlib can read."""
    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes() / float(w.getframerate())
    except (wave.Error, EOFError, OSError, ZeroDivisionError):
        return _wav_duration_from_header(path)


def _wav_duration_from_header(path: Path) -> float | None:
    # The wave module reads only PCM; µ-law and A-law WAVs (Asterisk, Twilio) have a
    # plain RIFF header with byte rate and data size, which is all a duration needs.
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, byte_rate = 12, 0
    while pos + 8 <= len(head):
        chunk_id, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if chunk_id == b"fmt ":
            byte_rate = int.from_bytes(head[pos + 16 : pos + 20], "little")
        elif chunk_id == b"data":
            data_size = min(size, path.stat().st_size - pos - 8)
            return data_size / byte_rate if byte_rate else None
        pos += 8 + size + (size & 1)
    return None


def store_attachment(
    session: Session,
    data_dir: Path,
    *,
    source: IO[bytes] | bytes,
    filename: str,
    content_type: str,
    origin: str,
    request_id: int | None = None,
    call_id: int | None = None,
    external_id: str | None = None,
) -> Attachment:
    """Write a file into the data dir and record it; audio is marked for transcription."""
    is_audio = content_type.startswith("audio/")
    area = "recordings" if is_audio else "attachments"
    relative, size, sha = write_file(data_dir, area, filename, source)
    attachment = Attachment(
        request_id=request_id,
        call_id=call_id,
        path=relative,
        filename=safe_filename(filename),
        content_type=content_type,
        size=size,
        sha256=sha,
        source=origin,
        external_id=external_id,
        created_at=utcnow(),
    )
    if is_audio:
        attachment.duration_seconds = wav_duration(resolve(data_dir, relative))
        attachment.transcription_state = TranscriptionState.PENDING
    session.add(attachment)
    session.flush()
    return attachment


def remove_temporary_files(data_dir: Path, older_than: float = 300.0) -> int:
    """Remove what a crash left half-written, data_dir/tmp/* and `*.part` files, unless
    younger than `older_than` seconds: another process (a worker, the mail poller,
    `serve` on another host sharing the data dir) may be writing them now. How many.
    """
    if not data_dir.is_dir():
        return 0
    cutoff = time.time() - older_than
    removed = 0
    for path in [*(data_dir / "tmp").glob("*"), *data_dir.glob("*/**/*.part")]:
        try:
            if path.is_file() and not path.is_symlink() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def data_dir_writable(data_dir: Path) -> bool:
    """True if a file can be created in the data dir now (the health check asks)."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".health-", dir=data_dir)
        os.close(fd)
        os.unlink(name)
    except OSError:
        return False
    return True
