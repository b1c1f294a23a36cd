"""A results cache for matrix cells: a re-run with nothing changed answers from a key that covers every input.

Content-addressed like Bazel's action cache or ccache: one JSON per key under ``results_dir()``, written
atomically; a hit returns the stored cell record unchanged but for a ``cached`` mark, so the report and the
verdicts treat it exactly as the run that made it. A result that observed nothing about the stack (a cell not
testable here: no network, a stale lock, a full disk) is never stored: infrastructure is not evidence.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import os
import platform
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from . import matrix as matrices
from . import paths, tools
from .fsutil import atomic_write_text

KEY_SCHEMA = 1  # bump when the key's inputs or the stored record's shape change: every older entry misses
SUFFIX = ".json"
PREFIX = "cell-"  # only files named cell-<sha256>.json are ours: prune and clear never touch anything else


def results_dir() -> Path:
    """``$WXM_RESULTS_CACHE``, else ``<WXM_CACHE>/results``: apart from the downloads, so that a test session can
    start from an empty results cache and keep its warm wheels."""
    return Path(os.environ.get("WXM_RESULTS_CACHE") or paths.cache_dir() / "results")


PACKAGE_DIR = Path(__file__).resolve().parent  # the package that is running: builds, audits, verdicts, cellside


def _sha256_files(files: Iterable[tuple[str, Path]]) -> str:
    h = hashlib.sha256()
    for name, f in sorted(files):
        h.update(name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def _tree(base: Path, pattern: str, label: str) -> list[tuple[str, Path]]:
    if not base.is_dir():
        return []
    return [
        (f"{label}/{p.relative_to(base)}", p)
        for p in base.rglob(pattern)
        if p.is_file() and "__pycache__" not in p.parts
    ]


def code_hash(root: Path, package: Path = PACKAGE_DIR) -> str:
    """The files that run when a cell runs: the package itself (wherever it is installed from) and the project's
    cell suite (tests/cell, run in the cell's python)."""
    return _sha256_files(_tree(package, "*.py", "package") + _tree(root / "tests" / "cell", "*", "suite"))


def patches_hash(root: Path) -> str:
    """The patch series as it stands: series.toml and every patch file (a cell that applies no patch ignores it)."""
    return _sha256_files(_tree(root / "patches", "*", "patches"))


def _first_line(cmd: list[str]) -> str | None:
    if not shutil.which(cmd[0]):
        return None
    proc = tools.run(cmd)
    return proc.stdout.strip().splitlines()[0] if proc.ok and proc.stdout.strip() else None


@functools.cache
def python_version(want: str) -> str | None:
    """The full version of the interpreter a cell of Python ``want`` is built with here (None: not found). Two
    subprocesses, asked once per version and process: every cell of a run shares one of two or three answers."""
    proc = tools.run([tools.uv_bin(), "python", "find", want], env=tools.uv_env())
    found = proc.stdout.strip().splitlines()[0] if proc.ok and proc.stdout.strip() else tools.find_python(want)
    return _first_line([found, "--version"]) if found and os.path.isfile(found) else None


def machine_inputs() -> dict[str, Any]:
    """What this machine contributes to every cell's outcome, read once per run. The GPU facts are the doctor's
    (model, driver, the CUDA version the driver supports; none without a GPU); ffmpeg decodes the self-test's
    speech; whether an HF token is present decides which tests run (never its value). Not uv's version: the lock's
    hashes fix what it installs, and which uv binary a shell finds first (nox's, the project venv's) would
    otherwise split one cell's results in two."""
    from . import doctor
    from .secrets import token_present

    found = doctor.collect()
    return {
        "platform": f"{platform.system()} {platform.machine()}",
        "libc": " ".join(platform.libc_ver()),
        "gpus": sorted(f"{g.name} sm_{g.sm}" for g in found.gpus),
        "driver": found.driver,
        "cuda": found.cuda,
        "ffmpeg": _first_line(["ffmpeg", "-version"]),
        "hf_token_present": bool(token_present().get("HF_TOKEN")),
    }


def _canonical(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [_canonical(v) for v in obj]
        return sorted(items, key=json.dumps) if isinstance(obj, (set, frozenset)) else items
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def key_inputs(
    m: matrices.Matrix,
    cell: matrices.Cell,
    *,
    lock_sha256: str,
    sm: int,
    suite: bool,
    ld_compare: bool,
    machine: Mapping[str, Any],
    code: str,
    patches: str,
) -> dict[str, Any]:
    """Everything a cell's result is a function of, each for a reason; anything that can change an outcome and is
    missing here is a bug:

    - ``lock``: the sha256 of the lock the cell builds from: the committed one, or for a floating cell the one
      resolved in this run (a new nightly is a new lock, so a new key);
    - ``cell``: the cell's matrix.toml entry after ``extends`` and ``[[amend]]`` (requirements, pins, index,
      preload, addons, patches switched on, opt-in patches, expectations: the verdict is judged against them);
    - ``patches``: the patch series' files, for a cell that applies patches;
    - ``code``: the package and the cell suite, the files that run (a fix to an audit or a test is a new key);
    - ``sm``: the target the static audits and the verdict judge against;
    - ``python``: the interpreter's full version the venv is built with here;
    - ``suite`` and ``ld_compare``: whether the suite runs, and again with the guide's LD_LIBRARY_PATH;
    - ``machine``: platform and libc, the GPU model, driver and CUDA version seen, ffmpeg, and whether an HF token
      is present (machine_inputs)."""
    applies_patches = bool(cell.patches or cell.opt_in_patches)
    return {
        "schema": KEY_SCHEMA,
        "lock": lock_sha256,
        "cell": _canonical(cell),
        "patches": patches if applies_patches else None,
        "code": code,
        "sm": sm,
        "python": python_version(cell.python),
        "suite": suite,
        "ld_compare": ld_compare,
        "machine": dict(machine),
    }


def key_of(inputs: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def cacheable(record: Mapping[str, Any]) -> bool:
    """Only a result that observed the stack: a cell not testable here (infrastructure) is asked again next time."""
    return (record.get("observed") or {}).get("status") != "not-testable"


class ResultCache:
    """Cell records by key, one ``cell-<key>.json`` each in ``folder``."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or results_dir()

    def path(self, key: str) -> Path:
        return self.folder / f"{PREFIX}{key}{SUFFIX}"

    @contextlib.contextmanager
    def claim(self, key: str) -> Iterator[None]:
        """Hold ``key`` while its cell runs (an exclusive flock on ``cell-<key>.lock``): a second process asking
        for the same key waits, then finds the first one's result."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f"{PREFIX}{key}.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored record with its ``cached`` mark, or None (absent, or unreadable: a miss, never an error)."""
        try:
            entry = json.loads(self.path(key).read_text(encoding="utf-8"))
            record = dict(entry["record"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        record["cached"] = {"key": key, "from": entry.get("generated_at")}
        return record

    def put(self, key: str, inputs: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
        if not cacheable(record):
            return False
        self.folder.mkdir(parents=True, exist_ok=True)
        entry = {
            "key": key,
            "cell": record.get("id"),
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "inputs": inputs,
            "record": {k: v for k, v in record.items() if k != "cached"},
        }
        # key order kept as the run wrote it: a cached record renders exactly as the original (checks in order)
        atomic_write_text(self.path(key), json.dumps(entry, indent=1) + "\n")
        return True

    def entries(self) -> list[dict[str, Any]]:
        """Every entry: key, cell, generated_at, size in bytes, age in seconds (unreadable ones say so)."""
        out = []
        now = time.time()
        for p in sorted(self.folder.glob(f"{PREFIX}*{SUFFIX}")) if self.folder.is_dir() else []:
            st = p.stat()
            row: dict[str, Any] = {"key": p.stem[len(PREFIX) :], "bytes": st.st_size, "age_s": now - st.st_mtime}
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
                row |= {"cell": data.get("cell"), "generated_at": data.get("generated_at")}
            except (OSError, ValueError):
                row |= {"cell": None, "generated_at": None, "unreadable": True}
            out.append(row)
        return out

    def prune(self, *, older_than_s: float) -> list[str]:
        """Remove entries older than ``older_than_s`` (and unreadable ones); their keys."""
        gone = []
        for row in self.entries():
            if row["age_s"] > older_than_s or row.get("unreadable"):
                self.path(row["key"]).unlink(missing_ok=True)
                gone.append(row["key"])
        return gone

    def clear(self) -> int:
        """Remove every entry and its claim file (only our cell-<key>.json and .lock: anything else stays)."""
        rows = self.entries()
        for row in rows:
            self.path(row["key"]).unlink(missing_ok=True)
        for claim in self.folder.glob(f"{PREFIX}*.lock") if self.folder.is_dir() else []:
            claim.unlink(missing_ok=True)
        return len(rows)
