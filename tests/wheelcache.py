"""Real wheels for the audit tests, downloaded once into the shared cache and extracted member by member.

``wheel("torch==2.5.1")`` downloads with ``pip download --no-deps`` into ``cache_dir()/wheels`` (the shared
cache; other tests and benchmarks reuse it). ``extract(spec, patterns)`` unpacks only the members that match
(plus the dist-info RECORD, so files map back to their distribution) into ``cache_dir()/extracted/<wheel>``.
``site_from(tmp, {spec: patterns})`` hardlinks several extracted wheels into one site-packages-like tree, so
$ORIGIN RPATHs between packages (torch -> nvidia/*/lib) resolve as in a real venv.

Tests that use these helpers need the package index: mark them ``@pytest.mark.network``.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from whisperx_matrix.paths import cache_dir


def wheels_dir() -> Path:
    return cache_dir() / "wheels"


def _matches(spec: str, path: Path) -> bool:
    name, _, want = spec.partition("==")
    try:
        dist, version, _, tags = parse_wheel_filename(path.name)
    except Exception:
        return False
    if canonicalize_name(dist) != canonicalize_name(name):
        return False
    if not any(t.platform.endswith("x86_64") or t.platform == "any" for t in tags):
        return False
    if not want:
        return True
    if want.endswith(".*"):
        return str(version).startswith(want[:-2] + ".") or str(version) == want[:-2]
    return version == Version(want)


@functools.cache
def wheel(spec: str) -> Path:
    """The cached wheel for ``name==version`` (``.*`` allowed), downloading it on first use."""
    folder = wheels_dir()
    folder.mkdir(parents=True, exist_ok=True)
    found = sorted((p for p in folder.glob("*.whl") if _matches(spec, p)), key=lambda p: p.name)
    if not found:
        # --no-deps: the tests assemble exactly the trees they need.
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "-q",
                "-d",
                str(folder),
                spec,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        found = sorted((p for p in folder.glob("*.whl") if _matches(spec, p)), key=lambda p: p.name)
    if not found:
        raise FileNotFoundError(f"pip download {spec} left no matching wheel in {folder}")
    return found[-1]


@functools.cache
def _extract(spec: str, patterns: tuple[str, ...]) -> Path:
    whl = wheel(spec)
    out = cache_dir() / "extracted" / whl.name[: -len(".whl")]
    with zipfile.ZipFile(whl) as zf:
        for info in zf.infolist():
            name = info.filename
            wanted = name.endswith(".dist-info/RECORD") or any(fnmatch.fnmatchcase(name, p) for p in patterns)
            if not wanted or info.is_dir():
                continue
            target = out / name
            if target.is_file() and target.stat().st_size == info.file_size:
                continue  # extracted by an earlier run
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            with zf.open(info) as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            mode = (info.external_attr >> 16) & 0o777
            os.chmod(partial, mode or 0o644)
            os.replace(partial, target)  # atomic: a killed run leaves no half file under the real name
    return out


def extract(spec: str, patterns: Iterable[str] = ("*.so", "*.so.*")) -> Path:
    """A folder laid out like site-packages with the wheel's members matching ``patterns``."""
    return _extract(spec, tuple(patterns))


def site_from(dest: Path, wheels: Mapping[str, Iterable[str]]) -> Path:
    """Hardlink the extracted members of several wheels into ``dest`` (one site-packages-like tree)."""
    dest.mkdir(parents=True, exist_ok=True)
    for spec, patterns in wheels.items():
        src_root = extract(spec, patterns)
        for src in src_root.rglob("*"):
            if src.is_dir() or src.name.endswith(".part"):
                continue
            target = dest / src.relative_to(src_root)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, target)
            except OSError:
                shutil.copy2(src, target)
    return dest


def cuobjdump() -> Path | None:
    """cuobjdump from the nvidia-cuda-cuobjdump wheel, or on PATH; None when neither is usable."""
    found = shutil.which("cuobjdump")
    if found:
        return Path(found)
    try:
        root = extract("nvidia-cuda-cuobjdump", ("*/bin/cuobjdump",))
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    hits = sorted(root.rglob("cuobjdump"))
    return hits[0] if hits else None
