"""Download a catalogue model, verify its sha256, unpack it atomically.

The archive is streamed to a temporary file beside the models folder while its
sha256 is computed; a mismatch deletes it. It is unpacked into a temporary folder
that is renamed into place only when complete, so `voice_models/models/NAME` is
either a whole model or absent, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import httpx

from hotline.errors import HotlineError
from voice_models.catalogue import CATALOGUE, ModelInfo


class FetchError(HotlineError):
    """The model could not be downloaded, verified or unpacked."""


def lookup(name: str) -> ModelInfo:
    """The catalogue entry `name`, or FetchError listing the known names."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise FetchError(f"unknown model {name!r}; known: {', '.join(CATALOGUE)}") from None


def fetch_model(
    name: str,
    dest_dir: Path,
    *,
    url: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Install model `name` into dest_dir/name; returns that folder."""
    info = lookup(name)
    expected = (sha256 or info.sha256 or "").lower()
    if not expected:
        raise FetchError(f"no published sha256 for {name}; check the archive yourself and pass --sha256 HEX")
    target = dest_dir / name
    if target.exists() and not force:
        raise FetchError(f"{target} already exists (use --force to replace it)")
    made = _missing_folders(dest_dir)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        # The scratch folder is made before the download: a folder that cannot be written
        # is told at once, not after a 45 MB download.
        with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=dest_dir) as tmp:
            archive = Path(tmp) / "model.zip"
            actual = _download(url or info.url, archive, progress)
            if actual != expected:
                raise FetchError(
                    f"sha256 mismatch for {name}: expected {expected}, got {actual}; nothing installed"
                )
            unpacked = _unpack(archive, Path(tmp) / "unpacked")
            if target.exists():
                shutil.rmtree(target)
            unpacked.rename(target)
    except (OSError, FetchError) as exc:
        for folder in reversed(made):  # nothing left behind: the folders this call made go too
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(exc, FetchError):
            raise
        reason = exc.strerror or str(exc)
        if isinstance(exc, FileExistsError | NotADirectoryError):
            reason = "a file is in the way"
        if exc.filename and str(exc.filename) != str(dest_dir):
            reason = f"{exc.filename}: {reason}"
        raise FetchError(f"cannot install {name} into {dest_dir}: {reason}; nothing installed") from None
    return target


def _missing_folders(path: Path) -> list[Path]:
    """`path` and its parents that do not exist yet, outermost first."""
    missing: list[Path] = []
    for folder in (path, *path.parents):
        if folder.exists() or folder.is_symlink():
            break
        missing.append(folder)
    return missing[::-1]


def _download(url: str, path: Path, progress: Callable[[int, int | None], None] | None) -> str:
    digest = hashlib.sha256()
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=60) as response:
            response.raise_for_status()
            total = int(response.headers["content-length"]) if "content-length" in response.headers else None
            with open(path, "wb") as out:
                for chunk in response.iter_bytes(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    if progress:
                        progress(len(chunk), total)
    except httpx.HTTPStatusError as exc:
        raise FetchError(f"download of {url} failed: HTTP {exc.response.status_code}") from exc
    except httpx.HTTPError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FetchError(f"download of {url} failed: {reason}") from exc
    return digest.hexdigest()


def _unpack(archive: Path, into: Path) -> Path:
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            for member in names:
                parts = PurePosixPath(member).parts
                if member.startswith("/") or ".." in parts:
                    raise FetchError(f"unsafe path in the archive: {member!r}")
            zf.extractall(into)
    except zipfile.BadZipFile as exc:
        raise FetchError(f"the archive is not a valid zip: {exc}") from exc
    entries = list(into.iterdir())
    # Official archives hold one folder named after the model.
    root = entries[0] if len(entries) == 1 and entries[0].is_dir() else into
    if not (root / "am").is_dir() and not (root / "conf").is_dir():
        raise FetchError("the archive does not hold a Vosk model (no am/ or conf/ folder)")
    return root
