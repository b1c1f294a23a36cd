"""Real cells built from their committed locks, self-tested in their own python with LD_LIBRARY_PATH unset.

Slow the first time (uv downloads several GB); seconds once the uv cache is warm.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from whisperx_matrix import build, matrix
from whisperx_matrix.errors import SelfTestError

pytestmark = [pytest.mark.slow, pytest.mark.network]

ROOT = Path(__file__).resolve().parents[2]
MATRIX = matrix.load(ROOT / "matrix.toml")


def _build(cell_id: str) -> build.BuildResult:
    return build.build(MATRIX, MATRIX.get(cell_id))


def test_working_cell_builds_and_transcribes_offline() -> None:
    """stable-cu128, the cell `nox -s env-cu128` builds: imports and a real CPU transcription with real weights."""
    result = _build("stable-cu128")
    st = result.selftest
    assert st is not None and st["passed"], st
    assert st["versions"]["torch"] == "2.8.0" and st["versions"]["whisperx"] == "3.8.6"
    assert st["transcription"]["wer"] <= build.SELFTEST_MAX_WER
    assert "stella" in st["transcription"]["text"].lower()
    # The env needs no LD_LIBRARY_PATH: its python runs the stack with the variable unset.
    env = build.clean_env()
    assert "LD_LIBRARY_PATH" not in env
    out = subprocess.run(
        [str(result.env / "bin" / "python"), "-c", "import ctranslate2, torch, whisperx; print('ok')"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert out.stdout.strip() == "ok"


def test_rebuild_with_unchanged_lock_is_a_no_op() -> None:
    _build("stable-cu128")
    again = _build("stable-cu128")
    assert again.state == "up-to-date" and again.seconds["check"] < 1.0


def test_doc_recipe_passes_with_its_patch() -> None:
    """whisperx 3.7.6 + pyannote-audio 4 (forced by override) + the patch series: the VAD loads, speech transcribes."""
    result = _build("doc-recipe-cu128")
    assert result.selftest is not None and result.selftest["passed"], result.selftest
    assert result.selftest["versions"]["pyannote-audio"].startswith("4.")
    stamp = (result.env / build.STAMP).read_text()
    assert "0001-pyannote-use-auth-token-to-token" in stamp


def test_doc_recipe_without_patch_fails_for_the_documents_reason() -> None:
    """The document's reason: pyannote 4 rejects `use_auth_token` (exact error recorded in the self-test)."""
    with pytest.raises(SelfTestError) as err:
        _build("doc-recipe-cu128-unpatched")
    failure = err.value.record["failure"]
    assert "TypeError" in failure and "unexpected keyword argument 'use_auth_token'" in failure
    # The failed build is never put in force.
    assert not (ROOT / "envs" / "doc-recipe-cu128-unpatched").exists()
