"""The whole-pipeline block (#15): stage times, levers, equivalence and VRAM budgets."""

from __future__ import annotations

from .fmt import _met, link, mib, pct, raw, sec, wrap, x
from .results import Doc, Results

# ------------------------------------------------------------------------------------------ the whole pipeline

LEVER_LABELS = {
    "embedding_batch_64": "embedding batch 64 (reference 32)",
    "embedding_batch_128": "embedding batch 128 (reference 32)",
    "embedding_tf32": "TF32 inside the embedding model",
    "embedding_fp16": "fp16 autocast inside the embedding model",
    "segmentation_batch_128": "segmentation batch 128 (reference 32)",
    "segmentation_step_0.2": "segmentation step 0.2 (2 s; reference 1 s)",
    "asr_batch_32": "CTranslate2 batch 32 (reference 16)",
    "align_audio_on_device": "alignment audio already on the GPU",
    "align_numpy_trellis": "alignment's trellis in numpy (opt-in patch 0002)",
    "overlap_align_diarize": "diarization overlapped with alignment (second thread and CUDA stream)",
    "free_between_stages": "each stage's models loaded for it and freed after it, torch's cache emptied after VAD "
    "and between stages",
}


OVERLAPPED = "align+diarize (overlapped)"  # the stage the pipeline script records when the two run together


def _lever(name: str) -> str:
    return LEVER_LABELS.get(name, f"`{name}`")


def _stage_s(run: Doc, stage: str) -> str:
    stages = run.get("stages_s")
    return sec(run.num("stages_s", stage)) if stage in stages else "-"


def _equiv_cell(e: Doc) -> str:
    parts = []
    if e.has("transcript", "wer"):
        same = e.get("transcript").get("identical")
        parts.append(f"WER {raw(e.num('transcript', 'wer'))}" + ("" if same else ", raw text differs"))
    if e.has("speaker_turns", "der"):
        parts.append(f"DER {pct(e.num('speaker_turns', 'der'))}")
    if e.has("word_timings", "max_delta_ms"):
        w = e.sub("word_timings")
        parts.append(
            f"words within {raw(w.num('max_delta_ms'))} ms"
            + (
                f", {raw(w.num('unmatched_words'))} of {raw(w.num('reference_words'))} unmatched"
                if w.num("unmatched_words")
                else ""
            )
        )
    return ("yes" if e.flag("passes") else "**no**") + f" ({', '.join(parts)})"


def _fastest_alone(sweep: Doc, stage: str) -> tuple[str | None, float]:
    """The fastest time for ``stage`` run alone in the sweep: the reference's, or a lever's that changes only that
    stage and keeps the outputs unchanged (None for the reference)."""
    best: tuple[str | None, float] = (None, sweep.num("runs", "reference", "stages_s", stage))
    for name, lv in sweep.items("levers"):
        if lv.get("stages") == [stage] and lv.flag("equivalent") and lv.num("lever_s") < best[1]:
            best = (name, lv.num("lever_s"))
    return best


def _align_diarize_text(sweep: Doc) -> str:
    """Alignment and diarization, each alone at its fastest, against the two overlapped in the combined run: the
    sentence says which is longer and whether overlapping still saves time."""
    (a_lv, a_s), (d_lv, d_s) = _fastest_alone(sweep, "align"), _fastest_alone(sweep, "diarize")
    both = sweep.num("runs", "combined", "stages_s", OVERLAPPED)

    def how(name: str | None) -> str:
        return "reference settings" if name is None else _lever(name)

    longer = "alignment" if a_s >= d_s else "diarization"
    text = (
        f"Each alone at its fastest: alignment {sec(a_s)} s ({how(a_lv)}), diarization {sec(d_s)} s ({how(d_lv)}); "
        f"{longer} is the longer. Overlapped in the combined run the two take {sec(both)} s"
    )
    if both >= a_s + d_s:
        return text + f", no less than the two one after the other ({sec(a_s + d_s)} s): overlapping saves no time now."
    return text + f", {sec(a_s + d_s - both)} s less than the two one after the other ({sec(a_s + d_s)} s)."


def pipeline_block(r: Results) -> str:
    """The whole pipeline (#15): stage times, levers one at a time with their equivalence, the combined run, memory
    and the settings by VRAM budget, from the newest pipeline-gpu-*.json."""
    d = r["pipeline"]
    gpu = d.sub("gpu")
    tiny, large = d.sub("summary", "tiny_en_sweep"), d.sub("summary", "large_v3_sweep")
    tres = d.sub("steps", "tiny_en_sweep", "result")
    v = tres.sub("versions")
    first = tres.sub("warmup", 0)
    jit = first.sub("cuda_jit_cache")
    head = (
        f"The whole pipeline, VAD + ASR, alignment, diarization and speaker assignment, on the 20-min file "
        f"({raw(tiny.num('audio_s'))} s, decoded once beforehand), measured stage by stage by `nox -s bench -- pipeline` "
        f"(`src/whisperx_matrix/cellside/bench_pipeline.py`) in the cell `{d.text('cell')}` on one "
        f"{gpu.text('name')} (driver {gpu.text('driver')}; torch {v.text('torch')}, CTranslate2 "
        f"{v.text('ctranslate2')}, WhisperX {v.text('whisperx')}, pyannote.audio {v.text('pyannote-audio')}), "
        f"{d.text('date')}. ASR weights: tiny.en real, large-v3-shaped synthetic; alignment (wav2vec2-base shape) "
        f"and speaker-embedding (WeSpeakerResNet34) weights synthetic, segmentation real: the figures are speed and "
        f"memory, never accuracy. Every model has had its first call before any timed run (tiny.en's first "
        f"CTranslate2 call: {sec(first.num('wall_s'))} s, with {raw(jit.num('entries'))} entries in the CUDA JIT "
        f"cache folder when it began, so CTranslate2's PTX was compiled in it). `whole_pipeline_rtf` = audio "
        f"seconds / wall seconds of all stages in one go ([`{d.name}`]({d.path}))."
    )
    rows = [
        "| run | VAD + ASR | alignment | diarization | speaker assignment | whole pipeline | whole_pipeline_rtf |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, sweep in (("tiny.en", tiny), ("large-v3-shaped", large)):
        for run_name, what in (("reference", "reference"), ("combined", "levers combined")):
            run = sweep.sub("runs", run_name)
            stages = run.get("stages_s")
            if OVERLAPPED in stages:
                al = di = f"{sec(run.num('stages_s', OVERLAPPED))} (overlapped)"
            else:
                al, di = _stage_s(run, "align"), _stage_s(run, "diarize")
            rows.append(
                f"| {label}, {what} | {_stage_s(run, 'vad+asr')} | {al} | {di} | "
                f"{_stage_s(run, 'assign_speakers')} | {sec(run.num('whole_s'))} s | "
                f"**{x(run.num('whole_pipeline_rtf'))}** |"
            )
    levers = [
        "| lever (tiny.en, alone) | stage | reference s (repeat) | with the lever s | speed-up | outputs "
        "unchanged | kept |",
        "|---|---|---|---|---|---|---|",
    ]
    teq = d.sub("equivalence", "tiny_en_sweep")
    for name, t in tiny.items("levers"):
        levers.append(
            f"| {_lever(name)} | {' + '.join(t.get('stages'))} | {sec(t.num('reference_s'))} "
            f"({sec(t.num('repeat_s'))}) | {sec(t.num('lever_s'))} | {x(t.num('speedup'))} | "
            f"{_equiv_cell(teq.sub('levers', name))} | {'yes' if t.flag('kept') else 'no'} |"
        )
    leq = d.sub("equivalence", "large_v3_sweep")
    combined = ", ".join(_lever(n) for n in tiny.get("combined_levers"))
    speakers = teq.num("combined", "speaker_turns", "speakers", 0)
    failing_in = {
        lv: sweep
        for sweep in ("large_v3_sweep", "tiny_en_sweep")  # tiny.en's block wins: it is the lever table's model
        for lv in d.get("equivalence", sweep, "kept_levers_failing")
    }
    failing = sorted(failing_in)
    failing_text = []
    for lv in failing:
        block = d.sub("equivalence", failing_in[lv], "levers", lv)
        failing_text.append(
            f"{_lever(lv)}, {_equiv_cell(block)}"
            + (
                ": it passed the bar the sweep ran with, so the sweep kept it and the combined runs above include "
                "it (the single runs below run at their own batch size)"
                if block.data.get("as_run") is True
                else ""
            )
        )
    eq_text = wrap(
        f"Outputs against the reference run in the same process with the same weights (`equivalence` in the file; "
        f"bar: WER 0 with the raw text identical, DER under 1%, word timings within 20 ms; every block re-judged "
        f"from its measured fields when the file is written). The reference run twice: tiny.en "
        f"{_equiv_cell(teq.sub('reference_repeat'))}; large-v3-shaped {_equiv_cell(leq.sub('reference_repeat'))}. "
        f"Combined ({combined}): tiny.en {_equiv_cell(teq.sub('combined'))}; large-v3-shaped "
        f"{_equiv_cell(leq.sub('combined'))}. pyannote is given the file's speaker count "
        f"({raw(tres.num('num_speakers'))}): with random embedding weights, clustering by its distance threshold "
        f"puts every turn into one speaker, so only a given count makes the turns split by their embeddings, and "
        f"DER between two runs then tests that split (each run here found {raw(speakers)} speakers)."
        + (" Kept by the sweep but failing the bar re-judged: " + "; ".join(failing_text) + "." if failing else "")
    )
    budget = d.sub("settings_by_budget")
    table = [
        "| model | compute type | batch | levers | whole-process peak | whole_pipeline_rtf | "
        + " | ".join(
            f"fits {raw(budget.num('large-v3-shaped', i, 'budget_gb'))} GB "
            f"({raw(budget.num('large-v3-shaped', i, 'limit_mib'))} MiB)"
            for i in range(len(budget.get("large-v3-shaped")))
        )
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(budget.get("large-v3-shaped")),
    ]
    limits = [budget.num("large-v3-shaped", i, "limit_mib") for i in range(len(budget.get("large-v3-shaped")))]
    for _, row in d.items("singles"):
        lv = row.get("levers")
        lv_text = "reference settings" if not lv else "kept levers, free_between_stages"
        table.append(
            f"| {row.text('model').split(' (')[0].split(',')[0]} | {row.text('compute_type')} | "
            f"{raw(row.num('batch_size'))} | {lv_text} | {mib(row.num('peak_mib'))} | "
            f"{x(row.num('rtf'))} | "
            + " | ".join("yes" if row.num("peak_mib") <= lim else "no" for lim in limits)
            + " |"
        )
    picks = []
    for model, blist in budget.items():
        for i in range(len(blist.get())):
            b = blist.sub(i)
            fit = b.data.get("fits")
            picks.append(
                f"{model}, {raw(b.num('budget_gb'))} GB: "
                + (
                    f"{b.text('fits', 'compute_type')} batch {raw(b.num('fits', 'batch_size'))} "
                    f"({mib(b.num('fits', 'peak_mib'))}, {x(b.num('fits', 'rtf'))})"
                    if fit
                    else "nothing measured fits"
                )
            )
    t = d.sub("targets")
    mem = t.sub("memory_large_v3_fp16_bs16")
    peak = d.sub("singles", "single-large_v3-float16-bs16-reference")
    low = d.sub("singles", "single-large_v3-float16-bs16", "memory")
    floor = mem.sub("floor")
    fits8 = budget.sub("large-v3-shaped", 0)
    reachable = (
        f"Reachable only by changing the setting: VAD + ASR alone, with no other model loaded, peak at "
        f"{mib(floor.num('vad_asr_peak_mib'))}: the CUDA context {mib(floor.num('cuda_context_mib'))}, "
        f"CTranslate2's weights {mib(floor.num('asr_weights_mib'))} and {mib(floor.num('asr_working_mib'))} of "
        f"working memory while it decodes batch 16"
        if not floor.flag("under_limit")
        else f"VAD + ASR alone peak at {mib(floor.num('vad_asr_peak_mib'))}"
    )
    targets = [
        f"- whole_pipeline_rtf at least 70x with tiny.en: **{_met(t.flag('whole_pipeline_tiny_en', 'met'))}**, "
        f"{x(t.num('whole_pipeline_tiny_en', 'rtf'))} (the combined run of the sweep; the same levers in a fresh "
        f"process at batch 16 with free_between_stages: {x(d.num('singles', 'single-tiny_en-float16-bs16', 'rtf'))}). "
        + _align_diarize_text(tiny),
        f"- large-v3-shaped: {x(t.num('whole_pipeline_large_v3', 'rtf'))} combined, "
        f"{x(large.num('runs', 'reference', 'whole_pipeline_rtf'))} reference.",
        f"- Peak GPU memory, large-v3-shaped fp16 batch 16, whole process, under 8 GB ({raw(mem.num('limit_mib'))} "
        f"MiB): **{_met(mem.flag('met'))}**: {mib(mem.num('lowest_peak_mib'))} with the levers and free_between_stages "
        f"({mib(peak.num('peak_mib'))} with reference settings, every model loaded first). {reachable} (alignment "
        f"and diarization, loaded after it, peak together at {mib(low.num('stage_peaks_mib', OVERLAPPED))}). For 8 GB the "
        f"fastest measured setting that fits is {fits8.text('fits', 'compute_type')} batch "
        f"{raw(fits8.num('fits', 'batch_size'))} ({mib(fits8.num('fits', 'peak_mib'))}).",
        f"- Every kept lever passes the equivalence check: **{_met(t.flag('equivalence', 'met'))}**"
        + (
            ""
            if t.flag("equivalence", "met")
            else (
                ": " + ", ".join(_lever(lv) for lv in failing) + " does not (above); the other kept levers each pass "
                "alone"
                if failing
                else ": every kept lever passes alone, but a combined run does not (above)"
            )
        )
        + ".",
    ]
    targets = [wrap(b, indent="  ") for b in targets]
    return "\n\n".join(
        [
            wrap(head),
            "\n".join(rows),
            "\n".join(levers),
            eq_text,
            wrap(
                "Settings by VRAM budget: each row is one fresh process running the whole pipeline "
                "once; the peak is nvidia-smi's figure for the process, sampled from before the first "
                "model load to the end. A budget of N GB is N x 10^9 bytes."
            ),
            "\n".join(table),
            wrap("Fastest setting that fits: " + "; ".join(picks) + "."),
            "\n".join(targets),
        ]
    )


def pipeline_since(r: Results, *, beside_results: bool = False) -> str:
    """One sentence for the older transcribe figures: what the whole-pipeline benchmark measured since, with its
    file (a link from the top-level README, the bare name beside the results); empty when there is no pipeline
    file."""
    if "pipeline" not in r.docs:
        return ""
    p = r["pipeline"]
    t = p.sub("targets")
    tiny = t.sub("whole_pipeline_tiny_en")
    return (
        f"Measured since, with speed levers each checked for unchanged outputs (`nox -s bench -- "
        f"pipeline` on one {p.text('gpu', 'name').removeprefix('NVIDIA ')}, "
        f"{f'`{p.name}`' if beside_results else link(p)}): the whole pipeline with tiny.en "
        f"at {x(tiny.num('rtf'))}, {'meeting' if tiny.flag('met') else 'short of'} the {raw(tiny.num('min_rtf'))}x "
        f"target; large-v3-shaped {x(t.num('whole_pipeline_large_v3', 'rtf'))}."
    )


def trellis_block(r: Results) -> str:
    """The opt-in patch 0002 measured on its own: WhisperX's trellis loop against the patched one, same emissions."""
    t = r["trellis"]
    rows = "; ".join(
        f"{raw(row.num('tokens'))} tokens {sec(row.num('released_ms'))} -> {sec(row.num('patched_ms'))} ms "
        f"({x(row.num('speedup'))})"
        for row in (t.sub("rows", i) for i in range(len(t.get("rows"))))
    )
    p = r["pipeline"]
    trial = p.data.get("summary", {}).get("tiny_en_sweep", {}).get("levers", {}).get("align_numpy_trellis")
    stage = (
        f"On the GPU machine, the alignment stage of the 20-min file with it: {sec(trial['reference_s'])} -> "
        f"{sec(trial['lever_s'])} s ({link(p)})."
        if trial and trial.get("lever_s")
        else f"Its effect on the alignment stage on a GPU is not measured yet ({link(p)} has no align_numpy_trellis "
        f"trial)."
    )
    return wrap(
        f"`nox -s bench -- trellis` times WhisperX {t.text('versions', 'whisperx')}'s `get_trellis` against "
        f"0002's in one process on the same emissions ({link(t)}; {raw(t.num('machine', 'cores'))} cores, one torch "
        f"thread, the median of {raw(t.num('repeats'))} calls), 1500 frames (30 s) each: {rows}; the trellis "
        f"{'identical bit for bit every time' if t.flag('identical') else '**not identical**'}. {stage}"
    )
