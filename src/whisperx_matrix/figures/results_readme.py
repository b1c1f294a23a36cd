"""The blocks of benchmarks/results/README.md: the machine, the targets, the files and plots."""

from __future__ import annotations

from pathlib import Path

from .fmt import (
    _file_name,
    _first_word,
    _gpu_short,
    _longest_dialogue,
    _met,
    _minutes_label,
    _nvml,
    _precision,
    _runs,
    mib,
    pct,
    raw,
    sec,
    wrap,
    x,
)
from .pipeline import pipeline_since, rtf_text
from .readme import _asr_target, _conv2d, _cpu_targets, _mem_target, _suite_cell, _suite_cells
from .results import GPU_PLOTS, PLOT_SUFFIXES, Doc, Results

# ------------------------------------------------------------------------------------------ benchmarks/results/README.md


def results_machine(r: Results) -> str:
    """The headline section's first paragraph: the GPU machine and the 20-min file."""
    gpu = r["gpu"]
    m, v = gpu.sub("machine"), gpu.sub("tiny_en", "versions")
    tiny = gpu.sub("tiny_en")
    f = _longest_dialogue(tiny)
    return wrap(
        f"All GPU figures come from one {m.text('gpu')} (driver {m.text('driver')}, CUDA {m.text('cuda_driver')}, "
        f"torch {_first_word(m.text('torch'))}, CTranslate2 {v.text('ctranslate2')}, WhisperX "
        f'{v.text("whisperx")}), {gpu.text("date")}. "{_minutes_label(f)}" means the espeak-ng two-voice '
        f"dialogue of {tiny.stage(kind='whisperx_batched', file=f).num('audio_s'):g} s. RTF is audio seconds "
        'divided by wall seconds (N x real time). "Synthetic weights" means random weights in the real '
        "model's shape: good for speed and memory, never for accuracy, so those rows have no WER or DER."
    )


def targets_bullets(r: Results) -> str:
    """The issue's targets, from the `targets` blocks of the transcribe files."""
    gpu, cpu = r["gpu"], r["cpu"]
    h = _gpu_short(gpu.text("machine", "gpu"))
    asr, pipe, mem = _asr_target(gpu), gpu.sub("targets", "pipeline"), _mem_target(gpu)
    out = [
        wrap(
            "The issue's targets, as `whisperx_matrix.bench.transcribe_targets` judges them from the measured "
            f"stages (`targets` in `{gpu.name}` and `{cpu.name}`):"
        ),
        "",
    ]

    bs, prec = raw(asr.num("batch_size")), _precision(asr.text("compute_type"))
    others = ", ".join(f"{x(d.num())} at batch {b}" for b, d in asr.items("other_batch_sizes_rtf"))
    synthetic = asr.text("weights") == "synthetic"
    line = (
        f"- **At least {asr.num('min_rtf'):g}x for {asr.text('model')} {prec} batched ASR (batch {bs}) on the "
        f"{h}: {_met(asr.flag('met'))}{', with synthetic weights' if synthetic else ''}.** {x(asr.num('rtf'))} at "
        f"batch {bs}{f' ({others})' if others else ''}."
    )
    real = asr.items("real_weights_tokens_per_window")
    if synthetic and real:
        run, tpw = real[0]
        more = tpw.num() > asr.num("tokens_per_window")
        line += (
            f" With random weights the decoder emitted {asr.num('tokens_per_window'):g} tokens per window "
            f"(capped at {raw(asr.num('max_new_tokens'))} new tokens), while real {gpu.text(run, 'model')} emitted "
            f"{tpw.num():g} on the same file"
            + (
                ", so real weights run the decoder for more steps and may land lower. The encoder has the same "
                "shape either way."
                if more
                else "."
            )
        )
    out.append(wrap(line, indent="  "))

    st, rtf = pipe.sub("stages_s"), pipe.sub("stage_rtf")
    missing = "; ".join(
        f"`{run}` ({gpu.text(run, 'model')}) has {why.text()}" for run, why in pipe.items("not_measured_for")
    )
    line = (
        f"- **At least {pipe.num('min_rtf'):g}x for the whole pipeline, judged on the sum of separately timed "
        f"stages (stage_sum_rtf; no speaker assignment): {_met(pipe.flag('met'))}.** "
        f"{x(pipe.num('rtf'))}, measured for {pipe.text('model')} ASR ({pipe.text('stage_weights', 'vad+asr')} "
        f"weights) with {pipe.text('stage_weights', 'align')}-weight alignment and "
        f"{pipe.text('stage_weights', 'diarize')}-weight diarization models"
        + (f"; {missing}, so there is no pipeline figure for it" if missing else "")
        + ". "
        f"Diarization alone runs at {x(rtf.num('diarize'))} ({sec(st.num('diarize'))} s)"
    )
    if rtf.num("diarize") < pipe.num("min_rtf"):
        line += (
            " and does not depend on the ASR model, so with this diarization setup no ASR model reaches "
            f"{pipe.num('min_rtf'):g}x end to end"
        )
    line += f". Alignment runs at {x(rtf.num('align'))} ({sec(st.num('align'))} s)."
    since = pipeline_since(r, beside_results=True)
    line += f" {since}" if since else ""
    out.append(wrap(line, indent="  "))

    limit, gib, max_gb = mem.num("limit_mib"), mem.num("limit_if_gib_mib"), mem.num("max_gb")
    bs, prec = raw(mem.num("batch_size")), _precision(mem.text("compute_type"))
    line = (
        f"- **Peak GPU memory for {mem.text('model')} {prec} batch {bs}, at most {max_gb:g} GB: "
        f"{_met(mem.flag('met'))}{' as measured' if not mem.flag('met') else ''}.** {mib(mem.num('peak_mib'))} "
        f"({_nvml(mem.text('peak_source'))}) against {max_gb:g} GB = {mib(limit)}."
    )
    if mem.text("peak_source").startswith("nvml"):
        line += (
            " torch's own peak (`max_memory_allocated`) is recorded for torch stages only, so the ASR-only share "
            "is not measured."
        )
    if mem.has("asr_estimate"):
        est = mem.sub("asr_estimate")
        windows = [raw(pt[0]) for pt in est.get("points_windows_mib")]
        resid = max(abs(v) for v in est.get("fit_residuals_mib"))
        kv = (
            f"; cross-attention K/V alone is {est.num('cross_attention_kv_per_window_mib'):g} MiB per window"
            if est.has("cross_attention_kv_per_window_mib")
            else ""
        )
        line += (
            f" An estimate ({est.text('label')}): the peak grows by {est.num('per_window_mib'):g} MiB per window "
            f"in the batch (a least-squares fit over {', '.join(windows[:-1])} and {windows[-1]} windows, residuals "
            f"within {resid:g} MiB{kv})."
        )
        if est.has("weights_and_batch_mib"):
            total = est.num("weights_and_batch_mib")
            line += (
                f" That puts CTranslate2 at batch {bs} at about {mib(est.num('weights_mib'))} of {prec} weights + "
                f"{bs} x {est.num('per_window_mib'):g} MiB = about {mib(total)}: {'over' if total > limit else 'within'} "
                f"{max_gb:g} GB ({mib(limit)}), {'over' if total > gib else 'under'} {max_gb:g} GiB ({mib(gib)}), "
                "and any real process needs a CUDA context on top."
            )
    for b, d in mem.items("batch_sizes_within_limit"):
        meets = d.num("rtf") >= asr.num("min_rtf")
        line += f" Batch {b} fits: {mib(d.num('peak_mib'))} for the whole process at {x(d.num('rtf'))}" + (
            ", which also meets the speed target." if meets else ", short of the speed target."
        )
    out.append(wrap(line, indent="  "))

    rt, wer = cpu.sub("targets", "cpu_faster_than_real_time"), cpu.sub("targets", "cpu_wer")
    res = cpu.sub("result")
    out.append(
        wrap(
            f"- **CPU ({res.text('model')} {res.text('compute_type')}, {raw(cpu.num('machine', 'cores'))} "
            f"cores), faster than real time on every dialogue file: {_met(rt.flag('met'))}** (slowest "
            f"{x(rt.num('slowest_rtf'))}); **WER under {wer.num('max_wer'):.0%} on every dialogue file: "
            f"{_met(wer.flag('met'))}** (worst {pct(wer.num('worst_wer'))}).",
            indent="  ",
        )
    )
    return "\n".join(out)


def _ranges(stages: list[Doc]) -> str:
    vals = [s.num("rtf") for s in stages]
    lo, hi = min(vals), max(vals)
    return x(lo) if lo == hi else f"{lo:.1f}-{x(hi)}"


_GROUPS = (
    ("batched", {"kind": "whisperx_batched"}),
    ("sequential", {"kind": "sequential"}),
    ("align", {"stage": "align"}),
    ("diarize", {"stage": "diarize"}),
    ("VAD", {"stage": "vad(within batched)"}),
)


def _weights_by_group(run: Doc) -> str:
    by: dict[str, list[str]] = {}
    for name, match in _GROUPS:
        for s in run.stages(**match)[:1]:
            by.setdefault(s.text("weights"), []).append(name)
    return "; ".join(f"{w} ({', '.join(g)})" for w, g in by.items())


def _plot_rows(r: Results, gpu: Doc) -> list[str]:
    rows = []
    h = _gpu_short(gpu.text("machine", "gpu"))
    stem = Path(gpu.name).stem
    for part, key in GPU_PLOTS.items():
        run = gpu.sub(key)
        name = lambda suffix, part=part: f"{stem}-{part}{suffix}"  # noqa: E731
        f = _longest_dialogue(run)
        if name("-rtf-stage.png") in r.files:
            heads = ", ".join(f"{g} {_ranges(run.stages(**m))}" for g, m in _GROUPS if run.stages(**m))
            rows.append(
                f"| `{name('-rtf-stage.png')}` | RTF of every stage and file, {run.text('model')} run | {h} | "
                f"{heads} | {_weights_by_group(run)} |"
            )
        batches = run.stages(file=f, compute_type=run.text("compute_type"))
        batches = sorted(
            (s for s in batches if s.text("kind") in ("whisperx_batched", "batch_sweep")),
            key=lambda s: s.num("batch_size"),
        )
        if name("-rtf-batch.png") in r.files:
            rows.append(
                f"| `{name('-rtf-batch.png')}` | RTF against batch size, {run.text('model')}, {_minutes_label(f)} | "
                f"{h} | {', '.join(x(s.num('rtf')) + ' (' + raw(s.num('batch_size')) + ')' for s in batches)} | "
                f"{run.text('model_weights')} |"
            )
        if name("-memory.png") in r.files:
            diar = run.stages(stage="diarize")
            if diar:
                first = run.get("stages").index(diar[0].data)
                before = [s for s in run.stages(kind="whisperx_batched") if run.get("stages").index(s.data) < first]
                peak = max(d.num("gpu_peak_mib") for d in diar)
                head = (
                    f"batched ASR {mib(before[0].num('gpu_peak_mib'))} (whole process) before the first diarization; "
                    f"diarization's torch peak is {mib(peak)}, and the CTranslate2 bars after it include that cache"
                    if before
                    else f"diarization's torch peak {mib(peak)}"
                )
            else:
                windows = batches[-1].num("windows") if batches and batches[-1].has("windows") else None
                head = ", ".join(f"{mib(s.num('gpu_peak_mib'))} at batch {raw(s.num('batch_size'))}" for s in batches)
                head += f" ({raw(windows)} windows in the file)" if windows else ""
            rows.append(
                f"| `{name('-memory.png')}` | peak GPU memory by stage, {run.text('model')} run | {h} | {head} | "
                f"{_weights_by_group(run)} |"
            )
    return rows


def files_table(r: Results) -> str:
    """The Files table: every results file, its machine and its headline figures."""
    gpu, cpu, cb, suite = r["gpu"], r["cpu"], r["cublas12"], r["suite"]
    b, a, m, prof = r["build"], r["audit"], r["matrix"], r["profile"]
    gm = gpu.sub("machine")
    gpu_machine = f"{raw(gm.num('gpu_count'))}x {gm.text('gpu')}, {raw(gm.num('cores'))} cores"
    runs = ", ".join(
        f"`{k}` ({run.text('model')}, {run.text('model_weights')} weights"
        + (f"; {run.text('error')}" if not run.flag("ok") else "")
        + ")"
        for k, run in _runs(gpu)
    )
    weights = []
    for _, run in _runs(gpu):
        if run.flag("ok"):
            weights.append(f"{run.text('model')} ASR {run.text('model_weights')}")
            weights += [
                f"{s} {run.stage(stage=s).text('weights')}" for s in ("align", "diarize") if run.stages(stage=s)
            ]
    rows = [
        "| File | What it measures | Machine | Headline | Weights |",
        "|---|---|---|---|---|",
        f"| `{gpu.name}` | WhisperX/faster-whisper transcription on the GPU: {runs}; `summary` and `targets` "
        f"(`bench.summarise_file` of the runs), `machine` (versions, pip check, step timings, the synthetic model's "
        f"shape) | {gpu_machine} | the table above | {'; '.join(dict.fromkeys(weights))} |",
    ]
    rows += _plot_rows(r, gpu)

    res = cpu.sub("result")
    cf = _longest_dialogue(res)
    per = cpu.sub("summary", "per_file", cf)
    cmain, cseq = res.stage(kind="whisperx_batched", file=cf), res.stage(kind="sequential", file=cf)
    sweep = [raw(s.num("batch_size")) for s in res.stages(kind="batch_sweep")]
    diar = res.stages(stage="diarize")
    cm = cpu.sub("machine")
    shared = " shared" if any("shared" in str(n) for n in cpu.get("notes")) else ""
    batched_files = ", ".join(f"`{_file_name(s)}`" for s in res.stages(kind="whisperx_batched"))
    diar_files = ", ".join(f"`{_file_name(s)}`" for s in diar)
    diar_rtf = ", ".join(f"{x(s.num('rtf'))} (`{_file_name(s)}`)" for s in diar)
    compare = "/".join(s.text("compute_type") for s in res.stages(kind="compute_type"))
    rows.append(
        f"| `{cpu.name}` | the same benchmark on the CPU: {res.text('model')} {res.text('compute_type')} on "
        f"{batched_files}: batched (batch {raw(cmain.num('batch_size'))}, sweep {'/'.join(sweep)}), sequential, "
        f"{compare}, alignment; diarization only on {diar_files} | dev machine, {raw(cm.num('cores'))}{shared} cores, "
        f"{raw(cm.num('memory_gib'))} GiB | {_minutes_label(cf)}: batched {x(cmain.num('rtf'))} (WER "
        f"{pct(cmain.num('wer'))}), sequential {x(cseq.num('rtf'))} (WER {pct(cseq.num('wer'))}); batched + alignment "
        f"({per.text('partial_stages')}) {x(per.num('partial_rtf'))}; diarization {diar_rtf}; CPU targets: {_cpu_targets(cpu)} | {_weights_by_group(res)} |"
    )
    pngs = [f"`{Path(cpu.name).stem}{s}`" for s in PLOT_SUFFIXES if f"{Path(cpu.name).stem}{s}" in r.files]
    if pngs:
        rows.append(
            f"| {', '.join(pngs)} | RTF by stage, RTF against batch size, peak RSS by stage (CPU run) | "
            f"{raw(cm.num('cores'))} cores | as above | as above |"
        )

    w, wo = cb.sub("results", "with_cublas12_preloaded"), cb.sub("results", "without_cublas12")
    cbm = cb.sub("machine")
    rows.append(
        f"| `{cb.name}` | CTranslate2 under the cu130 torch stack, without and with cuBLAS 12 preloaded (the "
        f"`stable-cu130` vs `stable-cu130-cublas12` cells, run for real) | {cbm.text('gpu')}, {raw(cbm.num('cores'))} cores | "
        f"without: {'works' if wo.flag('ok') else '`' + wo.text('error') + '`'}; with: "
        f"{'works' if w.flag('ok') else 'fails'} on {cb.text('audio')}: first call {sec(w.num('first_call_s'))} s, warm "
        f"{sec(w.num('warm_call_s'))} s | {cb.text('model').split(' (')[0]}, "
        f"{'real' if 'real weights' in cb.text('model') else 'synthetic'} weights |"
    )

    steps, bm = b.sub("steps"), b.sub("machine")
    missed = [k for k, d in b.items("targets") if not d.flag()]
    png = f", `{Path(b.name).with_suffix('.png').name}`" if Path(b.name).with_suffix(".png").name in r.files else ""
    rows.append(
        f"| `{b.name}`{png} | building the `{b.text('cell')}` cell: ours cold/warm/no-op against raw `uv pip install` and "
        f"plain pip | dev machine, {raw(bm.num('cores'))} cores | ours warm {raw(steps.num('ours_warm_s'))} s, cold "
        f"{raw(steps.num('ours_cold_s'))} s, no-op {raw(steps.num('ours_noop_s'))} s; raw uv {raw(steps.num('raw_uv_warm_s'))} / "
        f"{raw(steps.num('raw_uv_cold_s'))} s; pip cold {raw(steps.num('pip_cold_s'))} s; pip cold / ours cold "
        f"{raw(b.num('ratios', 'pip_cold_over_ours_cold'))}x; targets missed: "
        f"{', '.join(f'“{k}”' for k in missed) or 'none'} | no models |"
    )

    site, lib = a.sub("audit", "site"), a.sub("audit", "library")
    rows.append(
        f"| `{a.name}` | the fatbin audit's speed: the whole `{a.text('cell')}` cell, and `{Path(lib.text('path')).name}` "
        f"against `cuobjdump` | dev machine, {raw(a.num('machine', 'cores'))} cores | whole cell {site.num('audit_s'):.3g} s; "
        f"`{Path(lib.text('path')).name}` {lib.num('audit_s'):.3g} s against cuobjdump {lib.num('cuobjdump_s'):.3g} s "
        f"({x(lib.num('speedup'))}) | no models |"
    )

    t = m.sub("totals")
    png = f", `{Path(m.name).with_suffix('.png').name}`" if Path(m.name).with_suffix(".png").name in r.files else ""
    repeat = ""
    if m.has("repeat"):  # the results cache (#24): the same matrix again with nothing changed, in the same command
        rp = m.sub("repeat")
        repeat = (
            f"; again with nothing changed {sec(rp.num('wall_s'))} s ({raw(rp.num('cached_cells'))} cells from the "
            f"results cache, {rp.num('ratio_to_first'):.1%} of the first run's time, the same report apart from times "
            f"and cached marks: {'yes' if rp.flag('same_report_apart_from_times_and_cached_marks') else '**no**'})"
        )
    built = m.data.get("cells_built_in_first_run") or []
    rows.append(
        f"| `{m.name}`{png} | the whole matrix run: time per stage and per cell (only this run's work"
        + (f"; {len(built)} cells built in it" if built else ", every build reused")
        + f") | dev machine, {raw(m.num('machine', 'cores'))} cores | {raw(t.num('cells'))} cells in "
        f"{raw(m.num('wall_s'))} s ({raw(t.num('as_expected'))} as expected, {raw(t.num('unexpected'))} unexpected, "
        f"{raw(t.num('not_testable'))} not testable){repeat}; "
        f"{'; '.join(f'“{k}” {_met(d.data)}' for k, d in m.items('targets'))} | tiny.en real |"
    )

    rows.append(_workflow_cache_row(r["workflow-cache"]))

    steps = prof.sub("steps_s")
    conv = _conv2d(prof)
    rows.append(
        f"| `{prof.name}` | cProfile of the top pipeline stage, diarization (`scripts/profile_diarization.py`), "
        f"{prof.num('audio_seconds'):g} s file | dev machine, {prof.text('device').upper()} | {sec(prof.num('wall_s'))} s: "
        f"speaker embeddings {sec(steps.num('embeddings'))} s ({steps.num('embeddings') / prof.num('wall_s'):.0%}"
        + (f", of which conv2d {sec(conv.num('own_s'))} s" if conv else "")
        + f"), segmentation {sec(steps.num('segmentation'))} s, clustering {sec(steps.num('clustering'))} s | "
        f"{prof.text('weights')} |"
    )

    cells = _suite_cells(suite)
    rows.append(
        f"| `{suite.name}` | the matrix's cell suite (`tests/cell`, GPU tests included) as "
        f"{' and as '.join('`' + c.text('cell') + '`' for _, c in cells)} | {suite.text('machine', 'gpu')} | "
        f"{'; '.join(_suite_cell(c) for _, c in cells)} | tiny.en real |"
    )
    if "pipeline" in r.docs:
        pl = r["pipeline"]
        t = pl.sub("targets")
        sweeps = [
            (pl.text("steps", k, "model_label"), pl.sub("summary", k)) for k in ("tiny_en_sweep", "large_v3_sweep")
        ]
        tw = sweeps[0][1].sub("weights")
        pl_weights = "; ".join(f"{label} ASR {sw.text('weights', 'vad+asr')}" for label, sw in sweeps) + (
            f"; align {tw.text('align')}; diarize {tw.text('diarize').replace('; ', ', ')}"
        )
        mem_t = t.sub("memory_large_v3_fp16_bs16")
        ref_key = next(k for k, run in mem_t.items("runs") if not run.get("levers"))
        ref = pl.sub("singles", ref_key)
        rows.append(
            f"| `{pl.name}` | the whole pipeline (`nox -s bench -- pipeline`): VAD + ASR, alignment, diarization, "
            f"speaker assignment on the {_minutes_label(sweeps[0][1].text('file'))}; each speed lever alone against "
            f"the reference run, with the outputs compared (`equivalence`), the equivalent and faster ones combined; "
            f"one fresh process per setting for the memory budgets (`singles`, `settings_by_budget`) | 1x "
            f"{pl.text('gpu', 'name')}, {raw(pl.num('machine', 'cores'))} cores, cell `{pl.text('cell')}` | "
            f"whole_pipeline_rtf (one run of all four stages) {sweeps[0][0]} "
            f"{rtf_text(t.sub('whole_pipeline_tiny_en'), 'rtf')}, {sweeps[1][0]} "
            f"{rtf_text(t.sub('whole_pipeline_large_v3'), 'rtf', why_key='why_not')}"
            f"; {sweeps[1][0]} {_precision(ref.text('compute_type'))} batch {raw(ref.num('batch_size'))} peak "
            f"{mib(mem_t.num('lowest_peak_mib'))} (whole process) | {pl_weights} |"
        )
    return "\n".join(rows)


def _workflow_cache_row(wc: Doc) -> str:
    """The GPU workflow's results cache: three pushes through its real cell job, one actions/cache store."""
    pushes = "; ".join(
        f"{p.text('change')}"
        + (f" (`{'`, `'.join(str(c) for c in p.get('changed_paths'))}`)" if p.get("changed_paths") else "")
        + f": {raw(p.num('cells_run'))} cell run, {raw(p.num('cells_from_cache'))} from the cache, job "
        f"{sec(p.num('wall_s'))} s"
        for p in (wc.sub("pushes", i) for i in range(len(wc.get("pushes"))))
    )
    return (
        f"| `{wc.name}` | the GPU workflow's `{wc.text('job')}` job (`{wc.text('workflow')}`, as written, through "
        f"`scripts/run_workflow_job.py`) for `{wc.text('cell')}`, three pushes in fresh clones sharing one "
        f"actions/cache store | dev machine, {raw(wc.num('machine', 'cores'))} cores, no GPU | {pushes}; "
        f"{'; '.join(f'“{k}” {_met(d.data)}' for k, d in wc.items('targets'))} | tiny.en real |"
    )
