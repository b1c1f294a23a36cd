"""Every wheel of a lock, unpacked into one site-packages-like folder of the cache for any platform uv knows: what
the static audits read where nothing is built or run (a release the watch predicts, a cell for another machine)."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from . import paths, tools
from .lock import read_pins
from .matrix import Cell


def install_site(lock: Path, cell: Cell) -> tuple[Path | None, str]:
    """Every wheel of the lock, without dependencies, into one site-packages-like folder of our cache (uv
    hardlinks them from its own cache; nothing is built into a venv, nothing runs). Keyed by the lock's pins and
    hashes, so a repeat is instant. (folder, "") or (None, why)."""
    body = "\n".join(p.spec() + " " + " ".join(sorted(p.hashes)) for p in read_pins(lock.read_text(encoding="utf-8")))
    key = hashlib.sha256(f"{cell.python} {cell.platform}\n{body}".encode()).hexdigest()[:16]
    root = paths.cache_dir() / "watch" / "sites"  # the folder the watch has always filled: its sites stay valid
    done = root / key
    if (done / ".complete").is_file():
        return done, ""
    root.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=key + ".", suffix=".part", dir=root))
    try:
        args = [tools.uv_bin(), "pip", "install", "--quiet", "--no-deps", "--link-mode", "hardlink"]
        args += [
            "--python",
            sys.executable,
            "--python-version",
            cell.python,
            "--python-platform",
            cell.platform,
            "--target",
            str(partial),
        ]
        proc = tools.run([*args, "-r", str(lock)], env=tools.uv_env())
        if not proc.ok:
            cause = proc.infra_cause()
            what = {"network": "package index unreachable", "disk": "disk full"}.get(cause or "", "uv install failed")
            return None, f"{what}: {proc.last_error_line()}"
        (partial / ".complete").write_text(lock.name + "\n", encoding="utf-8")
        try:
            os.replace(partial, done)
        except OSError:
            if not (done / ".complete").is_file():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return done, ""
