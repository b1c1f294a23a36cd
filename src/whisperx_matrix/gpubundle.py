"""Everything a GPU run on a machine with no network needs, in parts that a device call can carry (issue #22).

``nox -s gpu-bundle -- CELL... [--jobs setup,cell,...] [--python 3.12] [--dest DIR] [--patch] [--part-mib 52]``
fills a staging folder (DEST/stage, kept between runs, so a second run fetches only what is missing) and tars
what the jobs need into DEST/p.000, p.001, ... with DEST/SHA256SUMS; scripts/gpu_front_door.sh checks and
unpacks them there (docs/gpu-runner.md). The tar holds:

- ``wh/``: every file of the cells' locks for their target's tags (wheelhouse.download); the runner tools of the
  hashed lock constraints/runner-tools/pyXY.txt (nox, uv, imageio-ffmpeg, hatchling, editables, PyYAML, rich and
  the package's own dependencies with its [report] extra); .github/ci-requirements.txt's wheels (the report job);
- ``runner-tools.txt``: that lock, which the front door installs with ``--require-hashes`` from ``wh/``;
- ``wxm-cache/audio/``: the speech the jobs need, made here with espeak-ng (the machine has none): the self-test
  sentence for any job that builds a cell, the 20-minute dialogue for the benchmark jobs;
- ``bin/patch`` with ``--patch``: this machine's GNU patch, for a machine without one.

pip reads this machine's pip configuration (here /etc/xdg/pip caps torch); every pip call made here runs with
``PIP_CONSTRAINT=/dev/null``: the locks are the constraints.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from . import lock as locks
from . import tools, ui, wheelhouse
from .errors import BuildError, FatalError, LockError, NetworkError, ToolMissingError, did_you_mean
from .fsutil import atomic_write_text
from .matrix import Cell, Matrix
from .wheelhouse import Target

# What each front-door job (scripts/gpu_front_door.sh) needs in the bundle besides the runner tools.
# cells: the named cells' wheels; bench_cell: the benchmark cell's; selftest: the self-test speech (every cell
# build runs it); dialogue: the 20-minute dialogue; ci: .github/ci-requirements.txt's wheels.
JOBS: dict[str, frozenset[str]] = {
    "setup": frozenset(),
    "cell": frozenset({"cells", "selftest"}),
    "report": frozenset({"ci"}),
    "bench": frozenset({"bench_cell", "selftest", "dialogue"}),
    "bench-large-v3": frozenset({"bench_cell", "selftest", "dialogue"}),
    "pipeline": frozenset({"bench_cell", "selftest", "dialogue"}),
}
BENCH_CELL = "stable-cu128-py312"  # the cell the front door's bench and pipeline jobs build (the workflow's BENCH_CELL)
DIALOGUE_MINUTES = 20.0
DEFAULT_PLATFORM = "x86_64-manylinux_2_28"
TOOLS_DIR = Path("constraints") / "runner-tools"
TOOLS_IN = TOOLS_DIR / "runner-tools.in"
CI_LOCK = Path(".github") / "ci-requirements.txt"
PART_PREFIX = "p."
SUMS = "SHA256SUMS"
CALL_LIMIT_MIB = 64  # what one device call carries, the checkout's own files included


# ---------------------------------------------------------------- input


def parse_jobs(text: str) -> list[str]:
    """``cell,report`` -> the jobs, in the given order; an unknown one is a FatalError naming the known ones."""
    jobs = [j.strip() for j in text.split(",") if j.strip()]
    for job in jobs:
        if job not in JOBS:
            raise FatalError(
                f"unknown job {job!r}{did_you_mean(job, JOBS)}",
                hint=f"--jobs takes a comma-separated list of: {', '.join(JOBS)}",
            )
    if not jobs:
        raise FatalError("--jobs names no job", hint=f"--jobs takes a comma-separated list of: {', '.join(JOBS)}")
    return jobs


def needs(jobs: Iterable[str]) -> frozenset[str]:
    return frozenset(n for j in jobs for n in JOBS[j])


def choose_cells(matrix: Matrix, selectors: Sequence[str], jobs: Sequence[str], python: str) -> list[Cell]:
    """The cells whose wheels go in: the selected ones, plus the benchmark cell where a benchmark job is asked.
    Each must be locked for ``python`` (the machine runs that one: uv there cannot download another)."""
    cells = matrix.select(selectors) if selectors else []
    if "bench_cell" in needs(jobs) and not any(c.id == BENCH_CELL for c in cells):
        cells.append(matrix.get(BENCH_CELL))
    if "cell" in jobs and not selectors:
        raise FatalError("the cell job needs cells", hint="name them: nox -s gpu-bundle -- stable-cu128-py312 ...")
    for cell in cells:
        if cell.python != python:
            variant = f"{cell.id}-py{python.replace('.', '')}"
            known = any(c.id == variant for c in matrix.cells)
            raise FatalError(
                f"cell {cell.id} runs Python {cell.python}, the target machine Python {python}",
                hint=f"take its variant {variant}"
                if known
                else f"take a cell for Python {python}, or --python {cell.python}",
            )
    return cells


# ---------------------------------------------------------------- the runner tools' lock


def tools_lock_path(root: Path, python: str) -> Path:
    return root / TOOLS_DIR / f"py{python.replace('.', '')}.txt"


def tools_inputs(root: Path, python: str, platform: str) -> dict[str, object]:
    try:
        digest = locks.sha256_bytes((root / TOOLS_IN).read_bytes())
    except OSError as exc:
        raise LockError(f"cannot read {TOOLS_IN}: {exc.strerror}", hint="restore it from git") from None
    return {"in": digest, "python": python, "platform": platform, "format": locks.LOCK_FORMAT}


def relock_command(python: str) -> str:
    return f"nox -s gpu-bundle -- --relock --python {python}"


def tools_lock_problem(root: Path, python: str, platform: str = DEFAULT_PLATFORM) -> str | None:
    """None when the runner tools' lock for ``python`` matches its .in; else one line saying what is wrong."""
    path = tools_lock_path(root, python)
    rel = path.relative_to(root)
    header = locks.read_header(path)
    if header is None:
        return f"{rel} is missing" if not path.exists() else f"{rel} has no whisperx-matrix header"
    if header.input_hash != locks.input_hash(tools_inputs(root, python, platform)):
        changed = [k for k, v in tools_inputs(root, python, platform).items() if header.inputs.get(k) != v]
        what = {"in": f"{TOOLS_IN.name} changed"}.get(changed[0], f"its {changed[0]} changed") if changed else ""
        return f"{rel} is stale: {what or 'its inputs changed'} since it was locked"
    return None


def package_requirements(root: Path) -> list[str]:
    """The package's own dependencies and its [report] extra, from pyproject.toml (what nox installs offline)."""
    from .tomlfile import tomllib

    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [*project.get("dependencies", []), *project.get("optional-dependencies", {}).get("report", [])]


def requirement_names(lines: Iterable[str]) -> set[str]:
    names: set[str] = set()
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            names.add(canonicalize_name(Requirement(line).name))
        except InvalidRequirement:
            continue
    return names


def unlisted_requirements(root: Path) -> list[str]:
    """The package's requirements that the runner tools' .in does not name (the tools lock would lack them)."""
    listed = requirement_names((root / TOOLS_IN).read_text(encoding="utf-8").splitlines())
    return sorted(n for n in requirement_names(package_requirements(root)) if n not in listed)


def ensure_tools_lock(root: Path, python: str, platform: str = DEFAULT_PLATFORM) -> Path:
    """The runner tools' lock for ``python``, or a LockError in one line with the way out."""
    gaps = unlisted_requirements(root)
    if gaps:
        raise LockError(
            f"{TOOLS_IN} lacks {', '.join(gaps)}, which pyproject.toml requires",
            hint=f"add them to {TOOLS_IN}, then {relock_command(python)}",
        )
    problem = tools_lock_problem(root, python, platform)
    if problem:
        raise LockError(problem, hint=f"{relock_command(python)} (needs the index), then commit it")
    return tools_lock_path(root, python)


def relock_tools(root: Path, python: str, platform: str = DEFAULT_PLATFORM) -> Path:
    """``uv pip compile --generate-hashes`` of the .in for ``python`` and ``platform``, under a header with the
    hash of its inputs (so a changed .in reads as stale)."""
    path = tools_lock_path(root, python)
    inputs = tools_inputs(root, python, platform)
    with tempfile.TemporaryDirectory(prefix="wxm-runner-tools-") as tmp:
        out = Path(tmp) / path.name
        proc = tools.run(
            [
                tools.uv_bin(),
                "pip",
                "compile",
                "--quiet",
                "--generate-hashes",
                "--python-version",
                python,
                "--python-platform",
                platform,
                "--custom-compile-command",
                relock_command(python),
                str(root / TOOLS_IN),
                "-o",
                str(out),
            ],
            cwd=root,
            env=tools.uv_env(),
        )
        if not proc.ok:
            if proc.is_network_failure():
                raise NetworkError(
                    f"uv could not reach the package index to lock the runner tools: {proc.last_error_line()}",
                    hint="run --relock where the index is reachable",
                )
            raise LockError(f"uv pip compile of {TOOLS_IN} failed: {proc.last_error_line()}", hint=f"check {TOOLS_IN}")
        body = out.read_text(encoding="utf-8")
    header = (
        "# cell: runner-tools\n"
        f"# input-hash: {locks.input_hash(inputs)}\n"
        f"# inputs: {json.dumps(inputs, sort_keys=True)}\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, header + body)
    return path


def ci_target(root: Path) -> Target:
    """The target .github/ci-requirements.txt was compiled for, read from uv's command line in its header."""
    head = (root / CI_LOCK).read_text(encoding="utf-8").splitlines()[:5]
    words = " ".join(head).split()

    def after(flag: str, default: str) -> str:
        return words[words.index(flag) + 1] if flag in words[:-1] else default

    return Target(after("--python-version", "3.12"), after("--python-platform", DEFAULT_PLATFORM))


# ---------------------------------------------------------------- parts


@dataclass(frozen=True)
class Part:
    path: Path
    size: int
    sha256: str


class PartWriter:
    """A write-only stream cut into files of ``part_bytes`` (``p.000``, ``p.001``, ...), each hashed as written."""

    def __init__(self, dest: Path, part_bytes: int, on_bytes: Callable[[int], None] = lambda _n: None) -> None:
        if part_bytes <= 0:
            raise ValueError("part size must be positive")
        self.dest, self.part_bytes, self.on_bytes = dest, part_bytes, on_bytes
        self.parts: list[Part] = []
        self._fh: BinaryIO | None = None
        self._digest = hashlib.sha256()
        self._in_part = 0

    def _open(self) -> BinaryIO:
        index = len(self.parts)
        if index > 999:
            raise BuildError("more than 1000 parts", hint="raise --part-mib")
        self._path = self.dest / f"{PART_PREFIX}{index:03d}"
        self._digest = hashlib.sha256()
        self._in_part = 0
        return self._path.open("wb")

    def _close_part(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self.parts.append(Part(self._path, self._in_part, self._digest.hexdigest()))
            self._fh = None

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            if self._fh is None:
                self._fh = self._open()
            room = self.part_bytes - self._in_part
            chunk = view[:room]
            self._fh.write(chunk)
            self._digest.update(chunk)
            self._in_part += len(chunk)
            view = view[len(chunk) :]
            if self._in_part == self.part_bytes:
                self._close_part()
        self.on_bytes(len(data))
        return len(data)

    def close(self) -> None:
        self._close_part()


def clear_parts(dest: Path) -> None:
    """Remove an earlier bundle's parts and sums (a smaller bundle would leave stale parts behind)."""
    for old in [*dest.glob(f"{PART_PREFIX}[0-9][0-9][0-9]"), dest / SUMS]:
        old.unlink(missing_ok=True)


def write_parts(
    members: Sequence[tuple[Path, str]],
    dest: Path,
    part_bytes: int,
    *,
    on_bytes: Callable[[int], None] = lambda _n: None,
    on_member: Callable[[str], None] = lambda _a: None,
) -> list[Part]:
    """Tar ``members`` (file, name in the tar) as one uncompressed stream (wheels are compressed already) cut into
    parts in ``dest``, then DEST/SHA256SUMS in ``sha256sum -c``'s format."""
    dest.mkdir(parents=True, exist_ok=True)
    clear_parts(dest)
    writer = PartWriter(dest, part_bytes, on_bytes)
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for path, arcname in members:
            on_member(arcname)
            tar.add(path, arcname=arcname, recursive=False)
    writer.close()
    atomic_write_text(dest / SUMS, "".join(f"{p.sha256}  {p.path.name}\n" for p in writer.parts))
    return writer.parts


def check_sums(folder: Path) -> list[str]:
    """The parts named in folder/SHA256SUMS that are missing or differ, plus parts there that it does not name."""
    listed: dict[str, str] = {}
    for line in (folder / SUMS).read_text(encoding="utf-8").splitlines():
        digest, _, name = line.partition("  ")
        listed[name.strip()] = digest.strip()
    bad = [f"{name} (missing)" for name in listed if not (folder / name).is_file()]
    bad += [
        f"{name} (sha256 differs)"
        for name, digest in listed.items()
        if (folder / name).is_file() and wheelhouse.sha256_file(folder / name) != digest
    ]
    bad += [f"{p.name} (not in {SUMS})" for p in sorted(folder.glob(f"{PART_PREFIX}*")) if p.name not in listed]
    return bad


class _Joined:
    """The parts of a folder read back as one stream, in name order."""

    def __init__(self, parts: Sequence[Path]) -> None:
        self._parts = list(parts)
        self._fh: BinaryIO | None = None

    def read(self, n: int = -1) -> bytes:
        out = b""
        while self._parts or self._fh is not None:
            if self._fh is None:
                self._fh = self._parts.pop(0).open("rb")
            chunk = self._fh.read(n if n >= 0 else -1)
            if chunk:
                return chunk
            self._fh.close()
            self._fh = None
        return out

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def unpack_parts(folder: Path, into: Path) -> list[str]:
    """Check the sums, then extract the tar the parts make into ``into``; the names extracted."""
    bad = check_sums(folder)
    if bad:
        raise BuildError(f"the parts in {folder} do not match {SUMS}: {', '.join(bad[:3])}", hint="send them again")
    into.mkdir(parents=True, exist_ok=True)
    parts = sorted(folder.glob(f"{PART_PREFIX}[0-9][0-9][0-9]"))
    joined = _Joined(parts)
    with contextlib.closing(joined), tarfile.open(fileobj=joined, mode="r|") as tar:  # type: ignore[call-overload]
        names = []
        for member in tar:
            names.append(member.name)
            if hasattr(tarfile, "data_filter"):  # 3.12, and 3.11.4+
                tar.extract(member, into, filter="data")
            else:  # pragma: no cover
                tar.extract(member, into)
    return names


# ---------------------------------------------------------------- the device calls


def device_calls(parts: Sequence[Part], root: Path, dest: Path) -> list[dict[str, object]]:
    """One device call per part (carry and command, as docs/gpu-runner.md gives them); the last also carries the
    sums and runs the front door's setup job."""
    rel = os.path.relpath(dest, root)
    calls: list[dict[str, object]] = []
    for i, part in enumerate(parts):
        carry = [f"{rel}/{part.path.name}"]
        cmd = f"mkdir -p /tmp/parts && mv {rel}/{part.path.name}"
        if i == len(parts) - 1:
            carry.append(f"{rel}/{SUMS}")
            cmd += f" {rel}/{SUMS} /tmp/parts/ && scripts/gpu_front_door.sh setup"
        else:
            cmd += " /tmp/parts/"
        calls.append({"carry": carry, "command": cmd})
    return calls


def checkout_mib(root: Path) -> float | None:
    """What the checkout carries into every device call besides the named paths (tracked and untracked files not
    ignored), in MiB; None outside git."""
    proc = tools.run(["git", "-C", str(root), "ls-files", "-co", "--exclude-standard", "-z"])
    if not proc.ok:
        return None
    total = 0
    for name in filter(None, proc.stdout.split("\0")):
        try:
            total += (root / name).lstat().st_size
        except OSError:
            continue
    return total / 2**20


def check_ignored(root: Path, dest: Path) -> None:
    """Parts inside the checkout must be ignored by git (never tracked, never carried unless named)."""
    try:
        dest.resolve().relative_to(root.resolve())
    except ValueError:
        return
    probe = dest / f"{PART_PREFIX}000"
    proc = tools.run(["git", "-C", str(root), "check-ignore", "-q", str(probe)])
    if proc.returncode == 1:
        rel = os.path.relpath(dest, root)
        raise FatalError(
            f"{rel}/ is not ignored by git: the parts would show as untracked and travel with every call",
            hint=f"echo '{rel}/' >> .git/info/exclude (or pick --dest outside the checkout)",
        )


# ---------------------------------------------------------------- the bundle


def _no_pip_config_constraint() -> None:
    # This machine's pip.conf caps torch (/etc/xdg/pip); the locks are the constraints here.
    os.environ["PIP_CONSTRAINT"] = "/dev/null"


def _files_for(pins: Iterable[wheelhouse.Pin], folder: Path) -> list[Path]:
    have = wheelhouse._index(folder)
    out: list[Path] = []
    for pin in pins:
        out += have.get((pin.name, Version(pin.version)), [])
    return out


def _fetch_lock(pins: list[wheelhouse.Pin], wh: Path, target: Target, what: str) -> list[Path]:
    todo = [p for p, _ in wheelhouse.missing(pins, wh, check_hashes=True)]
    ui.say(f"gpu-bundle: {what}: {len(pins) - len(todo)} of {len(pins)} in {wh.name}/, fetching {len(todo)}")
    if todo:
        wheelhouse.fetch(todo, wh, target, say=lambda m: ui.say(f"gpu-bundle: {m}"))
    gaps = wheelhouse.missing(pins, wh, check_hashes=True)
    if gaps:
        raise BuildError(f"{wh} lacks {gaps[0][0].spec()} after download ({gaps[0][1]})", hint="see pip's output")
    return _files_for(pins, wh)


def _speech(needed: frozenset[str], audio: Path) -> list[Path]:
    """The speech files the jobs need, made here (espeak-ng) where absent, then copied into ``audio``."""
    from . import speech

    made = []
    if "selftest" in needed:
        ui.say("gpu-bundle: the self-test speech")
        made.append(speech.selftest_speech().wav)
    if "dialogue" in needed:
        ui.say(f"gpu-bundle: the {DIALOGUE_MINUTES:g}-minute dialogue (a minute or two with espeak-ng when not cached)")
        made.append(speech.dialogue(DIALOGUE_MINUTES).wav)
    audio.mkdir(parents=True, exist_ok=True)
    out = []
    for wav in made:
        for src in (wav.with_suffix(".json"), wav):  # the wav last: its presence says the pair is complete
            dst = audio / src.name
            if not dst.exists() or dst.stat().st_size != src.stat().st_size:
                shutil.copy2(src, dst)
            out.append(dst)
    return out


def _patch(stage: Path) -> Path:
    found = shutil.which("patch")
    if not found:
        raise ToolMissingError(
            "--patch: no patch on this machine's PATH", hint="apt-get install patch, or drop --patch"
        )
    dst = stage / "bin" / "patch"
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(found, dst)
    return dst


def _sdist_build_files(files: Iterable[Path], wh: Path) -> list[Path]:
    """The wheels an offline uv needs to build the sdists among ``files`` (their build requirements, by name)."""
    names = {
        canonicalize_name(Requirement(r).name)
        for f in files
        if f.name.endswith((".tar.gz", ".zip"))
        for r in wheelhouse._sdist_build_requires(f)
    }
    return [f for f in sorted(wh.iterdir()) if (k := wheelhouse._dist_key(f.name)) and k[0] in names]


@dataclass(frozen=True)
class Bundle:
    dest: Path
    parts: list[Part]
    members: int
    seconds: float

    @property
    def bytes(self) -> int:
        return sum(p.size for p in self.parts)


def build(
    matrix: Matrix,
    selectors: Sequence[str],
    jobs: Sequence[str],
    *,
    python: str,
    dest: Path,
    patch: bool = False,
    part_mib: float = 52,
) -> Bundle:
    t0 = time.monotonic()
    root = matrix.root
    cells = choose_cells(matrix, selectors, jobs, python)
    need = needs(jobs)
    platform = DEFAULT_PLATFORM
    tools_lock = ensure_tools_lock(root, python, platform)
    ci = ci_target(root) if (root / CI_LOCK).exists() else None
    if ci is not None and ci.python != python:
        if "ci" in need:
            raise FatalError(
                f"{CI_LOCK} is compiled for Python {ci.python}; the report job needs it for Python {python}",
                hint=f"drop report from --jobs, or --python {ci.python}",
            )
        ui.say(f"gpu-bundle: {CI_LOCK} is for Python {ci.python}, not {python}: its wheels are left out")
        ci = None
    check_ignored(root, dest)
    part_bytes = int(part_mib * 2**20)
    stage = dest / "stage"
    wh = stage / "wh"
    wh.mkdir(parents=True, exist_ok=True)
    _no_pip_config_constraint()

    lock_pins: list[tuple[str, list[wheelhouse.Pin], Target]] = []
    tools_pins, tools_target = wheelhouse.read_lock(tools_lock)
    lock_pins.append((str(tools_lock.relative_to(root)), tools_pins, tools_target))
    if ci is not None:
        lock_pins.append((str(CI_LOCK), wheelhouse.read_lock(root / CI_LOCK, ci)[0], ci))
    cell_pins = [wheelhouse.read_lock(locks.ensure_fresh(matrix, g[0])) for g in locks.lock_groups(cells).values()]
    files: list[Path] = []
    if cells:
        ui.say(
            f"gpu-bundle: the wheels of {', '.join(c.id for c in cells)} (about 4 GB a CUDA cell when not fetched yet)"
        )
        result = wheelhouse.download(matrix, cells, wh, progress=lambda m: ui.say(f"gpu-bundle: {m}"))
        ui.say(f"gpu-bundle: {result.line()}")
        for pins, _ in cell_pins:
            files += _files_for(pins, wh)
    for what, pins, target in lock_pins:
        files += _fetch_lock(pins, wh, target, what)
    files += _sdist_build_files(files, wh)
    shutil.copy2(tools_lock, stage / "runner-tools.txt")

    members = [(f, f"wh/{f.name}") for f in sorted(set(files))]
    members.append((stage / "runner-tools.txt", "runner-tools.txt"))
    members += [(f, f"wxm-cache/audio/{f.name}") for f in _speech(need, stage / "wxm-cache" / "audio")]
    if patch:
        members.append((_patch(stage), "bin/patch"))

    total = sum(p.stat().st_size for p, _ in members)
    ui.say(
        f"gpu-bundle: writing {len(members)} files, {total / 2**30:.2f} GiB, into parts of {part_mib:g} MiB in {dest}"
    )
    written = [0]
    step = max(total // 20, 1)

    def on_bytes(n: int) -> None:
        before = written[0]
        written[0] += n
        bar.advance(n)
        if not bar.shown and written[0] // step != before // step:
            ui.say(f"gpu-bundle: tar {written[0] / total:.0%} ({written[0] / 2**30:.2f} of {total / 2**30:.2f} GiB)")

    with ui.progress(total, "gpu-bundle tar") as bar:
        parts = write_parts(members, dest, part_bytes, on_bytes=on_bytes, on_member=bar.note)
    return Bundle(dest, parts, len(members), time.monotonic() - t0)


def report(bundle: Bundle, root: Path, part_mib: float) -> str:
    calls = device_calls(bundle.parts, root, bundle.dest)
    rel = os.path.relpath(bundle.dest, root)
    lines = [
        f"gpu-bundle: {len(bundle.parts)} parts, {bundle.bytes / 2**30:.2f} GiB ({bundle.bytes:,} bytes), "
        f"{bundle.members} files, in {bundle.dest} ({bundle.seconds:.0f} s)",
        f"sums: {bundle.dest / SUMS}",
    ]
    tree = checkout_mib(root)
    if tree is not None and tree + part_mib > CALL_LIMIT_MIB:
        lines.append(
            f"warning: the checkout carries {tree:.1f} MiB into every call: with {part_mib:g} MiB parts a call passes "
            f"{CALL_LIMIT_MIB} MiB (check `git ls-files -o --exclude-standard`, or use a smaller --part-mib)"
        )
    if rel.startswith(".."):
        lines.append(f"warning: {bundle.dest} is outside the checkout: a device call carries only paths inside it")
    lines.append(f"device calls, one per part, back to back (carry, then command); also in {rel}/DEVICE-CALLS.jsonl:")
    lines += [f"  carry={json.dumps(c['carry'])}  command: {c['command']}" for c in calls]
    lines.append("then: OUT=$OUT scripts/gpu_front_door.sh <job> ... (docs/gpu-runner.md, 'How to run it')")
    atomic_write_text(bundle.dest / "DEVICE-CALLS.jsonl", "".join(json.dumps(c) + "\n" for c in calls))
    return "\n".join(lines)


def cmd_gpu_bundle(args: argparse.Namespace) -> int:
    from . import matrix as matrices

    m = matrices.load()
    python = args.python
    if args.relock:
        path = relock_tools(m.root, python)
        print(f"locked: {path.relative_to(m.root)}")
        if not args.selectors and args.jobs is None:
            return 0
    elif not args.selectors and args.jobs is None:
        raise FatalError(
            "gpu-bundle needs cells or --jobs",
            hint="nox -s gpu-bundle -- stable-cu128-py312 --jobs setup,cell,report (docs/gpu-runner.md)",
        )
    jobs = parse_jobs(",".join(JOBS) if args.jobs is None else args.jobs)
    dest = Path(args.dest).resolve() if args.dest else m.root / ".xp"
    if args.part_mib <= 0 or args.part_mib >= CALL_LIMIT_MIB:
        raise FatalError(
            f"--part-mib {args.part_mib:g} does not fit a device call ({CALL_LIMIT_MIB} MiB with the checkout)",
            hint="take 52 (the default) or less",
        )
    bundle = build(m, args.selectors, jobs, python=python, dest=dest, patch=args.patch, part_mib=args.part_mib)
    print(report(bundle, m.root, args.part_mib))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gpu-bundle", help="everything an offline GPU run needs, as parts a device call carries (docs/gpu-runner.md)"
    )
    p.add_argument("selectors", nargs="*", metavar="CELL", help="cell ids, aliases or globs")
    p.add_argument(
        "--jobs",
        metavar="JOB,...",
        help=f"the front door's jobs to bundle for (default: all of {','.join(JOBS)})",
    )
    p.add_argument("--python", default="3.12", help="the target machine's Python (default 3.12)")
    p.add_argument("--dest", metavar="DIR", help="where the parts go (default: .xp/ in the checkout, git-ignored)")
    p.add_argument("--patch", action="store_true", help="bundle this machine's GNU patch as bin/patch")
    p.add_argument("--part-mib", type=float, default=52, help="part size in MiB (a device call carries 64 MiB)")
    p.add_argument("--relock", action="store_true", help=f"re-lock {TOOLS_IN} for --python first (needs the index)")
    p.set_defaults(func=cmd_gpu_bundle)
