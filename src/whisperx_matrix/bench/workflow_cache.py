"""`bench workflow-cache`: the GPU workflow's results cache, shown with the workflow runner script on this machine.

Three pushes, each a fresh clone (an ephemeral runner's workspace) running the `cell` job of
.github/workflows/gpu-matrix.yml as written (scripts/run_workflow_job.py), with one actions/cache store shared
between them as GitHub shares it between runs: the first push runs the cell and saves its result under its key;
a push that changes only docs computes the same key, restores it and runs no cell; a push that changes the cell
suite computes a new key and runs the cell again. What each job did is read from what it wrote (its report's
cached marks, the keys in the store), never assumed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import FatalError

WORKFLOW = ".github/workflows/gpu-matrix.yml"
PUSHES = (
    # (what the push changes, the file it appends a line to; None: the commit as it is)
    ("nothing: the first push", None),
    ("docs only", "README.md"),
    ("the cell suite", "tests/cell/test_cell.py"),
)


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def _nox_bin() -> Path:
    """The folder holding `nox`: the workflow's steps call it by name, as a runner with nox installed would."""
    found = shutil.which("nox")
    if found is None:
        raise FatalError("nox is not on PATH: the workflow's steps call it by name", hint="pip install nox")
    return Path(found).parent


def _one_push(root: Path, work: Path, cell: str, caches: Path, change: str, touched: str | None) -> dict[str, Any]:
    clone = work / f"push-{len(list(work.glob('push-*'))) + 1}"
    _git(work, "clone", "--quiet", str(root), str(clone))
    if touched is not None:
        with open(clone / touched, "a", encoding="utf-8") as fh:
            fh.write("\n# a change for the workflow-cache benchmark\n")
        _git(clone, "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qam", f"touch {touched}")
    changed = _git(clone, "diff", "--name-only", "HEAD~1", "HEAD").split() if touched else []
    keys_before = {p.name for p in caches.iterdir()} if caches.is_dir() else set()
    env = dict(os.environ, PATH=f"{_nox_bin()}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("WXM_RESULTS_CACHE", None)  # the workflow sets its own, in the workspace
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "scripts/run_workflow_job.py",
            WORKFLOW,
            "cell",
            "--matrix",
            f"cell={cell}",
            "--artifacts",
            str(work / "artifacts" / clone.name),
            "--caches",
            str(caches),
            "--record",
            str(work / f"{clone.name}-steps.json"),  # the runner writes it once the steps have run
        ],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    record = work / f"{clone.name}-steps.json"
    if not record.is_file():  # the runner script stopped before any step (a workflow it cannot read, no PyYAML)
        raise FatalError(
            f"the workflow runner stopped before the job's steps: {(proc.stderr or proc.stdout).strip()[-300:]}",
            hint="run scripts/run_workflow_job.py by hand in a clone to see why",
        )
    report = clone / "reports" / cell / "matrix.json"
    result = json.loads(report.read_text(encoding="utf-8")) if report.is_file() else {}
    cells = result.get("cells", [])
    steps = json.loads(record.read_text(encoding="utf-8"))["steps"]
    keys_after = {p.name for p in caches.iterdir()} if caches.is_dir() else set()
    return {
        "change": change,
        "changed_paths": changed,
        "commit": _git(clone, "rev-parse", "--short=12", "HEAD"),
        "job_exit": proc.returncode,
        "job_output_tail": proc.stdout[-600:] if proc.returncode else "",
        "wall_s": round(wall, 1),
        "steps": steps,
        "cells_run": sum(1 for c in cells if not c.get("cached")),
        "cells_from_cache": sum(1 for c in cells if c.get("cached")),
        "verdicts": {c["id"]: c["verdict"] for c in cells},
        "keys_saved_by_this_push": sorted(keys_after - keys_before),
    }


def bench_workflow_cache(root: Path, *, cell: str) -> dict[str, Any]:
    """The three pushes of the module docstring, and whether each did what the cache promises."""
    if _git(root, "status", "--porcelain", "--untracked-files=no"):
        raise FatalError(
            "the checkout has uncommitted changes: the pushes are clones of HEAD", hint="commit them, then run again"
        )
    with tempfile.TemporaryDirectory(prefix="wxm-workflow-cache-") as tmp:
        work = Path(tmp)
        caches = work / "actions-cache"
        pushes = []
        for change, touched in PUSHES:
            print(f"push: {change}", flush=True)
            pushes.append(_one_push(root, work, cell, caches, change, touched))
            print(f"  {json.dumps({k: pushes[-1][k] for k in ('cells_run', 'cells_from_cache', 'wall_s')})}")
    first, docs, suite = pushes
    ok = all(p["job_exit"] == 0 for p in pushes)
    return {
        "cell": cell,
        "workflow": WORKFLOW,
        "job": "cell",
        "base_commit": _git(root, "rev-parse", "--short=12", "HEAD"),
        "pushes": pushes,
        "targets": {
            "the first push runs the cell and saves its key": ok
            and first["cells_run"] == 1
            and len(first["keys_saved_by_this_push"]) == 1,
            "a docs-only push runs no cell": ok and docs["cells_run"] == 0 and docs["cells_from_cache"] == 1,
            "a push that changes the cell suite runs the cell again": ok
            and suite["cells_run"] == 1
            and len(suite["keys_saved_by_this_push"]) == 1,
        },
    }
