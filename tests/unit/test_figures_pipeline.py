"""The whole-pipeline figures (#22): every sentence that states a fact reads it from the results file.

Each test copies the committed pipeline results file, flips one recorded fact, renders, and checks that the
sentence changed with it (and, where it matters, that the old claim is gone).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from whisperx_matrix import figures
from whisperx_matrix.bench.targets import summarise_transcribe
from whisperx_matrix.figures.pipeline import pipeline_block, pipeline_since, trellis_block

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = figures.Results.load(ROOT)
PIPE = COMMITTED["pipeline"]


def _data() -> dict[str, Any]:
    return copy.deepcopy(PIPE.data)


def _render(data: dict[str, Any]) -> str:
    r = figures.Results({"pipeline": figures.Doc(PIPE.path, data)})
    return " ".join(pipeline_block(r).split())


def _since(data: dict[str, Any]) -> str:
    return " ".join(pipeline_since(figures.Results({"pipeline": figures.Doc(PIPE.path, data)})).split())


def _first_call(data: dict[str, Any]) -> dict[str, Any]:
    warm = data["steps"]["tiny_en_sweep"]["result"]["warmup"]
    return next(w for w in warm if w["stage"] == "asr_first_call")


# ------------------------------------------------------------------------------------------ the JIT cache


@pytest.mark.parametrize(
    ("jit", "says", "not_says"),
    [
        (
            {"path": "CUDA_CACHE_PATH", "entries": 0, "state": "empty"},
            "empty when it began, so CTranslate2's PTX was compiled in it",
            "already warm",
        ),
        (
            {"path": "CUDA_CACHE_PATH", "entries": 7, "state": "warm"},
            "already warm when it began (7 entries in CUDA_CACHE_PATH)",
            ", so CTranslate2's PTX was compiled",
        ),
        (
            {"path": None, "entries": 0, "state": "disabled"},
            "disabled (CUDA_CACHE_DISABLE=1), so CTranslate2's PTX was compiled in it",
            "already warm",
        ),
        (None, "the CUDA JIT cache's state is not recorded", ", so CTranslate2's PTX was compiled"),
    ],
)
def test_jit_sentence_follows_the_recorded_cache_state(jit: Any, says: str, not_says: str) -> None:
    data = _data()
    if jit is None:
        _first_call(data).pop("cuda_jit_cache", None)
    else:
        _first_call(data)["cuda_jit_cache"] = jit
    text = _render(data)
    assert says in text
    assert not_says not in text


def test_first_call_seconds_and_missing_first_calls_come_from_the_records() -> None:
    data = _data()
    _first_call(data)["wall_s"] = 3.25
    res = data["steps"]["tiny_en_sweep"]["result"]
    res["loads"] = [r for r in res["loads"] if not r["stage"].startswith("diarize_first_call")]
    text = _render(data)
    assert "first CTranslate2 call: 3.25 s" in text
    assert "Every model has had its first call" not in text
    assert "none recorded for diarization" in text


# ------------------------------------------------------------------------------------------ the targets


def test_tiny_target_not_met_shows_the_measured_value_and_the_bar_from_min_rtf() -> None:
    data = _data()
    data["targets"]["whole_pipeline_tiny_en"] |= {"min_rtf": 100.0, "rtf": 86.12, "met": False}
    text = _render(data)
    assert "whole_pipeline_rtf at least 100x with tiny.en: **not met**, 86.1x" in text
    data["targets"]["whole_pipeline_tiny_en"] |= {"min_rtf": 90.0}
    assert "whole_pipeline_rtf at least 90x with tiny.en: **not met**, 86.1x" in _render(data)
    data["targets"]["whole_pipeline_tiny_en"] |= {"min_rtf": 100.0}
    assert "at 86.1x, short of the 100x target" in _since(data)


def test_a_met_flag_is_not_believed_when_the_value_falls_short() -> None:
    data = _data()
    data["targets"]["whole_pipeline_tiny_en"] |= {"min_rtf": 100.0, "rtf": 86.12, "met": True}
    assert "**not met**, 86.1x" in _render(data)


def test_target_not_measured_when_met_is_none() -> None:
    data = _data()
    data["targets"]["whole_pipeline_tiny_en"] |= {"rtf": None, "met": None}
    text = _render(data)
    assert "whole_pipeline_rtf at least 100x with tiny.en: **not measured**" in text
    assert "tiny.en not measured" in _since(data)


def test_large_target_renders_its_bar_verdict_and_why_not() -> None:
    data = _data()
    # a file with no bar for large-v3-shaped (as written before #22): said so, never "met"
    data["targets"]["whole_pipeline_large_v3"] = {
        "target": "whole_pipeline_rtf reported with the large-v3-shaped model",
        "rtf": 97.16,
        "met": None,
    }
    text = _render(data)
    assert "large-v3-shaped: no speed target in the file" in text
    data["targets"]["whole_pipeline_large_v3"] |= {
        "min_rtf": 70.0,
        "rtf": 97.16,
        "met": False,
        "why_not": "not a pipeline figure: 60 tokens decoded against tiny.en's 4000 (2%)",
    }
    text = _render(data)
    assert "whole_pipeline_rtf at least 70x with large-v3-shaped: **not met**, 97.2x" in text
    assert "(not a pipeline figure: 60 tokens decoded against tiny.en's 4000 (2%))" in text
    data["targets"]["whole_pipeline_large_v3"] |= {"met": True}
    data["targets"]["whole_pipeline_large_v3"].pop("why_not")
    assert "at least 70x with large-v3-shaped: **met**, 97.2x" in _render(data)


def test_memory_and_equivalence_targets_say_not_met_from_the_file() -> None:
    data = _data()
    data["targets"]["equivalence"]["met"] = False
    data["targets"]["memory_large_v3_fp16_bs16"]["met"] = True
    text = _render(data)
    assert "Every kept lever passes the equivalence check: **not met**" in text
    assert "under 8 GB (7629 MiB): **met**" in text
    data["targets"]["memory_large_v3_fp16_bs16"]["met"] = None
    assert "under 8 GB (7629 MiB): **not measured**" in _render(data)


# ------------------------------------------------------------------------------------------ levers


def test_a_lever_not_kept_is_not_named_as_kept() -> None:
    data = _data()
    tiny = data["summary"]["tiny_en_sweep"]
    tiny["levers"]["embedding_fp16"]["kept"] = False
    tiny["combined_levers"] = [lv for lv in tiny["combined_levers"] if lv != "embedding_fp16"]
    text = _render(data)
    assert (
        "| fp16 autocast inside the embedding model | diarize | 24.7 (24.7) | 4.73 | 5.2x | **no** (DER 0.0%, speakers "
        "per word not compared, no output size recorded) | no |" in text
    )
    combined = text.split("Combined (", 1)[1].split("): tiny.en", 1)[0]
    assert "fp16 autocast" not in combined and "embedding batch 128" in combined
    # a lever flagged kept but missing from the combined run is not shown as kept either
    data = _data()
    data["summary"]["tiny_en_sweep"]["combined_levers"].remove("segmentation_batch_128")
    assert (
        "| segmentation batch 128 (reference 32) | diarize | 24.7 (24.7) | 22.2 | 1.1x | **no** (DER 0.0%, speakers per "
        "word not compared, no output size recorded) | no |" in _render(data)
    )


def test_lever_labels_read_the_reference_settings() -> None:
    data = _data()
    data["steps"]["tiny_en_sweep"]["result"]["reference_settings"]["embedding_batch_size"] = 16
    text = _render(data)
    assert "embedding batch 64 (reference 16)" in text
    assert "(reference 32) | diarize" not in text.split("| segmentation batch 128")[0]


# ------------------------------------------------------------------------------------------ what is not timed


def test_not_timed_line_reads_decode_loads_and_first_calls() -> None:
    data = _data()
    data["steps"]["tiny_en_sweep"]["result"]["decode_s"] = 1.234
    text = _render(data)
    assert "Not timed: decoding the audio file (1.23 s in the tiny.en sweep)" in text
    res = data["steps"]["tiny_en_sweep"]["result"]
    loads = [r for r in res["loads"] if r["stage"].startswith("load_")]
    assert f"the model loads before a run ({len(loads)} in that sweep" in text


def test_reloads_counted_only_when_whole_s_holds_them() -> None:
    text = _render(_data())
    # the committed singles paused their reloads outside whole_s (whole_s < stage sum + between_stages_s)
    assert "6 runs reloaded models between stages (free_between_stages, 2.72-3.60 s) outside their whole_s" in text
    assert "reloads counted" not in text
    data = _data()
    for step in data["steps"].values():
        run = step["result"].get("run")
        if run and run.get("between_stages_s"):
            run["whole_s"] = round(run["stage_sum_s"] + run["between_stages_s"] + 0.1, 3)
    text = _render(data)
    assert "reloads counted: 2.72-3.60 s" in text
    assert "outside their whole_s" not in text
    assert "free_between_stages: 91.8x, reloads of 3.00 s counted" in text
    data = _data()
    for step in data["steps"].values():
        run = step["result"].get("run")
        if run:
            run.pop("between_stages_s", None)
    assert "no run here reloads models inside its timed span" in _render(data)


def test_reloads_s_as_the_new_benchmark_records_it_is_counted() -> None:
    data = _data()
    run = data["steps"]["single-tiny_en-float16-bs16"]["result"]["run"]
    run.pop("between_stages_s")
    run.pop("stage_sum_s")
    run["reloads_s"] = 1.5
    assert "reloads counted: 1.50 s" in _render(data)


# ------------------------------------------------------------------------------------------ other facts


def test_file_length_model_labels_speakers_and_weights_come_from_the_file() -> None:
    data = _data()
    for sweep in data["summary"].values():
        sweep["file"] = "dialogue-5min-0123456789abcdef.wav"
        sweep["audio_s"] = 300.5
    data["steps"]["tiny_en_sweep"]["model_label"] = "tiny"
    data["steps"]["tiny_en_sweep"]["result"]["num_speakers"] = 3
    for run in data["steps"]["tiny_en_sweep"]["result"]["runs"]:
        if run.get("output_sizes", {}).get("speakers"):
            run["output_sizes"]["speakers"] = 3
    text = _render(data)
    assert "on the 5-min file (300.5 s)" in text and "20-min" not in text
    assert "| tiny, reference |" in text and "| lever (tiny, alone) |" in text
    assert "speaker count (3)" in text
    assert "found 2 to 3 speakers" in text  # the large-v3-shaped sweep's runs still found 2


def test_accuracy_caveat_only_with_synthetic_weights() -> None:
    data = _data()
    assert "never accuracy" in _render(data)
    for sweep in data["summary"].values():
        sweep["weights"] = {"vad+asr": "real", "vad": "real", "align": "real", "diarize": "real"}
    text = _render(data)
    assert "never accuracy" not in text
    assert "with random embedding weights" not in text


def test_equivalence_bar_is_read_from_the_thresholds() -> None:
    data = _data()
    data["equivalence"]["tiny_en_sweep"]["reference_repeat"]["thresholds"] = {
        "wer": "== 0",
        "der": "< 0.02",
        "word_delta_ms": "<= 50",
    }
    text = _render(data)
    assert "DER under 2%, word timings within 50 ms" in text


def test_budget_sentence_reads_the_peak_source() -> None:
    data = _data()
    for row in data["singles"].values():
        row["peak_source"] = "nvidia-smi-process: the whole process, sampled every 250 ms"
    assert "the peak is nvidia-smi's figure for the whole process, sampled every 250 ms." in _render(data)


def test_trellis_block_reads_frames_and_threads() -> None:
    tr = copy.deepcopy(COMMITTED["trellis"].data)
    tr["torch_threads"] = 4
    for row in tr["rows"]:
        row["frames"] = 3000
    r = figures.Results({"trellis": figures.Doc(COMMITTED["trellis"].path, tr), "pipeline": PIPE})
    text = " ".join(trellis_block(r).split())
    assert "4 torch threads" in text and "3000 frames each" in text and "1500" not in text


# ------------------------------------------------------------------------------------------ two RTFs, two names


def test_the_transcription_benchmarks_stage_sum_is_not_named_whole_pipeline_rtf() -> None:
    stages = [
        {"stage": "vad+asr", "kind": "whisperx_batched", "status": "ok", "file": "f", "audio_s": 100.0, "wall_s": 1.0},
        {"stage": "align", "status": "ok", "file": "f", "wall_s": 1.0, "rtf": 100.0},
        {"stage": "diarize", "status": "ok", "file": "f", "wall_s": 2.0, "rtf": 50.0},
    ]
    pf = summarise_transcribe({"stages": stages})["per_file"]["f"]
    assert pf["stage_sum_rtf"] == 25.0
    assert "whole_pipeline_rtf" not in pf


def test_readme_shows_the_stage_sum_under_its_own_name() -> None:
    from whisperx_matrix.figures.readme import gpu_front_door_bench

    text = " ".join(gpu_front_door_bench(COMMITTED).split())
    assert "stage_sum_rtf" in text and "without speaker assignment" in text
    assert "whole pipeline runs at" not in text
    # the stage-sum row never carries the pipeline benchmark's figure
    tiny = json.loads((ROOT / COMMITTED["fd-tiny"].path).read_text(encoding="utf-8"))
    per_file = tiny["summary"]["per_file"]
    assert all("whole_pipeline_rtf" not in pf for pf in per_file.values())


def test_runs_without_a_pipeline_figure_show_none_and_each_reason_once() -> None:
    data = _data()
    text = _render(data)
    assert "| large-v3-shaped | float16 | 16 | reference settings | 19748 MiB | none | no | no |" in text
    assert text.count("27 words against tiny.en's 3202 (1%)") >= 1
    reasons = text.split("Rows without a whole_pipeline_rtf: ", 1)[1].split(". Fastest", 1)[0]
    assert reasons.count("27 words against") == 1 and "34 words against" in reasons
    # give one row a real figure: the table shows it and the reason for that row's words is gone
    row = data["singles"]["single-large_v3-int8_float16-bs32"]
    row.pop("not_a_pipeline_figure")
    row["rtf"] = row["whole_pipeline_rtf"] = 99.9
    text = _render(data)
    assert "| large-v3-shaped | int8_float16 | 32 | kept levers, free_between_stages | 11846 MiB | 99.9x |" in text


def test_an_equivalence_block_without_a_size_says_why_it_fails() -> None:
    data = _data()
    block = data["equivalence"]["tiny_en_sweep"]["combined"]
    assert "size" not in block and block["passes"] is False
    assert "tiny.en **no** (WER 0, DER 0.0%, speakers per word not compared, no output size recorded" in _render(data)
    block |= {
        "size": {"reference_words": 3202, "other_words": 3202, "passes": True},
        "word_speakers": {"speaker_differs": 0, "unmatched_words": 0},
        "passes": True,
    }
    text = _render(data)
    assert "tiny.en yes (WER 0, DER 0.0%, every word's speaker the same, 3202 of 3202 words" in text
