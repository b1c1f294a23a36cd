"""`bench pipeline` (#15): the whole pipeline, speed levers one at a time, equivalence, VRAM budgets."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

from .. import matrix as matrices
from .. import paths, tools, ui
from ..cellside import equivalence as eq
from ..errors import FatalError, PatchError, ToolMissingError
from ..fsutil import atomic_write_text as atomic_write
from .common import machine_info, portable
from .targets import MIB
from .transcribe import bench_inputs, parse_minutes, smi_gpu

# ------------------------------------------------------------------------------------------- pipeline (#15)

PIPELINE_SCRIPT = Path(__file__).resolve().parents[1] / "cellside" / "bench_pipeline.py"
PIPELINE_STAGES = ("vad+asr", "align", "diarize", "assign_speakers")
TINY_EN_MIN_RTF = 100.0  # issue #22's targets, judged from the measured figures only
LARGE_V3_MIN_RTF = 70.0
# A synthetic model's run is a pipeline figure only when its workload is a real one: tokens decoded within 10% of
# tiny.en's on the same file (the decoder's work), and at least 90% of tiny.en's words (alignment's and speaker
# assignment's work go by words).
TOKENS_WITHIN = 0.10
MIN_WORDS_RATIO = 0.90
FORCE_FROM = "tiny_en_sweep"  # the step whose reference run says how many tokens a window of this file decodes
MEMORY_TARGET_GB = 8.0
BUDGETS_GB = (8, 12)
SYNTHETIC_LARGE_V3 = "large-v3-shaped, synthetic weights (make_synthetic_model.py)"
BUDGET_HEADROOM_MIB = 0  # the budget is compared with NVML's whole-process peak as measured: no margin added
ALIGN_PATCH = "0002-alignment-numpy-trellis"  # the align_numpy_trellis lever's code: an opt-in patch of the series


def stage_opt_in_alignment(m: matrices.Matrix, env: Path, work: Path) -> tuple[Path | None, str]:
    """The cell's whisperx/alignment.py with the series' opt-in trellis patch applied, staged in ``work`` (the
    patch file is the lever's only source); None and the reason when it does not fit this cell."""
    from ..patches import load_series
    from ..patches.gnupatch import stage
    from ..patches.record import PatchRecord, installed_versions

    patch = load_series(m.root / "patches").get(ALIGN_PATCH)
    site = paths.site_packages(env)
    installed = installed_versions(site)
    version = installed.get("whisperx")
    record = PatchRecord.read(site)
    if version is None:
        return None, "whisperx is not installed in the cell"
    if record is not None and patch.id in {p.id for p in record.patches}:
        return None, f"the cell already has {patch.id} applied: its reference runs with it"
    reason = patch.decide(version, installed, opted=(patch.id,))
    if reason is not None:
        return None, reason
    out = work / "opt-in" / patch.id
    shutil.rmtree(out, ignore_errors=True)
    try:
        stage([patch], site, out)
    except (PatchError, ToolMissingError) as exc:  # the lever is then recorded as not run, with this reason
        return None, f"{patch.id} could not be staged: {exc}" + (f" ({exc.hint})" if exc.hint else "")
    return out / "whisperx" / "alignment.py", f"{patch.id} applied to a copy of whisperx {version}'s alignment.py"


def pipeline_plan(large_model: str | None, *, force_tokens: int | str = f"from:{FORCE_FROM}") -> list[dict[str, Any]]:
    """The benchmark's steps, in order; each runs bench_pipeline.py once in a fresh process.

    1. ``tiny_en_sweep``: tiny.en, the reference twice, every lever alone, the picked levers combined.
    2. ``large_v3_sweep``: the large-v3-shaped model, the reference twice and tiny.en's picked levers combined
       (``combine: "from:tiny_en_sweep"``): its whole pipeline and the same equivalence check.
    3. ``single-*``: fresh processes, one setting each (model, compute type, batch size, levers), for the
       whole-process memory peak and speed of the memory-budget table; ``reference`` ones have no lever.
    The large-v3-shaped steps decode as many tokens a window as tiny.en's reference run did on the same file
    (``force_tokens``: ``from:tiny_en_sweep``, or a number), each token a word (bench_pipeline.forced_decoding)."""
    steps: list[dict[str, Any]] = [{"name": "tiny_en_sweep", "mode": "sweep", "model": "tiny.en", "levers": "all"}]
    singles = [("tiny.en", "tiny_en", "float16", 16)]
    if large_model:
        lg = {"model": large_model, "force_tokens": force_tokens}
        # alone again, the levers that change what alignment is given or how it runs: the words depend on the model
        steps.append(
            {
                "name": "large_v3_sweep",
                "mode": "sweep",
                "levers": "asr_batch_32,overlap_align_diarize,align_numpy_trellis",
                "combine": "from:tiny_en_sweep",
            }
            | lg
        )
        steps.append(
            {
                "name": "single-large_v3-float16-bs16-reference",
                "mode": "single",
                "compute_type": "float16",
                "batch_size": 16,
                "combine": "",
                "label": "reference",
            }
            | lg
        )
        singles += [
            (large_model, "large_v3", ct, bs)
            for ct, bs in (("float16", 8), ("float16", 16), ("float16", 32), ("int8_float16", 16), ("int8_float16", 32))
        ]
    for model, short, ct, bs in singles:
        step = {
            "name": f"single-{short}-{ct}-bs{bs}",
            "mode": "single",
            "model": model,
            "compute_type": ct,
            "batch_size": bs,
            "combine": "from:tiny_en_sweep+free_between_stages",
            "label": "levers",
        }
        if model != "tiny.en":
            step["force_tokens"] = force_tokens
        steps.append(step)
    return steps


def resolve_combine(spec: str | None, done: dict[str, dict[str, Any]]) -> str | None:
    """A step's ``combine``: a lever list, or ``from:STEP[+LEVER...]``: STEP's picked levers (and the extra ones).
    Asr batch levers are dropped for single runs, whose batch size is the step's own."""
    if spec is None or not spec.startswith("from:"):
        return spec
    src, *extra = spec[len("from:") :].split("+")
    picked = ((done.get(src) or {}).get("result") or {}).get("combined_levers")
    if picked is None:
        raise ValueError(f"step needs {src}'s picked levers, and {src} has not run (or failed)")
    levers = [lv for lv in picked if not (extra and lv.startswith("asr_batch_"))] + extra
    return ",".join(levers)


def reference_workload(result: dict[str, Any]) -> dict[str, Any]:
    """A sweep's reference run's workload: tokens decoded, windows, transcript and speaker-labelled words."""
    run = next((r for r in result.get("runs", []) if r.get("label") == "reference"), None) or result.get("run") or {}
    return run_workload(run)


def run_workload(run: dict[str, Any]) -> dict[str, Any]:
    """What one run did, in the units its stages' work goes by: tokens decoded (and windows) for ASR, words for
    alignment and speaker assignment."""
    asr: dict[str, Any] = next((r for r in run.get("stages", []) if r.get("stage") == "vad+asr"), {})
    sizes = run.get("output_sizes") or {}
    tokens, windows = asr.get("tokens_decoded"), asr.get("windows")
    return {
        "tokens_decoded": tokens,
        "windows": windows,
        "tokens_per_window": round(tokens / windows, 1) if tokens and windows else None,
        "transcript_words": sizes.get("transcript_words"),
        "speaker_words": sizes.get("speaker_words"),
    }


def resolve_force_tokens(spec: int | str | None, done: dict[str, dict[str, Any]]) -> int | None:
    """A step's ``force_tokens``: a number, or ``from:STEP``: the tokens a window decoded in STEP's reference run
    (tokens / windows, rounded)."""
    if spec is None or isinstance(spec, int):
        return spec
    src = spec[len("from:") :]
    w = reference_workload(((done.get(src) or {}).get("result")) or {})
    if not w["tokens_decoded"] or not w["windows"]:
        raise ValueError(f"step needs {src}'s tokens per window, and {src} has not run (or recorded none)")
    return max(2, round(w["tokens_decoded"] / w["windows"]))


def workload_check(workload: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """Whether a synthetic model's run did a real workload, against tiny.en's reference run on the same file:
    tokens within TOKENS_WITHIN, words at least MIN_WORDS_RATIO. ``why_not`` says what fell short."""
    out: dict[str, Any] = {"reference": reference, "tokens_within": TOKENS_WITHIN, "min_words_ratio": MIN_WORDS_RATIO}
    why = []
    tok, ref_tok = workload.get("tokens_decoded"), reference.get("tokens_decoded")
    words = workload.get("speaker_words") or workload.get("transcript_words")
    ref_words = reference.get("speaker_words") or reference.get("transcript_words")
    if not tok or not ref_tok:
        why.append("tokens decoded not recorded")
    else:
        out["tokens_ratio"] = round(tok / ref_tok, 3)
        if abs(tok / ref_tok - 1) > TOKENS_WITHIN:
            why.append(f"{tok} tokens decoded against tiny.en's {ref_tok} ({out['tokens_ratio']:.0%})")
    if not words or not ref_words:
        why.append("words not recorded")
    else:
        out["words_ratio"] = round(words / ref_words, 3)
        if words < MIN_WORDS_RATIO * ref_words:
            why.append(f"{words} words against tiny.en's {ref_words} ({out['words_ratio']:.0%})")
    out["realistic"] = not why
    if why:
        out["why_not"] = "not a pipeline figure: " + "; ".join(why)
    return out


def pipeline_command(
    python: Path,
    audio: Path,
    out: Path,
    step: dict[str, Any],
    combine: str | None,
    device: str,
    num_speakers: int | None = None,
    opt_in_align: Path | None = None,
    force_tokens: int | None = None,
    outputs_dir: Path | None = None,
) -> list[str]:
    cmd = [
        str(python),
        "-I",
        str(PIPELINE_SCRIPT),
        "--device",
        device,
        "--audio",
        str(audio),
        "--out",
        str(out),
        "--mode",
        step["mode"],
        "--model",
        step["model"],
    ]
    if step.get("levers") is not None:
        cmd += ["--levers", step["levers"]]
    if combine is not None:
        cmd += ["--combine", combine or "none"]
    for key in ("compute_type", "batch_size", "max_new_tokens"):
        if step.get(key) is not None:
            cmd += [f"--{key.replace('_', '-')}", str(step[key])]
    if num_speakers:
        cmd += ["--num-speakers", str(num_speakers)]
    if opt_in_align is not None:
        cmd += ["--opt-in-align", str(opt_in_align)]
    if force_tokens is not None:
        cmd += ["--force-tokens-per-window", str(force_tokens)]
    if outputs_dir is not None:
        cmd += ["--outputs-dir", str(outputs_dir), "--step-name", step["name"]]
    return cmd


def _rtf(audio_s: float, seconds: float | None) -> float | None:
    return round(audio_s / seconds, 2) if seconds else None


def pipeline_run_figures(
    run: dict[str, Any], audio_s: float, workload_ok: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One configuration's figures: each stage's seconds and RTF; ``whole_pipeline_rtf`` only when every stage ran
    (VAD + ASR, alignment, diarization, speaker assignment), else the figure is named for the stages it covers.

    whole_pipeline_rtf, the one definition: the audio's length over the wall time of one run of all four stages in
    one process, every reload inside the run counted (``reloads_s``); not timed: decoding the file, the model loads
    and first calls before the run. A synthetic model's run whose workload is not a real one (``workload_ok``,
    from workload_check) gets no whole_pipeline_rtf: ``not_a_pipeline_figure`` says why."""
    stages: dict[str, float] = {}
    for r in run.get("stages", []):
        if r.get("status") != "ok":
            continue
        stages[r["stage"]] = r["wall_s"]
    covered = set()
    for name in stages:
        covered |= {"align", "diarize"} if name.startswith("align+diarize") else {name}
    out: dict[str, Any] = {
        "stages_s": stages,
        "stages_rtf": {k: _rtf(audio_s, v) for k, v in stages.items()},
        "whole_s": run.get("whole_s"),
        "reloads_s": run.get("reloads_s", 0.0),
        "workload": run_workload(run),
    }
    if workload_ok is not None and not workload_ok.get("realistic"):
        out["not_a_pipeline_figure"] = workload_ok.get("why_not")
    elif run.get("ok") and set(PIPELINE_STAGES) <= covered:
        out["whole_pipeline_rtf"] = _rtf(audio_s, run.get("whole_s"))
    elif stages:
        name = "+".join(s for s in PIPELINE_STAGES if s in covered)
        out["partial_rtf"] = {"stages": name, "rtf": _rtf(audio_s, sum(stages.values()))}
    return out


def process_peak(result: dict[str, Any]) -> int | None:
    """A single run's whole-process GPU peak: the largest figure any of its samplers saw. The process's sampler and
    each stage's poll nvidia-smi on their own clocks (250 ms apart), so a short peak one catches the other can miss
    (the reference run of 2026-11-29: 19492 MiB by the process's sampler, 19780 MiB by its VAD + ASR stage's)."""
    recs = [*result.get("loads", []), *result.get("warmup", []), *(result.get("run") or {}).get("stages", [])]
    seen = [v for v in [result.get("process_peak_mib"), *(r.get("process_peak_mib") for r in recs)] if v is not None]
    return max(seen) if seen else None


def memory_breakdown(result: dict[str, Any]) -> dict[str, Any]:
    """Where a single run's whole-process GPU memory went, from its records (NVML/nvidia-smi process figures):
    the CUDA context alone, the ASR model's weights (the load's peak less the context), each timed stage's peak."""
    loads = {r["stage"]: r.get("process_peak_mib") for r in result.get("loads", [])}
    context = loads.get("cuda_init")
    asr_load = next((v for k, v in loads.items() if k.startswith("load_asr")), None)
    stages = {r["stage"]: r.get("process_peak_mib") for r in (result.get("run") or {}).get("stages", [])}
    out: dict[str, Any] = {"cuda_context_mib": context, "after_asr_load_mib": asr_load, "stage_peaks_mib": stages}
    if context is not None and asr_load is not None:
        out["asr_weights_mib"] = asr_load - context
        if stages.get("vad+asr") is not None:
            out["asr_working_mib"] = stages["vad+asr"] - asr_load  # decoding buffers, the VAD's cache
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
    return {
        "budget_gb": gb,
        "limit_mib": limit,
        "fits": best,
        "measured": len([s for s in singles if s.get("peak_mib") is not None]),
    }


def rejudged(eqv: dict[str, Any]) -> dict[str, Any]:
    """A sweep's equivalence blocks with ``passes`` re-read by this version's bar (``as_run`` keeps the run's own
    verdict where it differs)."""

    def one(block: dict[str, Any] | None) -> dict[str, Any] | None:
        if block is None:
            return None
        b = dict(block)
        b["passes"] = eq.judge(block)
        if block.get("passes") is not None and block["passes"] != b["passes"]:
            b["as_run"] = block["passes"]
        return b

    return {
        "reference_repeat": one(eqv.get("reference_repeat")),
        "combined": one(eqv.get("combined")),
        "levers": {k: one(v) for k, v in (eqv.get("levers") or {}).items()},
    }


def summarise_pipeline(data: dict[str, Any]) -> dict[str, Any]:
    """``summary``, ``equivalence``, ``settings_by_budget`` and ``targets`` of a pipeline results file, from its
    steps' raw results (``steps``: name -> {"result": the cellside JSON, ...})."""
    steps = data.get("steps", {})
    summary: dict[str, Any] = {}
    equivalence: dict[str, Any] = {}
    tiny_ref = reference_workload((steps.get(FORCE_FROM) or {}).get("result") or {})

    def check(res: dict[str, Any], run: dict[str, Any]) -> dict[str, Any] | None:
        """A synthetic model's run is judged against tiny.en's workload; real weights are their own workload."""
        if res.get("model_weights") != "synthetic" or "vad+asr" not in (run.get("ran") or list(PIPELINE_STAGES)):
            return None  # a lever's run that took the reference's transcript decoded nothing of its own
        return workload_check(run_workload(run), tiny_ref)

    for name, st in steps.items():
        res = st.get("result") or {}
        if not res.get("ok") or res.get("mode") != "sweep":
            continue
        audio_s = res["audio_s"]
        runs = {r["label"]: r for r in res.get("runs", [])}
        eqv = rejudged(res.get("equivalence") or {})
        summary[name] = {
            "model": res.get("model"),
            "model_weights": res.get("model_weights"),
            "compute_type": res.get("compute_type"),
            "file": res.get("file"),
            "audio_s": audio_s,
            "weights": res.get("weights"),
            "combined_levers": res.get("combined_levers"),
            "forced_decoding": res.get("forced_decoding"),
            "workload": reference_workload(res),
            "workload_check": check(res, runs.get("reference") or {}),
            "runs": {label: pipeline_run_figures(r, audio_s, check(res, r)) for label, r in runs.items()},
            "levers": {
                t["lever"]: {
                    "stages": t["stages"],
                    "reference_s": t["reference_s"],
                    "repeat_s": t.get("repeat_s"),
                    "lever_s": t.get("lever_s"),
                    "speedup": t.get("speedup"),
                    "equivalent": (eqv["levers"].get(t["lever"]) or {}).get("passes", False),
                    "kept": t["lever"] in (res.get("combined_levers") or []),
                }
                for t in res.get("trials", [])
            },
        }
        kept = res.get("combined_levers") or []
        # a kept lever this run did not try alone was tried on the run it was handed over from
        failing = [lv for lv in kept if not (eqv["levers"].get(lv) or {"passes": True})["passes"]]
        equivalence[name] = {
            "against": "the reference configuration in the same process, same weights "
            f"({res.get('model_weights')} ASR, synthetic alignment and speaker-embedding weights)",
            "judged": "every block's passes re-read from its measured fields (equivalence.judge) when the "
            "results file is written: the bar of this version, not the one the run had",
            "reference_repeat": eqv.get("reference_repeat"),
            "combined": eqv.get("combined"),
            "levers": eqv["levers"],
            "kept_levers_failing": failing,
            "every_kept_lever_passes": bool((eqv.get("combined") or {}).get("passes")) and not failing,
        }
    singles: dict[str, list[dict[str, Any]]] = {}
    single_rows = {}
    for name, st in steps.items():
        res = st.get("result") or {}
        if res.get("mode") != "single":
            continue
        run = res.get("run") or {}
        row = {
            "step": name,
            "model": res.get("model"),
            "model_weights": res.get("model_weights"),
            "compute_type": res.get("compute_type"),
            "batch_size": res.get("batch_size"),
            "levers": run.get("levers"),
            "ok": bool(res.get("ok")),
            "peak_mib": process_peak(res),
            "peak_source": res.get("process_peak_source"),
            "memory": memory_breakdown(res),
        }
        if res.get("ok"):
            figures = pipeline_run_figures(run, res["audio_s"], check(res, run))
            row |= {k: v for k, v in figures.items() if k != "stages_rtf"}
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


def whole_pipeline_target(
    step: str, what: str, min_rtf: float, summary: dict[str, Any], equivalence: dict[str, Any]
) -> dict[str, Any]:
    """A whole-pipeline speed target, met only when the combined run's measured whole_pipeline_rtf reaches it and
    every kept lever's equivalence passes; None where the step did not run; ``why_not`` where a run was measured
    and is not a pipeline figure (a synthetic workload short of a real one)."""
    combined = ((summary.get(step) or {}).get("runs") or {}).get("combined")
    out: dict[str, Any] = {
        "target": f"whole_pipeline_rtf >= {min_rtf:g}x with {what}, equivalence passing",
        "min_rtf": min_rtf,
        "rtf": None,
        "met": None,
    }
    if combined is None:
        return out
    rtf = combined.get("whole_pipeline_rtf")
    eq_ok = bool((equivalence.get(step) or {}).get("every_kept_lever_passes"))
    out |= {"rtf": rtf, "reloads_s": combined.get("reloads_s"), "equivalence_passes": eq_ok}
    if combined.get("not_a_pipeline_figure"):
        out["why_not"] = combined["not_a_pipeline_figure"]
    out["met"] = rtf is not None and rtf >= min_rtf and eq_ok
    return out


def pipeline_targets(summary: dict[str, Any], equivalence: dict[str, Any], singles: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets judged from the measured figures; ``met`` None where not measured."""
    t: dict[str, Any] = {
        "whole_pipeline_tiny_en": whole_pipeline_target(
            "tiny_en_sweep", "tiny.en", TINY_EN_MIN_RTF, summary, equivalence
        ),
        "whole_pipeline_large_v3": whole_pipeline_target(
            "large_v3_sweep", "the large-v3-shaped model, realistic decoding", LARGE_V3_MIN_RTF, summary, equivalence
        ),
    }
    limit = budget_mib(MEMORY_TARGET_GB)
    mem = {}
    for name, row in singles.items():
        if "large_v3" in name and row.get("compute_type") == "float16" and row.get("batch_size") == 16:
            mem[name] = {"peak_mib": row.get("peak_mib"), "levers": row.get("levers")}
    best = min((v["peak_mib"] for v in mem.values() if v["peak_mib"] is not None), default=None)
    t["memory_large_v3_fp16_bs16"] = {
        "target": f"whole-process peak GPU memory for large-v3-shaped fp16 batch 16 under {MEMORY_TARGET_GB:g} GB",
        "limit_mib": limit,
        "runs": mem,
        "lowest_peak_mib": best,
        "met": None if best is None else best < limit,
    }
    # VAD + ASR with no other model loaded (free_between_stages): what any process at this setting needs at least
    alone = [
        row["memory"]
        for name, row in singles.items()
        if name in mem and row.get("ok") and "free_between_stages" in (row.get("levers") or []) and row.get("memory")
    ]
    floor = next((m for m in alone if m.get("stage_peaks_mib", {}).get("vad+asr") is not None), None)
    if floor is not None:
        vad_asr = floor["stage_peaks_mib"]["vad+asr"]
        t["memory_large_v3_fp16_bs16"]["floor"] = {
            "what": "the VAD + ASR stage's whole-process peak with no other model loaded: the least any process "
            "running this model at this compute type and batch size holds",
            "vad_asr_peak_mib": vad_asr,
            "cuda_context_mib": floor.get("cuda_context_mib"),
            "asr_weights_mib": floor.get("asr_weights_mib"),
            "asr_working_mib": floor.get("asr_working_mib"),
            "under_limit": vad_asr < limit,
        }
    eq_ok = [e.get("every_kept_lever_passes") for e in equivalence.values()]
    t["equivalence"] = {
        "target": "the equivalence block passes for every lever kept",
        "met": None if not eq_ok else all(eq_ok),
    }
    return t


def keep_outputs(outputs: Path, results_file: Path, steps: list[str]) -> str | None:
    """Copy the steps' run outputs (gzip JSON, one a run) into a folder beside the results file, named after it, so
    that every equivalence claim in the file can be re-checked (``recheck``); its name, or None when none exist."""
    files = [f for f in sorted(outputs.glob("*.json.gz")) if any(f.name.startswith(f"{st}-") for st in steps)]
    if not files:
        return None
    dest = results_file.with_name(results_file.stem + "-outputs")
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copyfile(f, dest / f.name)
    return dest.name


def load_outputs(folder: Path, step: str, label: str) -> dict[str, Any]:
    import gzip

    with gzip.open(folder / f"{step}-{label}.json.gz", "rt", encoding="utf-8") as f:
        return json.load(f)


def recheck(results_file: Path) -> dict[str, dict[str, bool]]:
    """Every sweep's equivalence claims computed again from the kept outputs: {step: {comparison: passes}}, where
    a comparison is ``reference_repeat``, ``combined`` or a lever; the stored blocks must agree with these."""
    data = json.loads(results_file.read_text(encoding="utf-8"))
    folder = results_file.with_name(data["outputs_folder"])
    got: dict[str, dict[str, bool]] = {}
    for name, st in data["steps"].items():
        res = st.get("result") or {}
        if res.get("mode") != "sweep" or not res.get("ok"):
            continue
        ref = load_outputs(folder, name, "reference")
        mine: dict[str, bool] = {}
        for run in res["runs"]:
            if run["label"] == "reference" or not run.get("outputs_file"):
                continue
            mine[run["label"]] = eq.compare_stages(ref, load_outputs(folder, name, run["label"]), run["ran"])["passes"]
        got[name] = mine
    return got


DERIVED = ("summary", "equivalence", "singles", "settings_by_budget", "targets")  # what summarise_pipeline computes


def rejudge_file(path: Path) -> list[str]:
    """Re-derive a pipeline results file's verdicts (DERIVED) from its steps' measured fields by this version's
    code, so that a committed file never states more than today's bar grants it; the steps are left as measured.
    Returns the DERIVED keys that changed (none: the file is untouched)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("kind") != "pipeline":
        raise FatalError(
            f"{path}: not a pipeline results file (kind {data.get('kind')!r})",
            hint="give a benchmarks/results/pipeline-*.json file",
        )
    fresh = summarise_pipeline({k: v for k, v in data.items() if k not in DERIVED})
    changed = [k for k in DERIVED if data.get(k) != fresh.get(k)]
    if changed:
        atomic_write(path, json.dumps({**data, **{k: fresh[k] for k in DERIVED}}, indent=2) + "\n")
    return changed


def cmd_pipeline(m: matrices.Matrix, args: argparse.Namespace) -> int:
    """Run the plan's steps (or those named in --steps) in the cell's python; each step's raw result is kept in
    --work, so a later call resumes; once every step of the plan has a result, write the results file."""
    from ..build import built_env, clean_env

    if getattr(args, "rejudge", None):
        for f in args.rejudge:
            changed = rejudge_file(Path(f))
            ui.say(f"bench pipeline: {f}: " + (f"re-judged ({', '.join(changed)})" if changed else "up to date"))
        return 0

    work = Path(args.work) if args.work else paths.cache_dir() / "bench-pipeline"
    work.mkdir(parents=True, exist_ok=True)
    done: dict[str, dict[str, Any]] = {}
    for p in sorted(work.glob("step-*.json")):
        rec = json.loads(p.read_text(encoding="utf-8"))
        done[rec["name"]] = rec
    # assembling elsewhere: the large-model steps' names do not depend on the folder's path
    large = args.large_model or next(
        (r["step"]["model"] for r in done.values() if r["step"]["model"] != "tiny.en"), None
    )
    plan = pipeline_plan(large)
    plan[0]["levers"] = args.levers
    jit = work / "cuda-jit-cache"  # shared by the steps: only the first pays the PTX JIT
    wanted = set(args.steps.split(",")) if args.steps else {s["name"] for s in plan}
    env = built_env(m, m.get(args.cell)) if not args.assemble_only else None
    audio = None
    opt_in_align: Path | None = None
    if env is not None:
        opt_in_align, how = stage_opt_in_alignment(m, env, work)
        ui.say(f"bench pipeline: align_numpy_trellis: {how}")
    for step in plan:
        if (
            args.assemble_only
            or step["name"] not in wanted
            or (step["name"] in done and done[step["name"]]["result"].get("ok"))
        ):
            continue
        assert env is not None  # --assemble-only skipped every step above
        if audio is None:
            audio = bench_inputs(env, [parse_minutes(args.minutes or "20")[0]], work / "audio", sample=False)[0]
        try:
            combine = resolve_combine(step.get("combine"), done)
            force_tokens = resolve_force_tokens(step.get("force_tokens"), done)
        except ValueError as exc:
            ui.say(f"bench pipeline: {step['name']}: {exc}")
            continue
        raw = work / f"raw-{step['name']}.json"
        cmd = pipeline_command(
            env / "bin" / "python",
            Path(audio["audio"]),
            raw,
            step,
            combine,
            args.device,
            audio["speakers"],
            opt_in_align,
            force_tokens,
            work / "outputs",
        )
        child_env = clean_env()
        if args.fresh_jit_cache and step is plan[0]:  # a cold first-call figure; the result records the state
            shutil.rmtree(jit, ignore_errors=True)
        jit.mkdir(exist_ok=True)
        child_env["CUDA_CACHE_PATH"] = str(jit)
        ui.say(
            f"bench pipeline: {step['name']} ({step['mode']}, {step['model']}, levers {combine or step.get('levers')}) ..."
        )
        t0 = time.perf_counter()
        proc = tools.run(cmd, env=child_env, live_stderr=True)  # its progress shows as it runs
        try:
            result = json.loads(raw.read_text())
        except (OSError, ValueError):
            result = {"ok": False, "error": f"bench_pipeline.py wrote no result (exit code {proc.returncode})"}
        rec = {
            "name": step["name"],
            "cell": args.cell,  # --assemble-only elsewhere reads them back (the results file's name says the device)
            "device": args.device,
            "step": step,
            "combine": combine,
            "force_tokens": force_tokens,
            "wall_s": round(time.perf_counter() - t0, 1),
            "label": step.get("label"),
            "model_label": "tiny.en" if step["model"] == "tiny.en" else "large-v3-shaped",
            "machine": machine_info(),
            "gpu": smi_gpu() or {},
            "date": time.strftime("%Y-%m-%d"),
            "result": result,
        }
        atomic_write(work / f"step-{step['name']}.json", portable(json.dumps(rec, indent=2), m.root) + "\n")
        done[step["name"]] = rec
        ui.say(
            f"  {step['name']}: {'ok' if result.get('ok') else 'failed: ' + str(result.get('error'))} ({rec['wall_s']} s)"
        )
    missing = [s["name"] for s in plan if not (done.get(s["name"]) or {}).get("result", {}).get("ok")]
    if missing:
        ui.say(f"bench pipeline: steps without a result yet: {', '.join(missing)} (raw results in {work})")
        if not args.assemble_only:
            return 0 if wanted.isdisjoint(missing) else 1
    first = next(iter(done.values()), None)
    if first is None:
        ui.say("bench pipeline: nothing measured")
        return 1
    for rec in done.values():
        rec["result"].pop("where", None)
    # What the steps ran on, from their files (assembled elsewhere, the arguments are this machine's); a step file
    # from before they carried it: the arguments.
    cell = next((r["cell"] for r in done.values() if r.get("cell")), args.cell)
    device = next((r["device"] for r in done.values() if r.get("device")), args.device)
    data = {
        "kind": "pipeline",
        "cell": cell,
        "device": device,
        "date": first["date"],
        "machine": first["machine"],
        "gpu": first["gpu"],
        "plan": [s["name"] for s in plan],
        "not_measured": missing,
        "steps": {s["name"]: done[s["name"]] for s in plan if s["name"] in done},
    }
    for rec in data["steps"].values():
        for k in ("machine", "gpu", "cell", "device"):
            if rec.get(k) == data[k]:
                rec.pop(k)
    data = summarise_pipeline(data)
    gpu = (data["gpu"].get("name") or "").split()
    tag = next((w.lower() for w in gpu if re.fullmatch(r"[A-Z]+\d+", w)), device)
    results = Path(args.results) if args.results else m.root / "benchmarks" / "results"
    out = results / f"pipeline-{'gpu-' + tag if device == 'cuda' else 'cpu'}-{data['date']}.json"
    from ..secrets import redact

    data["outputs_folder"] = keep_outputs(work / "outputs", out, list(data["steps"]))
    text = json.dumps(data, indent=2)
    for model in {r["step"]["model"] for r in done.values()} - {"tiny.en"}:  # the synthetic model's folder
        text = text.replace(json.dumps(model), json.dumps(SYNTHETIC_LARGE_V3))
    atomic_write(out, portable(redact(text), m.root) + "\n")
    print(json.dumps({k: data[k] for k in ("targets", "settings_by_budget")}, indent=2))
    print(f"written: {out}")
    return 0
