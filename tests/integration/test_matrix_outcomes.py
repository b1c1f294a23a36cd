"""The documented outcome, end to end: every reachable cell is built for real, audited, and its suite run in
its own python; the verdicts and the claims come from what was observed. This is the project's headline test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from whisperx_matrix import matrix, matrix_run

pytestmark = [pytest.mark.slow, pytest.mark.network]

ROOT = Path(__file__).resolve().parents[2]
MATRIX = matrix.load(ROOT / "matrix.toml")


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return matrix_run.run_matrix(MATRIX, MATRIX.select([]), sm=120, jobs=2)


def _cell(result: dict, cid: str) -> dict:
    return next(c for c in result["cells"] if c["id"] == cid)


def test_no_outcome_is_unexpected(result: dict) -> None:
    bad = {c["id"]: (c["verdict"], c["observed"]["reasons"]) for c in result["cells"] if c["unexpected"]}
    assert not bad


def test_option1_fails_for_the_arch_reason(result: dict) -> None:
    cell = _cell(result, "option1-stable-cu124")
    assert cell["verdict"] == "failed-as-expected"
    assert "arch-unsupported:sm_120" in cell["observed"]["reasons"]
    assert "sm_120" not in cell["arch"]["packages"]["torch"]["sass"]


def test_cu130_fails_for_cublas12_and_passes_with_the_addon(result: dict) -> None:
    broken, fixed = _cell(result, "stable-cu130"), _cell(result, "stable-cu130-cublas12")
    assert broken["verdict"] == "failed-as-expected"
    assert broken["observed"]["reasons"] == ["missing-soname:libcublas.so.12"]
    assert any("ctranslate2" in line and "nvidia-cublas-cu12" in line for line in broken["closure"]["missing"])
    assert fixed["verdict"] == "as-expected" and fixed["observed"]["reasons"] == []


def test_doc_recipe_fails_without_its_patch_and_passes_with_it(result: dict) -> None:
    assert _cell(result, "doc-recipe-cu128")["verdict"] == "as-expected"
    unpatched = _cell(result, "doc-recipe-cu128-unpatched")
    assert unpatched["verdict"] == "failed-as-expected"
    assert any("unexpected keyword argument 'use_auth_token'" in e for e in unpatched["evidence"])


def test_working_cell_passes_every_check(result: dict) -> None:
    cell = _cell(result, "stable-cu128")
    assert cell["verdict"] == "as-expected"
    assert {k: v["status"] for k, v in cell["checks"].items()} == {
        "lock": "pass",
        "build": "pass",
        "selftest": "pass",
        "arch": "pass",
        "closure": "pass",
        "suite": "pass",
    }


def test_nightly_cells_are_not_testable_here_and_neither_pass_nor_fail(result: dict) -> None:
    """The nightly index is unreachable here: infrastructure, not evidence (no lock-missing, no failure)."""
    for cid in ("nightly-cu128", "nightly-cu130"):
        cell = _cell(result, cid)
        assert cell["verdict"] == "not-testable" and not cell["unexpected"] and cell["observed"]["reasons"] == []
        assert "infra: " in cell["observed"]["note"] and "index" in cell["observed"]["note"]


def test_torch26_and_pyannote3_cells_fail_for_their_own_reasons(result: dict) -> None:
    torch26 = _cell(result, "stable-torch26-cu124")
    assert torch26["verdict"] == "failed-as-expected" and "sm_120" not in torch26["arch"]["packages"]["torch"]["sass"]
    pyannote3 = _cell(result, "stable-cu130-pyannote3")
    assert pyannote3["observed"]["reasons"] == ["AttributeError:torchaudio.AudioMetaData"]  # cuBLAS 12 is there


def test_the_real_loader_agrees_with_the_static_closure_in_every_built_cell(result: dict) -> None:
    for cell in result["cells"]:
        if cell.get("loader"):
            assert cell["loader"]["agrees"], (cell["id"], cell["loader"]["disagreements"])


def test_every_claim_is_computed_with_a_basis_for_each_evidence_item(result: dict) -> None:
    verdicts = {c["id"]: c["verdict"] for c in result["claims"]}
    assert verdicts == {
        "driver-565": "contradicted",
        "stable-251-sm90": "confirmed",
        "option1-not-detected": "contradicted",  # today's stable cu128 carries sm_120 (measured)
        "option2-libcupti13": "not-testable",
        "option3-works": "not-testable",  # their nightly index is unreachable
        "pyannote4-torch210": "confirmed",
        "patch-use-auth-token": "confirmed",
        "ld-library-path": "contradicted",
        "switch-stable-26": "contradicted",
    }
    for claim in result["claims"]:
        assert all(e["basis"] in ("measured", "emulated", "cited") for e in claim["evidence"]), claim["id"]
        if claim["verdict"] == "not-testable":
            assert claim["missing"], claim["id"]  # it names what it lacked
    ld = next(c for c in result["claims"] if c["id"] == "ld-library-path")
    assert all("nvidia/*/lib folders" in e["text"] for e in ld["evidence"])  # measured with and without


def test_a_wrong_expectation_makes_the_matrix_exit_non_zero(tmp_path: Path) -> None:
    """A deliberately wrong expectation: the working cell is declared to fail. The matrix must say so and exit 11."""
    for name in ("requirements-base.txt", "requirements-nvidia.txt", "claims.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    for name in ("constraints", "patches", "tests"):
        shutil.copytree(ROOT / name, tmp_path / name)
    text = (ROOT / "matrix.toml").read_text()
    marker = 'id = "stable-cu128"'
    head, tail = text.split(marker, 1)
    tail = tail.replace(
        'expect = { status = "pass" }', 'expect = { status = "fail", reason = "missing-soname:libfoo.so.1" }', 1
    )
    (tmp_path / "matrix.toml").write_text(head + marker + tail)
    env = os.environ | {"WXM_ENVS": str(ROOT / "envs"), "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "whisperx_matrix",
            "matrix",
            "stable-cu128",
            "--no-suite",
            "--out",
            str(tmp_path / "reports"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 11, proc.stderr[-2000:]
    assert "unexpected-pass" in proc.stdout and "1 unexpected outcome(s): stable-cu128" in proc.stderr
    assert (tmp_path / "reports" / "matrix.json").is_file()  # the report is written before the exit
