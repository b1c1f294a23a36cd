"""`nox -s bench -- build|audit|matrix|transcribe`: timings as ratios against baselines run in the same command.

Results go to benchmarks/results/<kind>-<date>.json with the machine they came from, plus a PNG plot. A transcribe
file's ``summary`` and ``targets`` are computed from its measured stages (``summarise_file``); `bench summarise`
recomputes them in the committed files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import matrix as matrices
from . import paths, tools
from .lock import atomic_write


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def machine_info() -> dict[str, Any]:
    mem_gib = paths.memory_gib()
    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    except OSError:
        pass
    return {"cores": os.cpu_count(), "memory_gib": mem_gib, "cpu": cpu, "platform": f"{platform.system()} {platform.machine()}",
            "python": platform.python_version(), "uv": tools.run([tools.uv_bin(), "--version"]).stdout.strip()}


def _timed(args: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(list(args), env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])}... failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    return seconds


def _du_bytes(*folders: Path) -> int:
    """Disk use counting each hardlinked file once across the folders given (as `du` does in one call)."""
    out = subprocess.run(["du", "-s", "-B1", "-c", *map(str, folders)], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1].split()[0])


def portable(text: str, root: Path) -> str:
    """Results are committed: the checkout, a CI runner's temp folder and the home folder become '.',
    '$RUNNER_TEMP' and '~' (no machine paths)."""
    text = text.replace(str(root.resolve()), ".")
    if os.environ.get("RUNNER_TEMP"):
        text = text.replace(os.environ["RUNNER_TEMP"].rstrip("/"), "$RUNNER_TEMP")
    return text.replace(str(Path.home()), "~")


def _write(kind: str, data: dict[str, Any], results_dir: Path) -> Path:
    from .secrets import redact

    out = results_dir / f"{kind}-{time.strftime('%Y-%m-%d')}.json"
    root = matrices.find_matrix().parent
    atomic_write(out, portable(redact(json.dumps(data, indent=2)), root) + "\n")
    return out


def bench_build(m: matrices.Matrix, cell_id: str = "stable-cu128", *, pip_baseline: bool = True) -> dict[str, Any]:
    """Build one cell four ways in one run: ours cold/warm, raw `uv pip install` cold/warm, and plain pip."""
    cell = m.get(cell_id)
    lock = m.root / "constraints" / f"{cell.lock_id}.txt"
    # Everything on the uv cache's filesystem, so uv can hardlink as it does for a user.
    scratch = Path(tempfile.mkdtemp(prefix="wxm-bench-", dir=paths.cache_dir()))
    cache = scratch / "uv-cache"
    base_env = dict(os.environ) | {"UV_CACHE_DIR": str(cache), "UV_PYTHON_DOWNLOADS": "never", "NO_COLOR": "1"}
    ours_env = base_env | {"WXM_ENVS": str(scratch / "envs"), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    ours = [sys.executable, "-m", "whisperx_matrix", "build", cell.id, "--no-selftest"]
    uv = tools.uv_bin()
    results: dict[str, Any] = {"cell": cell.id, "lock": lock.name, "steps": {}}
    steps = results["steps"]
    try:
        _say("bench build: ours, cold (empty uv cache) ...")
        steps["ours_cold_s"] = round(_timed(ours, env=ours_env, cwd=m.root), 2)
        _say(f"  {steps['ours_cold_s']} s")
        env_link = scratch / "envs" / cell.id
        shutil.rmtree(scratch / "envs")
        _say("bench build: ours, warm (cache hot, env removed) ...")
        steps["ours_warm_s"] = round(_timed(ours, env=ours_env, cwd=m.root), 2)
        _say(f"  {steps['ours_warm_s']} s")
        _say("bench build: ours, no-op re-run ...")
        steps["ours_noop_s"] = round(_timed(ours, env=ours_env, cwd=m.root), 3)
        from .build import run_selftest

        t0 = time.perf_counter()
        st = run_selftest(env_link.resolve())
        steps["selftest_s"] = round(time.perf_counter() - t0, 2)
        steps["selftest_passed"] = bool(st.get("passed"))
        results["env_disk_bytes"] = _du_bytes(env_link.resolve())

        shutil.rmtree(cache)
        for label in ("cold", "warm"):
            venv = scratch / f"raw-uv-{label}"
            _say(f"bench build: raw uv pip install, {label} ...")
            t0 = time.perf_counter()
            subprocess.run([uv, "venv", "-q", "--python", cell.python, str(venv)], env=base_env, check=True)
            subprocess.run([uv, "pip", "install", "-q", "--require-hashes", "--python", str(venv / "bin" / "python"),
                            "-r", str(lock)], env=base_env, check=True)
            steps[f"raw_uv_{label}_s"] = round(time.perf_counter() - t0, 2)
            _say(f"  {steps[f'raw_uv_{label}_s']} s")
        # What a second env from the same cache adds on disk (hardlinks cost almost nothing); both raw-uv
        # envs came from the second cache, so they share inodes as two cells of one user do.
        first, second = scratch / "raw-uv-cold", scratch / "raw-uv-warm"
        results["second_env_adds_bytes"] = _du_bytes(first, second) - _du_bytes(first)

        if pip_baseline:
            venv = scratch / "pip"
            _say("bench build: plain pip into a fresh venv, no cache (the document's way) ...")
            pip_env = dict(os.environ) | {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-cache-dir", f"whisperx=={cell.pins['whisperx']}"]
                           + [f"{k}=={v}" for k, v in cell.pins.items() if k != "whisperx"], env=pip_env, check=True)
            steps["pip_cold_s"] = round(time.perf_counter() - t0, 2)
            _say(f"  {steps['pip_cold_s']} s")
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


def _save(fig: Any, path: Path) -> Path:
    """Lay out, write and close a figure (every benchmark plot is saved the same way)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _weights_legend(ax: Any, colors: dict[str, str]) -> None:
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=c, label=f"{k} weights") for k, c in colors.items()], fontsize=7, loc="lower right")


def plot_build(data: dict[str, Any], out: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    steps = data["steps"]
    names = [("pip_cold_s", "pip, no cache\n(the document's way)"), ("raw_uv_cold_s", "raw uv, cold"),
             ("ours_cold_s", "ours, cold"), ("raw_uv_warm_s", "raw uv, warm"), ("ours_warm_s", "ours, warm"),
             ("ours_noop_s", "ours, no-op")]
    names = [(k, label) for k, label in names if k in steps]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    vals = [steps[k] for k, _ in names]
    bars = ax.barh([label for _, label in names], vals, color=["#999" if "pip" in k else "#4c72b0" if "ours" in k else "#55a868" for k, _ in names])
    ax.set_xscale("log")
    ax.set_xlabel("seconds (log scale)")
    ax.set_title(f"Building {data['cell']} ({data['machine']['cores']} cores)")
    for bar, v in zip(bars, vals):
        ax.text(bar.get_width() * 1.05, bar.get_y() + bar.get_height() / 2, f"{v:g} s", va="center", fontsize=8)
    return _save(fig, out)


def bench_matrix(m: matrices.Matrix, *, sm: int) -> dict[str, Any]:
    """Wall time of a full matrix run (builds reused when warm) and the time per stage, summed over cells."""
    from . import matrix_run

    cells = m.select([])
    t0 = time.perf_counter()
    result = matrix_run.run_matrix(m, cells, sm=sm, jobs=max(1, min(len(cells), os.cpu_count() or 1)))
    wall = time.perf_counter() - t0
    per_cell = {c["id"]: {k: v for k, v in c["seconds"].items() if v is not None} for c in result["cells"]}
    return {"wall_s": round(wall, 1), "stages_s": {k: v for k, v in result["seconds"].items() if k != "total"},
            "per_cell_s": per_cell, "totals": result["totals"], "target_sm": sm,
            "targets": {"full reachable matrix, warm, under 5 minutes": wall < 300}}


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
        left = [a + b for a, b in zip(left, vals)]
    ax.invert_yaxis()
    ax.set_xlabel("seconds (stage time per cell; cells run in parallel)")
    ax.set_title(f"nox -s matrix: {data['wall_s']:.0f} s wall for {len(cells)} cells ({data['machine']['cores']} cores)")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, out)


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
    if args.kind == "summarise":
        for path, changed in summarise_results(Path(args.results) if args.results else m.root / "benchmarks" / "results"):
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
        from .audit import bench_audit
        from .build import built_env

        env = built_env(m, m.get(args.cell))
        data = {"cell": args.cell, "machine": info, "date": time.strftime("%Y-%m-%d"),
                "audit": bench_audit(paths.site_packages(env), sm=args.sm)}
        site = data["audit"].get("site", {})
        lib = data["audit"].get("library", {})
        data["targets"] = {"whole cell under 20 s": site.get("audit_s", 99) < 20,
                           "5x faster than cuobjdump on libtorch_cuda.so": (lib.get("speedup") or 0) >= 5}
        path = _write("audit", data, results_dir)
        print(json.dumps(data, indent=2))
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
    p = sub.add_parser("bench", help="benchmarks: build | audit | matrix | transcribe (ratios against baselines in the "
                                     "same run); summarise: recompute the transcribe files' summary and targets")
    p.add_argument("kind", choices=("build", "audit", "matrix", "transcribe", "pipeline", "summarise"))
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
    t.add_argument("--minutes", default=None, help="dialogue lengths, e.g. 1,5,20 (default: 1,5 on cpu, 1,5,20 on cuda)")
    t.add_argument("--no-sample", action="store_true", help="leave out pyannote's shipped 30 s sample")
    t.add_argument("--max-new-tokens", type=int, default=None)
    t.add_argument("--diarize-max-seconds", type=float, default=None,
                   help="skip diarization of longer files (default on cpu: 70, as it runs below real time there)")
    t.add_argument("--fresh-jit-cache", action="store_true",
                   help="give the run an empty CUDA JIT cache (CUDA_CACHE_PATH), for a cold first-call figure")
    t.add_argument("--export-audio", default=None, metavar="DIR",
                   help="only write the benchmark audio (FLAC 16 kHz), references and RTTMs into DIR (for the GPU machine)")
    w = p.add_argument_group("pipeline (the whole pipeline, levers one at a time, equivalence, memory budgets)")
    w.add_argument("--large-model", default=None, metavar="DIR",
                   help="a large-v3-shaped CTranslate2 folder (make_synthetic_model.py): its sweep and the budget runs")
    w.add_argument("--steps", default=None, help="comma list of plan steps to run now (default: every step without "
                                                 "a result yet)")
    w.add_argument("--work", default=None, metavar="DIR", help="the steps' raw results (resumable)")
    w.add_argument("--assemble-only", action="store_true", help="only write the results file from --work")
    w.add_argument("--levers", default="all", help="the tiny.en sweep's levers: all, or a comma list")
    p.set_defaults(func=cmd_bench)


# ------------------------------------------------------------------------------------------- transcribe

TRANSCRIBE_SCRIPT = Path(__file__).resolve().parent / "cellside" / "bench_transcribe.py"


def parse_minutes(text: str) -> list[float]:
    try:
        out = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--minutes must be numbers separated by commas (got {text!r})") from None
    if not out or any(x <= 0 for x in out):
        raise ValueError(f"--minutes must be positive (got {text!r})")
    return out


def sample_files(env: Path) -> tuple[Path, str, Path] | None:
    """pyannote-audio's shipped sample inside a cell: (wav, reference text from sample.stm, rttm)."""
    folder = paths.site_packages(env) / "pyannote" / "audio" / "sample"
    wav, stm, rttm = folder / "sample.wav", folder / "sample.stm", folder / "sample.rttm"
    if not (wav.is_file() and stm.is_file() and rttm.is_file()):
        return None
    return wav, stm_text(stm.read_text(encoding="utf-8")), rttm


def stm_text(stm: str) -> str:
    """The transcript of an STM file: fields 6.. of each line, in order."""
    return " ".join(" ".join(ln.split()[5:]) for ln in stm.splitlines() if len(ln.split()) > 5)


def bench_inputs(env: Path | None, minutes: Sequence[float], work: Path, *, sample: bool = True,
                 flac: bool = False) -> list[dict[str, Any]]:
    """Write the audio, reference text and RTTM of each benchmark file into ``work``; one dict per file."""
    from . import speech

    work.mkdir(parents=True, exist_ok=True)
    items = []
    for mins in minutes:
        sp = speech.dialogue(mins)
        name = f"dialogue-{mins:g}min"
        wav = sp.wav
        if flac:
            wav = work / f"{name}.flac"
            proc = tools.run([tools.require("ffmpeg"), "-y", "-loglevel", "error", "-i", str(sp.wav), "-ac", "1",
                              "-ar", "16000", "-sample_fmt", "s16", str(wav)])
            if not proc.ok:
                raise RuntimeError(f"ffmpeg could not write {wav.name}: {proc.last_error_line()}")
        (work / f"{name}.txt").write_text(sp.text + "\n", encoding="utf-8")
        (work / f"{name}.rttm").write_text(sp.rttm(uri=name), encoding="utf-8")
        items.append({"name": name, "audio": wav, "text": work / f"{name}.txt", "rttm": work / f"{name}.rttm",
                      "seconds": round(sp.seconds, 2), "source": "espeak-ng two-voice dialogue"})
    if sample and env is not None:
        found = sample_files(env)
        if found:
            wav, text, rttm = found
            if flac:
                shutil.copy2(wav, work / "sample.wav")
                wav = work / "sample.wav"
                shutil.copy2(rttm, work / "sample.rttm")
                rttm = work / "sample.rttm"
            (work / "sample.txt").write_text(text + "\n", encoding="utf-8")
            items.insert(0, {"name": "sample", "audio": wav, "text": work / "sample.txt", "rttm": rttm,
                             "seconds": 30.0, "source": "pyannote-audio's shipped sample (real speech, 2 speakers)"})
    return items


def transcribe_command(python: Path, items: Sequence[dict[str, Any]], out: Path, *, device: str, model: str,
                       batch_size: str, compute_type: str | None = None, compare: str | None = None,
                       max_new_tokens: int | None = None, diarize_max_seconds: float | None = None) -> list[str]:
    cmd = [str(python), "-I", str(TRANSCRIBE_SCRIPT), "--device", device, "--model", model, "--batch-size", batch_size,
           "--out", str(out)]
    for it in items:
        cmd += ["--audio", str(it["audio"]), "--reference-text", str(it["text"]), "--rttm", str(it["rttm"])]
    if compute_type:
        cmd += ["--compute-type", compute_type]
    if compare is not None:
        cmd += ["--compare-compute-types", compare]
    if max_new_tokens:
        cmd += ["--max-new-tokens", str(max_new_tokens)]
    if diarize_max_seconds is not None:
        cmd += ["--diarize-max-seconds", f"{diarize_max_seconds:g}"]
    return cmd


def smi_gpu() -> dict[str, Any] | None:
    """GPU name, driver and compute capability from nvidia-smi, None where there is none."""
    if not shutil.which("nvidia-smi"):
        return None
    proc = tools.run(["nvidia-smi", "--query-gpu=name,driver_version,compute_cap,memory.total",
                      "--format=csv,noheader"])
    if not proc.ok or not proc.stdout.strip():
        return {"error": proc.last_error_line()}
    name, driver, cc, mem = ([x.strip() for x in proc.stdout.strip().splitlines()[0].split(",")] + [""] * 4)[:4]
    return {"name": name, "driver": driver, "compute_capability": cc, "memory": mem}


def summarise_transcribe(data: dict[str, Any]) -> dict[str, Any]:
    """Headline numbers per file from the cellside result (the targets are judged by ``transcribe_targets``)."""
    stages = [s for s in data.get("stages", []) if s.get("status") == "ok"]
    main = [s for s in stages if s.get("kind") == "whisperx_batched"]
    out: dict[str, Any] = {"per_file": {}}
    for s in main:
        f = s["file"]
        pf = out["per_file"].setdefault(f, {})
        pf["batched_rtf"] = s.get("rtf")
        pf["asr_only_rtf"] = s.get("asr_only_rtf")
        pf["wer"] = s.get("wer")
        pf["tokens_per_window"] = s.get("tokens_per_window")
        for o in stages:
            if o.get("file") != f:
                continue
            if o.get("kind") == "sequential":
                pf["sequential_rtf"] = o.get("rtf")
                pf["sequential_wer"] = o.get("wer")
                if o.get("rtf") and s.get("rtf"):
                    pf["batched_over_sequential"] = round(s["rtf"] / o["rtf"], 2)
            elif o["stage"] in ("align", "diarize"):
                pf[f"{o['stage']}_rtf"] = o.get("rtf")
        extra = [o for o in stages if o.get("file") == f and o["stage"] in ("align", "diarize")]
        wall = (s.get("wall_s") or 0) + sum(o.get("wall_s") or 0 for o in extra)
        figure = round(s["audio_s"] / wall, 2) if wall else None
        pf["pipeline_stages"] = ["vad+asr (batched)"] + [o["stage"] for o in extra]
        # A figure is named for the stages it covers (#15): "whole" only with alignment and diarization.
        if {"align", "diarize"} <= {o["stage"] for o in extra}:
            pf["whole_pipeline_rtf"] = figure
        else:
            pf["partial_rtf"] = figure
            pf["partial_stages"] = "+".join(["vad+asr"] + [o["stage"] for o in extra])
    return out


# ----------------------------------------------------------------------------------- transcribe targets

# Issue #7's targets, as data. ``transcribe_targets`` judges a results file against them from its measured stages;
# `bench transcribe` writes the result under "targets", and the READMEs' figures are rendered from there.
GPU_TARGETS: dict[str, dict[str, Any]] = {
    "asr_large_v3_fp16_bs16": {"model": "large-v3", "compute_type": "float16", "batch_size": 16, "min_rtf": 150.0},
    "pipeline": {"min_rtf": 70.0},
    "gpu_memory_large_v3_fp16_bs16": {"model": "large-v3", "compute_type": "float16", "batch_size": 16, "max_gb": 8.0},
}
CPU_TARGETS: dict[str, dict[str, Any]] = {
    "cpu_faster_than_real_time": {"min_rtf": 1.0},
    "cpu_wer": {"max_wer": 0.10},
}
MIB = 2**20


def transcribe_runs(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The cellside results in a transcribe results file that ran: ``result`` for one `bench transcribe` run,
    or the named runs of a merged file (``tiny_en``, ``synthetic_large_v3``, ...), in file order."""
    return {k: v for k, v in data.items()
            if isinstance(v, dict) and isinstance(v.get("stages"), list) and v.get("ok")}


def _ok(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in run["stages"] if s.get("status") == "ok"]


def _longest_dialogue(run: dict[str, Any]) -> str | None:
    files = {s["file"]: s.get("audio_s") or 0 for s in _ok(run) if str(s.get("file", "")).startswith("dialogue")}
    return max(files, key=files.__getitem__) if files else None


def _batched(run: dict[str, Any], file: str | None, *, compute_type: str | None = None) -> list[dict[str, Any]]:
    """The batched VAD+ASR stages of one file (the main one and the batch sweep), by batch size."""
    found = [s for s in _ok(run) if s.get("file") == file and s.get("kind") in ("whisperx_batched", "batch_sweep")
             and (compute_type is None or s.get("compute_type") == compute_type)]
    return sorted(found, key=lambda s: s.get("batch_size") or 0)


def _stage_on(run: dict[str, Any], file: str | None, name: str) -> dict[str, Any] | None:
    return next((s for s in _ok(run) if s.get("file") == file and s.get("stage") == name), None)


def _large_v3_batch(data: dict[str, Any], spec: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
    """(run name, run, stage) of the first run of a large-v3 model with the spec's compute type and batch size."""
    for name, run in transcribe_runs(data).items():
        if spec["model"] not in str(run.get("model", "")):
            continue
        file = _longest_dialogue(run)
        for s in _batched(run, file, compute_type=spec["compute_type"]):
            if s.get("batch_size") == spec["batch_size"]:
                return name, run, s
    return None


def _where(name: str, run: dict[str, Any], stage: dict[str, Any]) -> dict[str, Any]:
    return {"run": name, "model": run.get("model"), "weights": run.get("model_weights"), "file": stage.get("file"),
            "audio_s": stage.get("audio_s"), "compute_type": stage.get("compute_type"),
            "batch_size": stage.get("batch_size")}


def _target_asr(data: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"target": f"{spec['model']} {spec['compute_type']} batched ASR (WhisperX, batch "
                                     f"{spec['batch_size']}) >= {spec['min_rtf']:g}x real time on the longest file",
                           "min_rtf": spec["min_rtf"]}
    found = _large_v3_batch(data, spec)
    if found is None:
        return out | {"met": None, "not_measured": f"no {spec['model']} run with a {spec['compute_type']} batch "
                                                  f"{spec['batch_size']} stage"}
    name, run, s = found
    others = {str(o["batch_size"]): o.get("rtf") for o in _batched(run, s["file"], compute_type=spec["compute_type"])
              if o is not s}
    real = {n: t.get("tokens_per_window") for n, r in transcribe_runs(data).items() if r.get("model_weights") == "real"
            for t in _batched(r, s["file"]) if t.get("kind") == "whisperx_batched"}
    return out | _where(name, run, s) | {
        "rtf": s.get("rtf"), "wall_s": s.get("wall_s"), "asr_only_rtf": s.get("asr_only_rtf"),
        "other_batch_sizes_rtf": others, "tokens_per_window": s.get("tokens_per_window"),
        "max_new_tokens": run.get("max_new_tokens"), "real_weights_tokens_per_window": real,
        "met": (s.get("rtf") or 0) >= spec["min_rtf"]}


def _target_pipeline(data: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"target": "whole pipeline (VAD + batched ASR + alignment + diarization) >= "
                                     f"{spec['min_rtf']:g}x real time on the longest file", "min_rtf": spec["min_rtf"]}
    measured, missing = None, {}
    for name, run in transcribe_runs(data).items():
        file = _longest_dialogue(run)
        main = next((s for s in _batched(run, file) if s.get("kind") == "whisperx_batched"), None)
        align, diarize = _stage_on(run, file, "align"), _stage_on(run, file, "diarize")
        lacking = [n for n, s in (("batched ASR", main), ("align", align), ("diarize", diarize)) if s is None]
        if lacking:
            missing[name] = f"no {' or '.join(lacking)} stage on {file}"
        elif measured is None:
            measured = name, run, main, align, diarize
    if measured is None:
        return out | {"met": None, "not_measured": missing}
    name, run, main, align, diarize = measured
    parts = {"vad+asr": main, "align": align, "diarize": diarize}
    total = round(sum(s["wall_s"] for s in parts.values()), 3)
    rtf = round(main["audio_s"] / total, 2)
    return out | _where(name, run, main) | {
        "stage_weights": {k: s.get("weights") for k, s in parts.items()},
        "stages_s": {k: s["wall_s"] for k, s in parts.items()}, "vad_s_within_asr": main.get("vad_s"),
        "stage_rtf": {k: s.get("rtf") for k, s in parts.items()}, "total_s": total, "rtf": rtf,
        "not_measured_for": missing, "met": rtf >= spec["min_rtf"]}


def _linear_fit(points: list[tuple[float, float]]) -> tuple[float, float, list[float]]:
    """Least squares y = a + b x: (a, b, residuals)."""
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    b = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    a = my - b * mx
    return a, b, [y - (a + b * x) for x, y in points]


def _memory_estimate(data: dict[str, Any], run: dict[str, Any], stages: list[dict[str, Any]],
                     batch_size: int) -> dict[str, Any] | None:
    """The whole-process peak against the windows in one batch, fitted as fixed + per_window x windows; with the
    model's parameter count (machine.synthetic_model), the weights' share and the estimate at ``batch_size``."""
    points = [(min(s["batch_size"], s["windows"]), s["gpu_peak_mib"]) for s in stages
              if s.get("windows") and s.get("gpu_peak_mib")]
    if len({x for x, _ in points}) < 3:
        return None
    fixed, slope, residuals = _linear_fit(points)
    per_window = round(slope, 1)
    est: dict[str, Any] = {
        "method": "least-squares fit of the whole-process peak against the windows in one batch "
                  "(min(batch size, windows in the file))",
        "points_windows_mib": [list(p) for p in points], "per_window_mib": per_window,
        "fixed_mib": round(fixed), "fit_residuals_mib": [round(r, 1) for r in residuals],
        "label": "memory depends on the model's shape, not on its weight values"}
    model = (data.get("machine") or {}).get("synthetic_model") or {}
    bytes_per = {"float16": 2, "float32": 4, "int8_float16": 1}.get(run.get("compute_type"))
    if model.get("parameters") and bytes_per:
        weights = model["parameters"] * bytes_per / MIB
        est["weights_mib"] = round(weights)
        est["weights_and_batch_mib"] = round(weights + batch_size * per_window)
        est["weights_and_batch_formula"] = f"{model['parameters']} parameters x {bytes_per} bytes + " \
                                           f"{batch_size} x {per_window} MiB"
    shape = model.get("shape") or {}
    if bytes_per and all(shape.get(k) for k in ("decoder_layers", "max_source_positions", "d_model")):
        kv = shape["decoder_layers"] * 2 * shape["max_source_positions"] * shape["d_model"] * bytes_per
        est["cross_attention_kv_per_window_mib"] = round(kv / MIB, 1)
    return est


def _target_memory(data: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    limit = round(spec["max_gb"] * 10**9 / MIB)
    out: dict[str, Any] = {"target": f"peak GPU memory for {spec['model']} {spec['compute_type']} batch "
                                     f"{spec['batch_size']} reported, and at most {spec['max_gb']:g} GB",
                           "max_gb": spec["max_gb"], "limit_mib": limit, "limit_if_gib_mib": round(spec["max_gb"] * 1024)}
    found = _large_v3_batch(data, spec)
    if found is None or not found[2].get("gpu_peak_mib"):
        return out | {"met": None, "not_measured": f"no {spec['model']} run with a {spec['compute_type']} batch "
                                                  f"{spec['batch_size']} stage that recorded gpu_peak_mib"}
    name, run, s = found
    stages = _batched(run, s["file"], compute_type=spec["compute_type"])
    by_batch = {str(o["batch_size"]): o.get("gpu_peak_mib") for o in stages}
    fits = {str(o["batch_size"]): {"peak_mib": o["gpu_peak_mib"], "rtf": o.get("rtf")} for o in stages
            if o.get("gpu_peak_mib") and o["gpu_peak_mib"] <= limit}
    return out | _where(name, run, s) | {
        "peak_mib": s["gpu_peak_mib"], "peak_source": s.get("gpu_peak_source"),
        "device_used_peak_mib": s.get("gpu_device_used_peak_mib"), "by_batch_size_peak_mib": by_batch,
        "batch_sizes_within_limit": fits, "asr_estimate": _memory_estimate(data, run, stages, spec["batch_size"]),
        "met": s["gpu_peak_mib"] <= limit}


def _cpu_files(data: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, dict[str, Any]]] | None:
    for name, run in transcribe_runs(data).items():
        if run.get("model_weights") != "real":
            continue
        main = {s["file"]: s for s in _ok(run) if s.get("kind") == "whisperx_batched"
                and str(s.get("file", "")).startswith("dialogue")}
        if main:
            return name, run, main
    return None


def _target_cpu_rtf(data: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"target": f"batched transcription faster than {spec['min_rtf']:g}x real time on every "
                                     "dialogue file (real weights)", "min_rtf": spec["min_rtf"]}
    found = _cpu_files(data)
    if found is None:
        return out | {"met": None, "not_measured": "no real-weight batched stage on a dialogue file"}
    name, run, main = found
    rtf = {f: s.get("rtf") for f, s in main.items()}
    return out | {"run": name, "model": run.get("model"), "compute_type": run.get("compute_type"),
                  "per_file_rtf": rtf, "slowest_rtf": min((v or 0) for v in rtf.values()),
                  "met": all((v or 0) > spec["min_rtf"] for v in rtf.values())}


def _target_cpu_wer(data: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"target": f"WER under {spec['max_wer']:.0%} on every dialogue file (batched, real "
                                     "weights)", "max_wer": spec["max_wer"]}
    found = _cpu_files(data)
    if found is None:
        return out | {"met": None, "not_measured": "no real-weight batched stage on a dialogue file"}
    name, run, main = found
    wer = {f: s.get("wer") for f, s in main.items()}
    known = [v for v in wer.values() if v is not None]
    return out | {"run": name, "model": run.get("model"), "per_file_wer": wer,
                  "worst_wer": max(known) if known else None,
                  "met": len(known) == len(wer) and all(v < spec["max_wer"] for v in known)}


_JUDGES = {"asr_large_v3_fp16_bs16": _target_asr, "pipeline": _target_pipeline,
           "gpu_memory_large_v3_fp16_bs16": _target_memory, "cpu_faster_than_real_time": _target_cpu_rtf,
           "cpu_wer": _target_cpu_wer}


def transcribe_targets(data: dict[str, Any]) -> dict[str, Any]:
    """Each of the issue's targets for this results file's device (GPU_TARGETS or CPU_TARGETS): the measured
    figure it is judged on, where it comes from (run, model, weights, file), and ``met`` (True, False, or None
    with ``not_measured`` saying why)."""
    specs = GPU_TARGETS if data.get("device") == "cuda" else CPU_TARGETS
    return {key: _JUDGES[key](data, spec) for key, spec in specs.items()}


def summarise_file(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with ``summary`` and ``targets`` recomputed from its measured stages: one run's summary under
    ``result``, or one per run of a merged file."""
    runs = transcribe_runs(data)
    out = dict(data)
    if "result" in data:
        if "result" in runs:
            out["summary"] = summarise_transcribe(runs["result"])
    else:
        out["summary"] = {name: summarise_transcribe(run) for name, run in runs.items()}
    out["targets"] = transcribe_targets(data)
    return out


def _short(file: str) -> str:
    """A file name without the cache key that speech.py puts in it: dialogue-5min-d5221521d767bd5f.wav -> dialogue-5min."""
    import re

    return re.sub(r"-[0-9a-f]{16}$", "", Path(file).stem) if file else ""


def plot_transcribe(data: dict[str, Any], base: Path) -> list[Path]:
    """PNGs: RTF by stage, RTF by batch size, memory by stage. Synthetic weights are marked in titles/legends."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    res = data["result"]
    stages = [s for s in res.get("stages", []) if s.get("status") == "ok"]
    dev = data["device"]
    where = data.get("gpu", {}).get("name") if dev == "cuda" else f"CPU, {data['machine']['cores']} cores (shared: noisy)"
    model = f"{res.get('model')} ({res.get('model_weights')} weights)"
    colors = {"real": "#4c72b0", "synthetic": "#dd8452"}
    out = []

    rtf_stages = [s for s in stages if s.get("rtf") and s["stage"] not in ("cold_first_call", "warm_second_call")
                  and not s["stage"].startswith("warmup")]
    if rtf_stages:
        fig, ax = plt.subplots(figsize=(9, 0.32 * len(rtf_stages) + 1.6))
        labels = [f"{s['stage']} · {_short(s.get('file', ''))}" for s in rtf_stages]
        bars = ax.barh(labels, [s["rtf"] for s in rtf_stages], color=[colors.get(s.get("weights"), "#999") for s in rtf_stages])
        ax.axvline(1, color="k", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.invert_yaxis()
        ax.set_xlabel("real-time factor = audio s / wall s (log scale; dashed: real time)")
        ax.set_title(f"WhisperX stages, {model}, {dev}: {where}", fontsize=9)
        for bar, s in zip(bars, rtf_stages):
            ax.text(bar.get_width() * 1.05, bar.get_y() + bar.get_height() / 2, f"{s['rtf']:g}x", va="center", fontsize=7)
        _weights_legend(ax, colors)
        ax.tick_params(axis="y", labelsize=7)
        out.append(_save(fig, base.with_name(base.name + "-rtf-stage.png")))

    sweep = sorted([s for s in stages if s.get("kind") in ("whisperx_batched", "batch_sweep") and s.get("batch_size")],
                   key=lambda s: (s["file"], s["batch_size"]))
    longest = max((s["file"] for s in sweep), key=lambda f: max(x["audio_s"] for x in sweep if x["file"] == f), default=None)
    sweep = [s for s in sweep if s["file"] == longest]
    ooms = [s for s in res.get("stages", []) if s.get("kind") == "batch_sweep" and s.get("status") == "oom"]
    if len(sweep) > 1 or ooms:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.plot([s["batch_size"] for s in sweep], [s["rtf"] for s in sweep], "o-", color=colors.get(res.get("model_weights")),
                label=f"{model}, {res.get('compute_type')}")
        for s in ooms:
            ax.axvline(s["batch_size"], color="r", ls=":", label=f"OOM at batch {s['batch_size']}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("real-time factor (audio s / wall s)")
        ax.set_title(f"Batched VAD+ASR on {_short(longest or '')}, {dev}", fontsize=9)
        ax.legend(fontsize=7)
        out.append(_save(fig, base.with_name(base.name + "-rtf-batch.png")))

    key = "gpu_peak_mib" if dev == "cuda" else "rss_peak_mib"
    mem = [s for s in stages if s.get(key)]
    if mem:
        fig, ax = plt.subplots(figsize=(9, 0.32 * len(mem) + 1.6))
        ax.barh([f"{s['stage']} · {_short(s.get('file', ''))}" for s in mem], [s[key] for s in mem],
                color=[colors.get(s.get("weights"), "#999") for s in mem])
        ax.invert_yaxis()
        ax.set_xlabel("peak GPU memory, MiB (torch stages: torch allocator; CTranslate2: NVML, whole process)"
                      if dev == "cuda" else "peak RSS during the stage, MiB (whole process)", fontsize=8)
        ax.set_title(f"Memory by stage, {model}, {dev}", fontsize=9)
        _weights_legend(ax, colors)
        ax.tick_params(axis="y", labelsize=7)
        out.append(_save(fig, base.with_name(base.name + "-memory.png")))
    return out


def cmd_transcribe(m: matrices.Matrix, args: argparse.Namespace) -> int:
    from .build import built_env, clean_env

    device = args.device
    minutes = parse_minutes(args.minutes or ("1,5" if device == "cpu" else "1,5,20"))
    if args.export_audio:
        items = bench_inputs(None, minutes, Path(args.export_audio), sample=False, flac=True)
        for it in items:
            _say(f"{it['audio']}: {it['seconds']} s, {it['audio'].stat().st_size / 2**20:.1f} MiB")
        return 0
    tools.require("ffmpeg")
    env = built_env(m, m.get(args.cell))
    scratch = paths.cache_dir() / "bench-transcribe"
    _say(f"bench transcribe: making audio ({', '.join(f'{x:g}' for x in minutes)} min) ...")
    items = bench_inputs(env, minutes, scratch, sample=not args.no_sample)
    batch = args.batch_size or ("8,4,16" if device == "cpu" else "16,8,32,64")
    diar_cap = args.diarize_max_seconds if args.diarize_max_seconds is not None else (70.0 if device == "cpu" else None)
    raw = scratch / f"result-{device}-{os.getpid()}.json"
    cmd = transcribe_command(env / "bin" / "python", items, raw, device=device, model=args.model, batch_size=batch,
                             compute_type=args.compute_type, compare=args.compare_compute_types,
                             max_new_tokens=args.max_new_tokens, diarize_max_seconds=diar_cap)
    _say(f"bench transcribe: running in {args.cell}'s python, LD_LIBRARY_PATH unset ...")
    t0 = time.perf_counter()
    child_env = clean_env()
    if args.fresh_jit_cache:  # the first call's figure is then the cold one; the result records the cache state
        child_env["CUDA_CACHE_PATH"] = tempfile.mkdtemp(prefix="cuda-jit-", dir=scratch)
    proc = subprocess.run(cmd, env=child_env, stdout=subprocess.PIPE, text=True)
    wall = round(time.perf_counter() - t0, 1)
    try:
        result = json.loads(raw.read_text())
    except (OSError, ValueError):
        result = {"ok": False, "error": f"the benchmark script wrote no result (exit code {proc.returncode})"}
    data = {"kind": "transcribe", "cell": args.cell, "device": device, "date": time.strftime("%Y-%m-%d"),
            "machine": machine_info(), "gpu": smi_gpu() or {}, "wall_s": wall,
            "notes": ["CPU timings are noisy: the machine's cores were shared with other work during the run"]
            if device == "cpu" else [],
            "inputs": [{k: (str(v) if isinstance(v, Path) else v) for k, v in it.items() if k not in ("audio", "text", "rttm")}
                       | {"file": Path(it["audio"]).name} for it in items],
            "result": result}
    if result.get("ok"):
        data["summary"] = summarise_transcribe(result)
        data["targets"] = transcribe_targets(data)
    path = _write(f"transcribe-{device}", data, Path(args.results) if getattr(args, "results", None) else m.root / "benchmarks" / "results")
    pngs = plot_transcribe(data, path.with_suffix("")) if result.get("ok") else []
    print(json.dumps({k: data[k] for k in ("summary", "targets")} if result.get("ok") else {"error": result.get("error")},
                     indent=2))
    print(f"written: {path}" + "".join(f", {p}" for p in pngs))
    return 0 if result.get("ok") else 1


# ------------------------------------------------------------------------------------------- pipeline (#15)

PIPELINE_SCRIPT = Path(__file__).resolve().parent / "cellside" / "bench_pipeline.py"
PIPELINE_STAGES = ("vad+asr", "align", "diarize", "assign_speakers")
WHOLE_PIPELINE_MIN_RTF = 70.0
MEMORY_TARGET_GB = 8.0
BUDGETS_GB = (8, 12)
SYNTHETIC_LARGE_V3 = "large-v3-shaped, synthetic weights (make_synthetic_model.py)"
BUDGET_HEADROOM_MIB = 0  # the budget is compared with NVML's whole-process peak as measured: no margin added


def pipeline_plan(large_model: str | None, *, max_new_tokens: int = 100) -> list[dict[str, Any]]:
    """The benchmark's steps, in order; each runs bench_pipeline.py once in a fresh process.

    1. ``tiny_en_sweep``: tiny.en, the reference twice, every lever alone, the picked levers combined.
    2. ``large_v3_sweep``: the large-v3-shaped model, the reference twice and tiny.en's picked levers combined
       (``combine: "from:tiny_en_sweep"``): its whole pipeline and the same equivalence check.
    3. ``single-*``: fresh processes, one setting each (model, compute type, batch size, levers), for the
       whole-process memory peak and speed of the memory-budget table; ``reference`` ones have no lever."""
    steps: list[dict[str, Any]] = [{"name": "tiny_en_sweep", "mode": "sweep", "model": "tiny.en", "levers": "all"}]
    singles = [("tiny.en", "tiny_en", "float16", 16)]
    if large_model:
        lg = {"model": large_model, "max_new_tokens": max_new_tokens}
        # the ASR lever again alone: it is the one lever whose outputs depend on the ASR model
        steps.append({"name": "large_v3_sweep", "mode": "sweep", "levers": "asr_batch_32",
                      "combine": "from:tiny_en_sweep"} | lg)
        steps.append({"name": "single-large_v3-float16-bs16-reference", "mode": "single", "compute_type": "float16",
                      "batch_size": 16, "combine": "", "label": "reference"} | lg)
        singles += [(large_model, "large_v3", ct, bs) for ct, bs in
                    (("float16", 8), ("float16", 16), ("float16", 32), ("int8_float16", 16), ("int8_float16", 32))]
    for model, short, ct, bs in singles:
        step = {"name": f"single-{short}-{ct}-bs{bs}", "mode": "single", "model": model, "compute_type": ct,
                "batch_size": bs, "combine": "from:tiny_en_sweep+empty_cache", "label": "levers"}
        if model != "tiny.en":
            step["max_new_tokens"] = max_new_tokens
        steps.append(step)
    return steps


def resolve_combine(spec: str | None, done: dict[str, dict[str, Any]]) -> str | None:
    """A step's ``combine``: a lever list, or ``from:STEP[+LEVER...]``: STEP's picked levers (and the extra ones).
    Asr batch levers are dropped for single runs, whose batch size is the step's own."""
    if spec is None or not spec.startswith("from:"):
        return spec
    src, *extra = spec[len("from:"):].split("+")
    picked = ((done.get(src) or {}).get("result") or {}).get("combined_levers")
    if picked is None:
        raise ValueError(f"step needs {src}'s picked levers, and {src} has not run (or failed)")
    levers = [lv for lv in picked if not (extra and lv.startswith("asr_batch_"))] + extra
    return ",".join(levers)


def pipeline_command(python: Path, audio: Path, out: Path, step: dict[str, Any], combine: str | None,
                     device: str) -> list[str]:
    cmd = [str(python), "-I", str(PIPELINE_SCRIPT), "--device", device, "--audio", str(audio), "--out", str(out),
           "--mode", step["mode"], "--model", step["model"]]
    if step.get("levers") is not None:
        cmd += ["--levers", step["levers"]]
    if combine is not None:
        cmd += ["--combine", combine or "none"]
    for key in ("compute_type", "batch_size", "max_new_tokens"):
        if step.get(key) is not None:
            cmd += [f"--{key.replace('_', '-')}", str(step[key])]
    return cmd


def _rtf(audio_s: float, seconds: float | None) -> float | None:
    return round(audio_s / seconds, 2) if seconds else None


def pipeline_run_figures(run: dict[str, Any], audio_s: float) -> dict[str, Any]:
    """One configuration's figures: each stage's seconds and RTF; ``whole_pipeline_rtf`` only when every stage ran
    (VAD + ASR, alignment, diarization, speaker assignment), else the figure is named for the stages it covers."""
    stages: dict[str, float] = {}
    for r in run.get("stages", []):
        if r.get("status") != "ok":
            continue
        stages[r["stage"]] = r["wall_s"]
    covered = set()
    for name in stages:
        covered |= {"align", "diarize"} if name.startswith("align+diarize") else {name}
    out: dict[str, Any] = {"stages_s": stages, "stages_rtf": {k: _rtf(audio_s, v) for k, v in stages.items()},
                           "whole_s": run.get("whole_s")}
    if run.get("ok") and set(PIPELINE_STAGES) <= covered:
        out["whole_pipeline_rtf"] = _rtf(audio_s, run.get("whole_s"))
    elif stages:
        name = "+".join(s for s in PIPELINE_STAGES if s in covered)
        out["partial_rtf"] = {"stages": name, "rtf": _rtf(audio_s, sum(stages.values()))}
    return out


def budget_mib(gb: float) -> int:
    """A budget of ``gb`` GB (10^9 bytes) in MiB, rounded down: the stricter reading of "8 GB"."""
    return int(gb * 10**9 // MIB)


def settings_for_budget(singles: list[dict[str, Any]], gb: float) -> dict[str, Any]:
    """For one model, the fastest measured setting whose whole-process peak fits ``gb``: the rows are single runs
    (``model``, ``compute_type``, ``batch_size``, ``peak_mib``, ``rtf``); none fits -> ``fits: None``."""
    limit = budget_mib(gb) - BUDGET_HEADROOM_MIB
    fit = [s for s in singles if s.get("peak_mib") is not None and s.get("rtf") and s["peak_mib"] <= limit]
    best = max(fit, key=lambda s: (s["rtf"], -s["peak_mib"]), default=None)
    return {"budget_gb": gb, "limit_mib": limit, "fits": best,
            "measured": len([s for s in singles if s.get("peak_mib") is not None])}


def summarise_pipeline(data: dict[str, Any]) -> dict[str, Any]:
    """``summary``, ``equivalence``, ``settings_by_budget`` and ``targets`` of a pipeline results file, from its
    steps' raw results (``steps``: name -> {"result": the cellside JSON, ...})."""
    steps = data.get("steps", {})
    summary: dict[str, Any] = {}
    equivalence: dict[str, Any] = {}
    for name, st in steps.items():
        res = st.get("result") or {}
        if not res.get("ok") or res.get("mode") != "sweep":
            continue
        audio_s = res["audio_s"]
        runs = {r["label"]: r for r in res.get("runs", [])}
        summary[name] = {"model": res.get("model"), "model_weights": res.get("model_weights"),
                         "compute_type": res.get("compute_type"), "file": res.get("file"), "audio_s": audio_s,
                         "weights": res.get("weights"), "combined_levers": res.get("combined_levers"),
                         "runs": {label: pipeline_run_figures(r, audio_s) for label, r in runs.items()},
                         "levers": {t["lever"]: {"stages": t["stages"], "reference_s": t["reference_s"],
                                                 "repeat_s": t.get("repeat_s"), "lever_s": t.get("lever_s"),
                                                 "speedup": t.get("speedup"), "equivalent": t.get("passes"),
                                                 "kept": t["lever"] in (res.get("combined_levers") or [])}
                                    for t in res.get("trials", [])}}
        eqv = res.get("equivalence") or {}
        kept = res.get("combined_levers") or []
        equivalence[name] = {
            "against": "the reference configuration in the same process, same weights "
                       f"({res.get('model_weights')} ASR, synthetic alignment and speaker-embedding weights)",
            "reference_repeat": eqv.get("reference_repeat"), "combined": eqv.get("combined"),
            "levers": eqv.get("levers") or {},
            "every_kept_lever_passes": bool(eqv.get("combined", {}).get("passes")) and all(
                (eqv.get("levers") or {}).get(lv, {"passes": True}).get("passes") for lv in kept)}
    singles: dict[str, list[dict[str, Any]]] = {}
    single_rows = {}
    for name, st in steps.items():
        res = st.get("result") or {}
        if res.get("mode") != "single":
            continue
        run = res.get("run") or {}
        row = {"step": name, "model": res.get("model"), "model_weights": res.get("model_weights"),
               "compute_type": res.get("compute_type"), "batch_size": res.get("batch_size"),
               "levers": run.get("levers"), "ok": bool(res.get("ok")), "peak_mib": res.get("process_peak_mib"),
               "peak_source": res.get("process_peak_source")}
        if res.get("ok"):
            row |= {k: v for k, v in pipeline_run_figures(run, res["audio_s"]).items() if k != "stages_rtf"}
            row["rtf"] = row.get("whole_pipeline_rtf")
        else:
            row["error"] = res.get("error") or run.get("error")
        single_rows[name] = row
        if st.get("label") != "reference":
            singles.setdefault(str(res.get("model_label") or st.get("model_label") or res.get("model")), []).append(row)
    budgets = {model: [settings_for_budget(rows, gb) for gb in BUDGETS_GB] for model, rows in singles.items()}
    out = dict(data)
    out["summary"] = summary
    out["equivalence"] = equivalence
    out["singles"] = single_rows
    out["settings_by_budget"] = budgets
    out["targets"] = pipeline_targets(summary, equivalence, single_rows)
    return out


def pipeline_targets(summary: dict[str, Any], equivalence: dict[str, Any], singles: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets judged from the measured figures; ``met`` None where not measured."""
    t: dict[str, Any] = {}
    tiny = summary.get("tiny_en_sweep", {}).get("runs", {}).get("combined", {})
    t["whole_pipeline_tiny_en"] = {"target": f"whole_pipeline_rtf >= {WHOLE_PIPELINE_MIN_RTF:g}x with tiny.en",
                                   "min_rtf": WHOLE_PIPELINE_MIN_RTF, "rtf": tiny.get("whole_pipeline_rtf"),
                                   "met": None if tiny.get("whole_pipeline_rtf") is None
                                   else tiny["whole_pipeline_rtf"] >= WHOLE_PIPELINE_MIN_RTF}
    large = summary.get("large_v3_sweep", {}).get("runs", {}).get("combined", {})
    t["whole_pipeline_large_v3"] = {"target": "whole_pipeline_rtf reported with the large-v3-shaped model",
                                    "rtf": large.get("whole_pipeline_rtf"),
                                    "met": None if large.get("whole_pipeline_rtf") is None else True}
    limit = budget_mib(MEMORY_TARGET_GB)
    mem = {}
    for name, row in singles.items():
        if "large_v3" in name and row.get("compute_type") == "float16" and row.get("batch_size") == 16:
            mem[name] = {"peak_mib": row.get("peak_mib"), "levers": row.get("levers")}
    best = min((v["peak_mib"] for v in mem.values() if v["peak_mib"] is not None), default=None)
    t["memory_large_v3_fp16_bs16"] = {"target": f"whole-process peak GPU memory for large-v3-shaped fp16 batch 16 "
                                                f"under {MEMORY_TARGET_GB:g} GB", "limit_mib": limit, "runs": mem,
                                      "lowest_peak_mib": best, "met": None if best is None else best < limit}
    eq_ok = [e.get("every_kept_lever_passes") for e in equivalence.values()]
    t["equivalence"] = {"target": "the equivalence block passes for every lever kept",
                        "met": None if not eq_ok else all(eq_ok)}
    return t


def cmd_pipeline(m: matrices.Matrix, args: argparse.Namespace) -> int:
    """Run the plan's steps (or those named in --steps) in the cell's python; each step's raw result is kept in
    --work, so a later call resumes; once every step of the plan has a result, write the results file."""
    from .build import built_env, clean_env

    work = Path(args.work) if args.work else paths.cache_dir() / "bench-pipeline"
    work.mkdir(parents=True, exist_ok=True)
    done: dict[str, dict[str, Any]] = {}
    for p in sorted(work.glob("step-*.json")):
        rec = json.loads(p.read_text(encoding="utf-8"))
        done[rec["name"]] = rec
    # assembling elsewhere: the large-model steps' names do not depend on the folder's path
    large = args.large_model or next((r["step"]["model"] for r in done.values() if r["step"]["model"] != "tiny.en"), None)
    plan = pipeline_plan(large, max_new_tokens=args.max_new_tokens or 100)
    plan[0]["levers"] = args.levers
    jit = work / "cuda-jit-cache"  # shared by the steps: only the first pays the PTX JIT
    wanted = set(args.steps.split(",")) if args.steps else {s["name"] for s in plan}
    env = built_env(m, m.get(args.cell)) if not args.assemble_only else None
    audio = None
    for step in plan:
        if args.assemble_only or step["name"] not in wanted or (step["name"] in done and done[step["name"]]["result"].get("ok")):
            continue
        if audio is None:
            audio = bench_inputs(env, [parse_minutes(args.minutes or "20")[0]], work / "audio", sample=False)[0]
        try:
            combine = resolve_combine(step.get("combine"), done)
        except ValueError as exc:
            _say(f"bench pipeline: {step['name']}: {exc}")
            continue
        raw = work / f"raw-{step['name']}.json"
        cmd = pipeline_command(env / "bin" / "python", Path(audio["audio"]), raw, step, combine, args.device)
        child_env = clean_env()
        if args.fresh_jit_cache and step is plan[0]:  # a cold first-call figure; the result records the state
            shutil.rmtree(jit, ignore_errors=True)
        jit.mkdir(exist_ok=True)
        child_env["CUDA_CACHE_PATH"] = str(jit)
        _say(f"bench pipeline: {step['name']} ({step['mode']}, {step['model']}, levers {combine or step.get('levers')}) ...")
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=child_env, stdout=subprocess.PIPE, text=True)
        try:
            result = json.loads(raw.read_text())
        except (OSError, ValueError):
            result = {"ok": False, "error": f"bench_pipeline.py wrote no result (exit code {proc.returncode})"}
        rec = {"name": step["name"], "step": step, "combine": combine, "wall_s": round(time.perf_counter() - t0, 1),
               "label": step.get("label"), "model_label": "tiny.en" if step["model"] == "tiny.en" else "large-v3-shaped",
               "machine": machine_info(), "gpu": smi_gpu() or {}, "date": time.strftime("%Y-%m-%d"), "result": result}
        atomic_write(work / f"step-{step['name']}.json", portable(json.dumps(rec, indent=2), m.root) + "\n")
        done[step["name"]] = rec
        _say(f"  {step['name']}: {'ok' if result.get('ok') else 'failed: ' + str(result.get('error'))} ({rec['wall_s']} s)")
    missing = [s["name"] for s in plan if not (done.get(s["name"]) or {}).get("result", {}).get("ok")]
    if missing:
        _say(f"bench pipeline: steps without a result yet: {', '.join(missing)} (raw results in {work})")
        if not args.assemble_only:
            return 0 if wanted.isdisjoint(missing) else 1
    first = next(iter(done.values()), None)
    if first is None:
        _say("bench pipeline: nothing measured")
        return 1
    for rec in done.values():
        rec["result"].pop("where", None)
    data = {"kind": "pipeline", "cell": args.cell, "device": args.device, "date": first["date"],
            "machine": first["machine"], "gpu": first["gpu"], "plan": [s["name"] for s in plan],
            "not_measured": missing, "steps": {s["name"]: done[s["name"]] for s in plan if s["name"] in done}}
    for rec in data["steps"].values():
        for k in ("machine", "gpu"):
            if rec.get(k) == data[k]:
                rec.pop(k)
    data = summarise_pipeline(data)
    gpu = (data["gpu"].get("name") or "").split()
    tag = next((w.lower() for w in gpu if re.fullmatch(r"[A-Z]+\d+", w)), args.device)
    results = Path(args.results) if args.results else m.root / "benchmarks" / "results"
    out = results / f"pipeline-{'gpu-' + tag if args.device == 'cuda' else 'cpu'}-{data['date']}.json"
    from .secrets import redact

    text = json.dumps(data, indent=2)
    for model in {r["step"]["model"] for r in done.values()} - {"tiny.en"}:  # the synthetic model's folder
        text = text.replace(json.dumps(model), json.dumps(SYNTHETIC_LARGE_V3))
    atomic_write(out, portable(redact(text), m.root) + "\n")
    print(json.dumps({k: data[k] for k in ("targets", "settings_by_budget")}, indent=2))
    print(f"written: {out}")
    return 0
