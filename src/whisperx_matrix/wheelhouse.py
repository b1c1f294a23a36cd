"""Offline wheelhouse: every locked distribution of the selected cells in one folder, hash-checked.

``python -m whisperx_matrix wheelhouse CELL... --dest DIR`` fills it where the index is reachable; then
``python -m whisperx_matrix build CELL --offline --wheelhouse DIR`` builds with no network at all.

uv has no ``pip download``, so pip fetches: ``--no-deps`` (the lock is complete) and ``--require-hashes``,
for the lock's target (``--python-version``, ``--platform``), never for the machine it runs on. Markers are
evaluated here against that target, because pip would evaluate them against its own interpreter.
``verify`` checks a folder against a lock before uv runs, so a missing file is named, not guessed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from . import lock as locks
from . import tools
from .errors import BuildError, NetworkError, ToolMissingError
from .matrix import Cell, Matrix

DIST_SUFFIXES = (".whl", ".tar.gz", ".zip")
# What uv (like pip) builds a setup.py-only sdist with when it declares no [build-system].
LEGACY_BUILD_REQUIRES = ("setuptools>=40.8.0",)


@dataclass(frozen=True)
class Pin:
    """One locked distribution: ``six==1.16.0`` and the sha256 digests the lock allows."""

    name: NormalizedName
    version: str
    hashes: frozenset[str]  # hex digests

    def spec(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class Target:
    """The interpreter and platform a lock was resolved for (its header's ``python`` and ``platform``)."""

    python: str  # "3.11"
    platform: str  # uv's form: "x86_64-manylinux_2_28"

    @property
    def pip_platform(self) -> str:
        """``x86_64-manylinux_2_28`` -> ``manylinux_2_28_x86_64`` (pip widens it to older manylinux tags)."""
        arch, _, rest = self.platform.partition("-")
        return f"{rest}_{arch}" if rest else self.platform

    @property
    def abi(self) -> str:
        return "cp" + self.python.replace(".", "")

    def marker_env(self) -> dict[str, str]:
        arch = self.platform.partition("-")[0]
        return {
            "python_version": self.python, "python_full_version": f"{self.python}.0", "sys_platform": "linux",
            "platform_system": "Linux", "os_name": "posix", "platform_machine": arch,
            "implementation_name": "cpython", "platform_python_implementation": "CPython",
        }


def read_lock(path: Path, target: Target | None = None) -> tuple[list[Pin], Target]:
    """The pins of a hashed lock that apply to its target (markers evaluated for the target)."""
    header = locks.read_header(path)
    inputs = header.inputs if header else {}
    target = target or Target(str(inputs.get("python") or "3.11"), str(inputs.get("platform") or "x86_64-manylinux_2_28"))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BuildError(f"cannot read lock {path}: {exc.strerror}", hint="regenerate it: nox -s lock") from None
    pins: list[Pin] = []
    for entry in _logical_lines(text):
        req_part, *hash_parts = entry.split("--hash=")
        try:
            req = Requirement(req_part.strip())
        except InvalidRequirement:
            continue  # an option line (--index-url ...) carries no distribution
        if req.marker is not None and not Marker(str(req.marker)).evaluate(target.marker_env()):
            continue
        exact = [s.version for s in req.specifier if s.operator == "=="]
        if not exact:
            continue
        hashes = frozenset(h.strip().split(":", 1)[1] for h in hash_parts if h.strip().startswith("sha256:"))
        pins.append(Pin(canonicalize_name(req.name), exact[0], hashes))
    return pins, target


def _logical_lines(text: str) -> Iterable[str]:
    """Lines with backslash continuations joined, comments dropped."""
    buf = ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            yield buf.strip()
        buf = ""
    if buf.strip():
        yield buf.strip()


def _dist_key(filename: str) -> tuple[NormalizedName, Version] | None:
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
            return name, version
        if filename.endswith((".tar.gz", ".zip")):
            return parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return None


def _index(folder: Path) -> dict[tuple[NormalizedName, Version], list[Path]]:
    found: dict[tuple[NormalizedName, Version], list[Path]] = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            key = _dist_key(path.name) if path.is_file() else None
            if key is not None:
                found.setdefault(key, []).append(path)
    return found


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def missing(pins: Iterable[Pin], folder: Path, *, check_hashes: bool = False) -> list[tuple[Pin, str]]:
    """Pins with no usable file in ``folder``, each with why (absent, or present with a hash not locked)."""
    have = _index(folder)
    out = []
    for pin in pins:
        files = have.get((pin.name, Version(pin.version)), [])
        if not files:
            out.append((pin, "no file for it"))
        elif check_hashes and pin.hashes and not any(sha256_file(f) in pin.hashes for f in files):
            out.append((pin, f"{files[0].name} has a sha256 the lock does not allow"))
    return out


def verify(lock_path: Path, folder: Path, *, check_hashes: bool = False) -> None:
    """BuildError naming the first locked distribution the wheelhouse lacks; None when it is complete.

    Names and versions only by default (uv checks every hash during the install anyway);
    ``check_hashes`` reads every file too.
    """
    pins, _ = read_lock(lock_path)
    gaps = missing(pins, folder, check_hashes=check_hashes)
    if not gaps:
        return
    pin, why = gaps[0]
    more = f"; {len(gaps) - 1} more missing: {', '.join(p.spec() for p, _ in gaps[1:4])}{', ...' if len(gaps) > 4 else ''}" if len(gaps) > 1 else ""
    raise BuildError(
        f"wheelhouse {folder} lacks {pin.spec()} ({why}; needed by {lock_path.name}){more}",
        hint=f"refill it where the index is reachable: python -m whisperx_matrix wheelhouse <cell> --dest {folder}",
    )


@dataclass(frozen=True)
class WheelhouseResult:
    dest: Path
    locks: tuple[str, ...]
    pins: int
    downloaded: int  # files fetched this run (the rest were there already)
    files: int
    bytes: int

    def line(self) -> str:
        return (f"wheelhouse {self.dest}: {self.files} files, {self.bytes / 1e6:.1f} MB, for {self.pins} locked "
                f"distributions of {', '.join(self.locks)} ({self.downloaded} fetched now)")


def _pip() -> list[str]:
    if importlib.util.find_spec("pip") is None:
        raise ToolMissingError("pip is not installed in this Python (uv has no `pip download`)",
                               hint=f"{sys.executable} -m ensurepip, or run this from nox (nox -s wheelhouse)")
    return [sys.executable, "-m", "pip"]


def _pip_download(args: list[str], what: str) -> None:
    proc = tools.run(_pip() + ["download", "--disable-pip-version-check", "--no-input", *args], env=tools.uv_env())
    if proc.ok:
        return
    text = (proc.stderr or proc.stdout).lower()
    if proc.is_network_failure() or "connection" in text or "name resolution" in text:
        raise NetworkError(f"pip could not reach the package index for {what}: {proc.last_error_line()}",
                           hint="run where the index is reachable; the wheelhouse keeps what it already has")
    raise BuildError(f"pip download failed for {what}: {proc.last_error_line()}",
                     hint="see pip's message; a hash mismatch means the lock and the index disagree (nox -s lock)")


def _sdist_build_requires(path: Path) -> tuple[str, ...]:
    """``[build-system].requires`` of an sdist, or the legacy setuptools default."""
    import tarfile
    import zipfile

    from .matrix import tomllib

    text = None
    try:
        if path.name.endswith(".tar.gz"):
            with tarfile.open(path) as tar:
                member = next((m for m in tar.getmembers() if m.name.count("/") == 1 and m.name.endswith("/pyproject.toml")), None)
                fh = tar.extractfile(member) if member else None
                text = fh.read().decode() if fh else None
        else:
            with zipfile.ZipFile(path) as zf:
                name = next((n for n in zf.namelist() if n.count("/") == 1 and n.endswith("/pyproject.toml")), None)
                text = zf.read(name).decode() if name else None
        requires = tomllib.loads(text).get("build-system", {}).get("requires") if text else None
    except (OSError, tarfile.TarError, zipfile.BadZipFile, ValueError, UnicodeDecodeError):
        requires = None
    return tuple(requires) if requires else LEGACY_BUILD_REQUIRES


def download(matrix: Matrix, cells: Iterable[Cell], dest: Path, *, progress: Callable[[str], None] | None = None) -> WheelhouseResult:
    """Fetch every locked distribution of ``cells`` into ``dest`` (kept between runs; only gaps are fetched),
    plus the build requirements of any sdist, so an offline uv can build it. Then check every hash."""
    dest.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _msg: None)
    by_target: dict[Target, dict[str, Pin]] = {}
    lock_ids = []
    for lock_id, group in locks.lock_groups(cells).items():
        path = locks.ensure_fresh(matrix, group[0])
        pins, target = read_lock(path)
        lock_ids.append(lock_id)
        bucket = by_target.setdefault(target, {})
        for pin in pins:
            old = bucket.get(pin.spec())
            bucket[pin.spec()] = Pin(pin.name, pin.version, pin.hashes | (old.hashes if old else frozenset()))
    before = {p.name for p in dest.iterdir()}
    total = 0
    for target, bucket in by_target.items():
        pins = sorted(bucket.values(), key=lambda p: p.spec())
        total += len(pins)
        todo = [p for p, _ in missing(pins, dest, check_hashes=True)]
        say(f"{len(pins) - len(todo)} of {len(pins)} distributions already in {dest}; fetching {len(todo)} "
            f"(python {target.python}, {target.pip_platform})")
        if todo:
            with tempfile.TemporaryDirectory(prefix="wxm-wheelhouse-") as tmp:
                req = Path(tmp) / "requirements.txt"
                req.write_text("".join(f"{p.spec()} " + " ".join(f"--hash=sha256:{h}" for h in sorted(p.hashes)) + "\n"
                                       for p in todo), encoding="utf-8")
                # --no-deps lets pip take an sdist where no wheel exists, even with --platform.
                _pip_download(["--no-deps", "--require-hashes", "--prefer-binary", "--dest", str(dest),
                               "--python-version", target.python, "--implementation", "cp", "--abi", target.abi,
                               "--platform", target.pip_platform, "-r", str(req)], f"{len(todo)} locked distributions")
        sdists = sorted({r for f in dest.iterdir() if f.name.endswith((".tar.gz", ".zip")) and _dist_key(f.name)
                         for r in _sdist_build_requires(f)})
        if sdists:
            say(f"fetching build requirements of sdists: {', '.join(sdists)}")
            _pip_download(["--only-binary=:all:", "--dest", str(dest), "--python-version", target.python,
                           "--implementation", "cp", "--abi", target.abi, "--platform", target.pip_platform,
                           *sdists], "sdist build requirements")
        gaps = missing(pins, dest, check_hashes=True)
        if gaps:
            pin, why = gaps[0]
            raise BuildError(f"wheelhouse {dest} lacks {pin.spec()} after download ({why})",
                             hint="the index may not serve a file for this platform; see pip's output")
    files = [p for p in dest.iterdir() if p.is_file()]
    return WheelhouseResult(dest, tuple(lock_ids), total, len({p.name for p in files} - before), len(files),
                            sum(p.stat().st_size for p in files))


def cmd_wheelhouse(args: argparse.Namespace) -> int:
    from . import matrix as matrices

    m = matrices.load()
    cells = m.select(args.selectors)
    dest = Path(args.dest).resolve()
    if args.verify:
        for lock_id, group in locks.lock_groups(cells).items():
            verify(locks.ensure_fresh(m, group[0]), dest, check_hashes=True)
            print(f"{lock_id}: every locked distribution is in {dest}, hashes match")
        return 0
    result = download(m, cells, dest, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(result.line())
    print(f"build with no network: python -m whisperx_matrix build {' '.join(c.id for c in cells)} "
          f"--offline --wheelhouse {dest}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("wheelhouse", help="download every locked wheel of the cells into a folder, for offline builds")
    p.add_argument("selectors", nargs="+", metavar="CELL", help="cell ids, aliases or globs")
    p.add_argument("--dest", required=True, metavar="DIR", help="the wheelhouse folder (created; reused between runs)")
    p.add_argument("--verify", action="store_true", help="only check DIR against the locks (names and hashes)")
    p.set_defaults(func=cmd_wheelhouse)
