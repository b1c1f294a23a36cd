"""The whole WhisperX pipeline, stage by stage, with speed levers tried one at a time against a reference run.

Run by a cell's own python (not ours), like bench_transcribe.py, whose helpers it reuses (this folder is put on
sys.path). Usage (see --help):

    python -I bench_pipeline.py --device cuda --audio A.wav --out result.json [--model tiny.en] \
        [--mode sweep|single] [--levers L1,L2 | all | none] [--combine L1,L2] [--asr-only]

The pipeline, as WhisperX's README runs it: VAD + batched ASR (``model.transcribe``), alignment
(``whisperx.align``), diarization (pyannote's SpeakerDiarization), speaker assignment
(``whisperx.assign_word_speakers``). Every stage is timed; ``whole_pipeline_s`` is the wall time of all of them
in one go, audio already decoded (decoding is recorded apart).

Modes:
- ``sweep``: the reference configuration twice (the second run says how deterministic the stack is), then each
  lever alone (only the stages it changes are re-run; the other stages' outputs are the reference's), then the
  levers that are equivalent and faster, combined, as one whole pipeline. Each lever's outputs are compared with
  the reference's (equivalence.py): ``equivalence`` per trial.
- ``single``: one whole pipeline (or ``--asr-only``: VAD + ASR) in a fresh process with the levers in
  ``--combine``: the whole-process GPU memory peak (NVML) over the process's life, for the memory-budget table.

Weights: ASR as given (tiny.en real; a make_synthetic_model.py folder synthetic); alignment (wav2vec2-base shape)
and speaker embedding (WeSpeakerResNet34) synthetic, as in bench_transcribe.py: equivalence only, never accuracy.
Standard library only at import time; no import of whisperx_matrix. Bad input: one "error:" line, exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # -I leaves the script's folder off sys.path

import benchkit as bt  # noqa: E402 - the helpers shared with bench_transcribe.py
from pipeline_runner import (  # noqa: E402
    Pipeline,
    choose_levers,
    compare,
    empty_cache_after_vad,
    public,
    stage_time,
    warm_up_align,
    warm_up_asr,
)
from pipeline_setup import (  # noqa: E402
    LEVERS,
    MEMORY_LEVERS,
    REFERENCE,
    SCHEMA,
    STAGES,
    forced_decoding,
    free_gpu_cache,
    parse_levers,
    settings_for,
)

__all__ = [
    "LEVERS",
    "choose_levers",
    "forced_decoding",
    "main",
    "run",
]  # what tests and readers reach through this script


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Check the arguments, decode the audio, load the models and make their first calls, then run the mode."""
    if args.decoder == "ffmpeg":
        bt.check_ffmpeg()
    levers = parse_levers(args.levers, allowed=LEVERS) if args.mode == "sweep" else []
    combine = parse_levers(args.combine, allowed=LEVERS | MEMORY_LEVERS) if args.combine is not None else None
    if args.mode == "sweep" and combine and "free_between_stages" in combine:
        raise bt.BenchError("free_between_stages frees each model after its stage: use it with --mode single")
    model_path, model_weights = bt.resolve_model(args.model)
    if model_weights == "synthetic" and not (args.max_new_tokens or args.force_tokens_per_window):
        raise bt.BenchError(
            "a synthetic (random-weight) model needs --force-tokens-per-window (or --max-new-tokens), "
            "or it decodes to the 448 limit"
        )
    if args.force_tokens_per_window is not None and not 2 <= args.force_tokens_per_window <= 224:
        raise bt.BenchError("--force-tokens-per-window must be 2 to 224 (CTranslate2 decodes at most 448 // 2)")
    if not Path(args.audio).is_file():
        raise bt.BenchError(f"audio file not found: {args.audio}")
    bt.say("importing torch, whisperx ...")
    import torch

    bt.check_device(args.device, torch.cuda.is_available())
    args.threads = args.threads or max(1, min(8, os.cpu_count() or 1))
    torch.set_num_threads(args.threads)
    compute_type = args.compute_type or ("float16" if args.device == "cuda" else "int8")
    t0 = time.perf_counter()
    samples = bt.decode(args.audio, args.decoder)
    decode_s = round(time.perf_counter() - t0, 3)
    audio_s = samples.size / 16000
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "ok": True,
        "mode": args.mode,
        "device": args.device,
        "model": args.model,
        "model_weights": model_weights,
        "compute_type": compute_type,
        "threads": args.threads,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size or REFERENCE["batch_size"],
        "num_speakers": args.num_speakers,
        "file": Path(args.audio).name,
        "audio_s": round(audio_s, 2),
        "decode_s": decode_s,
        "versions": bt.versions(),
        "gpu": bt.gpu_info(),
        "weights": {
            "vad+asr": model_weights,
            "vad": "real (pyannote segmentation shipped in whisperx)",
            "align": "synthetic",
            "diarize": "synthetic (embedding); real (segmentation)",
        },
        "reference_settings": REFERENCE,
        "levers_known": {k: v["what"] for k, v in LEVERS.items()} | MEMORY_LEVERS,
        "patches": "levers that change WhisperX code are opt-in patches of the series, used from a patched copy of the "
        "cell's file for their runs only: "
        + ", ".join(f"{k} ({v['patch']})" for k, v in LEVERS.items() if v.get("patch"))
        + "; every other lever is a constructor argument, a setting, or the model object handed to pyannote",
        "opt_in_align": args.opt_in_align and Path(args.opt_in_align).name,
    }
    process = bt.Sampler(args.device == "cuda")  # the whole process, from before the first model load
    process.__enter__()
    p = Pipeline(args, samples, audio_s)
    if args.force_tokens_per_window:
        p.forced = forced_decoding(model_path, args.force_tokens_per_window)
        data["forced_decoding"] = p.forced["record"]
    bt.ensure_punkt(Path(args.work_dir or os.environ.get("TMPDIR", "/tmp")) / f"wxm-pipeline-{os.getpid()}")
    if p.gpu:  # the CUDA context alone: the floor every figure below stands on
        rec, _ = p.stage("cuda_init", lambda: torch.zeros(1, device=args.device))
        rec.pop("wall_s")  # Stage's synchronize makes the context before its clock starts: a memory figure only
        p.loads.append(rec)
    levers_here = (combine or []) if args.mode == "single" else []
    sequential = "free_between_stages" in levers_here
    p.load_asr(model_path, compute_type)
    if sequential and p.gpu:
        empty_cache_after_vad(p.asr)
    data["warmup"] = warm_up_asr(p)

    def load_rest() -> None:
        p.load_align()
        p.diarizer(settings_for(levers_here))
        data["warmup"] += warm_up_align(p)
        if sequential and p.gpu:  # the first calls' cache too, not only the stages'
            free_gpu_cache()

    if not args.asr_only and not sequential:
        load_rest()
    if sequential and p.gpu:
        free_gpu_cache()
    data["loads"] = p.loads
    # The opt-in patch's module, loaded now: a copy that does not load makes its lever "not run", not a lost sweep.
    if args.opt_in_align and any(LEVERS.get(lv, {}).get("patch") for lv in [*levers, *(combine or [])]):
        try:
            p.align_fn({"align_trellis": "numpy"})
        except Exception as exc:  # noqa: BLE001 - recorded, and the lever is then not run
            data["opt_in_align_error"] = bt.error_line(exc)
            args.opt_in_align = None

    if args.mode == "single":
        return run_single(args, data, p, process, levers_here, sequential, load_rest)
    return run_sweep(args, data, p, process, levers, combine)


def run_single(
    args: argparse.Namespace,
    data: dict[str, Any],
    p: Pipeline,
    process: Any,
    levers_here: list[str],
    sequential: bool,
    load_rest: Callable[[], None],
) -> dict[str, Any]:
    """One whole pipeline (or VAD + ASR) with the given levers, and the whole process's memory peak."""
    r = p.run(
        "single",
        levers_here,
        asr_only=args.asr_only,
        free_asr=sequential,
        between=load_rest if sequential and not args.asr_only else None,
    )
    process.__exit__()
    data["run"] = public(r, args.outputs_dir, args.step_name)
    data["ok"] = bool(r.get("ok"))
    data["process_peak_mib"] = None if process.gpu_peak is None else round(process.gpu_peak / 2**20)
    data["process_peak_source"] = (
        f"{process.gpu_source}: the whole process, sampled every 50 ms from before the "
        f"first model load to the end of the run"
        if process.gpu_source
        else None
    )
    data["device_used_peak_mib"] = None if process.device_used_peak is None else round(process.device_used_peak / 2**20)
    data["peak_rss_mib"] = round(process.rss_peak / 2**20)
    return data


def run_sweep(
    args: argparse.Namespace,
    data: dict[str, Any],
    p: Pipeline,
    process: Any,
    levers: list[str],
    combine: list[str] | None,
) -> dict[str, Any]:
    """The reference twice, each lever alone against it, the picked levers combined; equivalence for each."""
    ref = p.run("reference", [])
    if not ref.get("ok"):
        raise RuntimeError(f"the reference run failed: {ref.get('error')}")
    repeat = p.run("reference_repeat", [])
    runs = [ref, repeat]
    trials = []
    rep_eq = compare(ref, repeat, list(STAGES)) if repeat.get("ok") else {"passes": False, "error": repeat.get("error")}
    for lv in levers:
        stages = LEVERS[lv]["stages"]
        if LEVERS[lv].get("patch") and not args.opt_in_align:  # the host could not stage the patch: said, not run
            why = f"not run: no loadable copy with {LEVERS[lv]['patch']} applied (--opt-in-align)" + (
                f": {data['opt_in_align_error']}" if data.get("opt_in_align_error") else ""
            )
            trials.append(
                {
                    "lever": lv,
                    "group": LEVERS[lv]["group"],
                    "stages": stages,
                    "ok": False,
                    "passes": False,
                    "error": why,
                }
            )
            bt.say(f"  lever {lv}: {why}")
            continue
        # speakers are assigned again whenever the words or the turns changed: the per-word label is what users read
        rerun = stages + (["assign_speakers"] if {"align", "diarize"} & set(stages) else [])
        r = p.run(lv, [lv], only=rerun, given=ref)
        runs.append(r)
        t: dict[str, Any] = {
            "lever": lv,
            "group": LEVERS[lv]["group"],
            "stages": stages,
            "what": LEVERS[lv]["what"],
            "reference_s": stage_time(ref, stages),
            "repeat_s": stage_time(repeat, stages),
            "ok": bool(r.get("ok")),
        }
        if r.get("ok"):
            t["lever_s"] = stage_time(r, stages)
            t["equivalence"] = compare(ref, r, rerun)
            t["passes"] = t["equivalence"]["passes"]
            base = min(x for x in (t["reference_s"], t["repeat_s"]) if x)
            t["speedup"] = round(base / t["lever_s"], 3) if t["lever_s"] else None
        else:
            t["error"] = r.get("error")
            t["passes"] = False
        trials.append(t)
        bt.say(f"  lever {lv}: {t.get('lever_s')} s vs {t['reference_s']} s, equivalent: {t['passes']}")
    picked = choose_levers(trials, combine)
    combined = p.run("combined", picked)
    # Overlapping alignment with diarization wins against the reference's slow stages, but once both are fast
    # they contend for the GIL (on the H200, 11-29: diarization 4.7 s alone, 10.6 s beside alignment): the same
    # levers one stage after the other are run too, and the faster of the two is the combined run.
    if "overlap_align_diarize" in picked and combined.get("ok"):
        apart = p.run(
            "combined_without_overlap",
            [lv for lv in picked if lv != "overlap_align_diarize"],
        )
        data["combined_choice"] = {
            "with_overlap_s": combined.get("whole_s"),
            "without_overlap_s": apart.get("whole_s"),
            "kept": "with overlap",
        }
        if apart.get("ok") and apart["whole_s"] < combined["whole_s"]:
            picked = [lv for lv in picked if lv != "overlap_align_diarize"]
            combined, apart = (
                apart | {"label": "combined"},
                combined | {"label": "combined_with_overlap"},
            )
            data["combined_choice"]["kept"] = "without overlap"
        runs.append(apart)
    runs.append(combined)
    comb_eq = compare(ref, combined, list(STAGES)) if combined.get("ok") else {"passes": False}
    process.__exit__()
    data["runs"] = [public(r, args.outputs_dir, args.step_name) for r in runs]
    data["trials"] = trials
    data["combined_levers"] = picked
    data["combined_levers_how"] = (
        "given (--combine), less any this run tried alone and found not equivalent"
        if combine is not None
        else "equivalence.pick_levers: equivalent, at least 3% faster than the faster of the two "
        "reference runs on the stages the lever changes, the fastest of each group"
    )
    data["equivalence"] = {
        "reference_repeat": rep_eq,
        "combined": comb_eq,
        "levers": {t["lever"]: t.get("equivalence") for t in trials},
    }
    data["peak_rss_mib"] = round(process.rss_peak / 2**20)
    data["process_peak_mib"] = None if process.gpu_peak is None else round(process.gpu_peak / 2**20)
    data["process_peak_note"] = (
        "the sweep process's whole-life peak (every configuration, caches kept): not a "
        "setting's peak; see the single-mode runs for that"
    )
    data["ok"] = bool(ref.get("ok") and combined.get("ok"))
    return data


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cpu")
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--compute-type", default=None)
    p.add_argument("--audio", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--mode", choices=("sweep", "single"), default="sweep")
    p.add_argument(
        "--levers",
        default="all",
        help="sweep: levers to try one at a time (all, none, or a comma list)",
    )
    p.add_argument(
        "--combine",
        default=None,
        help="levers for the combined run (sweep: default picked from the trials) or for the single run",
    )
    p.add_argument("--asr-only", action="store_true", help="single: VAD + ASR only")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="the ASR batch size (default: the reference's, 16)",
    )
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument(
        "--opt-in-align",
        default=None,
        help="a whisperx/alignment.py with the opt-in trellis patch (from the host)",
    )
    p.add_argument(
        "--num-speakers",
        type=int,
        default=None,
        help="the file's speaker count, given to pyannote (see Pipeline)",
    )
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--outputs-dir",
        default=None,
        help="write each run's outputs here (gzip JSON, one file a run)",
    )
    p.add_argument(
        "--step-name",
        default="",
        help="the host's step name, put before each outputs file's name",
    )
    p.add_argument(
        "--force-tokens-per-window",
        type=int,
        default=None,
        help="a random-weight model decodes this many word tokens in every window (see forced_decoding)",
    )
    p.add_argument("--work-dir", default=None)
    p.add_argument("--decoder", choices=("ffmpeg", "pyav"), default="ffmpeg")
    return p


def main(argv: list[str] | None = None) -> int:
    bt.offline_hub()
    args = build_parser().parse_args(argv)
    try:
        data = run(args)
    except bt.BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        bt.write_json(
            args.out,
            {"schema": SCHEMA, "ok": False, "error": str(exc), "device": args.device},
        )
        return 2
    except Exception as exc:  # noqa: BLE001
        print(f"error: {bt.error_line(exc)}", file=sys.stderr)
        bt.write_json(
            args.out,
            {
                "schema": SCHEMA,
                "ok": False,
                "error": bt.error_line(exc),
                "device": args.device,
                "where": traceback.format_exc().strip().splitlines()[-4:],
            },
        )
        return 1
    bt.write_json(args.out, data)
    return 0 if data.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
