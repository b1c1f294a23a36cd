"""Where things live: cell venvs, the shared download cache, reports."""

from __future__ import annotations

import os
from pathlib import Path

# The module a cell's preload .pth imports (build.py writes it into site-packages; the closure audit reads it).
PRELOAD_MODULE = "whisperx_matrix_preload"


def envs_dir(project_root: Path) -> Path:
    """Cell venvs: ``$WXM_ENVS``, else ``<project>/envs``. Keep it on the uv cache's filesystem so uv
    hardlinks instead of copying."""
    return Path(os.environ.get("WXM_ENVS") or project_root / "envs")


def cache_dir() -> Path:
    """Downloads shared by tests, audits and benchmarks (wheels, synthetic audio)."""
    base = os.environ.get("WXM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "whisperx-matrix"
    )
    return Path(base)


def site_packages(env: Path) -> Path:
    """The site-packages folder of a POSIX venv (one python per venv, so one match)."""
    found = sorted(env.glob("lib/python3*/site-packages"))
    if not found:
        raise FileNotFoundError(f"no lib/python3*/site-packages under {env}")
    return found[0]


def memory_gib() -> int:
    """This machine's memory in GiB, rounded to nearest (one figure for reports and benchmarks); 0 if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            kib = int(next(ln for ln in fh if ln.startswith("MemTotal")).split()[1])
    except (OSError, StopIteration, ValueError):
        return 0
    return round(kib / 1024 / 1024)
