"""The blocks of README.md: GPU measurements, the bench summary, disk, audit and build figures, the front door."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .fmt import (
    _ctranslate2_arch,
    _first_word,
    _gpu_short,
    _longest_dialogue,
    _met,
    _minutes,
    _minutes_label,
    _model,
    _precision,
    _runs,
    gb,
    link,
    mib,
    pct,
    raw,
    sec,
    wrap,
    x,
)
from .pipeline import pipeline_since
from .results import REPORT, RESULTS_DIR, Doc, Results

# ------------------------------------------------------------------------------------------ README.md blocks


def gpu_cu130(r: Results) -> str:
    """'Measured on a real GPU': CTranslate2 under the cu130 stack without and with cuBLAS 12, and the cell suite."""
    cb, suite = r["cublas12"], r["suite"]
    torch = _first_word(cb.text("stack", "torch"))
    local = torch.split("+", 1)[1] if "+" in torch else torch
    without = cb.sub("results", "without_cublas12")
    with_ = cb.sub("results", "with_cublas12_preloaded")
    fails = f"fails with `{without.text('error')}`" if not without.flag("ok") else "works"
    model = cb.text("model").split(" (")[0]
    works = (
        f"{model} transcribes {cb.text('audio')} on the GPU"
        if with_.flag("ok")
        else f"{model} fails too (`{with_.text('error')}`)"
    )
    sass, ptx, _ = _ctranslate2_arch(r, cb.text("stack", "ctranslate2"))
    sm = "sm_" + cb.text("machine", "compute_capability").replace(".", "")
    cells = "; ".join(_suite_cell(c) for _, c in _suite_cells(suite))
    return "\n".join(
        [
            wrap(
                f"The pre-installed stack of our {_gpu_short(cb.text('machine', 'gpu'))} machine is itself a {local} cell "
                f"(torch {torch}). There, with LD_LIBRARY_PATH {cb.text('LD_LIBRARY_PATH')} ({link(cb)}):"
            ),
            "",
            wrap(
                f"- without a cu12 cuBLAS, CTranslate2 on the GPU {fails} (the `stable-cu130` expectation);",
                indent="  ",
            ),
            wrap(
                f"- with `nvidia-cublas-cu12`'s `libcublas.so.12` preloaded, as the `stable-cu130-cublas12` cell's `.pth` "
                f"does, {works}: first call {sec(with_.num('first_call_s'))} s, warm {sec(with_.num('warm_call_s'))} s. "
                f"The first call includes the driver's JIT compile: CTranslate2 {cb.text('stack', 'ctranslate2')}'s wheel "
                f"has SASS up to {sass} plus {ptx} PTX ([matrix audit]({REPORT})), no SASS for the GPU's {sm}, so the "
                "driver JIT-compiles the PTX on first use;",
                indent="  ",
            ),
            wrap(
                f"- the matrix's own cell suite (`tests/cell`, GPU tests included; `{suite.text('script')}`) on that "
                f"stack: {cells} ({link(suite)}).",
                indent="  ",
            ),
        ]
    )


def _suite_cells(suite: Doc) -> list[tuple[str, Doc]]:
    cells = [(k, d) for k, d in suite.items() if isinstance(d.data, Mapping) and "tests" in d.data]
    if not cells:
        raise suite._fail([], "no cell results (objects with tests) at")
    return cells


def _suite_cell(cell: Doc) -> str:
    tests = [cell.sub("tests", i) for i in range(len(cell.get("tests")))]
    counts = Counter(t.text("outcome") for t in tests)
    text = f"as `{cell.text('cell')}`, " + " and ".join(
        f"{n} {o}" for o, n in sorted(counts.items(), key=lambda i: i[0] != "passed")
    )
    failed = [t for t in tests if t.text("outcome") == "failed"]
    if failed:
        heads = sorted({re.sub(r"^\w+: ", "", t.text("error")).split(": ")[0] for t in failed})
        names = ", ".join("`" + t.text("test") + "`" for t in failed)
        text += f" ({names}: {', '.join('`' + h + '`' for h in heads)})"
    return text


def headline_table(r: Results) -> str:
    """The transcription results, one row per setting (README's bench block and benchmarks/results/README.md)."""
    gpu, cpu = r["gpu"], r["cpu"]
    h = _gpu_short(gpu.text("machine", "gpu"))
    large, tiny = gpu.sub("synthetic_large_v3"), gpu.sub("tiny_en")
    rows = ["| Setting | Result |", "|---|---|"]

    f = _longest_dialogue(large)
    main = large.stage(kind="whisperx_batched", file=f)
    nvml = " (whole process, NVML)" if main.text("gpu_peak_source").startswith("nvml-process") else ""
    rows.append(
        f"| {h}, {_model(large)}, WhisperX {_precision(main.text('compute_type'))} batch "
        f"{raw(main.num('batch_size'))}, {_minutes_label(f)} | **{x(main.num('rtf'))}** real time "
        f"({sec(main.num('wall_s'))} s; {x(main.num('asr_only_rtf'))} without VAD); peak GPU "
        f"**{mib(main.num('gpu_peak_mib'))}**{nvml} |"
    )
    sweep = large.stages(kind="batch_sweep", file=f, compute_type=main.text("compute_type"))
    if sweep:
        rows.append(
            f"| {h}, {_model(large)}, {_precision(main.text('compute_type'))} batch "
            f"{' / '.join(raw(s.num('batch_size')) for s in sweep)}, {_minutes_label(f)} | "
            f"{' / '.join(x(s.num('rtf')) for s in sweep)}; "
            f"{' / '.join(raw(s.num('gpu_peak_mib')) for s in sweep)} MiB |"
        )

    f = _longest_dialogue(tiny)
    tb = tiny.stage(kind="whisperx_batched", file=f)
    rows.append(
        f"| {h}, {_model(tiny)}, WhisperX batched {_precision(tb.text('compute_type'))} batch "
        f"{raw(tb.num('batch_size'))}, {_minutes_label(f)} | **{x(tb.num('rtf'))}** ({sec(tb.num('wall_s'))} s), "
        f"WER **{pct(tb.num('wer'))}** |"
    )
    seq = tiny.stage(kind="sequential", file=f)
    ratio = gpu.num("summary", "tiny_en", "per_file", f, "batched_over_sequential")
    rows.append(
        f"| {h}, faster-whisper sequential {_model(tiny)}, {_precision(seq.text('compute_type'))} beam "
        f"{raw(seq.num('beam_size'))}, {_minutes_label(f)} | **{x(seq.num('rtf'))}** ({sec(seq.num('wall_s'))} s), "
        f"WER {pct(seq.num('wer'))}; WhisperX batched is {x(ratio)} faster |"
    )

    pipe = gpu.sub("targets", "pipeline")
    w = pipe.sub("stage_weights")
    st = pipe.sub("stages_s")
    rows.append(
        f"| {h}, stages timed separately and summed (stage_sum_rtf; no speaker assignment): {pipe.text('model')} ASR ({w.text('vad+asr')} weights) + alignment "
        f"({w.text('align')} weights) + diarization ({w.text('diarize')} weights), {_minutes_label(pipe.text('file'))} | "
        f"**{x(pipe.num('rtf'))}** ({' + '.join(f'{st.num(k):.2f}' for k in ('vad+asr', 'align', 'diarize'))} = "
        f"{pipe.num('total_s'):.2f} s); diarization alone {x(pipe.num('stage_rtf', 'diarize'))} |"
    )

    sass, ptx, _ = _ctranslate2_arch(r, tiny.text("versions", "ctranslate2"))
    sm = "sm_" + gpu.text("machine", "compute_capability").replace(".", "")
    for n, (_, run) in enumerate((k, d) for k, d in _runs(gpu) if d.stages(stage="cold_first_call")):
        cold, warm = run.stage(stage="cold_first_call"), run.stage(stage="warm_second_call")
        what = (
            f"cold first call (CTranslate2's wheel has SASS up to {sass} plus {ptx} PTX: the driver JIT-compiles "
            f"it for {sm})"
            if n == 0
            else "first call in a later process (consistent with the driver's JIT cache being reused)"
        )
        rows.append(
            f"| {h}, {_model(run)}, {what}, {raw(cold.num('audio_s'))} s audio | **{sec(cold.num('wall_s'))} s** "
            f"(warm second call {sec(warm.num('wall_s'))} s) |"
        )

    res = cpu.sub("result")
    f = _longest_dialogue(res)
    cb_ = res.stage(kind="whisperx_batched", file=f)
    cs = res.stage(kind="sequential", file=f)
    shared = " shared" if any("shared" in str(n) for n in cpu.get("notes")) else ""
    rows.append(
        f"| CPU, {raw(cpu.num('machine', 'cores'))}{shared} cores, {_model(res)} {res.text('compute_type')}, "
        f"WhisperX batched batch {raw(cb_.num('batch_size'))}, {_minutes_label(f)} | **{x(cb_.num('rtf'))}**, "
        f"WER {pct(cb_.num('wer'))} (sequential: {x(cs.num('rtf'))}, WER {pct(cs.num('wer'))}) |"
    )

    check = gpu.sub("cu130_check")
    torch = _first_word(gpu.text("machine", "torch"))
    failed = next((s for s in check.stages(status="error")), None)
    if failed is None:
        raise check._fail(["stages"], "no stage with status=error in")
    pre = ", ".join(f"`{Path(p).name}`" for p in tiny.get("preloaded"))
    rows.append(
        f"| {torch.split('+')[-1]} stack (torch {torch}, CTranslate2 {check.text('versions', 'ctranslate2')}) on "
        f"the {h} without cuBLAS 12 | `{check.text('error')}` at the first transcription "
        f"(`{failed.text('stage')}`); with {pre} preloaded: {'works' if tiny.flag('ok') else 'fails too'} |"
    )
    return "\n".join(rows)


def _asr_target(gpu: Doc) -> Doc:
    return gpu.sub("targets", "asr_large_v3_fp16_bs16")


def _mem_target(gpu: Doc) -> Doc:
    return gpu.sub("targets", "gpu_memory_large_v3_fp16_bs16")


def _conv2d(prof: Doc) -> Doc | None:
    return next(
        (prof.sub("top_own", i) for i, t in enumerate(prof.get("top_own")) if "conv2d" in str(t.get("function"))), None
    )


def _profile_sentence(prof: Doc) -> str:
    steps = prof.sub("steps_s")
    wall = prof.num("wall_s")
    conv = _conv2d(prof)
    conv_text = f"; conv2d alone {sec(conv.num('own_s'))} s" if conv else ""
    return (
        f"Where the diarization time goes ({link(prof)}: cProfile on the {prof.text('device').upper()}, "
        f"{prof.num('audio_seconds'):g} s file, {prof.text('weights')} weights): "
        f"{steps.num('embeddings') / wall:.0%} is the speaker-embedding ResNet ({sec(steps.num('embeddings'))} s "
        f"of {sec(wall)} s{conv_text}), run on every overlapping window, with TF32 switched off by pyannote; "
        f"segmentation takes {sec(steps.num('segmentation'))} s and clustering {sec(steps.num('clustering'))} s"
    )


def _cpu_targets(cpu: Doc) -> str:
    """'faster than real time: met; WER under 10%: met' from the CPU file's targets."""
    out = []
    for key, t in cpu.items("targets"):
        name = {
            "cpu_faster_than_real_time": "faster than real time",
            "cpu_wer": f"WER under {t.num('max_wer'):.0%}" if t.has("max_wer") else "WER",
        }.get(key, key)
        out.append(f"{name}: {_met(t.get('met') if t.has('met') else None)}")
    return "; ".join(out)


def bench_block(r: Results) -> str:
    """README's bench block: what the transcription benchmarks measured, and the targets."""
    gpu, cpu = r["gpu"], r["cpu"]
    tiny = gpu.sub("tiny_en")
    f = _longest_dialogue(tiny)
    audio = tiny.stage(kind="whisperx_batched", file=f).num("audio_s")
    asr, pipe, mem = _asr_target(gpu), gpu.sub("targets", "pipeline"), _mem_target(gpu)
    fits = mem.items("batch_sizes_within_limit")
    fit_text = (
        ", while " + " and ".join(f"batch {b} fits ({mib(d.num('peak_mib'))}, {x(d.num('rtf'))})" for b, d in fits)
        if fits
        else "; no batch size measured fits"
    )
    because = (
        f", because {pipe.text('stage_weights', 'diarize')}-weight diarization alone runs at "
        f"{x(pipe.num('stage_rtf', 'diarize'))}"
        if pipe.num("stage_rtf", "diarize") < pipe.num("min_rtf")
        else ""
    )
    res = cpu.sub("result")
    cmain = res.stage(kind="whisperx_batched", file=_longest_dialogue(res))
    intro = (
        f"Transcription benchmarks (`nox -s bench -- transcribe`; {_gpu_short(gpu.text('machine', 'gpu'))} results "
        f"from `{_first_word(gpu.text('script'))}`, all in [`{RESULTS_DIR}/`]({RESULTS_DIR}/README.md)). "
        '"Synthetic weights" means random weights in the real model\'s shape: right for speed and memory, never '
        f"for accuracy. {_minutes_label(f)} = {audio:g} s of two-voice espeak-ng speech."
    )
    since = pipeline_since(r)
    targets = (
        f"Against the targets (`targets` in {link(gpu)}): {asr.text('model')} batched ASR at {x(asr.num('rtf'))} "
        f"{'passes' if asr.flag('met') else 'misses'} the {asr.num('min_rtf'):g}x bar ({asr.text('weights')} weights); "
        f"batched VAD + ASR, alignment and diarization, timed separately and summed (stage_sum_rtf, no speaker "
        f"assignment), reach {x(pipe.num('rtf'))}, "
        f"{'above' if pipe.flag('met') else 'short of'} {pipe.num('min_rtf'):g}x{because}; peak GPU memory at batch "
        f"{raw(mem.num('batch_size'))} is {mib(mem.num('peak_mib'))} for the whole process, "
        f"{'within' if mem.flag('met') else 'over'} the {mem.num('max_gb'):g} GB target ({mib(mem.num('limit_mib'))})"
        f"{fit_text}. {_profile_sentence(r['profile'])}; a longer segmentation step, TF32/fp16 for the embedding model, "
        f"or fewer overlapping windows are what would close the gap to {pipe.num('min_rtf'):g}x (not measured in this "
        f"file). {since + ' ' if since else ''}"
        f"CPU on {raw(cpu.num('machine', 'cores'))} cores: {res.text('model')} {res.text('compute_type')} at "
        f"{x(cmain.num('rtf'))} real time with WER {pct(cmain.num('wer'))} (CPU targets: {_cpu_targets(cpu)})."
    )
    return "\n".join([wrap(intro), "", headline_table(r), "", wrap(targets)])


def build_noop(r: Results) -> str:
    """'How a cell is built': the no-op figure."""
    b = r["build"]
    return wrap(
        "A killed or failed build leaves the previous env in force and usable; the next build sweeps up the "
        "leftovers. Re-running with an unchanged lock and patch series is a no-op that says so "
        f"({raw(b.num('steps', 'ours_noop_s'))} s in {link(b)}). A build that fails its self-test is kept for "
        "inspection and never linked."
    )


def _grown(d: Doc, *keys: Any, measure: str = "own_bytes") -> dict[str, float]:
    """A disk measurement's growth per place: name -> bytes it added (``own_bytes``: hardlinks counted once;
    ``apparent_bytes``: as `du` of the place alone says)."""
    return {
        d.sub(*keys, "grown", i).text("name"): d.num(*keys, "grown", i, measure)
        for i in range(len(d.get(*keys, "grown")))
    }


def disk_block(r: Results) -> str:
    """'Disk': what the wheel-fetching tests add, before and after they took wheels from uv's cache."""
    d = r["disk"]
    before, after, again = _grown(d, "before"), _grown(d, "after"), _grown(d, "after", "again")
    full = _grown(d, "full_run_after")
    full_apparent = _grown(d, "full_run_after", measure="apparent_bytes")
    ours, uv = "whisperx-matrix cache", "uv cache"
    envs = "cell venvs (envs/)"
    return wrap(
        f"Measured with `nox -s disk` ({link(d)}, {raw(d.num('machine', 'cores'))} cores, an empty cache of ours and a "
        f"warm uv cache): the tests that fetch wheels used to add {gb(sum(before.values()))} on disk "
        f"({gb(before[ours])} of downloaded and extracted wheels in our cache, {gb(before[uv])} in uv's cache, "
        f"again on every run: its stand-in nightly index sat on a new loopback port each time, and uv keys its "
        f"cache by index URL). They now add {gb(sum(after.values()))}: {gb(after[uv])} in uv's cache (the "
        f"stand-in torches, unpacked once), {gb(after[ours])} in ours (the wheel files that index serves), "
        f"{gb(after[envs])} of cell venvs; the audit tests' trees are hardlinks into uv's cache. A second run "
        f"adds {gb(sum(again.values()))}. The whole suite on a fresh clone ({d.text('full_run_after', 'pytest')}) "
        f"adds {gb(sum(full.values()))}: {gb(full[uv])} in uv's cache, {gb(full[envs])} of cell venvs (which `du` "
        f"alone puts at {gb(full_apparent[envs])}: the rest are hardlinks into uv's cache), {gb(full[ours])} in ours."
    )


def audit_block(r: Results) -> str:
    """'Audits that need no GPU': the audit's speed."""
    a = r["audit"]
    site, lib = a.sub("audit", "site"), a.sub("audit", "library")
    return wrap(
        f"Measured ({link(a)}, {raw(a.num('machine', 'cores'))} cores; each time is the best of "
        f"{raw(a.num('audit', 'repeat'))} runs after a warm-up, so with a warm page cache): the whole "
        f"`{a.text('cell')}` cell ({raw(site.num('elf_files'))} ELF files, {gb(site.num('elf_bytes'))}) in "
        f"{site.num('audit_s'):.3g} s; `{Path(lib.text('path')).name}` ({gb(lib.num('bytes'))}) in "
        f"{lib.num('audit_s'):.3g} s, {x(lib.num('speedup'))} faster than `cuobjdump` "
        f"({lib.num('cuobjdump_s'):.3g} s) on the same file."
    )


BUILD_ROWS = (
    ("ours_warm_s", "ours, warm uv cache (lock check, hash-checked install, patches, stamp)"),
    ("raw_uv_warm_s", "raw `uv pip install -r` of the same lock, warm"),
    ("ours_noop_s", "ours, no-op re-run"),
    ("ours_cold_s", "ours, cold (empty uv cache)"),
    ("raw_uv_cold_s", "raw uv, cold"),
    ("pip_cold_s", "plain pip into a fresh venv, no cache (the guide's way)"),
    ("selftest_s", "self-test (imports + CPU transcription), on its own line"),
)


def build_block(r: Results) -> str:
    """'Speed of the build': the build benchmark's table, ratios and targets."""
    b = r["build"]
    steps, ratios = b.sub("steps"), b.sub("ratios")
    rows = [f"| {label} | {raw(steps.num(key))} |" for key, label in BUILD_ROWS]
    passed = "passed" if steps.flag("selftest_passed") else "failed"
    targets = "; ".join(f"{k}: {'met' if d.flag() else '**missed**'}" for k, d in b.items("targets"))
    return "\n".join(
        [
            wrap(
                f"`nox -s bench -- build` builds `{b.text('cell')}` from `constraints/{b.text('lock')}` in one run, ours "
                f"against raw `uv pip install` and plain pip ({link(b)}, {raw(b.num('machine', 'cores'))} cores; the "
                f"self-test {passed}):"
            ),
            "",
            "| build | seconds |",
            "|---|---|",
            *rows,
            "",
            wrap(
                f"The env takes {gb(b.num('env_disk_bytes'))} on disk (pip's: {gb(b.num('pip_env_disk_bytes'))}). Ours takes "
                f"{raw(ratios.num('ours_warm_vs_raw_uv_warm'))}x raw uv's time warm and "
                f"{raw(ratios.num('ours_cold_vs_raw_uv_cold'))}x cold; plain pip takes "
                f"{raw(ratios.num('pip_cold_over_ours_warm'))}x ours warm and {raw(ratios.num('pip_cold_over_ours_cold'))}x "
                f"ours cold. Targets: {targets}."
            ),
        ]
    )


def gpu_front_door(r: Results) -> str:
    """The matrix run on the GPU machine through the workflow's own jobs: the merged report, cell by cell."""
    rep = r["gpu-report"]
    gpu = rep.sub("machine", "gpu")
    totals = rep.sub("totals")
    head = (
        f"`nox -s matrix`, run on one {gpu.text('name')} (compute capability {gpu.text('compute_capability')}, "
        f"driver {gpu.text('driver')}, CUDA {gpu.text('cuda')}) by the `gpu-matrix` workflow's own `cell` and "
        f"`report` jobs, step by step from the YAML (`scripts/gpu_front_door.sh`, offline, wheels carried in): "
        f"{int(totals.num('cells'))} cells, {int(totals.num('as_expected'))} as expected, "
        f"{int(totals.num('unexpected'))} unexpected ([`reports/gpu/matrix.md`](reports/gpu/matrix.md))."
    )
    rows = ["| cell | Python | verdict | cell suite on the GPU | GPU tests |", "|---|---|---|---|---|"]
    emulation = None
    for i in range(len(rep.get("cells"))):
        cell = rep.sub("cells", i)
        tests = [cell.sub("suite", "tests", j) for j in range(len(cell.get("suite", "tests")))]
        failed = [t for t in tests if t.text("outcome") == "failed"]
        gpu_tests = ", ".join(
            f"`{t.text('test')}` {t.text('outcome')} ({sec(t.num('seconds'))} s)"
            for t in tests
            if "gpu" in t.text("test")
        )
        reasons = ", ".join(f"`{x}`" for x in cell.get("observed", "reasons"))
        rows.append(
            f"| `{cell.text('id')}` | {cell.text('python')} | {cell.text('verdict')}{' ' + reasons if reasons else ''} "
            f"| {len(tests) - len(failed)} passed, {len(failed)} failed | {gpu_tests} |"
        )
        if emulation is None and cell.has("gpu", "no_kernel_emulation"):
            emulation = cell.sub("gpu", "no_kernel_emulation")
    text = wrap(head) + "\n\n" + "\n".join(rows)
    if emulation is not None:
        text += "\n\n" + wrap(
            f"The no-kernel-image emulation inside the product-built cell (torch {emulation.text('torch')}, "
            f"{emulation.text('emulation')}): `torch.cuda.is_available()` {emulation.get('is_available')}, device "
            f"{emulation.text('name')}, first kernel: `{emulation.text('first_kernel_error')}`."
        )
    return text


def _dialogue_summary(per_file: Doc) -> Doc:
    """The summary of the longest dialogue file, from a transcribe summary's ``per_file``."""
    files = [(name, d) for name, d in per_file.items() if name.startswith("dialogue")]
    if not files:
        raise per_file._fail([], "no dialogue file in")
    return max(files, key=lambda item: _minutes(item[0]))[1]


def gpu_front_door_bench(r: Results) -> str:
    """The transcription benchmark through the workflow's bench jobs, against the side scripts' figures."""
    tiny, large, side = r["fd-tiny"], r["fd-large"], r["gpu"]
    t, lg = _dialogue_summary(tiny.sub("summary", "per_file")), _dialogue_summary(large.sub("summary", "per_file"))
    side_t = _dialogue_summary(side.sub("summary", "tiny_en", "per_file"))
    side_l = _dialogue_summary(side.sub("summary", "synthetic_large_v3", "per_file"))
    mem = large.sub("targets", "gpu_memory_large_v3_fp16_bs16")
    tres = tiny.sub("result")
    cold = tres.stage(stage="cold_first_call")
    main = tres.stage(kind="whisperx_batched", file=_longest_dialogue(tres))
    rows = [
        f"| setting ({_minutes_label(main.text('file'))}, batch {raw(main.num('batch_size'))}, "
        f"{_precision(main.text('compute_type'))}) | through the workflow ({_gpu_short(tiny.text('gpu', 'name'))}, "
        f"cell `{tiny.text('cell')}`) | "
        f"side scripts ({_gpu_short(side.text('gpu', 'name'))}, machine stack) | ratio |",
        "|---|---|---|---|",
    ]
    lres = large.sub("result")
    # a synthetic model is named by its shape: $RUNNER_TEMP/synthetic-large-v3 -> large-v3-shaped
    lname = (
        Path(lres.text("model")).name.removeprefix("synthetic-") + "-shaped"
        if lres.text("model_weights") == "synthetic"
        else lres.text("model")
    )
    for label, a, b in (
        (f"{tres.text('model')} ({tres.text('model_weights')} weights), WhisperX batched", t, side_t),
        (f"{lname} ({lres.text('model_weights')} weights), WhisperX batched", lg, side_l),
    ):
        rows.append(
            f"| {label} | {x(a.num('batched_rtf'))} | {x(b.num('batched_rtf'))} | "
            f"{a.num('batched_rtf') / b.num('batched_rtf'):.2f} |"
        )
    rows.append(
        f"| {tres.text('model')}, stage_sum_rtf: VAD + ASR, alignment and diarization timed separately, summed (no "
        f"speaker assignment) | {x(t.num('stage_sum_rtf'))} | "
        f"{x(side_t.num('stage_sum_rtf'))} | {t.num('stage_sum_rtf') / side_t.num('stage_sum_rtf'):.2f} |"
    )
    text = "\n".join(rows)
    jit = cold.data.get("cuda_jit_cache")
    jit_state = (
        f"the CUDA JIT cache {jit['state']} when it began"
        if isinstance(jit, dict) and jit.get("state")
        else "this file does not record the JIT cache's state"
    )
    text += "\n\n" + wrap(
        f"stage_sum_rtf is the audio's length over the sum of separately timed stages (batched VAD + ASR, "
        f"alignment, diarization), without speaker assignment: not the pipeline benchmark's whole_pipeline_rtf, "
        f"which times one run of all four stages (below). The {lname} run has alignment and diarization "
        f"stages too: its stage_sum_rtf is {x(lg.num('stage_sum_rtf'))}; its peak GPU memory at batch "
        f"{raw(mem.num('batch_size'))} is {mib(mem.num('peak_mib'))} ({mem.text('peak_source')}). "
        f"{tres.text('model')}'s first CTranslate2 call on the machine took {sec(cold.num('wall_s'))} s ({jit_state}). "
        f"Files: [`{tiny.name}`]({RESULTS_DIR}/{tiny.name}), [`{large.name}`]({RESULTS_DIR}/{large.name})."
    )
    return text


# ------------------------------------------------------------------------------------------ ARM (linux-aarch64)

# The ARM GPUs the aarch64 cells are judged for, by compute capability (cudafacts.KNOWN_GPUS names them).
ARM_TARGETS = ("GH200", "GB200", "Jetson AGX Thor", "DGX Spark (GB10)")


def _arm_finding(c: Mapping[str, Any]) -> str:
    """What the static audits found for one aarch64 cell: its lock's refusal, or torch's kernels per ARM GPU, the
    closure and any CPU-only package, with the verdict."""
    from ..cudafacts import KNOWN_GPUS
    from ..doctor import Kernels, kernel_fit

    lock = (c.get("lock") or {}).get("unresolvable")
    if lock:
        return f"does not install: {lock}"
    v = c.get("versions") or {}
    torch = ((c.get("arch") or {}).get("packages") or {}).get("torch") or {}
    kernels = Kernels(tuple(torch.get("sass") or []), tuple(p.split()[0] for p in torch.get("ptx") or []), "")
    fits = {name: kernel_fit(kernels, KNOWN_GPUS[name])[0] for name in ARM_TARGETS}
    runs = [f"{n} (sm_{KNOWN_GPUS[n]})" for n, f in fits.items() if f in ("sass", "ptx")]
    not_runs = [f"{n} (sm_{KNOWN_GPUS[n]})" for n, f in fits.items() if f not in ("sass", "ptx")]
    parts = [
        (f"torch's kernels run on {', '.join(runs)}" if runs else "torch carries no kernel for any of them")
        + (f", not on {', '.join(not_runs)}" if runs and not_runs else "")
    ]
    closure = (c.get("checks") or {}).get("closure") or {}
    parts.append(
        "every library resolves with `LD_LIBRARY_PATH` unset"
        if closure.get("status") == "pass"
        else f"the closure lacks {closure.get('detail')}"
    )
    for name in (c.get("arch") or {}).get("cpu_only") or []:
        parts.append(f"{name} {v.get(name, '')} is a CPU-only build (no GPU code at all)".replace("  ", " "))
    return "; ".join(parts) + f"; verdict {c.get('verdict')}."


def _arm_lines(cells: list[Mapping[str, Any]]) -> list[str]:
    """One list item per finding, naming every cell that shares it (a cell's Python variants mostly do)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for c in cells:
        groups.setdefault(_arm_finding(c), []).append(c)
    out = []
    for finding, group in groups.items():
        pythons = ", ".join(dict.fromkeys(str(c.get("python")) for c in group))
        torches = ", ".join(dict.fromkeys(t for c in group if (t := (c.get("versions") or {}).get("torch"))))
        ids = ", ".join(f"`{c['id']}`" for c in group)
        head = f"{ids} (Python {pythons}" + (f"; torch {torches}" if torches else "") + ")"
        out.append(wrap(f"- {head}: {finding}", indent="  "))
    return out


def arm_block(r: Results) -> str:
    """What an ARM GPU user should install today, from the report's aarch64 cells (judged statically)."""
    cells = [c for c in r["report"].get("cells") if str(c.get("platform") or "").startswith("aarch64")]
    if not cells:
        return wrap(f"`{REPORT}` holds no linux-aarch64 cell yet: run `nox -s matrix` to judge them.")
    out = [
        wrap(
            f"{len(cells)} linux-aarch64 cells, judged on an x86_64 machine from the wheels each lock takes for "
            "aarch64-manylinux_2_28: their GPU kernels (per ARM GPU, the doctor's rule) and their library closure "
            "with an aarch64 host's loader. Nothing was built or run on ARM, so no cell there can be confirmed, only "
            f"failed (`{REPORT}`):"
        ),
        "",
        *_arm_lines(cells),
        "",
    ]
    installable = [c for c in cells if not (c.get("lock") or {}).get("unresolvable")]
    gpu_asr = [c for c in installable if "ctranslate2" not in ((c.get("arch") or {}).get("cpu_only") or [])]
    if installable and not gpu_asr:
        # Python 3.12 first (what Ubuntu 24.04-based ARM systems ship), then the plainest cell: its shortest id, the
        # base rather than a child with add-ons
        best = min(installable, key=lambda c: (c.get("python") != "3.12", len(c["id"])))
        out.append(
            wrap(
                "So today: no aarch64 cell gives WhisperX GPU transcription, because every one that installs takes a "
                f"CPU-only CTranslate2. The nearest is `{best['id']}` (`nox -s env-{best['id']}` on the ARM "
                f"machine builds it from `constraints/{best['id']}.txt`): torch on the GPU for "
                'alignment and diarization, faster-whisper on the CPU (`compute_type="int8"`), unless CTranslate2 is '
                "built from source with CUDA, which this matrix does not judge."
            )
        )
    elif gpu_asr:
        ids = ", ".join(f"`{c['id']}`" for c in gpu_asr)
        out.append(wrap(f"Cells whose whole stack carries GPU code: {ids}."))
    return "\n".join(out).rstrip() + "\n"
