"""Real wheels for the audit tests, from uv's cache: no second copy of what the cells already downloaded.

``installed("torch==2.5.1")`` installs one wheel with ``uv pip install --no-deps --target`` under
``cache_dir()/sites``; uv hardlinks from its cache, so a wheel a cell uses costs nothing more on disk.
``site_from(tmp, {spec: patterns})`` hardlinks the matching members of several wheels into one
site-packages-like tree, so $ORIGIN RPATHs between packages (torch -> nvidia/*/lib) resolve as in a real venv.
``wheel(spec)`` is for the few tests that must serve a wheel file itself (a stand-in index): those are downloaded
with ``pip download --no-deps`` into ``cache_dir()/wheels``.

Tests that use these helpers need the package index: mark them ``@pytest.mark.network``.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from whisperx_matrix.audit import find_cuobjdump
from whisperx_matrix.errors import NetworkError
from whisperx_matrix.patches.releases import wheel_for
from whisperx_matrix.paths import cache_dir
from whisperx_matrix.tools import run, uv_bin, uv_env


@functools.cache
def wheel(spec: str) -> Path:
    """The cached wheel file for ``name==version``, downloaded on first use (``cache_dir()/wheels``, through
    the package's own ``wheel_for``: pip download --no-deps, the wheel for this Python and platform)."""
    name, sep, version = spec.partition("==")
    if not sep or "*" in version:
        raise ValueError(f"wheel() takes an exact name==version, not {spec!r}")
    return wheel_for(version, package=name)


def _site_name(spec: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in spec.replace("==", "-"))


@functools.cache
def installed(spec: str, platform: str | None = None) -> Path:
    """A site-packages-like folder holding one wheel (``name==version``, ``.*`` allowed), installed by uv with
    --no-deps --target from uv's own cache: hardlinks, so a wheel the cells already use costs no second copy.
    Kept under ``cache_dir()/sites`` between runs. Each process installs into its own temporary folder and
    renames it into place, so an interrupted install is never mistaken for a finished one, and two pytest
    workers wanting the same wheel do not write into each other's files (the old extractor's ``.part`` files
    did: a FileNotFoundError under ``-n 2``). ``platform``: another machine's wheel, e.g. ``aarch64-manylinux_2_28``."""
    root = cache_dir() / "sites"
    done = root / (_site_name(spec) + (f"-{platform}" if platform else ""))
    if (done / ".complete").is_file():
        return done
    root.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=done.name + ".", suffix=".part", dir=root))
    try:
        args = [uv_bin(), "pip", "install", "--quiet", "--no-deps", "--link-mode", "hardlink"]
        if platform:  # another machine's wheel (``aarch64-manylinux_2_28``), for this Python's version
            args += ["--python-platform", platform, "--python-version", f"{sys.version_info[0]}.{sys.version_info[1]}"]
        proc = run([*args, "--python", sys.executable, "--target", str(partial), spec], env=uv_env())
        if not proc.ok:
            raise NetworkError(f"uv pip install {spec} failed: {proc.last_error_line()}")
        (partial / ".complete").write_text(spec + "\n")
        try:
            os.replace(partial, done)  # only finished trees are ever renamed into place
        except OSError:
            if not (done / ".complete").is_file():  # not another worker finishing first: a real failure
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return done


def site_from(dest: Path, wheels: Mapping[str, Iterable[str]]) -> Path:
    """Hardlink the members of several wheels matching their patterns (plus each dist-info's METADATA and RECORD,
    which map files back to their distribution) into ``dest``: one site-packages-like tree."""
    dest.mkdir(parents=True, exist_ok=True)
    for spec, patterns in wheels.items():
        src_root = installed(spec)
        wanted = tuple(patterns)
        for src in src_root.rglob("*"):
            rel = src.relative_to(src_root).as_posix()
            meta = rel.endswith((".dist-info/RECORD", ".dist-info/METADATA"))
            if src.is_dir() or not (meta or any(fnmatch.fnmatchcase(rel, p) for p in wanted)):
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, target)
            except OSError:
                shutil.copy2(src, target)
    return dest


def cuobjdump() -> Path | None:
    """cuobjdump as the audit finds it (``find_cuobjdump``: on PATH, or from an nvidia-cuda-cuobjdump wheel),
    installing that wheel from uv's cache on first use; None when neither is usable (no index here)."""
    found = find_cuobjdump()
    if found is None:
        try:
            found = find_cuobjdump(installed("nvidia-cuda-cuobjdump"))
        except NetworkError:
            return None
    return found
