"""Writing files so that a reader, or a crash, never sees half of one.

Each file goes to a temp name in its own folder (a rename across file systems is not atomic), is flushed and
fsynced, then renamed over the target with os.replace; the folder is fsynced after, so the rename survives a
power cut. A new file gets the mode open() would give it; an existing one keeps its mode.

cellside/ keeps its own copy: it runs in a cell's python and imports nothing from this package.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write_many({Path(path): data})


def atomic_write_text(path: Path, text: str, *, encoding: str = "utf-8") -> None:
    atomic_write_bytes(Path(path), text.encode(encoding))


def atomic_write_many(files: Mapping[Path, bytes]) -> None:
    """Write every file to a temp name beside it, then rename each into place in the given order (so a reader
    who sees the last one sees the others too). On a failure the temps are removed; files not yet renamed keep
    their old content."""
    umask = _umask()
    temps: dict[Path, str] = {}
    try:
        for target, data in files.items():
            target = Path(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            temps[target] = tmp
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                mode = target.stat().st_mode & 0o7777
            except FileNotFoundError:
                mode = 0o666 & ~umask  # mkstemp's 0600 would hide a report or lock from other users
            os.chmod(tmp, mode)
        for target, tmp in temps.items():
            os.replace(tmp, target)
    finally:
        for tmp in temps.values():
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass  # renamed into place
    for folder in {Path(t).parent for t in files}:
        _fsync_dir(folder)


@functools.cache
def _umask() -> int:
    """The process umask, read once: reading it means setting it, and for that instant every other thread
    (the matrix builds cells in parallel) would create its files with no umask at all."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename itself is done
    finally:
        os.close(fd)
