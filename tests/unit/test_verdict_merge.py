"""Verdicts re-judged through the public merge (`report --merge` on a changed result file): change one observation
of the committed report and see the verdict follow it, and only as far as the observation goes."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each merge renders the whole report (about 10 s on 2 cores)

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "reports" / "matrix.json"


@pytest.fixture(scope="module")
def committed() -> dict:
    return json.loads(REPORT.read_text(encoding="utf-8"))


def _merge(result: dict, tmp_path: Path, probes: list[Path] | None = None) -> dict[str, dict]:
    """The claims as `python -m whisperx_matrix report --merge` judges them on ``result``."""
    src = tmp_path / "in" / "changed.json"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text(json.dumps(result), encoding="utf-8")
    out = tmp_path / "out"
    env = os.environ | {"PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "whisperx_matrix", "report", "--merge", str(src), "--out", str(out)]
        + (["--probes", *map(str, probes)] if probes else []),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {c["id"]: c for c in json.loads((out / "matrix.json").read_text(encoding="utf-8"))["claims"]}


def _cell(result: dict, cid: str) -> dict:
    return next(c for c in result["cells"] if c["id"] == cid)


def _as_nightly(result: dict) -> dict:
    """The passing stable-cu128 record, copied as the nightly-cu128 cell (what option 3 is judged on)."""
    out = copy.deepcopy(result)
    out["cells"] = [c for c in out["cells"] if c["id"] != "nightly-cu128"]
    out["cells"].append(dict(copy.deepcopy(_cell(result, "stable-cu128")), id="nightly-cu128", channel="nightly"))
    return out


def test_a_cell_whose_suite_never_ran_or_skipped_every_test_confirms_nothing(committed: dict, tmp_path: Path) -> None:
    result = _as_nightly(committed)
    passing = _merge(result, tmp_path / "a")["option3-works"]
    assert passing["verdict"] == "confirmed"
    assert passing.get("partial") == "CPU and static only; GPU part not run"  # no GPU test ran on that machine

    no_suite = copy.deepcopy(result)
    del _cell(no_suite, "nightly-cu128")["suite"]
    judged = _merge(no_suite, tmp_path / "b")["option3-works"]
    assert judged["verdict"] == "not-testable" and "nightly-cu128: suite: not run" in " ".join(judged["missing"])

    all_skipped = copy.deepcopy(result)
    for test in _cell(all_skipped, "nightly-cu128")["suite"]["tests"]:
        test.update(outcome="skipped", skip_reason="skipped on purpose")
    judged = _merge(all_skipped, tmp_path / "c")["option3-works"]
    assert judged["verdict"] == "not-testable" and "CPU tests: none ran (skipped on purpose)" in judged["missing"][0]


def test_an_emulation_whose_first_kernel_ran_is_not_evidence(committed: dict, tmp_path: Path) -> None:
    before = _merge(committed, tmp_path / "a")["option1-not-detected"]
    assert "emulated" in before["bases"]
    assert {"part": "the GPU is not detected at all", "verdict": "contradicted"} in before["parts"]
    ran = copy.deepcopy(committed)
    for probe in ran["probes"]:
        emu = (probe.get("gpu") or {}).get("no_kernel_emulation")
        if emu:
            emu.pop("first_kernel_error", None)  # "none: the kernel ran": the emulation did not take effect
    after = _merge(ran, tmp_path / "b")["option1-not-detected"]
    assert "emulated" not in after["bases"] and after["verdict"] == "confirmed"
    assert "'the GPU is not detected at all'" in after["partial"]
    assert "did not take effect, so this run is not evidence" in " ".join(after["missing"])


def test_torch_251_gaining_sm100_sass_flips_stable_251_sm90(committed: dict, tmp_path: Path) -> None:
    assert _merge(committed, tmp_path / "a")["stable-251-sm90"]["verdict"] == "confirmed"
    changed = copy.deepcopy(committed)
    _cell(changed, "option1-stable-cu124")["arch"]["packages"]["torch"]["sass"].append("sm_100")
    assert _merge(changed, tmp_path / "b")["stable-251-sm90"]["verdict"] == "contradicted"


def test_gpu_runs_given_as_probes_complete_the_ld_library_path_evidence(committed: dict, tmp_path: Path) -> None:
    """Without GPU records, the LD_LIBRARY_PATH comparison rests on CPU tests only (partial); the GPU workflow's
    recorded run (reports/gpu: the suite with LD_LIBRARY_PATH unset and set, GPU tests included) completes it."""
    cpu_only = copy.deepcopy(committed)
    cpu_only["probes"] = []
    judged = _merge(cpu_only, tmp_path / "a")["ld-library-path"]
    assert judged["partial"] == "CPU tests only; no GPU run compared"
    judged = _merge(cpu_only, tmp_path / "b", probes=[ROOT / "reports" / "gpu" / "matrix.json"])["ld-library-path"]
    assert judged["verdict"] == "contradicted" and "partial" not in judged
    assert any(
        "(the matrix, run on NVIDIA H200)" in e["text"] and "on the GPU (test_gpu" in e["text"]
        for e in judged["evidence"]
    )
