"""Offline wheelhouse: every locked distribution of the selected cells in one folder, hash-checked.

``python -m whisperx_matrix wheelhouse CELL... --dest DIR`` fills it where the index is reachable; then
``python -m whisperx_matrix build CELL --offline --wheelhouse DIR`` builds with no network at all.

uv has no ``pip download``, so pip fetches: ``--no-deps`` (the lock is complete) and ``--require-hashes``,
for the lock's target, never for the machine it runs on. pip matches ``--platform`` and ``--abi`` exactly (it
widens only the legacy manylinux2014/2010 names), so every tag the target accepts is passed: each older
manylinux (``manylinux_2_28`` down to ``manylinux_2_5`` and the legacy aliases) and the ABIs ``cpXY``, ``abi3``,
``none``. Wheels only (``--only-binary=:all:``): a pin with no wheel for the target (docopt has only an sdist)
is named and then fetched as an sdist on its own, so pip never falls back to building an sdist silently (hf-xet's
needs Rust's crate index). When pip fails, its output is read for the distribution and pip's own reason.
Markers are evaluated here against the target, because pip would evaluate them against its own interpreter.
``verify`` checks a folder against a lock before uv runs, so a missing file is named, not guessed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import re
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

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
from . import tools, ui
from .errors import BuildError, NetworkError, ToolMissingError
from .lock import Pin
from .matrix import Cell, Matrix

DIST_SUFFIXES = (".whl", ".tar.gz", ".zip")
# What uv (like pip) builds a setup.py-only sdist with when it declares no [build-system].
LEGACY_BUILD_REQUIRES = ("setuptools>=40.8.0",)


@dataclass(frozen=True)
class Target:
    """The interpreter and platform a lock was resolved for (its header's ``python`` and ``platform``)."""

    python: str  # "3.11"
    platform: str  # uv's form: "x86_64-manylinux_2_28"

    @property
    def pip_platform(self) -> str:
        """The newest platform tag the target accepts: ``x86_64-manylinux_2_28`` -> ``manylinux_2_28_x86_64``."""
        return platform_tags(self.platform)[0]

    @property
    def platforms(self) -> tuple[str, ...]:
        return platform_tags(self.platform)

    @property
    def abi(self) -> str:
        return "cp" + self.python.replace(".", "")

    @property
    def abis(self) -> tuple[str, ...]:
        """``cp311`` (extension modules for this Python), ``abi3`` (stable ABI, e.g. hf-xet's cp38-abi3), ``none``."""
        return (self.abi, "abi3", "none")

    def pip_args(self) -> list[str]:
        """pip's target options: one ``--platform`` per accepted tag, one ``--abi`` per ABI."""
        args = ["--implementation", "cp", "--python-version", self.python]
        for tag in self.platforms:
            args += ["--platform", tag]
        for abi in self.abis:
            args += ["--abi", abi]
        return args

    def describe(self) -> str:
        tags = self.platforms
        return f"python {self.python}, {tags[0]} down to {tags[-1]} ({len(tags)} tags), abi {'/'.join(self.abis)}"

    def marker_env(self) -> dict[str, str]:
        arch = self.platform.partition("-")[0]
        return {
            "python_version": self.python,
            "python_full_version": f"{self.python}.0",
            "sys_platform": "linux",
            "platform_system": "Linux",
            "os_name": "posix",
            "platform_machine": arch,
            "implementation_name": "cpython",
            "platform_python_implementation": "CPython",
        }


# PEP 600: manylinux_2_17 is manylinux2014, manylinux_2_12 is manylinux2010, manylinux_2_5 is manylinux1.
_LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
_LEGACY_GLIBC = {name: minor for minor, name in _LEGACY_MANYLINUX.items()}
# The oldest glibc a manylinux wheel can name: 2.5 on x86 (manylinux1); 2.17 elsewhere (manylinux2014 added
# those architectures), as packaging.tags counts them.
_OLDEST_GLIBC_MINOR = {"x86_64": 5, "i686": 5}


def platform_tags(platform: str) -> tuple[str, ...]:
    """Every wheel platform tag a target of uv's ``--python-platform`` form accepts, newest first.

    ``x86_64-manylinux_2_28`` -> ``manylinux_2_28_x86_64``, ``manylinux_2_27_x86_64``, ... ``manylinux_2_17_x86_64``,
    ``manylinux2014_x86_64``, ... ``manylinux_2_12_x86_64``, ``manylinux2010_x86_64``, ... ``manylinux1_x86_64``:
    a machine with glibc 2.28 runs any wheel built for an older glibc. Never ``linux_x86_64`` (a wheel built for
    one machine, not portable). Only manylinux targets are known; anything else is a BuildError.
    """
    arch, _, rest = platform.partition("-")
    match = re.fullmatch(r"manylinux_2_(\d+)", rest)
    newest = int(match[1]) if match else _LEGACY_GLIBC.get(rest)
    oldest = _OLDEST_GLIBC_MINOR.get(arch, 17)
    if not re.fullmatch(r"[a-z0-9_]+", arch) or newest is None or newest < oldest:
        raise BuildError(
            f"wheelhouse: cannot name the wheel tags of platform {platform!r}",
            hint="the wheelhouse knows manylinux targets: ARCH-manylinux_2_NN, e.g. x86_64-manylinux_2_28",
        )
    tags = []
    for minor in range(newest, oldest - 1, -1):
        tags.append(f"manylinux_2_{minor}_{arch}")
        alias = _LEGACY_MANYLINUX.get(minor)
        if alias and minor >= oldest:
            tags.append(f"{alias}_{arch}")
    return tuple(tags)


def read_lock(path: Path, target: Target | None = None) -> tuple[list[Pin], Target]:
    """The pins of a hashed lock that apply to its target (markers evaluated for the target)."""
    header = locks.read_header(path)
    inputs = header.inputs if header else {}
    target = target or Target(
        str(inputs.get("python") or "3.11"), str(inputs.get("platform") or "x86_64-manylinux_2_28")
    )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BuildError(f"cannot read lock {path}: {exc.strerror}", hint="regenerate it: nox -s lock") from None
    return locks.read_pins(text, target.marker_env()), target


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
    more = (
        f"; {len(gaps) - 1} more missing: {', '.join(p.spec() for p, _ in gaps[1:4])}{', ...' if len(gaps) > 4 else ''}"
        if len(gaps) > 1
        else ""
    )
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
        return (
            f"wheelhouse {self.dest}: {self.files} files, {self.bytes / 1e6:.1f} MB, for {self.pins} locked "
            f"distributions of {', '.join(self.locks)} ({self.downloaded} fetched now)"
        )


def _pip() -> list[str]:
    if importlib.util.find_spec("pip") is None:
        raise ToolMissingError(
            "pip is not installed in this Python (uv has no `pip download`)",
            hint=f"{sys.executable} -m ensurepip, or run this from nox (nox -s wheelhouse)",
        )
    return [sys.executable, "-m", "pip"]


@dataclass(frozen=True)
class PipFailure:
    """One distribution pip gave up on, read from its output."""

    what: str  # "hf-xet==1.8.0" as pip names it ("" when it names none)
    kind: str  # no-match | hash | build | network | other
    reason: str  # pip's own line, e.g. "Could not find a version that satisfies the requirement ..."

    @property
    def name(self) -> NormalizedName | None:
        head = re.split(r"[=<>!~ ;\[(]", self.what, maxsplit=1)[0]
        return canonicalize_name(head) if head else None


_NETWORK_WORDS = (
    "newconnectionerror",
    "nameresolutionerror",
    "failed to establish a new connection",
    "temporary failure in name resolution",
    "connecttimeouterror",
    "max retries exceeded",
    "connection refused",
    "network is unreachable",
    "proxyerror",
)


def _network_reason(line: str) -> str:
    """pip's retry warning cut to its cause: "Failed to establish a new connection: [Errno 111] Connection refused"."""
    cause = re.search(
        r"(Failed to establish a new connection: [^\"')]+|Failed to resolve [^\"')]+|"
        r"Temporary failure in name resolution|Max retries exceeded[^\"')]*|Connection refused|"
        r"timed out)",
        line,
    )
    where = re.search(r"\)'?: (/\S+)\s*$", line)
    text = cause[1] if cause else line.removeprefix("WARNING: ").removeprefix("ERROR: ")
    return f"the index is unreachable: {text.strip()}" + (f" (fetching {where[1]})" if where else "")


def parse_pip_failure(output: str) -> list[PipFailure]:
    """What a failed ``pip download`` gave up on, each with pip's own reason line (stdout and stderr together).

    Read: "Could not find a version that satisfies the requirement X" / "No matching distribution found for X"
    (no file for the target tags), the hash-mismatch block, metadata-generation-failed (an sdist pip tried to
    prepare; the reason is the first error line of the build's output), retries after connection errors (the
    index unreachable: every "no match" is then the network's doing), and any other "ERROR:" line.
    """
    lines = output.splitlines()
    out: list[PipFailure] = []
    seen: set[tuple[str, str]] = set()

    def add(what: str, kind: str, reason: str) -> None:
        if (what, kind) not in seen:
            seen.add((what, kind))
            out.append(PipFailure(what, kind, reason.strip()[:300]))

    network = next(
        (
            _network_reason(ln)
            for ln in lines
            if ln.startswith(("WARNING: Retrying", "ERROR: Could not install"))
            and any(w in ln.lower() for w in _NETWORK_WORDS)
        ),
        None,
    )
    current = ""
    in_hash_block = False
    hash_what = hash_file = hash_expected = ""
    in_build_output = False
    build_error = ""
    for i, raw in enumerate(lines):
        line = raw.strip()
        if m := re.match(r"Collecting (\S+)", line):
            current = m[1]
            continue
        if re.match(r"╰─> \[\d+ lines? of output\]", line):
            in_build_output = True
            continue
        if in_build_output:
            if line == "[end of output]":
                in_build_output = False
            elif not build_error and re.match(r"(error\b|\w+Error\b)", line, re.IGNORECASE):
                build_error = line  # "error: failed to get `pyo3` ..." (not "warning: spurious network error")
            continue
        if m := re.match(r"ERROR: Could not find a version that satisfies the requirement (\S+)", line):
            add(m[1], "network" if network else "no-match", network or line.removeprefix("ERROR: "))
        elif m := re.match(r"ERROR: No matching distribution found for (\S+)", line):
            if not any(f.what == m[1] for f in out):
                add(m[1], "network" if network else "no-match", network or line.removeprefix("ERROR: "))
        elif "DO NOT MATCH THE HASHES" in line:
            in_hash_block = True
        elif in_hash_block and (m := re.match(r"(\S+==\S+) from (\S+)", line)):
            hash_what, hash_file, hash_expected = m[1], m[2].rsplit("/", 1)[-1], ""
        elif in_hash_block and (m := re.match(r"Expected sha256 (\w+)", line)):
            hash_expected = m[1]
        elif in_hash_block and (m := re.match(r"Got\s+(\w+)", line)):
            add(
                hash_what or current,
                "hash",
                f"{hash_file} has sha256 {m[1][:16]}..., the lock allows {hash_expected[:16] or '(none)'}...",
            )
        elif line.startswith("error: metadata-generation-failed") or line.startswith("error: subprocess-exited"):
            if line.startswith("error: metadata-generation-failed"):
                nxt = next((ln.strip() for ln in lines[i + 1 :] if ln.strip().startswith("╰─>")), "")
                what = nxt.removeprefix("╰─>").strip() or current
                if what.startswith("from "):  # "from https://.../hf_xet-1.8.0.tar.gz (from -r ...)"
                    what = current
                add(what, "build", "metadata-generation-failed" + (f": {build_error}" if build_error else ""))
        elif line.startswith("ERROR: "):
            add(current, "other", line.removeprefix("ERROR: "))
    if not out and network:
        add(current, "network", network)
    if not out:
        last = next((ln.strip() for ln in reversed(lines) if ln.strip()), "no output")
        add(current, "other", last)
    return out


class PipDownloadError(BuildError):
    """pip download failed; ``failures`` holds what its output named."""

    def __init__(self, message: str, *, hint: str | None = None, failures: list[PipFailure] | None = None) -> None:
        super().__init__(message, hint=hint)
        self.failures = failures or []


def _pip_download(args: list[str], what: str, *, target: Target | None = None, log: Path | None = None) -> None:
    """Run ``pip download``; on failure, one line naming what failed and pip's reason (NetworkError when the
    index is unreachable). ``log``: where pip's full output is written when it fails."""
    proc = tools.run(
        _pip() + ["download", "--disable-pip-version-check", "--no-input", "--progress-bar", "off", *args],
        env=tools.uv_env(),
    )
    if proc.ok:
        return
    output = proc.stdout + "\n" + proc.stderr
    failures = parse_pip_failure(output)
    kept = ""
    if log is not None:
        try:
            log.write_text(output, encoding="utf-8")
            kept = f"; pip's full output: {log}"
        except OSError:
            pass
    first = failures[0]
    named = ", ".join(f.what for f in failures if f.what) or what
    line = f"pip download failed for {named} ({what}): {first.reason}"
    if first.kind == "network" or (first.kind == "other" and proc.is_network_failure()):
        raise NetworkError(
            f"pip could not reach the package index for {what}: {first.reason}",
            hint="run where the index is reachable; the wheelhouse keeps what it already has" + kept,
        )
    hints = {
        "no-match": f"no file of it fits the target ({target.describe()}); is that version on the index for this "
        "platform? (nox -s lock re-resolves the lock)"
        if target
        else "no file of it fits the target",
        "hash": "the lock and the index disagree about this file: re-lock (nox -s lock) or check the index",
        "build": "no wheel of it fits the target, so pip tried its sdist and could not prepare it (a toolchain or a "
        "download the build needs); a wheel for the target is needed",
    }
    raise PipDownloadError(line, hint=hints.get(first.kind, "see pip's message") + kept, failures=failures)


def _requirements(pins: Iterable[Pin]) -> str:
    # Fewest files first: a pin with one hash is often an sdist-only release (docopt), and pip stops at the first
    # pin with no wheel after fetching (and then dropping) every file before it.
    ordered = sorted(pins, key=lambda p: (len(p.hashes), p.spec()))
    return "".join(f"{p.spec()} " + " ".join(f"--hash=sha256:{h}" for h in sorted(p.hashes)) + "\n" for p in ordered)


def fetch(
    pins: Iterable[Pin], dest: Path, target: Target, *, say: Callable[[str], None] = lambda _m: None
) -> list[Pin]:
    """Download ``pins`` into ``dest`` for ``target``: wheels only, then, for the pins pip finds no wheel of, their
    sdists on their own (named through ``say``). Returns those sdist-only pins. Raises on any other failure."""
    todo = {p.name: p for p in pins}
    sdist_only: list[Pin] = []
    log = dest / ".pip-download.log"
    common = ["--no-deps", "--require-hashes", "--dest", str(dest), *target.pip_args()]
    with tempfile.TemporaryDirectory(prefix="wxm-wheelhouse-") as tmp:
        req = Path(tmp) / "requirements.txt"
        for _ in range(len(todo) + 1):
            if not todo:
                break
            req.write_text(_requirements(todo.values()), encoding="utf-8")
            try:
                _pip_download(
                    ["--only-binary=:all:", *common, "-r", str(req)],
                    f"{len(todo)} locked distributions",
                    target=target,
                    log=log,
                )
                todo.clear()
            except PipDownloadError as exc:
                no_wheel = [f for f in exc.failures if f.kind == "no-match" and f.name in todo]
                if not no_wheel:
                    raise
                for f in no_wheel:
                    pin = todo.pop(f.name)  # type: ignore[arg-type]
                    sdist_only.append(pin)
                    say(f"no wheel of {pin.spec()} fits the target: fetching its sdist on its own")
                # what pip fetched before it stopped was not saved: keep only what is still missing
                todo = {p.name: p for p, _ in missing(todo.values(), dest, check_hashes=True)}
        if sdist_only:
            req.write_text(_requirements(sdist_only), encoding="utf-8")
            names = ",".join(sorted(p.name for p in sdist_only))
            # --no-binary for these names only: the isolated build env that prepares their metadata still
            # takes wheels (setuptools).
            _pip_download(
                [f"--no-binary={names}", *common, "-r", str(req)],
                f"the sdists of {len(sdist_only)} locked distributions with no wheel for the target",
                target=target,
                log=log,
            )
    log.unlink(missing_ok=True)
    return sdist_only


def _sdist_build_requires(path: Path) -> tuple[str, ...]:
    """``[build-system].requires`` of an sdist, or the legacy setuptools default."""
    import tarfile
    import zipfile

    from .tomlfile import tomllib

    text = None
    try:
        if path.name.endswith(".tar.gz"):
            with tarfile.open(path) as tar:
                member = next(
                    (m for m in tar.getmembers() if m.name.count("/") == 1 and m.name.endswith("/pyproject.toml")), None
                )
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


def download(
    matrix: Matrix, cells: Iterable[Cell], dest: Path, *, progress: Callable[[str], None] | None = None
) -> WheelhouseResult:
    """Fetch every locked distribution of ``cells`` into ``dest`` (kept between runs; only gaps are fetched),
    plus the build requirements of any sdist, so an offline uv can build it. Then check every hash."""
    dest.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _msg: None)
    # One pip call per lock: pip resolves a request file as one environment, so two cells that pin different
    # versions of a project (whisperx 3.8.6 and 3.7.6) cannot share one.
    per_lock: list[tuple[Target, list[Pin]]] = []
    lock_ids = []
    for lock_id, group in locks.lock_groups(cells).items():
        pins, target = read_lock(locks.ensure_fresh(matrix, group[0]))
        lock_ids.append(lock_id)
        per_lock.append((target, sorted(pins, key=lambda p: p.spec())))
    before = {p.name for p in dest.iterdir()}
    total = len({p.spec() for _, pins in per_lock for p in pins})
    with ui.progress(len(per_lock), "wheelhouse") as bar:  # one pip call per lock: the bar counts locks
        for lock_id, (target, pins) in zip(lock_ids, per_lock, strict=True):
            bar.note(lock_id)
            todo = [p for p, _ in missing(pins, dest, check_hashes=True)]
            say(
                f"{len(pins) - len(todo)} of {len(pins)} distributions already in {dest}; fetching {len(todo)} "
                f"({target.describe()})"
            )
            if todo:
                fetch(todo, dest, target, say=say)
            sdists = sorted(
                {
                    r
                    for f in dest.iterdir()
                    if f.name.endswith((".tar.gz", ".zip")) and _dist_key(f.name)
                    for r in _sdist_build_requires(f)
                }
            )
            if sdists:
                say(f"fetching build requirements of sdists: {', '.join(sdists)}")
                _pip_download(
                    ["--only-binary=:all:", "--dest", str(dest), *target.pip_args(), *sdists],
                    "sdist build requirements",
                    target=target,
                    log=dest / ".pip-download.log",
                )
            gaps = missing(pins, dest, check_hashes=True)
            if gaps:
                pin, why = gaps[0]
                raise BuildError(
                    f"wheelhouse {dest} lacks {pin.spec()} after download ({why})",
                    hint="the index may not serve a file for this platform; see pip's output",
                )
            bar.advance()
    files = [p for p in dest.iterdir() if p.is_file() and _dist_key(p.name)]
    return WheelhouseResult(
        dest,
        tuple(lock_ids),
        total,
        len({p.name for p in files} - before),
        len(files),
        sum(p.stat().st_size for p in files),
    )


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
    print(
        f"build with no network: python -m whisperx_matrix build {' '.join(c.id for c in cells)} "
        f"--offline --wheelhouse {dest}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("wheelhouse", help="download every locked wheel of the cells into a folder, for offline builds")
    p.add_argument("selectors", nargs="+", metavar="CELL", help="cell ids, aliases or globs")
    p.add_argument("--dest", required=True, metavar="DIR", help="the wheelhouse folder (created; reused between runs)")
    p.add_argument("--verify", action="store_true", help="only check DIR against the locks (names and hashes)")
    p.set_defaults(func=cmd_wheelhouse)
