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

from whisperx_matrix import matrix, run

pytestmark = [pytest.mark.slow, pytest.mark.network]

ROOT = Path(__file__).resolve().parents[2]
MATRIX = matrix.load(ROOT / "matrix.toml")


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("report")
    return run.run_matrix(MATRIX, MATRIX.select([]), sm=120, jobs=2, out=out)


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
        "lock": "pass", "build": "pass", "selftest": "pass", "arch": "pass", "closure": "pass", "suite": "pass"}


def test_nightly_cells_are_not_testable_here_and_neither_pass_nor_fail(result: dict) -> None:
    for cid in ("nightly-cu128", "nightly-cu130"):
        cell = _cell(result, cid)
        assert cell["verdict"] == "not-testable" and not cell["unexpected"]
        assert "index" in cell["observed"]["note"]


def test_every_claim_has_a_verdict_with_evidence(result: dict) -> None:
    verdicts = {c["id"]: c["verdict"] for c in result["claims"]}
    assert verdicts["driver-565"] == "contradicted"
    assert verdicts["stable-251-sm90"] == "confirmed"
    assert verdicts["option2-libcupti13"] == "contradicted"
    assert verdicts["option3-works"] == "not-testable"
    assert verdicts["pyannote4-torch210"] == "confirmed"
    assert verdicts["patch-use-auth-token"] == "confirmed"
    assert verdicts["ld-library-path"] == "contradicted"
    assert verdicts["switch-stable-26"] == "contradicted"
    assert all(c["evidence"] for c in result["claims"])


def test_a_wrong_expectation_makes_the_matrix_exit_non_zero(tmp_path: Path) -> None:
    """A deliberately wrong expectation: the working cell is declared to fail. The matrix must say so and exit 11."""
    for name in ("requirements-base.txt", "requirements-nvidia.txt", "claims.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    for name in ("constraints", "patches", "tests"):
        shutil.copytree(ROOT / name, tmp_path / name)
    text = (ROOT / "matrix.toml").read_text()
    marker = 'id = "stable-cu128"'
    head, tail = text.split(marker, 1)
    tail = tail.replace('expect = { status = "pass" }', 'expect = { status = "fail", reason = "missing-soname:libfoo.so.1" }', 1)
    (tmp_path / "matrix.toml").write_text(head + marker + tail)
    env = os.environ | {"WXM_ENVS": str(ROOT / "envs"), "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-m", "whisperx_matrix", "matrix", "stable-cu128", "--no-suite",
                           "--out", str(tmp_path / "reports")], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 11, proc.stderr[-2000:]
    assert "unexpected-pass" in proc.stdout and "1 unexpected outcome(s): stable-cu128" in proc.stderr
    assert (tmp_path / "reports" / "matrix.json").is_file()  # the report is written before the exit
