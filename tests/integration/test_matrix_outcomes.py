"""The documented outcome, end to end: every reachable cell is built for real, audited, and its suite run in
its own python; the verdicts and the claims come from what was observed. This is the project's headline test.
"""

from __future__ import annotations

import json
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


def _unreachable(cell: dict) -> bool:
    return cell["verdict"] == "not-testable" and "index" in cell["observed"].get("note", "")


def test_nightly_cells_are_judged_where_their_index_answers_and_not_testable_where_not(result: dict) -> None:
    """With no network to the PyTorch nightly index: infrastructure, not evidence (no failure, nothing
    unexpected). Where it answers: judged like any other cell, against its expectation."""
    for cid in ("nightly-cu128", "nightly-cu130"):
        cell = _cell(result, cid)
        assert not cell["unexpected"], cell["observed"]
        if _unreachable(cell):
            assert cell["observed"]["reasons"] == [] and "infra: " in cell["observed"]["note"]
        else:
            assert cell["verdict"] in ("as-expected", "failed-as-expected"), cell["observed"]


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
    """On this machine (no GPU, no GPU records given): every verdict says what it rests on and what it lacks."""
    claims = {c["id"]: c for c in result["claims"]}
    verdicts = {cid: c["verdict"] for cid, c in claims.items()}
    nightly_reachable = not _unreachable(_cell(result, "nightly-cu128"))
    assert verdicts == {
        "driver-565": "contradicted",  # the cited R570 first branch for sm_120
        "stable-251-sm90": "confirmed",
        "option1-not-detected": "confirmed",  # option 1 fails (its fatbin); the detection part needs a GPU run
        "option2-libcupti13": verdicts["option2-libcupti13"] if nightly_reachable else "not-testable",
        "option3-works": "confirmed" if nightly_reachable else "not-testable",
        "pyannote4-torch210": "confirmed",
        "patch-use-auth-token": "mixed",  # needed; the guide's two-file edit is not enough (diarization)
        "ld-library-path": "contradicted",
        "switch-stable-26": "confirmed",  # 2.8.0 is the first stable release with sm_120; 2.6.0 has none
    }
    # What no GPU could show is named as partial, never counted as passing.
    assert "'the GPU is not detected at all'" in claims["option1-not-detected"]["partial"]
    assert claims["ld-library-path"]["partial"] == "CPU tests only; no GPU run compared"
    assert claims["pyannote4-torch210"]["partial"] == "CPU and static only; GPU part not run"
    assert claims["patch-use-auth-token"]["parts"] == [
        {"part": "a patch is needed", "verdict": "confirmed"},
        {"part": "the guide's two-file edit is enough (VAD, ASR and diarization)", "verdict": "contradicted"},
    ]
    for claim in result["claims"]:
        assert all(e["basis"] in ("measured", "emulated", "cited") for e in claim["evidence"]), claim["id"]
        if claim["verdict"] == "not-testable" or claim.get("partial"):
            assert claim["missing"], claim["id"]  # it names what it lacked
    ld = claims["ld-library-path"]
    assert all("nvidia/*/lib folders" in e["text"] for e in ld["evidence"])  # measured with and without
    gaps = _cell(result, "stable-cu128")["observed"]["unobserved"]
    assert len(gaps) == 1 and gaps[0].startswith("GPU part: not run (no GPU on this machine"), gaps


def test_a_wrong_expectation_makes_the_matrix_exit_non_zero(tmp_path: Path) -> None:
    """Two deliberately wrong expectations, run without the suite: option 1 declared to pass (its arch audit
    fails, which decides without the suite: unexpected, exit 11), and the working cell declared to fail for a
    reason only the suite could show (nothing failed, but nothing decided: incomplete, never a pass)."""
    for name in ("requirements-base.txt", "requirements-nvidia.txt", "claims.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    for name in ("constraints", "patches", "tests"):
        shutil.copytree(ROOT / name, tmp_path / name)
    text = (ROOT / "matrix.toml").read_text()
    head, tail = text.split('id = "option1-stable-cu124"', 1)
    tail = tail.replace('expect_sm = { 120 = { status = "fail", reason = "arch-unsupported:sm_120" } }\n', "", 1)
    text = head + 'id = "option1-stable-cu124"' + tail
    head, tail = text.split('id = "stable-cu128"', 1)
    tail = tail.replace(
        'expect = { status = "pass" }', 'expect = { status = "fail", reason = "missing-soname:libfoo.so.1" }', 1
    )
    (tmp_path / "matrix.toml").write_text(head + 'id = "stable-cu128"' + tail)
    env = os.environ | {"WXM_ENVS": str(ROOT / "envs"), "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "whisperx_matrix",
            "matrix",
            "option1-stable-cu124",
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
    assert "1 unexpected outcome(s): option1-stable-cu124" in proc.stderr
    report = json.loads((tmp_path / "reports" / "matrix.json").read_text())  # written before the exit
    verdicts = {c["id"]: c["verdict"] for c in report["cells"]}
    assert verdicts == {"option1-stable-cu124": "unexpected-failure", "stable-cu128": "incomplete"}
    assert report["totals"]["incomplete"] == 1


def test_aarch64_cells_are_judged_statically_and_say_what_was_not_run(result: dict) -> None:
    """linux-aarch64 cells on this x86_64 machine (#25): locked for their platform, their wheels fetched and
    audited, nothing built or run. The working cell's pins have no aarch64 solution (torchcodec 0.7.0); today's
    newest stable resolves, its torch carries SASS for every ARM data-centre and desktop GPU, and CTranslate2's
    aarch64 wheel is a CPU-only build."""
    pinned = _cell(result, "stable-cu128-aarch64")
    assert pinned["verdict"] == "failed-as-expected"
    assert pinned["observed"]["reasons"] == ["no-wheel-for-platform:torchcodec==0.7.0"]
    newest = _cell(result, "stable-cu132-py312-aarch64")
    assert newest["verdict"] == "failed-as-expected" and newest["platform"] == "aarch64-manylinux_2_28"
    assert newest["observed"]["reasons"] == ["no-cuda-build:ctranslate2"]
    checks = newest["checks"]
    assert checks["closure"]["status"] == "pass" and checks["arch"]["status"] == "fail"
    for name in ("build", "selftest", "suite"):
        assert checks[name]["status"] == "skip" and "not-run: platform aarch64" in checks[name]["detail"]
    assert any("suite: not run (not-run: platform aarch64" in u for u in newest["observed"]["unobserved"])
    sass = set(newest["arch"]["packages"]["torch"]["sass"])
    assert {"sm_90", "sm_100", "sm_110", "sm_121a"} <= sass  # GH200, GB200, Jetson Thor, DGX Spark
    assert newest["arch"]["cpu_only"] == ["ctranslate2"] and newest["versions"]["torch"] == "2.15.0"
