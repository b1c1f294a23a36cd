"""A GPU that the machine shows and torch cannot initialise fails the cell's GPU tests as cuda-init-failed; it is
never skipped as "no GPU".

Emulated, and named so: this machine has no GPU, so a fake ``nvidia-smi`` on PATH lists one (as a machine with an
RTX 5070 does), and the working cell's real torch cannot initialise CUDA here (no driver): the state of an RTX 50
on a driver torch cannot use. The GPU tests run in the cell's own python, as the matrix runs them.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from whisperx_matrix import build, verdict
from whisperx_matrix.cellside import gpuseen

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
FAKE_SMI = """#!/bin/sh
# A stand-in for nvidia-smi on a machine with no GPU: it lists one RTX 5070.
case "$1" in
  -L) echo "GPU 0: NVIDIA GeForce RTX 5070 (UUID: GPU-00000000-0000-0000-0000-000000000000)";;
  *) echo "NVIDIA GeForce RTX 5070, 12.0, 565.77";;
esac
"""


def _gpu_tests(python: Path, tmp_path: Path, path_prefix: str | None) -> dict:
    tmp_path.mkdir(parents=True, exist_ok=True)
    results = tmp_path / "suite.json"
    env = build.clean_env() | {"WXM_CELL_RESULTS": str(results), "WXM_CELL_ID": "stable-cu128", "WXM_TARGET_SM": "120"}
    if path_prefix:
        env["PATH"] = path_prefix + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(
        [
            str(python),
            "-m",
            "pytest",
            str(ROOT / "tests" / "cell" / "test_cell.py"),
            "-q",
            "-m",
            "gpu",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert results.exists(), proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(results.read_text())


def test_gpu_tests_fail_cuda_init_failed_with_a_fake_nvidia_smi_and_torch_off(
    working_cell_python: Path, tmp_path: Path
) -> None:
    if gpuseen.machine_gpus().present:
        pytest.skip("this machine has a real GPU: the emulation needs one without")
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text(FAKE_SMI)
    (fake / "nvidia-smi").chmod(0o755)
    data = _gpu_tests(working_cell_python, tmp_path / "fake", str(fake))
    gpu_tests = [t for t in data["tests"] if t.get("gpu")]
    assert gpu_tests and all(t["outcome"] == "failed" for t in gpu_tests), gpu_tests
    for t in gpu_tests:
        assert verdict.classify(t["error"]).startswith("cuda-init-failed:"), t["error"]
        assert "RTX 5070" in t["error"] and "cannot initialise CUDA" in t["error"]
    seen = data["observations"]["gpu"]
    assert seen["present"] is True and seen["cuda_init_error"], seen

    # The same suite without the fake: nothing shows a GPU, so the GPU tests skip, saying where they looked.
    data = _gpu_tests(working_cell_python, tmp_path / "none", None)
    skipped = [t for t in data["tests"] if t.get("gpu")]
    assert skipped and all(t["outcome"] == "skipped" for t in skipped)
    assert all("no GPU on this machine (looked at: /dev/nvidia" in t["skip_reason"] for t in skipped)
