"""GPU tests of the transcription benchmark (issue #7): run only where a GPU is, skip with the reason elsewhere.

Run on a GPU machine with a built cell: `nox -s gpu` (or `pytest tests/gpu`); tests/gpu is not in pytest's
testpaths, so `nox -s tests` never runs these. The cell is WXM_GPU_CELL (default stable-cu128); its own python
runs the benchmark script with LD_LIBRARY_PATH unset, as every cell runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))
CELLSIDE = ROOT / "src" / "whisperx_matrix" / "cellside"
SCRIPT = CELLSIDE / "bench_transcribe.py"
from whisperx_matrix.cellside import gpuseen  # noqa: E402  (whether the machine has a GPU, asked of the machine)

CELL = os.environ.get("WXM_GPU_CELL", "stable-cu128")


def _cell_python() -> Path:
    from whisperx_matrix import paths

    return paths.envs_dir(ROOT) / CELL / "bin" / "python"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYANNOTE_METRICS_ENABLED="false")
    return env


def _gpu_skip_reason() -> str | None:
    """Why the GPU tests cannot run here, or None. A GPU the machine shows (device nodes, nvidia-smi; never torch)
    that the cell's torch cannot initialise is not a reason to skip: it fails, as cuda-init-failed."""
    seen = gpuseen.machine_gpus()
    if not seen.present:
        return seen.describe()
    py = _cell_python()
    if not py.exists():
        return f"cell {CELL} is not built ({py} missing): nox -s env-{CELL}"
    from whisperx_matrix import doctor, tools

    # The doctor's own check, in the cell's python with the cells' environment (LD_LIBRARY_PATH unset, offline).
    problem = doctor.torch_cuda_problem(py, runner=lambda args: tools.run(args, env=_env(), timeout=300))
    if problem:
        pytest.fail(f"{problem} (the machine shows a GPU: {seen.describe()})")
    return None


@pytest.fixture(scope="module")
def gpu_cell() -> Path:
    reason = _gpu_skip_reason()
    if reason:
        pytest.skip(reason)
    return _cell_python()


@pytest.fixture(scope="module")
def one_minute(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    if not shutil.which("espeak-ng") or not shutil.which("ffmpeg"):
        pytest.skip("needs espeak-ng and ffmpeg to make and decode the speech")
    from whisperx_matrix import speech

    sp = speech.dialogue(1)
    work = tmp_path_factory.mktemp("gpu-bench")
    (work / "ref.txt").write_text(sp.text)
    (work / "ref.rttm").write_text(sp.rttm())
    return ["--audio", str(sp.wav), "--reference-text", str(work / "ref.txt"), "--rttm", str(work / "ref.rttm")]


def _run(py: Path, args: list[str], out: Path) -> dict:
    proc = subprocess.run(
        [str(py), "-I", str(SCRIPT), *args, "--out", str(out)], capture_output=True, text=True, env=_env(), timeout=900
    )
    assert out.exists(), proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data.get("ok"), f"{data.get('error')}\n{proc.stderr[-2000:]}"
    return data


def test_tiny_en_on_gpu_every_stage_measured(gpu_cell: Path, one_minute: list[str], tmp_path: Path) -> None:
    data = _run(
        gpu_cell, ["--device", "cuda", "--model", "tiny.en", "--batch-size", "16,8", *one_minute], tmp_path / "out.json"
    )
    by = {s["stage"]: s for s in data["stages"]}
    assert data["gpu"]["cuda_available"] and data["gpu"]["compute_capability"]
    assert by["cold_first_call"]["status"] == "ok" and by["warm_second_call"]["status"] == "ok"
    main = next(s for s in data["stages"] if s.get("kind") == "whisperx_batched")
    assert main["status"] == "ok" and main["rtf"] > 1 and main["tokens"] > 0
    assert main["gpu_peak_mib"] and main["gpu_peak_mib"] > 0, "NVML/nvidia-smi saw no memory for the CTranslate2 stage"
    assert main["wer"] < 0.15
    assert by["align"]["weights"] == "synthetic" and by["align"]["gpu_peak_mib"] > 0 and "wer" not in by["align"]
    assert by["diarize"]["weights"] == "synthetic" and by["diarize"]["der"] is None
    seq = next(s for s in data["stages"] if s.get("kind") == "sequential")
    # The sequential stage counts faster-whisper's segment tokens (timestamps included), named in the method map.
    assert seq["token_count"] == "sequential_tokens" and seq["token_count"] in data["token_count_method"]
    assert seq["tokens"] > 0


def test_float16_and_int8_float16_both_run(gpu_cell: Path, one_minute: list[str], tmp_path: Path) -> None:
    data = _run(
        gpu_cell,
        [
            "--device",
            "cuda",
            "--batch-size",
            "16",
            "--compute-type",
            "float16",
            "--compare-compute-types",
            "int8_float16",
            "--no-sequential",
            "--no-align",
            "--no-diarize",
            *one_minute,
        ],
        tmp_path / "out.json",
    )
    cts = {s.get("compute_type") for s in data["stages"] if s.get("status") == "ok" and s.get("rtf")}
    assert {"float16", "int8_float16"} <= cts
