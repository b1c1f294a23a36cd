"""The whole-pipeline block (#15): stage times, levers, equivalence and VRAM budgets."""

from __future__ import annotations

import re
from typing import Any

from .fmt import _minutes_label, _precision, link, mib, pct, raw, sec, wrap, x
from .results import Doc, Results

# ------------------------------------------------------------------------------------------ the whole pipeline

# A lever's label; "{name}" fields are filled from the file's reference_settings (the reference run's value).
LEVER_LABELS = {
    "embedding_batch_64": "embedding batch 64 (reference {embedding_batch_size})",
    "embedding_batch_128": "embedding batch 128 (reference {embedding_batch_size})",
    "embedding_tf32": "TF32 inside the embedding model",
    "embedding_fp16": "fp16 autocast inside the embedding model",
    "segmentation_batch_128": "segmentation batch 128 (reference {segmentation_batch_size})",
    "segmentation_step_0.2": "segmentation step 0.2 (reference {segmentation_step})",
    "asr_batch_32": "CTranslate2 batch 32 (reference {batch_size})",
    "align_audio_on_device": "alignment audio already on the GPU",
    "align_numpy_trellis": "alignment's trellis in numpy (opt-in patch 0002)",
    "overlap_align_diarize": "diarization overlapped with alignment (second thread and CUDA stream)",
    "free_between_stages": "each stage's models loaded for it and freed after it, torch's cache emptied after VAD "
    "and between stages",
}


OVERLAPPED = "align+diarize (overlapped)"  # the stage the pipeline script records when the two run together


def _lever(name: str, reference: Any = None) -> str:
    """A lever's label, its reference value read from ``reference`` (the file's reference_settings); a label whose
    reference value the file lacks names none."""
    label = LEVER_LABELS.get(name, f"`{name}`")
    ref = reference if isinstance(reference, dict) else {}

    def fill(m: re.Match[str]) -> str:
        v = ref.get(m.group(1))
        return "" if v is None else f" (reference {v:g})" if isinstance(v, (int, float)) else f" (reference {v})"

    return re.sub(r" \(reference \{(\w+)\}\)", fill, label)


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
    if e.has("word_speakers", "speaker_differs"):
        n = e.num("word_speakers", "speaker_differs")
        parts.append("every word's speaker the same" if n == 0 else f"{raw(n)} words' speaker differs")
    elif not e.has("word_speakers"):
        parts.append("speakers per word not compared")
    if e.has("size", "reference_words"):
        size = e.sub("size")
        if size.data.get("reference_words") is not None and size.data.get("other_words") is not None:
            parts.append(f"{raw(size.num('other_words'))} of {raw(size.num('reference_words'))} words")
    elif not e.has("size"):  # a block from before the size check: equivalence.judge fails it, and this says why
        parts.append("no output size recorded")
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


def _align_diarize_text(sweep: Doc, reference: Any = None) -> str:
    """Alignment and diarization, each alone at its fastest, against the two overlapped in the combined run: the
    sentence says which is longer and whether overlapping still saves time."""
    (a_lv, a_s), (d_lv, d_s) = _fastest_alone(sweep, "align"), _fastest_alone(sweep, "diarize")
    both = sweep.num("runs", "combined", "stages_s", OVERLAPPED)

    def how(name: str | None) -> str:
        return "reference settings" if name is None else _lever(name, reference)

    longer = "alignment" if a_s >= d_s else "diarization"
    text = (
        f"Each alone at its fastest: alignment {sec(a_s)} s ({how(a_lv)}), diarization {sec(d_s)} s ({how(d_lv)}); "
        f"{longer} is the longer. Overlapped in the combined run the two take {sec(both)} s"
    )
    if both >= a_s + d_s:
        return text + f", no less than the two one after the other ({sec(a_s + d_s)} s): overlapping saves no time now."
    return text + f", {sec(a_s + d_s - both)} s less than the two one after the other ({sec(a_s + d_s)} s)."


# ------------------------------------------------------------------------------------------ facts read from the file

FIRST_CALLS = {"asr": "ASR", "align": "alignment", "diarize": "diarization"}


def jit_text(first: Doc) -> str:
    """What the CUDA JIT cache held when a model's first CTranslate2 call began (``cuda_jit_cache``: state and
    entries, as the benchmark records them), and what that means for the call's time."""
    jit = first.data.get("cuda_jit_cache") if isinstance(first.data, dict) else None
    if not isinstance(jit, dict) or not jit.get("state"):
        return "the CUDA JIT cache's state is not recorded, so whether CTranslate2's PTX was compiled in it is unknown"
    state, where = jit["state"], jit.get("path") or "the cache folder"
    if state == "empty":
        return f"the CUDA JIT cache ({where}) empty when it began, so CTranslate2's PTX was compiled in it"
    if state == "disabled":
        return "the CUDA JIT cache disabled (CUDA_CACHE_DISABLE=1), so CTranslate2's PTX was compiled in it"
    if state == "warm":
        return (
            f"the CUDA JIT cache already warm when it began ({raw(jit.get('entries') or 0)} entries in {where}), so "
            "CTranslate2's PTX may have been compiled by an earlier process rather than in this call"
        )
    return f"the CUDA JIT cache in state `{state}` when it began"


def _records(res: Doc, key: str) -> list[Doc]:
    return [res.sub(key, i) for i in range(len(res.get(key)))] if res.has(key) else []


def _first_call_kind(stage: str) -> str | None:
    m = re.match(r"(\w+?)_first_call", stage)
    return m.group(1) if m else None


def _untimed(res: Doc) -> tuple[list[Doc], list[Doc]]:
    """(model loads, first calls) a step's result recorded before its timed runs."""
    recs = [r for r in _records(res, "loads") + _records(res, "warmup") if r.data.get("status", "ok") == "ok"]
    firsts = [r for r in recs if _first_call_kind(r.text("stage"))]
    loads = [r for r in recs if r.text("stage").startswith("load_")]
    return loads, firsts


def _first_calls_text(res: Doc) -> str:
    _, firsts = _untimed(res)
    kinds = {_first_call_kind(r.text("stage")) for r in firsts}
    had = [label for k, label in FIRST_CALLS.items() if k in kinds]
    lacking = [label for k, label in FIRST_CALLS.items() if k not in kinds]
    if not lacking:
        return "Every model has had its first call before any timed run"
    return (
        f"First calls before the timed runs: {', '.join(had) or 'none'} (none recorded for {', '.join(lacking)}, "
        "so its first call falls in a timed run)"
    )


def _run_records(d: Doc) -> list[Doc]:
    """Every run record of every step (a sweep's runs, a single's run)."""
    out = []
    for _, step in d.items("steps"):
        if not step.has("result"):
            continue
        res = step.sub("result")
        if res.has("run"):
            out.append(res.sub("run"))
        out += _records(res, "runs")
    return out


RELOAD_KEYS = ("between_stages_s", "reloads_s")


def reload_of(run: Doc) -> tuple[float, bool] | None:
    """A run's model reloads inside it (``between_stages_s`` or ``reloads_s``): (seconds, counted in whole_s), judged
    by whole_s reaching the stages' sum plus the reloads (without a stage sum: ``reloads_s`` is counted by its
    definition, ``between_stages_s`` judged not); None when the run reloaded nothing."""
    key = next((k for k in RELOAD_KEYS if isinstance(run.data.get(k), (int, float)) and run.data[k] > 0), None)
    if key is None:
        return None
    seconds = run.num(key)
    whole, stage_sum = run.data.get("whole_s"), run.data.get("stage_sum_s")
    if isinstance(whole, (int, float)) and isinstance(stage_sum, (int, float)):
        return seconds, whole + 0.005 >= stage_sum + seconds
    return seconds, key == "reloads_s"


def reloads(d: Doc) -> tuple[list[float], list[float]]:
    """(counted, not counted): every run's reload seconds (``reload_of``), by whether its whole_s holds them."""
    counted: list[float] = []
    left_out: list[float] = []
    for run in _run_records(d):
        got = reload_of(run)
        if got is not None:
            (counted if got[1] else left_out).append(got[0])
    return counted, left_out


def _span(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{sec(lo)} s" if sec(lo) == sec(hi) else f"{sec(lo)}-{sec(hi)} s"


def not_timed_text(d: Doc, sweep: str) -> str:
    """One line: what the timed runs leave out (decoding the file, model loads and first calls before a run) and
    whether reloads inside a run are in them, read from the step ``sweep``'s records and every run's."""
    res = d.sub("steps", sweep, "result")
    label = d.text("steps", sweep, "model_label")
    loads, firsts = _untimed(res)
    timed = [r for r in loads + firsts if r.has("wall_s")]
    load_s = sum(r.num("wall_s") for r in loads if r.has("wall_s"))
    first_s = sum(r.num("wall_s") for r in firsts if r.has("wall_s"))
    decode = (
        f"decoding the audio file ({sec(res.num('decode_s'))} s in the {label} sweep)"
        if res.has("decode_s")
        else ("decoding the audio file (its time not recorded)")
    )
    text = (
        f"Not timed: {decode}, the model loads before a run ({len(loads)} in that sweep, {sec(load_s)} s) and each "
        f"model's first call ({len(firsts)}, {sec(first_s)} s, CUDA JIT compiles included)"
        if timed
        else f"Not timed: {decode}, the model loads before a run and each model's first call (their times not recorded)"
    )
    counted, left_out = reloads(d)
    if not counted and not left_out:
        return text + "; no run here reloads models inside its timed span."
    out = [text]
    if counted:
        out.append(f"reloads inside a run (free_between_stages) are counted: reloads counted: {_span(counted)}")
    if left_out:
        out.append(
            f"{len(left_out)} run{'s' if len(left_out) > 1 else ''} reloaded models between stages "
            f"(free_between_stages, {_span(left_out)}) outside {'their' if len(left_out) > 1 else 'its'} whole_s, "
            "so whole_pipeline_rtf there leaves the reloads out"
        )
    return "; ".join(out) + "."


def target_verdict(t: Doc) -> str:
    """'met' only when the file says met and its measured rtf reaches min_rtf; 'not measured' without a figure."""
    rtf, met, min_rtf = t.data.get("rtf"), t.data.get("met"), t.data.get("min_rtf")
    if rtf is None or met is None:
        return "not measured"
    if min_rtf is None:
        return "no speed target"
    return "met" if met is True and rtf >= min_rtf else "not met"


def _model_named(target: Doc, fallback: str) -> str:
    m = re.search(r"with (?:the )?(.+?)(?: model)?(?:,|$)", target.text("target")) if target.has("target") else None
    return m.group(1) if m else fallback


def rtf_text(run: Doc, key: str, *, bold: bool = False, why_key: str = "not_a_pipeline_figure") -> str:
    """A run's RTF, or "none" with the file's reason (``not_a_pipeline_figure``: a synthetic run whose workload was
    not a real one has no figure, and the text says why rather than showing a number)."""
    if run.data.get(key) is not None:
        return f"**{x(run.num(key))}**" if bold else x(run.num(key))
    return f"none ({run.text(why_key)})" if run.data.get(why_key) else "none"


def speed_target_bullet(t: Doc, label: str) -> str:
    """A whole-pipeline speed target: its bar from ``min_rtf``, the verdict, the measured value, ``why_not``."""
    verdict = target_verdict(t)
    rtf, min_rtf = t.data.get("rtf"), t.data.get("min_rtf")
    head = (
        f"whole_pipeline_rtf at least {raw(min_rtf)}x with {label}: **{verdict}**"
        if min_rtf is not None
        else f"{label}: no speed target in the file (`{t.text('target')}`)"
    )
    text = head + (f", {x(rtf)}" if rtf is not None else "")
    if verdict == "not met" and rtf is not None and rtf >= min_rtf and t.data.get("equivalence_passes") is False:
        text += " (fast enough, but a kept lever fails the equivalence check)"
    if t.data.get("why_not"):
        text += f" ({t.text('why_not')})"
    return text


def _levers_text(levers: list[str], kept: list[str], reference: Any = None) -> str:
    if not levers:
        return "reference settings"
    rest = [lv for lv in levers if lv != "free_between_stages"]
    named = "kept levers" if rest and set(rest) == set(kept) else ", ".join(_lever(lv, reference) for lv in rest)
    return ", ".join(p for p in (named, "free_between_stages" if "free_between_stages" in levers else "") if p)


def _thresholds_text(th: Doc) -> str:
    def parse(key: str) -> tuple[str, float] | None:
        m = re.fullmatch(r"\s*(==|<=|<|>=|>)\s*([\d.]+)\s*", str(th.data.get(key, "")))
        return (m.group(1), float(m.group(2))) if m else None

    parts = []
    if (w := parse("wer")) is not None:
        parts.append("WER 0 with the raw text identical" if w == ("==", 0) else f"WER {w[0]} {raw(w[1])}")
    if (dr := parse("der")) is not None:
        parts.append(f"DER {'under' if dr[0] == '<' else dr[0]} {pct(dr[1])}".replace(".0%", "%"))
    if (wd := parse("word_delta_ms")) is not None:
        parts.append(f"word timings {'within' if wd[0] == '<=' else wd[0]} {raw(wd[1])} ms")
    return ", ".join(parts)


def _speakers_found(d: Doc, sweeps: list[str]) -> list[int]:
    found = []
    for sweep in sweeps:
        for run in _records(d.sub("steps", sweep, "result"), "runs"):
            ran = run.data.get("ran") or []
            speakers = (run.data.get("output_sizes") or {}).get("speakers")
            if any("diarize" in st for st in ran) and isinstance(speakers, int):
                found.append(speakers)
    return found


def _budget_gb(budget: Doc, limit_mib: float) -> str:
    for _, blist in budget.items():
        for i in range(len(blist.get())):
            if blist.num(i, "limit_mib") == limit_mib:
                return f"{raw(blist.num(i, 'budget_gb'))} GB ({raw(limit_mib)} MiB)"
    return f"{raw(limit_mib)} MiB"


def _single_of(d: Doc, model: str, levers_with: str) -> tuple[str, Doc] | None:
    return next(
        (
            (k, row)
            for k, row in d.items("singles")
            if row.data.get("model") == model and levers_with in (row.data.get("levers") or []) and row.has("rtf")
        ),
        None,
    )


def workload_text(run: Doc) -> str:
    """A run's workload cell: tokens decoded (and per window) / the words a user gets; "-" where not recorded."""
    if not run.has("workload"):
        return "not recorded"
    w = run.sub("workload")
    tokens = w.data.get("tokens_decoded") if w.has("tokens_decoded") else None
    words = next((w.data.get(k) for k in ("speaker_words", "transcript_words") if w.data.get(k)), None)
    tok = "-" if tokens is None else f"{raw(tokens)} ({raw(w.num('tokens_per_window'))}/window)"
    return f"{tok} / {'-' if words is None else raw(words)}"


def forced_text(large: Doc, tl: str, ll: str) -> str:
    """How the synthetic model's decoding was made a real workload, from the file's forced_decoding record and
    workload check; empty where the file has neither (a run from before #22)."""
    if not large.has("forced_decoding") or large.get("forced_decoding") is None:
        return ""
    f = large.sub("forced_decoding")
    check = large.sub("workload_check")
    verdict = (
        f"within the bar (tokens within {pct(check.num('tokens_within'))}, words at least "
        f"{pct(check.num('min_words_ratio'))} of {tl}'s)"
        if check.flag("realistic")
        else f"**short of it**: {check.text('why_not')}"
    )
    return (
        f" The {ll} model has random weights, which stop or run on at random: it was made to decode "
        f"{raw(f.num('forced_tokens_per_window'))} tokens in every window, {tl}'s own count on this file "
        f"(end-of-text suppressed, max_new_tokens {raw(f.num('max_new_tokens'))}: CTranslate2 decodes max_length // 2; "
        f"only the {raw(f.num('word_tokens_allowed'))} word-start tokens of ASCII letters allowed, so that each "
        f"token is a word, as in speech): its reference run's workload against {tl}'s is {verdict}."
    )


def pipeline_block(r: Results) -> str:
    """The whole pipeline (#15): stage times, levers one at a time with their equivalence, the combined run, memory
    and the settings by VRAM budget, from the newest pipeline-gpu-*.json."""
    d = r["pipeline"]
    gpu = d.sub("gpu")
    tiny, large = d.sub("summary", "tiny_en_sweep"), d.sub("summary", "large_v3_sweep")
    tl, ll = d.text("steps", "tiny_en_sweep", "model_label"), d.text("steps", "large_v3_sweep", "model_label")
    tres = d.sub("steps", "tiny_en_sweep", "result")
    ref_settings = tres.data.get("reference_settings")
    v = tres.sub("versions")
    first = next(r for r in _records(tres, "warmup") if r.text("stage") == "asr_first_call")
    tw, lw = tiny.sub("weights"), large.sub("weights")

    def weight(key: str) -> str:
        a, b = tw.text(key).replace("; ", ", "), lw.text(key).replace("; ", ", ")
        return a if a == b else f"{tl} {a}, {ll} {b}"

    all_weights = [str(w) for w in (*tw.get().values(), *lw.get().values())]
    weights = (
        f"ASR weights: {tl} {tw.text('vad+asr')}, {ll} {lw.text('vad+asr')}; VAD {weight('vad')}; alignment "
        f"{weight('align')}; diarization {weight('diarize')}"
        + (": the figures are speed and memory, never accuracy." if any("synthetic" in w for w in all_weights) else ".")
    )
    head = (
        f"The whole pipeline, VAD + ASR, alignment, diarization and speaker assignment, on the "
        f"{_minutes_label(tiny.text('file'))} ({raw(tiny.num('audio_s'))} s), measured stage by stage by `nox -s "
        f"bench -- pipeline` (`src/whisperx_matrix/cellside/bench_pipeline.py`) in the cell `{d.text('cell')}` on one "
        f"{gpu.text('name')} (driver {gpu.text('driver')}; torch {v.text('torch')}, CTranslate2 "
        f"{v.text('ctranslate2')}, WhisperX {v.text('whisperx')}, pyannote.audio {v.text('pyannote-audio')}), "
        f"{d.text('date')}. {weights} {_first_calls_text(tres)} ({tl}'s first CTranslate2 call: "
        f"{sec(first.num('wall_s'))} s, with {jit_text(first)}). `whole_pipeline_rtf` = audio "
        f"seconds / wall seconds of one run of all four stages in one go ([`{d.name}`]({d.path}))."
        + forced_text(large, tl, ll)
    )
    rows = [
        "| run | tokens decoded / words | VAD + ASR | alignment | diarization | speaker assignment | whole pipeline "
        "| whole_pipeline_rtf |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, sweep in ((tl, tiny), (ll, large)):
        for run_name, what in (("reference", "reference"), ("combined", "levers combined")):
            run = sweep.sub("runs", run_name)
            stages = run.get("stages_s")
            if OVERLAPPED in stages:
                al = di = f"{sec(run.num('stages_s', OVERLAPPED))} (overlapped)"
            else:
                al, di = _stage_s(run, "align"), _stage_s(run, "diarize")
            rtf = rtf_text(run, "whole_pipeline_rtf", bold=True)
            rows.append(
                f"| {label}, {what} | {workload_text(run)} | {_stage_s(run, 'vad+asr')} | {al} | {di} | "
                f"{_stage_s(run, 'assign_speakers')} | {sec(run.num('whole_s'))} s | {rtf} |"
            )
    levers = [
        f"| lever ({tl}, alone) | stage | reference s (repeat) | with the lever s | speed-up | outputs "
        "unchanged | kept |",
        "|---|---|---|---|---|---|---|",
    ]
    teq = d.sub("equivalence", "tiny_en_sweep")
    kept_tiny = tiny.get("combined_levers")
    for name, t in tiny.items("levers"):
        # kept: the sweep's own flag, and only when the combined run holds the lever
        kept = t.flag("kept") and name in kept_tiny
        levers.append(
            f"| {_lever(name, ref_settings)} | {' + '.join(t.get('stages'))} | {sec(t.num('reference_s'))} "
            f"({sec(t.num('repeat_s'))}) | {sec(t.num('lever_s'))} | {x(t.num('speedup'))} | "
            f"{_equiv_cell(teq.sub('levers', name))} | {'yes' if kept else 'no'} |"
        )
    leq = d.sub("equivalence", "large_v3_sweep")
    combined = ", ".join(_lever(n, ref_settings) for n in kept_tiny)
    found = sorted(set(_speakers_found(d, ["tiny_en_sweep", "large_v3_sweep"])))
    found_text = (
        f"each run here with diarization found {found[0]} speakers"
        if len(found) == 1
        else f"the runs here with diarization found {' to '.join(str(n) for n in (found[0], found[-1]))} speakers"
        if found
        else "no run here records the speakers it found"
    )
    failing_in = {
        lv: sweep
        for sweep in ("large_v3_sweep", "tiny_en_sweep")  # tiny.en's block wins: it is the lever table's model
        for lv in d.get("equivalence", sweep, "kept_levers_failing")
    }
    failing = sorted(failing_in)
    failing_text = []
    passed_as_run = 0
    for lv in failing:
        block = d.sub("equivalence", failing_in[lv], "levers", lv)
        failing_text.append(f"{_lever(lv, ref_settings)}, {_equiv_cell(block)}")
        passed_as_run += block.data.get("as_run") is True
    if passed_as_run:  # said once for all of them: why a lever that fails today's bar is in the combined runs
        failing_text[-1] += (
            (". Each" if passed_as_run == len(failing) else f". {passed_as_run} of these")
            + " passed the bar the sweep ran with, so the sweep kept it and the combined runs above include it (the "
            "single runs below run at their own batch size)"
        )
    random_embeddings = "synthetic (embedding)" in tw.text("diarize")
    speakers = (
        f"pyannote is given the file's speaker count ({raw(tres.num('num_speakers'))})"
        + (
            ": with random embedding weights, clustering by its distance threshold puts every turn into one "
            "speaker, so only a given count makes the turns split by their embeddings, and DER between two runs "
            "then tests that split"
            if random_embeddings
            else ""
        )
        if tres.has("num_speakers")
        else "pyannote clusters by its distance threshold (no speaker count given)"
    )
    eq_text = wrap(
        f"Outputs against the reference run in the same process with the same weights (`equivalence` in the file; "
        f"bar: {_thresholds_text(teq.sub('reference_repeat', 'thresholds'))}"
        + ("; every block re-judged from its measured fields when the file is written" if teq.has("judged") else "")
        + f"). The reference run twice: {tl} "
        f"{_equiv_cell(teq.sub('reference_repeat'))}; {ll} {_equiv_cell(leq.sub('reference_repeat'))}. "
        f"Combined ({combined}): {tl} {_equiv_cell(teq.sub('combined'))}; {ll} "
        f"{_equiv_cell(leq.sub('combined'))}. {speakers} ({found_text})."
        + (" Kept by the sweep but failing the bar re-judged: " + "; ".join(failing_text) + "." if failing else "")
    )
    budget = d.sub("settings_by_budget")
    lv3 = budget.sub(ll) if budget.has(ll) else budget.items()[-1][1]
    limits = [lv3.num(i, "limit_mib") for i in range(len(lv3.get()))]
    table = [
        "| model | compute type | batch | levers | whole-process peak | whole_pipeline_rtf | "
        + " | ".join(
            f"fits {raw(lv3.num(i, 'budget_gb'))} GB ({raw(lv3.num(i, 'limit_mib'))} MiB)" for i in range(len(limits))
        )
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(limits),
    ]
    sources = set()
    for _, row in d.items("singles"):
        sources.add(row.text("peak_source"))
        table.append(
            f"| {row.text('model').split(' (')[0].split(',')[0]} | {row.text('compute_type')} | "
            f"{raw(row.num('batch_size'))} | {_levers_text(row.get('levers'), kept_tiny, ref_settings)} | "
            f"{mib(row.num('peak_mib'))} | {x(row.num('rtf')) if row.data.get('rtf') is not None else 'none'} | "
            + " | ".join("yes" if row.num("peak_mib") <= lim else "no" for lim in limits)
            + " |"
        )
    no_figure = sorted(
        {row.text("not_a_pipeline_figure") for _, row in d.items("singles") if row.data.get("not_a_pipeline_figure")}
    )
    # one sentence for every row without a figure, each reason once
    no_figure_text = "Rows without a whole_pipeline_rtf: " + "; ".join(no_figure) + "." if no_figure else ""
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
                    else "no measured setting with a pipeline figure fits"
                )
            )
    gb_is_1e9 = all(
        blist.num(i, "limit_mib") == int(blist.num(i, "budget_gb") * 1e9 / 2**20)
        for _, blist in budget.items()
        for i in range(len(blist.get()))
    )
    source = (
        "the peak is " + next(iter(sources)).replace("nvidia-smi-process: ", "nvidia-smi's figure for ", 1)
        if len(sources) == 1
        else "the peak's source differs between rows (`peak_source` in the file)"
    )
    budget_text = wrap(
        f"Settings by VRAM budget: each row is one fresh process running the whole pipeline once; {source}."
        + (" A budget of N GB is N x 10^9 bytes." if gb_is_1e9 else "")
    )
    t = d.sub("targets")
    mem = t.sub("memory_large_v3_fp16_bs16")
    mem_runs = mem.items("runs")
    ref_key = next((k for k, run in mem_runs if not run.get("levers")), None)
    low_key = next((k for k, run in mem_runs if run.num("peak_mib") == mem.num("lowest_peak_mib")), None)
    if ref_key is None or low_key is None:
        raise mem._fail(["runs"], "no reference run or no run at lowest_peak_mib in")
    peak, low_row = d.sub("singles", ref_key), d.sub("singles", low_key)
    low = low_row.sub("memory")
    floor = mem.sub("floor")
    fits8 = lv3.sub(0)
    setting = (
        f"{peak.text('model').split(' (')[0].split(',')[0]} {_precision(peak.text('compute_type'))} batch "
        f"{raw(peak.num('batch_size'))}"
    )
    reachable = (
        f"Reachable only by changing the setting: VAD + ASR alone, with no other model loaded, peak at "
        f"{mib(floor.num('vad_asr_peak_mib'))}: the CUDA context {mib(floor.num('cuda_context_mib'))}, "
        f"CTranslate2's weights {mib(floor.num('asr_weights_mib'))} and {mib(floor.num('asr_working_mib'))} of "
        f"working memory while it decodes batch {raw(low_row.num('batch_size'))}"
        if not floor.flag("under_limit")
        else f"VAD + ASR alone peak at {mib(floor.num('vad_asr_peak_mib'))}"
    )
    overlapped_peak = low.sub("stage_peaks_mib")
    later = (
        f"(alignment and diarization, loaded after it, peak together at {mib(overlapped_peak.num(OVERLAPPED))})"
        if overlapped_peak.has(OVERLAPPED)
        else "(alignment and diarization, loaded after it, peak at "
        f"{mib(max(overlapped_peak.num(k) for k in ('align', 'diarize') if overlapped_peak.has(k)))})"
    )
    every_loaded = "every model loaded first" if "free_between_stages" not in peak.get("levers") else ""
    tiny_single = _single_of(d, tiny.text("model"), "free_between_stages")
    single_text = ""
    if tiny_single:
        single_run = d.sub("steps", tiny_single[1].text("step"), "result", "run")
        reload = reload_of(single_run)
        single_text = (
            f"; the same levers in a fresh process at batch {raw(tiny_single[1].num('batch_size'))} with "
            f"free_between_stages: {x(tiny_single[1].num('rtf'))}"
            + (
                ""
                if reload is None
                else f", reloads of {sec(reload[0])} s counted"
                if reload[1]
                else f", its reloads between stages ({sec(reload[0])} s) not counted"
            )
        )
    mem_verdict = "not measured" if mem.data.get("met") is None else "met" if mem.flag("met") else "not met"
    eq_verdict = (
        "not measured"
        if t.data.get("equivalence", {}).get("met") is None
        else "met"
        if t.flag("equivalence", "met")
        else "not met"
    )
    targets = [
        f"- {speed_target_bullet(t.sub('whole_pipeline_tiny_en'), tl)} (the combined run of the sweep{single_text}). "
        + _align_diarize_text(tiny, ref_settings),
        f"- {speed_target_bullet(t.sub('whole_pipeline_large_v3'), ll)}"
        + (
            f" (combined; {x(large.num('runs', 'reference', 'whole_pipeline_rtf'))} with reference settings)."
            if large.data["runs"]["reference"].get("whole_pipeline_rtf") is not None
            else "."
        ),
        f"- Peak GPU memory, {setting}, whole process, under {_budget_gb(budget, mem.num('limit_mib'))}: "
        f"**{mem_verdict}**: {mib(mem.num('lowest_peak_mib'))} with "
        f"{_levers_text(low_row.get('levers'), kept_tiny, ref_settings)} ({mib(peak.num('peak_mib'))} with "
        f"{_levers_text(peak.get('levers'), kept_tiny, ref_settings)}{', ' + every_loaded if every_loaded else ''}). "
        f"{reachable} {later}. For {raw(fits8.num('budget_gb'))} GB the fastest measured setting that fits is "
        + (
            f"{fits8.text('fits', 'compute_type')} batch {raw(fits8.num('fits', 'batch_size'))} "
            f"({mib(fits8.num('fits', 'peak_mib'))})."
            if fits8.data.get("fits")
            else "none."
        ),
        f"- Every kept lever passes the equivalence check: **{eq_verdict}**"
        + (
            ""
            if eq_verdict != "not met"
            else (
                ": " + ", ".join(_lever(lv, ref_settings) for lv in failing) + " does not (above); the other kept "
                "levers each pass alone"
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
            wrap(not_timed_text(d, "tiny_en_sweep")),
            "\n".join(rows),
            "\n".join(levers),
            eq_text,
            budget_text,
            "\n".join(table),
            *([wrap(no_figure_text)] if no_figure_text else []),
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
    tiny, large = t.sub("whole_pipeline_tiny_en"), t.sub("whole_pipeline_large_v3")

    def said(target: Doc, label: str) -> str:
        verdict = target_verdict(target)
        rtf = target.data.get("rtf")
        if rtf is None:
            return f"{label} not measured"
        if verdict in ("met", "not met"):
            how = "meeting" if verdict == "met" else "short of"
            return f"{label} at {x(rtf)}, {how} the {raw(target.num('min_rtf'))}x target"
        return f"{label} {x(rtf)}"

    tl = (
        p.text("steps", "tiny_en_sweep", "model_label") if p.has("steps", "tiny_en_sweep", "model_label") else "tiny.en"
    )
    ll = (
        p.text("steps", "large_v3_sweep", "model_label")
        if p.has("steps", "large_v3_sweep", "model_label")
        else "large-v3-shaped"
    )
    return (
        f"Measured since, with speed levers each checked for unchanged outputs (`nox -s bench -- "
        f"pipeline` on one {p.text('gpu', 'name').removeprefix('NVIDIA ')}, "
        f"{f'`{p.name}`' if beside_results else link(p)}): the whole pipeline with {said(tiny, tl)}; "
        f"{said(large, ll)}."
    )


def trellis_block(r: Results) -> str:
    """The opt-in patch 0002 measured on its own: WhisperX's trellis loop against the patched one, same emissions."""
    t = r["trellis"]
    rows = "; ".join(
        f"{raw(row.num('tokens'))} tokens {sec(row.num('released_ms'))} -> {sec(row.num('patched_ms'))} ms "
        f"({x(row.num('speedup'))})"
        for row in (t.sub("rows", i) for i in range(len(t.get("rows"))))
    )
    frame_counts = sorted({raw(row.num("frames")) for row in (t.sub("rows", i) for i in range(len(t.get("rows"))))})
    frames = f"{' / '.join(frame_counts)} frames each"
    p = r["pipeline"]
    trial = p.data.get("summary", {}).get("tiny_en_sweep", {}).get("levers", {}).get("align_numpy_trellis")
    stage = (
        f"On the GPU machine, the alignment stage of the "
        f"{_minutes_label(p.data['summary']['tiny_en_sweep']['file'])} with it: {sec(trial['reference_s'])} -> "
        f"{sec(trial['lever_s'])} s ({link(p)})."
        if trial and trial.get("lever_s")
        else f"Its effect on the alignment stage on a GPU is not measured yet ({link(p)} has no align_numpy_trellis "
        f"trial)."
    )
    return wrap(
        f"`nox -s bench -- trellis` times WhisperX {t.text('versions', 'whisperx')}'s `get_trellis` against "
        f"0002's in one process on the same emissions ({link(t)}; {raw(t.num('machine', 'cores'))} cores, "
        f"{raw(t.num('torch_threads'))} torch "
        f"thread{'' if t.num('torch_threads') == 1 else 's'}, the median of {raw(t.num('repeats'))} calls), {frames}: {rows}; "
        "the trellis "
        f"{'identical bit for bit every time' if t.flag('identical') else '**not identical**'}. {stage}"
    )
