"""`bench matrix`: the whole matrix run, stage by stage per cell."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from .. import matrix as matrices
from .common import _save


def bench_matrix(m: matrices.Matrix, *, sm: int) -> dict[str, Any]:
    """Wall time of a full matrix run (builds reused when warm) and the time per stage, summed over cells."""
    from .. import matrix_run

    cells = m.select([])
    t0 = time.perf_counter()
    result = matrix_run.run_matrix(m, cells, sm=sm, jobs=max(1, min(len(cells), os.cpu_count() or 1)))
    wall = time.perf_counter() - t0
    per_cell = {c["id"]: {k: v for k, v in c["seconds"].items() if v is not None} for c in result["cells"]}
    return {
        "wall_s": round(wall, 1),
        "stages_s": {k: v for k, v in result["seconds"].items() if k != "total"},
        "per_cell_s": per_cell,
        "totals": result["totals"],
        "target_sm": sm,
        "targets": {"full reachable matrix, warm, under 5 minutes": wall < 300},
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
