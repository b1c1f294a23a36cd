"""`bench trellis`: the opt-in patch 0002's piece of alignment, WhisperX's trellis loop against the patched one."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from .. import matrix as matrices
from .. import paths, tools, ui
from .common import _write, machine_info
from .pipeline import stage_opt_in_alignment

TRELLIS_SCRIPT = Path(__file__).resolve().parents[1] / "cellside" / "bench_trellis.py"


def cmd_trellis(m: matrices.Matrix, args: argparse.Namespace) -> int:
    """Stage the patch on a copy of the cell's alignment.py, time both trellis functions in the cell's python, write
    benchmarks/results/trellis-<date>.json."""
    from ..build import built_env, clean_env

    env = built_env(m, m.get(args.cell))
    work = paths.cache_dir() / "bench-trellis"
    staged, how = stage_opt_in_alignment(m, env, work)
    if staged is None:
        ui.say(f"bench trellis: {how}")
        return 1
    raw = work / "raw.json"
    proc = tools.run(
        [str(env / "bin" / "python"), "-I", str(TRELLIS_SCRIPT), "--patched", str(staged), "--out", str(raw)],
        env=clean_env(),
        live_stderr=True,
    )
    try:
        result: dict[str, Any] = json.loads(raw.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        ui.say(f"bench trellis: the cell's script wrote no result (exit code {proc.returncode})")
        return 1
    data = {
        "kind": "trellis",
        "cell": args.cell,
        "patch": how,
        "machine": machine_info(),
        "date": time.strftime("%Y-%m-%d"),
    }
    data |= result
    path = _write("trellis", data, Path(args.results) if args.results else m.root / "benchmarks" / "results")
    print(json.dumps(result["rows"], indent=2))
    print(f"written: {path}")
    return 0 if result.get("identical") else 1
