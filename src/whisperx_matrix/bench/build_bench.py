"""`bench build`: our warm and no-op builds against raw uv and plain pip, in one command."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .. import matrix as matrices
from .. import paths, tools, ui
from .common import _checked, _du_bytes, _save, _timed


def bench_build(m: matrices.Matrix, cell_id: str = "stable-cu128", *, pip_baseline: bool = True) -> dict[str, Any]:
    """Build one cell four ways in one run: ours cold/warm, raw `uv pip install` cold/warm, and plain pip."""
    cell = m.get(cell_id)
    lock = m.root / "constraints" / f"{cell.lock_id}.txt"
    # Everything on the uv cache's filesystem, so uv can hardlink as it does for a user.
    scratch = Path(tempfile.mkdtemp(prefix="wxm-bench-", dir=paths.cache_dir()))
    cache = scratch / "uv-cache"
    base_env = dict(os.environ) | {"UV_CACHE_DIR": str(cache), "UV_PYTHON_DOWNLOADS": "never", "NO_COLOR": "1"}
    ours_env = base_env | {"WXM_ENVS": str(scratch / "envs"), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    ours = [sys.executable, "-m", "whisperx_matrix", "build", cell.id, "--no-selftest"]
    uv = tools.uv_bin()
    results: dict[str, Any] = {"cell": cell.id, "lock": lock.name, "steps": {}}
    steps = results["steps"]
    try:
        ui.say("bench build: ours, cold (empty uv cache) ...")
        steps["ours_cold_s"] = round(_timed(ours, env=ours_env, cwd=m.root), 2)
        ui.say(f"  {steps['ours_cold_s']} s")
        env_link = scratch / "envs" / cell.id
        shutil.rmtree(scratch / "envs")
        ui.say("bench build: ours, warm (cache hot, env removed) ...")
        steps["ours_warm_s"] = round(_timed(ours, env=ours_env, cwd=m.root), 2)
        ui.say(f"  {steps['ours_warm_s']} s")
        ui.say("bench build: ours, no-op re-run ...")
        steps["ours_noop_s"] = round(_timed(ours, env=ours_env, cwd=m.root), 3)
        from ..build import run_selftest

        t0 = time.perf_counter()
        st = run_selftest(env_link.resolve())
        steps["selftest_s"] = round(time.perf_counter() - t0, 2)
        steps["selftest_passed"] = bool(st.get("passed"))
        results["env_disk_bytes"] = _du_bytes(env_link.resolve())

        shutil.rmtree(cache)
        for label in ("cold", "warm"):
            venv = scratch / f"raw-uv-{label}"
            ui.say(f"bench build: raw uv pip install, {label} ...")
            t0 = time.perf_counter()
            _checked([uv, "venv", "-q", "--python", cell.python, str(venv)], env=base_env)
            _checked(
                [
                    uv,
                    "pip",
                    "install",
                    "-q",
                    "--require-hashes",
                    "--python",
                    str(venv / "bin" / "python"),
                    "-r",
                    str(lock),
                ],
                env=base_env,
            )
            steps[f"raw_uv_{label}_s"] = round(time.perf_counter() - t0, 2)
            ui.say(f"  {steps[f'raw_uv_{label}_s']} s")
        # What a second env from the same cache adds on disk (hardlinks cost almost nothing); both raw-uv
        # envs came from the second cache, so they share inodes as two cells of one user do.
        first, second = scratch / "raw-uv-cold", scratch / "raw-uv-warm"
        results["second_env_adds_bytes"] = _du_bytes(first, second) - _du_bytes(first)

        if pip_baseline:
            venv = scratch / "pip"
            ui.say("bench build: plain pip into a fresh venv, no cache (the document's way) ...")
            pip_env = dict(os.environ) | {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
            t0 = time.perf_counter()
            _checked([sys.executable, "-m", "venv", str(venv)])
            _checked(
                [str(venv / "bin" / "pip"), "install", "-q", "--no-cache-dir", f"whisperx=={cell.pins['whisperx']}"]
                + [f"{k}=={v}" for k, v in cell.pins.items() if k != "whisperx"],
                env=pip_env,
            )
            steps["pip_cold_s"] = round(time.perf_counter() - t0, 2)
            ui.say(f"  {steps['pip_cold_s']} s")
            results["pip_env_disk_bytes"] = _du_bytes(venv)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    r = {}
    if "raw_uv_warm_s" in steps:
        r["ours_warm_vs_raw_uv_warm"] = round(steps["ours_warm_s"] / steps["raw_uv_warm_s"], 2)
        r["ours_cold_vs_raw_uv_cold"] = round(steps["ours_cold_s"] / steps["raw_uv_cold_s"], 2)
    if "pip_cold_s" in steps:
        r["pip_cold_over_ours_warm"] = round(steps["pip_cold_s"] / steps["ours_warm_s"], 1)
        r["pip_cold_over_ours_cold"] = round(steps["pip_cold_s"] / steps["ours_cold_s"], 1)
    results["ratios"] = r
    results["targets"] = {
        "warm within 1.5x of raw uv warm": r.get("ours_warm_vs_raw_uv_warm", 99) <= 1.5,
        "warm at least 30x faster than pip": r.get("pip_cold_over_ours_warm", 0) >= 30,
        "cold at least 5x faster than pip cold": r.get("pip_cold_over_ours_cold", 0) >= 5,
        "no-op under 1 s": steps.get("ours_noop_s", 99) < 1.0,
    }
    return results


def plot_build(data: dict[str, Any], out: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    steps = data["steps"]
    names = [
        ("pip_cold_s", "pip, no cache\n(the document's way)"),
        ("raw_uv_cold_s", "raw uv, cold"),
        ("ours_cold_s", "ours, cold"),
        ("raw_uv_warm_s", "raw uv, warm"),
        ("ours_warm_s", "ours, warm"),
        ("ours_noop_s", "ours, no-op"),
    ]
    names = [(k, label) for k, label in names if k in steps]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    vals = [steps[k] for k, _ in names]
    bars = ax.barh(
        [label for _, label in names],
        vals,
        color=["#999" if "pip" in k else "#4c72b0" if "ours" in k else "#55a868" for k, _ in names],
    )
    ax.set_xscale("log")
    ax.set_xlabel("seconds (log scale)")
    ax.set_title(f"Building {data['cell']} ({data['machine']['cores']} cores)")
    for bar, v in zip(bars, vals, strict=True):
        ax.text(bar.get_width() * 1.05, bar.get_y() + bar.get_height() / 2, f"{v:g} s", va="center", fontsize=8)
    return _save(fig, out)
