"""`nox -s bench -- build|audit|matrix|transcribe`: timings as ratios against baselines run in the same command.

Results go to benchmarks/results/<kind>-<date>.json with the machine they came from, plus a PNG plot. A transcribe
file's ``summary`` and ``targets`` are computed from its measured stages (``summarise_file``); `bench summarise`
recomputes them in the committed files.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .. import matrix as matrices
from .. import paths
from ..fsutil import atomic_write_text as atomic_write
from .build_bench import bench_build, plot_build
from .common import _write, machine_info
from .matrix_bench import bench_matrix, plot_matrix
from .pipeline import (
    PIPELINE_STAGES,
    budget_mib,
    cmd_pipeline,
    keep_outputs,
    pipeline_plan,
    pipeline_run_figures,
    process_peak,
    recheck,
    resolve_combine,
    resolve_force_tokens,
    settings_for_budget,
    stage_opt_in_alignment,
    summarise_pipeline,
)
from .targets import CPU_TARGETS, GPU_TARGETS, summarise_file, summarise_transcribe, transcribe_targets
from .transcribe import cmd_transcribe, parse_minutes, plot_transcribe, stm_text
from .trellis import cmd_trellis

__all__ = [
    "CPU_TARGETS",
    "GPU_TARGETS",
    "bench_build",
    "bench_matrix",
    "budget_mib",
    "PIPELINE_STAGES",
    "cmd_pipeline",
    "keep_outputs",
    "recheck",
    "resolve_force_tokens",
    "cmd_transcribe",
    "machine_info",
    "parse_minutes",
    "pipeline_plan",
    "pipeline_run_figures",
    "process_peak",
    "plot_build",
    "plot_matrix",
    "plot_transcribe",
    "register",
    "resolve_combine",
    "settings_for_budget",
    "stm_text",
    "summarise_file",
    "stage_opt_in_alignment",
    "summarise_pipeline",
    "summarise_results",
    "summarise_transcribe",
    "transcribe_targets",
]


def summarise_results(results_dir: Path) -> list[tuple[Path, bool]]:
    """Recompute ``summary`` and ``targets`` of every transcribe results file in ``results_dir`` from its measured
    stages (``summarise_file``); rewrite the files whose blocks differ. (path, changed) for each file."""
    out = []
    for path in sorted(results_dir.glob("*transcribe-*.json")):  # the front-door files too
        data = json.loads(path.read_text(encoding="utf-8"))
        new = summarise_file(data)
        if new != data:
            atomic_write(path, json.dumps(new, indent=2) + "\n")
        out.append((path, new != data))
    return out


def cmd_bench(args: argparse.Namespace) -> int:
    m = matrices.load()
    if args.kind == "transcribe":
        return cmd_transcribe(m, args)
    if args.kind == "pipeline":
        return cmd_pipeline(m, args)
    if args.kind == "trellis":
        return cmd_trellis(m, args)
    if args.kind == "summarise":
        for path, changed in summarise_results(
            Path(args.results) if args.results else m.root / "benchmarks" / "results"
        ):
            print(f"{path.name}: {'summary and targets rewritten' if changed else 'up to date'}")
        return 0
    info = machine_info()
    results_dir = Path(args.results) if args.results else m.root / "benchmarks" / "results"
    if args.kind == "build":
        data = bench_build(m, args.cell, pip_baseline=not args.no_pip)
        data["machine"] = info
        data["date"] = time.strftime("%Y-%m-%d")
        path = _write("build", data, results_dir)
        png = plot_build(data, path.with_suffix(".png"))
        print(json.dumps({"steps": data["steps"], "ratios": data["ratios"], "targets": data["targets"]}, indent=2))
        print(f"written: {path}" + (f", {png}" if png else ""))
    elif args.kind == "audit":
        from ..audit import bench_audit
        from ..build import built_env

        env = built_env(m, m.get(args.cell))
        data = {
            "cell": args.cell,
            "machine": info,
            "date": time.strftime("%Y-%m-%d"),
            "audit": bench_audit(paths.site_packages(env), sm=args.sm),
        }
        site = data["audit"].get("site", {})
        lib = data["audit"].get("library", {})
        data["targets"] = {
            "whole cell under 20 s": site.get("audit_s", 99) < 20,
            "5x faster than cuobjdump on libtorch_cuda.so": (lib.get("speedup") or 0) >= 5,
        }
        path = _write("audit", data, results_dir)
        print(json.dumps(data, indent=2))
        print(f"written: {path}")
    elif args.kind == "workflow-cache":
        from .workflow_cache import bench_workflow_cache

        data = bench_workflow_cache(m.root, cell=args.cell) | {"machine": info, "date": time.strftime("%Y-%m-%d")}
        path = _write("workflow-cache", data, results_dir)
        print(json.dumps(data["targets"], indent=2))
        print(f"written: {path}")
    elif args.kind == "matrix":
        data = bench_matrix(m, sm=args.sm)
        data["machine"] = info
        data["date"] = time.strftime("%Y-%m-%d")
        path = _write("matrix", data, results_dir)
        png = plot_matrix(data, path.with_suffix(".png"))
        print(json.dumps({k: data[k] for k in ("wall_s", "stages_s", "totals", "targets")}, indent=2))
        print(f"written: {path}" + (f", {png}" if png else ""))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmarks: build | audit | matrix | workflow-cache | transcribe | pipeline | trellis (ratios against "
        "baselines in the same run); summarise: recompute the transcribe files' summary and targets",
    )
    p.add_argument(
        "kind",
        choices=("build", "audit", "matrix", "workflow-cache", "transcribe", "pipeline", "trellis", "summarise"),
    )
    p.add_argument("--results", metavar="DIR", help="where results go (default: benchmarks/results/)")
    p.add_argument("--cell", default="stable-cu128")
    p.add_argument("--sm", type=int, default=120)
    p.add_argument("--no-pip", action="store_true", help="skip the (slow) pip baseline")
    t = p.add_argument_group("transcribe")
    t.add_argument("--device", choices=("cuda", "cpu"), default="cpu")
    t.add_argument("--model", default="tiny.en", help="tiny.en (offline real weights) or a CTranslate2 model folder")
    t.add_argument("--batch-size", default=None, help="N or N,M,... (first: main run, rest: sweep on the longest file)")
    t.add_argument("--compute-type", default=None, help="default: float16 on cuda, int8 on cpu")
    t.add_argument("--compare-compute-types", default=None, help="default: int8_float16 on cuda, float32 on cpu")
    t.add_argument(
        "--minutes", default=None, help="dialogue lengths, e.g. 1,5,20 (default: 1,5 on cpu, 1,5,20 on cuda)"
    )
    t.add_argument("--no-sample", action="store_true", help="leave out pyannote's shipped 30 s sample")
    t.add_argument("--max-new-tokens", type=int, default=None)
    t.add_argument(
        "--diarize-max-seconds",
        type=float,
        default=None,
        help="skip diarization of longer files (default on cpu: 70, as it runs below real time there)",
    )
    t.add_argument(
        "--fresh-jit-cache",
        action="store_true",
        help="give the run an empty CUDA JIT cache (CUDA_CACHE_PATH), for a cold first-call figure",
    )
    t.add_argument(
        "--export-audio",
        default=None,
        metavar="DIR",
        help="only write the benchmark audio (FLAC 16 kHz), references and RTTMs into DIR (for the GPU machine)",
    )
    w = p.add_argument_group("pipeline (the whole pipeline, levers one at a time, equivalence, memory budgets)")
    w.add_argument(
        "--large-model",
        default=None,
        metavar="DIR",
        help="a large-v3-shaped CTranslate2 folder (make_synthetic_model.py): its sweep and the budget runs",
    )
    w.add_argument(
        "--steps", default=None, help="comma list of plan steps to run now (default: every step without a result yet)"
    )
    w.add_argument("--work", default=None, metavar="DIR", help="the steps' raw results (resumable)")
    w.add_argument("--assemble-only", action="store_true", help="only write the results file from --work")
    w.add_argument(
        "--rejudge",
        nargs="+",
        default=None,
        metavar="FILE",
        help="re-derive these results files' summary, equivalence verdicts and targets by this version's code "
        "(measured fields untouched), and exit",
    )
    w.add_argument("--levers", default="all", help="the tiny.en sweep's levers: all, or a comma list")
    p.set_defaults(func=cmd_bench)
