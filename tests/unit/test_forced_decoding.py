"""Forced decoding for the random-weight large-v3-shaped model (issue #22): every window decodes N tokens, each a
word, so its pipeline run has a real workload. The rule and the options on a stand-in vocabulary; the model recipe
and the probe for real in the working cell (CTranslate2 on the CPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CELLSIDE = ROOT / "src" / "whisperx_matrix" / "cellside"
sys.path.insert(0, str(CELLSIDE))

import benchkit  # noqa: E402
import pipeline_setup  # noqa: E402

VOCAB = ["!", "\u0120the", "the", "\u0120caf\u00e9", "\u0120a", "\u01201999", "\u0120", "<|endoftext|>", "\u0120late"]


def _model(tmp_path: Path, **mark: object) -> Path:
    (tmp_path / "vocabulary.json").write_text(json.dumps(VOCAB))
    if mark:
        (tmp_path / benchkit.SYNTHETIC_MARK).write_text(json.dumps(mark))
    return tmp_path


def test_word_tokens_start_an_ascii_word_and_come_before_end_of_text() -> None:
    assert benchkit.word_token_ids(VOCAB) == [1, 4]  # not "the" (no space), "café", "1999", a bare space, after EOT


def test_a_zeroed_rows_model_needs_only_end_of_text_suppressed(tmp_path: Path) -> None:
    got = pipeline_setup.forced_decoding(str(_model(tmp_path, word_tokens_only=True)), 20)
    assert got["asr_options"] == {"suppress_tokens": [7], "suppress_blank": False, "max_new_tokens": 38}
    assert got["record"]["non_word_rows_zeroed"] is True and "zeroed" in got["record"]["how"]


def test_an_older_model_gets_every_other_token_suppressed_by_id(tmp_path: Path) -> None:
    got = pipeline_setup.forced_decoding(str(_model(tmp_path)), 20)
    assert got["asr_options"]["suppress_tokens"] == [0, 2, 3, 5, 6, 7, 8]
    assert got["record"]["non_word_rows_zeroed"] is False and got["record"]["tokens_suppressed"] == 7


@pytest.mark.slow
@pytest.mark.network
def test_the_word_tokens_only_recipe_decodes_n_words_a_window_and_the_probe_times_both(
    tmp_path: Path, working_cell_python: Path
) -> None:
    """make_synthetic_model.py --word-tokens-only (a tiny shape, real recipe and converter) and the probe on the
    CPU: both suppression settings decode exactly N tokens per sequence, every one a word token."""
    model = tmp_path / "synth"
    shape = {
        "d_model": 64,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
        "encoder_ffn_dim": 128,
        "decoder_ffn_dim": 128,
    }
    made = subprocess.run(
        [str(working_cell_python), "-I", str(CELLSIDE / "make_synthetic_model.py"), str(model), "--word-tokens-only",
         "--quantization", "float32", "--shape", json.dumps(shape)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-800:]
    meta = json.loads((model / benchkit.SYNTHETIC_MARK).read_text())
    assert meta["word_tokens_only"] is True and meta["non_word_rows_zeroed"] > 19000
    out = tmp_path / "probe.json"
    probe = subprocess.run(
        [str(working_cell_python), "-I", str(CELLSIDE / "probe_forced_decoding.py"), str(model), "--out", str(out),
         "--batch", "2", "--beam", "2", "--tokens", "12", "--repeats", "1"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr[-800:]
    data = json.loads(out.read_text())
    assert data["word_tokens_only"] is True
    for name in ("end_of_text_only", "forced_list"):
        run = data["settings"][name]["runs"][0]
        assert (run["tokens_min"], run["tokens_max"], run["non_word_tokens"]) == (12, 12, 0), name
    assert data["settings"]["forced_list"]["tokens_suppressed"] > 19000
