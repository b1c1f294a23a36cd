#!/usr/bin/env -S uv run --script
# /// script
# dependencies = ["nox>=2024.10.9", "rich>=13", "pip>=23"]  # pip: `nox -s wheelhouse` downloads with it
# ///
"""Sessions of whisperx-matrix. Thin: each parses nothing and calls the package under src/.

Session names come from matrix.toml: `nox -s env-<cell>` for every cell and alias.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import nox

nox.needs_version = ">=2024.10.9"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["tests"]

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))
from whisperx_matrix import matrix as _matrix  # noqa: E402  (cells are data: session names come from it)
from whisperx_matrix.errors import FatalError  # noqa: E402

try:
    MATRIX = _matrix.load(ROOT / "matrix.toml")
except FatalError as _exc:  # a malformed matrix.toml: its one-line cause, not a traceback from every session
    print(_exc.render(), file=sys.stderr)
    raise SystemExit(_exc.exit_code) from None


def _cli(session: nox.Session, *args: str) -> None:
    """Run the package's CLI with nox's own Python: no venv to build, so a no-op build stays instant."""
    if shutil.which("uv") is None and importlib.util.find_spec("uv") is None:
        session.log("uv not found: installing it into nox's Python (pip install uv)")
        session.run(sys.executable, "-m", "pip", "install", "--quiet", "uv", external=True)
    if importlib.util.find_spec("rich") is None:  # the CLI's progress bars and tables
        session.log("rich not found: installing it into nox's Python (pip install rich)")
        session.run(sys.executable, "-m", "pip", "install", "--quiet", "rich", external=True)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    session.run(sys.executable, "-m", "whisperx_matrix", *args, env=env, external=True)


def _tool_venv(session: nox.Session, *extras: str) -> None:
    """A venv with the package and the named extras, for sessions that plot or run pytest."""
    session.install("-e", f".[{','.join(extras)}]" if extras else ".")


@nox.session(venv_backend="none", default=False)
def cells(session: nox.Session) -> None:
    """List the cells and their expected outcomes (`-- --json` for CI fan-out)."""
    _cli(session, "list", *session.posargs)


@nox.session(venv_backend="none", default=False, tags=["lock"])
def lock(session: nox.Session) -> None:
    """Write the hashed locks in constraints/ (`-- --check` exits non-zero on a stale one)."""
    _cli(session, "lock", *session.posargs)


def _env_session(cell: _matrix.Cell) -> None:
    def env(session: nox.Session) -> None:
        _cli(session, "build", cell.id, *session.posargs)

    env.__doc__ = f"Build the {cell.id} venv from its lock: {cell.summary}."
    for name in (cell.id, *cell.aliases):
        nox.session(env, name=f"env-{name}", venv_backend="none", default=False, tags=["env", cell.channel])


for _cell in MATRIX.cells:
    _env_session(_cell)


@nox.session(venv_backend="none", default=False, tags=["env"])
def env(session: nox.Session) -> None:
    """Build the cell the doctor picks for this GPU and driver, saying why (the working cell where there is no GPU)."""
    _cli(session, "build", "--for-this-machine", *session.posargs)


@nox.session(venv_backend="none", default=False)
def patches(session: nox.Session) -> None:
    """The WhisperX patch series: `-- check` tries it on every release in range; apply/revert/status CELL."""
    _cli(session, "patches", *(session.posargs or ["check"]))


@nox.session(default=False, reuse_venv=True)
def audit(session: nox.Session) -> None:
    """Audit a built cell without a GPU: kernel archs in its fatbins and its shared-library closure."""
    _tool_venv(session)
    session.run("python", "-m", "whisperx_matrix", "audit", *session.posargs)


@nox.session(default=False, reuse_venv=True, tags=["matrix"])
def matrix(session: nox.Session) -> None:
    """Every cell (or `-- 'stable-*' --sm 120`): build, audit, run the cell suite, judge the claims, report."""
    _tool_venv(session, "report")
    session.run("python", "-m", "whisperx_matrix", "matrix", *session.posargs)


@nox.session(default=False, reuse_venv=True)
def report(session: nox.Session) -> None:
    """Re-render a matrix result (`-- reports/matrix.json --out reports`) or merge CI's per-cell results."""
    _tool_venv(session, "report")
    session.run("python", "-m", "whisperx_matrix", "report", *session.posargs)


@nox.session(default=False, reuse_venv=True, tags=["bench"])
def bench(session: nox.Session) -> None:
    """Benchmarks, each against its baseline in the same run: `-- build`, `-- audit`."""
    _tool_venv(session, "bench")
    session.run("python", "-m", "whisperx_matrix", "bench", *(session.posargs or ["build"]))


@nox.session(reuse_venv=True)
def tests(session: nox.Session) -> None:
    """The test suite: unit tests, then real cell builds and the documented outcome end to end."""
    _cli(session, "preflight", "tests")  # every missing system program named at once, before any install
    _tool_venv(session, "test")
    _lint(session)
    # loadfile: a module-scoped fixture (the end-to-end matrix run) is built once, on one worker.
    session.run("pytest", "-n", "2", "--dist", "loadfile", *session.posargs)


@nox.session(default=False, reuse_venv=True)
def unit(session: nox.Session) -> None:
    """The edit-test loop: lint, types and the unit tests that build no cell (seconds, not minutes)."""
    _tool_venv(session, "test")
    _lint(session)
    session.run("pytest", "tests/unit", "-n", "2", "-m", "not slow", *session.posargs)


def _lint(session: nox.Session) -> None:
    """ruff (lint and format) and mypy, configured in pyproject.toml."""
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session(default=False, reuse_venv=True, tags=["gpu"])
def gpu(session: nox.Session) -> None:
    """GPU tests: tests/gpu is outside pytest's testpaths, so they run here only (each skips with its reason)."""
    _tool_venv(session, "test")
    session.run("pytest", "tests/gpu", *session.posargs)


@nox.session(default=False, reuse_venv=True)
def doctor(session: nox.Session) -> None:
    """Read this machine's GPU and driver and name the cell to use (`-- --sm 120 --driver 575.51.03`)."""
    _tool_venv(session)  # NVML bindings and the audit's ELF reader
    session.run("python", "-m", "whisperx_matrix", "doctor", *session.posargs)


@nox.session(default=False, reuse_venv=True)
def watch(session: nox.Session) -> None:
    """Releases newer than the locks as candidate cells, audited statically, with the verdicts they would change."""
    _tool_venv(session)  # pip (its index client), uv and the audit's ELF reader
    session.run("python", "-m", "whisperx_matrix", "watch", *session.posargs)


@nox.session(venv_backend="none", default=False)
def figures(session: nox.Session) -> None:
    """The READMEs' measured numbers, rendered from benchmarks/results/: `-- --check` (default) or `-- --update`."""
    _cli(session, "figures", *(session.posargs or ["--check"]))


@nox.session(venv_backend="none", default=False)
def cache(session: nox.Session) -> None:
    """The matrix's results cache: `-- list`, `-- prune [--older-than 30d]`, `-- clear` (only its own files)."""
    _cli(session, "cache", *(session.posargs or ["list"]))


@nox.session(venv_backend="none", default=False)
def disk(session: nox.Session) -> None:
    """What the project keeps on disk, hardlinks counted once: `-- --json FILE`, `-- --since FILE`."""
    _cli(session, "disk", *session.posargs)


@nox.session(venv_backend="none", default=False)
def wheelhouse(session: nox.Session) -> None:
    """Download every locked wheel of the cells into a folder: `-- CELL... --dest DIR` (then build --offline)."""
    _cli(session, "wheelhouse", *session.posargs)


@nox.session(name="gpu-bundle", venv_backend="none", default=False)
def gpu_bundle(session: nox.Session) -> None:
    """All an offline GPU run needs, as parts a device call carries: `-- CELL... [--jobs ...] [--patch]`."""
    _cli(session, "gpu-bundle", *session.posargs)
