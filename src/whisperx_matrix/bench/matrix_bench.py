"""`bench matrix`: the whole matrix run, stage by stage per cell."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from .. import matrix as matrices
from .common import _save


def bench_matrix(m: matrices.Matrix, *, sm: int) -> dict[str, Any]:
    """The whole matrix run twice in one command: first every cell run (the results cache not read; builds reused
    where current), then again with nothing changed, answered from the results cache (#24). Each run's wall time,
    the ratio, whether the two reports agree apart from times and cached marks, and the time per stage and cell of
    the first."""
    import json

    from .. import matrix_run, report

    cells = m.select([])
    jobs = max(1, min(len(cells), os.cpu_count() or 1))
    t0 = time.perf_counter()
    first = matrix_run.run_matrix(m, cells, sm=sm, jobs=jobs, use_cache=False)
    wall = time.perf_counter() - t0
    t1 = time.perf_counter()
    repeat = matrix_run.run_matrix(m, cells, sm=sm, jobs=jobs)
    repeat_wall = time.perf_counter() - t1
    per_cell = {c["id"]: {k: v for k, v in c["seconds"].items() if v is not None} for c in first["cells"]}
    built = [c["id"] for c in first["cells"] if (c.get("checks", {}).get("build", {}).get("work") or "") == "built"]
    same = json.dumps(report.without_volatile(first), sort_keys=True) == json.dumps(
        report.without_volatile(repeat), sort_keys=True
    )
    return {
        "wall_s": round(wall, 1),
        "stages_s": {k: v for k, v in first["seconds"].items() if k != "total"},
        "per_cell_s": per_cell,
        "totals": first["totals"],
        "target_sm": sm,
        "cells_built_in_first_run": built,
        "repeat": {
            "wall_s": round(repeat_wall, 2),
            "cached_cells": repeat.get("cached_cells", 0),
            "ratio_to_first": round(repeat_wall / wall, 4) if wall else None,
            "same_report_apart_from_times_and_cached_marks": same,
        },
        "targets": {
            # warm means every build reused: a first run that had to build says nothing about the warm figure
            "full reachable matrix, warm, under 5 minutes": (wall < 300) if not built else None,
            "a repeat with nothing changed under 10 s, the same report": repeat_wall < 10 and same,
        },
    }


def plot_matrix(data: dict[str, Any], out: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    stages = ("build", "selftest", "audit", "suite")
    cells = list(data["per_cell_s"])
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(cells) + 1.6))
    left = [0.0] * len(cells)
    for stage in stages:
        vals = [float(data["per_cell_s"][c].get(stage) or 0) for c in cells]
        ax.barh(cells, vals, left=left, label=stage)
        left = [a + b for a, b in zip(left, vals, strict=True)]
    ax.invert_yaxis()
    ax.set_xlabel("seconds (stage time per cell; cells run in parallel)")
    ax.set_title(
        f"nox -s matrix: {data['wall_s']:.0f} s wall for {len(cells)} cells ({data['machine']['cores']} cores)"
    )
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, out)
