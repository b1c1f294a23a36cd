"""The transcription targets, judged from a results file's measured stages."""

from __future__ import annotations

from typing import Any

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
    return {k: v for k, v in data.items() if isinstance(v, dict) and isinstance(v.get("stages"), list) and v.get("ok")}


def _ok(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in run["stages"] if s.get("status") == "ok"]


def _longest_dialogue(run: dict[str, Any]) -> str | None:
    files = {s["file"]: s.get("audio_s") or 0 for s in _ok(run) if str(s.get("file", "")).startswith("dialogue")}
    return max(files, key=files.__getitem__) if files else None


def _batched(run: dict[str, Any], file: str | None, *, compute_type: str | None = None) -> list[dict[str, Any]]:
    """The batched VAD+ASR stages of one file (the main one and the batch sweep), by batch size."""
    found = [
        s
        for s in _ok(run)
        if s.get("file") == file
        and s.get("kind") in ("whisperx_batched", "batch_sweep")
        and (compute_type is None or s.get("compute_type") == compute_type)
    ]
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
    return {
        "run": name,
        "model": run.get("model"),
        "weights": run.get("model_weights"),
        "file": stage.get("file"),
        "audio_s": stage.get("audio_s"),
        "compute_type": stage.get("compute_type"),
        "batch_size": stage.get("batch_size"),
    }


def _target_asr(data: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "target": f"{spec['model']} {spec['compute_type']} batched ASR (WhisperX, batch "
        f"{spec['batch_size']}) >= {spec['min_rtf']:g}x real time on the longest file",
        "min_rtf": spec["min_rtf"],
    }
    found = _large_v3_batch(data, spec)
    if found is None:
        return out | {
            "met": None,
            "not_measured": f"no {spec['model']} run with a {spec['compute_type']} batch {spec['batch_size']} stage",
        }
    name, run, s = found
    others = {
        str(o["batch_size"]): o.get("rtf")
        for o in _batched(run, s["file"], compute_type=spec["compute_type"])
        if o is not s
    }
    real = {
        n: t.get("tokens_per_window")
        for n, r in transcribe_runs(data).items()
        if r.get("model_weights") == "real"
        for t in _batched(r, s["file"])
        if t.get("kind") == "whisperx_batched"
    }
    return (
        out
        | _where(name, run, s)
        | {
            "rtf": s.get("rtf"),
            "wall_s": s.get("wall_s"),
            "asr_only_rtf": s.get("asr_only_rtf"),
            "other_batch_sizes_rtf": others,
            "tokens_per_window": s.get("tokens_per_window"),
            "max_new_tokens": run.get("max_new_tokens"),
            "real_weights_tokens_per_window": real,
            "met": (s.get("rtf") or 0) >= spec["min_rtf"],
        }
    )


def _target_pipeline(data: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "target": "whole pipeline (VAD + batched ASR + alignment + diarization) >= "
        f"{spec['min_rtf']:g}x real time on the longest file",
        "min_rtf": spec["min_rtf"],
    }
    measured: tuple[str, dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]] | None = None
    missing = {}
    for name, run in transcribe_runs(data).items():
        file = _longest_dialogue(run)
        main = next((s for s in _batched(run, file) if s.get("kind") == "whisperx_batched"), None)
        align, diarize = _stage_on(run, file, "align"), _stage_on(run, file, "diarize")
        if main is None or align is None or diarize is None:
            lacking = [n for n, s in (("batched ASR", main), ("align", align), ("diarize", diarize)) if s is None]
            missing[name] = f"no {' or '.join(lacking)} stage on {file}"
        elif measured is None:
            measured = name, run, main, align, diarize
    if measured is None:
        return out | {"met": None, "not_measured": missing}
    name, run, main, align, diarize = measured
    parts = {"vad+asr": main, "align": align, "diarize": diarize}
    total = round(sum(s["wall_s"] for s in parts.values()), 3)
    rtf = round(main["audio_s"] / total, 2)
    return (
        out
        | _where(name, run, main)
        | {
            "stage_weights": {k: s.get("weights") for k, s in parts.items()},
            "stages_s": {k: s["wall_s"] for k, s in parts.items()},
            "vad_s_within_asr": main.get("vad_s"),
            "stage_rtf": {k: s.get("rtf") for k, s in parts.items()},
            "total_s": total,
            "rtf": rtf,
            "not_measured_for": missing,
            "met": rtf >= spec["min_rtf"],
        }
    )


def _linear_fit(points: list[tuple[float, float]]) -> tuple[float, float, list[float]]:
    """Least squares y = a + b x: (a, b, residuals)."""
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    b = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    a = my - b * mx
    return a, b, [y - (a + b * x) for x, y in points]


def _memory_estimate(
    data: dict[str, Any], run: dict[str, Any], stages: list[dict[str, Any]], batch_size: int
) -> dict[str, Any] | None:
    """The whole-process peak against the windows in one batch, fitted as fixed + per_window x windows; with the
    model's parameter count (machine.synthetic_model), the weights' share and the estimate at ``batch_size``."""
    points = [
        (min(s["batch_size"], s["windows"]), s["gpu_peak_mib"])
        for s in stages
        if s.get("windows") and s.get("gpu_peak_mib")
    ]
    if len({x for x, _ in points}) < 3:
        return None
    fixed, slope, residuals = _linear_fit(points)
    per_window = round(slope, 1)
    est: dict[str, Any] = {
        "method": "least-squares fit of the whole-process peak against the windows in one batch "
        "(min(batch size, windows in the file))",
        "points_windows_mib": [list(p) for p in points],
        "per_window_mib": per_window,
        "fixed_mib": round(fixed),
        "fit_residuals_mib": [round(r, 1) for r in residuals],
        "label": "memory depends on the model's shape, not on its weight values",
    }
    model = (data.get("machine") or {}).get("synthetic_model") or {}
    bytes_per = {"float16": 2, "float32": 4, "int8_float16": 1}.get(str(run.get("compute_type")))
    if model.get("parameters") and bytes_per:
        weights = model["parameters"] * bytes_per / MIB
        est["weights_mib"] = round(weights)
        est["weights_and_batch_mib"] = round(weights + batch_size * per_window)
        est["weights_and_batch_formula"] = (
            f"{model['parameters']} parameters x {bytes_per} bytes + {batch_size} x {per_window} MiB"
        )
    shape = model.get("shape") or {}
    if bytes_per and all(shape.get(k) for k in ("decoder_layers", "max_source_positions", "d_model")):
        kv = shape["decoder_layers"] * 2 * shape["max_source_positions"] * shape["d_model"] * bytes_per
        est["cross_attention_kv_per_window_mib"] = round(kv / MIB, 1)
    return est


def _target_memory(data: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    limit = round(spec["max_gb"] * 10**9 / MIB)
    out: dict[str, Any] = {
        "target": f"peak GPU memory for {spec['model']} {spec['compute_type']} batch "
        f"{spec['batch_size']} reported, and at most {spec['max_gb']:g} GB",
        "max_gb": spec["max_gb"],
        "limit_mib": limit,
        "limit_if_gib_mib": round(spec["max_gb"] * 1024),
    }
    found = _large_v3_batch(data, spec)
    if found is None or not found[2].get("gpu_peak_mib"):
        return out | {
            "met": None,
            "not_measured": f"no {spec['model']} run with a {spec['compute_type']} batch "
            f"{spec['batch_size']} stage that recorded gpu_peak_mib",
        }
    name, run, s = found
    stages = _batched(run, s["file"], compute_type=spec["compute_type"])
    by_batch = {str(o["batch_size"]): o.get("gpu_peak_mib") for o in stages}
    fits = {
        str(o["batch_size"]): {"peak_mib": o["gpu_peak_mib"], "rtf": o.get("rtf")}
        for o in stages
        if o.get("gpu_peak_mib") and o["gpu_peak_mib"] <= limit
    }
    return (
        out
        | _where(name, run, s)
        | {
            "peak_mib": s["gpu_peak_mib"],
            "peak_source": s.get("gpu_peak_source"),
            "device_used_peak_mib": s.get("gpu_device_used_peak_mib"),
            "by_batch_size_peak_mib": by_batch,
            "batch_sizes_within_limit": fits,
            "asr_estimate": _memory_estimate(data, run, stages, spec["batch_size"]),
            "met": s["gpu_peak_mib"] <= limit,
        }
    )


def _cpu_files(data: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, dict[str, Any]]] | None:
    for name, run in transcribe_runs(data).items():
        if run.get("model_weights") != "real":
            continue
        main = {
            s["file"]: s
            for s in _ok(run)
            if s.get("kind") == "whisperx_batched" and str(s.get("file", "")).startswith("dialogue")
        }
        if main:
            return name, run, main
    return None


def _target_cpu_rtf(data: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "target": f"batched transcription faster than {spec['min_rtf']:g}x real time on every "
        "dialogue file (real weights)",
        "min_rtf": spec["min_rtf"],
    }
    found = _cpu_files(data)
    if found is None:
        return out | {"met": None, "not_measured": "no real-weight batched stage on a dialogue file"}
    name, run, main = found
    rtf = {f: s.get("rtf") for f, s in main.items()}
    return out | {
        "run": name,
        "model": run.get("model"),
        "compute_type": run.get("compute_type"),
        "per_file_rtf": rtf,
        "slowest_rtf": min((v or 0) for v in rtf.values()),
        "met": all((v or 0) > spec["min_rtf"] for v in rtf.values()),
    }


def _target_cpu_wer(data: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "target": f"WER under {spec['max_wer']:.0%} on every dialogue file (batched, real weights)",
        "max_wer": spec["max_wer"],
    }
    found = _cpu_files(data)
    if found is None:
        return out | {"met": None, "not_measured": "no real-weight batched stage on a dialogue file"}
    name, run, main = found
    wer = {f: s.get("wer") for f, s in main.items()}
    known = [v for v in wer.values() if v is not None]
    return out | {
        "run": name,
        "model": run.get("model"),
        "per_file_wer": wer,
        "worst_wer": max(known) if known else None,
        "met": len(known) == len(wer) and all(v < spec["max_wer"] for v in known),
    }


_JUDGES = {
    "asr_large_v3_fp16_bs16": _target_asr,
    "pipeline": _target_pipeline,
    "gpu_memory_large_v3_fp16_bs16": _target_memory,
    "cpu_faster_than_real_time": _target_cpu_rtf,
    "cpu_wer": _target_cpu_wer,
}


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
        # A figure is named for the stages it covers (#15). This one sums separately timed stages (batched VAD +
        # ASR, alignment, diarization; no speaker assignment): stage_sum_rtf, never whole_pipeline_rtf, which is the
        # pipeline benchmark's one run of all four stages (bench.pipeline.pipeline_run_figures).
        if {"align", "diarize"} <= {o["stage"] for o in extra}:
            pf["stage_sum_rtf"] = figure
        else:
            pf["partial_rtf"] = figure
            pf["partial_stages"] = "+".join(["vad+asr"] + [o["stage"] for o in extra])
    return out
